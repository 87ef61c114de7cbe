"""Processor of CLIP-FSAR: videos -> `pixel_values [B, T, 3, H, W]`, class names -> prompt token ids.

Videos may be lists of PIL frames, uint8 arrays `[T, H, W, 3]`, or video files (paths or bytes, decoded with PyAV by
`hf_clipzoo.data.video.decode_video`). Every video is sampled to exactly `num_frames` frames (uniform segment
centres by default; short videos repeat frames in order) and every frame goes through the CLIP image processor.
"""

from __future__ import annotations

import os

import numpy as np
from transformers import BatchFeature

from ...data.video import SAMPLING_MODES, decode_video, preprocess_videos
from ..clip.processing_clip import ZooCLIPProcessor, check_texts


class CLIPFSARProcessor(ZooCLIPProcessor):
    r"""
    [`ZooCLIPProcessor`] for videos and class names.

    Args:
        image_processor (`CLIPImageProcessorPil`): applied to every frame.
        tokenizer (`CLIPTokenizer`): the CLIP BPE.
        num_frames (`int`, *optional*, defaults to 8): T, frames sampled per video (CLIP-FSAR: 8).
        text_prompt (`str`, *optional*, defaults to `"a photo of {}"`): the official prompt (no period); `{}` is the
            class name.
        sampling_mode (`str`, *optional*, defaults to `"uniform"`): `"uniform"` (segment centres, deterministic) or
            `"segment"` (TSN, one random frame per segment; pass `rng=` to the call).

    Call with `videos=`, `class_names=` (wrapped in `text_prompt`) or `text=` (used as given). Returns a
    `BatchFeature` with `pixel_values` and / or `input_ids`, `attention_mask`.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_frames: int = 8,
        text_prompt: str = "a photo of {}",
        sampling_mode: str = "uniform",
        **kwargs,
    ):
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be a positive integer, got {num_frames!r}.")
        if not isinstance(text_prompt, str) or text_prompt.count("{}") != 1:
            raise ValueError(f"`text_prompt` must contain exactly one '{{}}' for the class name, got {text_prompt!r}.")
        if sampling_mode not in SAMPLING_MODES:
            raise ValueError(f"`sampling_mode` must be one of {SAMPLING_MODES}, got {sampling_mode!r}.")
        self.num_frames = num_frames
        self.text_prompt = text_prompt
        self.sampling_mode = sampling_mode
        super().__init__(image_processor, tokenizer)

    def prompts(self, class_names) -> list[str]:
        """`text_prompt` filled with each class name (names checked to be non-empty strings)."""
        return [self.text_prompt.format(name.strip()) for name in check_texts(class_names)]

    def load_video(self, video, rng=None) -> list:
        """A path / bytes is decoded to `num_frames` RGB frames; anything else is returned as is."""
        if isinstance(video, (str, os.PathLike, bytes, bytearray, memoryview)):
            return decode_video(video, self.num_frames, mode=self.sampling_mode, rng=rng)
        return video

    def __call__(
        self,
        videos=None,
        text=None,
        class_names=None,
        return_tensors="pt",
        padding=True,
        truncation=True,
        rng: np.random.Generator | int | None = None,
        **kwargs,
    ):
        if videos is None and text is None and class_names is None:
            raise ValueError("Pass `videos`, `class_names` or `text`.")
        if text is not None and class_names is not None:
            raise ValueError("Pass `class_names` (wrapped in the prompt) or `text` (used as is), not both.")
        if class_names is not None:
            text = self.prompts(class_names)
        batch = None
        if text is not None:
            batch = super().__call__(
                text=text, return_tensors=return_tensors, padding=padding, truncation=truncation, **kwargs
            )
        if videos is not None:
            if isinstance(videos, (str, os.PathLike, bytes)):
                videos = [videos]
            if rng is not None and not isinstance(rng, np.random.Generator):
                rng = np.random.default_rng(rng)
            if not isinstance(videos, (list, tuple, np.ndarray)) or len(videos) == 0:
                raise ValueError("`videos` must be a non-empty list of videos (frame lists, arrays or file paths).")
            loaded = [self.load_video(video, rng) for video in videos]
            pixel_values = preprocess_videos(
                loaded, self.image_processor, num_frames=self.num_frames, mode=self.sampling_mode, rng=rng
            )
            if batch is None:
                return BatchFeature({"pixel_values": pixel_values})
            batch["pixel_values"] = pixel_values
        return batch


__all__ = ["CLIPFSARProcessor"]
