"""Processor of MA-CLIP: videos → `pixel_values [B, T, 3, H, W]` (per-frame CLIP preprocessing) and class prompts →
`input_ids` with the CLIP BPE tokenizer.

Built on the shared `hf_clipzoo.data.video.preprocess_videos` (frame resampling to `num_frames`, RGB conversion), so
videos of any length and resolution work; the checks say what was expected instead of failing inside the model.
"""

from __future__ import annotations

from transformers import BatchFeature, ProcessorMixin

from ...data.video import preprocess_videos
from ...hub.export import RemoteCodeProcessorMixin
from ..clip.processing_clip import check_texts


class MACLIPProcessor(RemoteCodeProcessorMixin, ProcessorMixin):
    r"""
    Wraps a CLIP image processor (applied to every frame) and the CLIP BPE tokenizer.

    Args:
        image_processor (`CLIPImageProcessorPil`): resizes, crops and normalises frames.
        tokenizer (`CLIPTokenizer`): the CLIP BPE tokenizer.
        num_frames (`int`, *optional*, defaults to 8): `T`; videos with another frame count are resampled uniformly.

    `processor(videos=[...], text=[...])` returns `pixel_values` `[B, T, 3, H, W]` and/or `input_ids` /
    `attention_mask` (class prompts, one per episode label, padded to the longest).
    """

    def __init__(self, image_processor=None, tokenizer=None, num_frames: int = 8, **kwargs):
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2:
            raise ValueError(f"`num_frames` must be an integer >= 2, got {num_frames!r}.")
        self.num_frames = num_frames
        super().__init__(image_processor, tokenizer)

    def __call__(
        self, videos=None, text=None, num_frames: int | None = None, return_tensors="pt", padding=True, **kwargs
    ) -> BatchFeature:
        if videos is None and text is None:
            raise ValueError("Pass `videos`, `text` or both.")
        data = {}
        if videos is not None:
            data["pixel_values"] = preprocess_videos(
                videos, self.image_processor, num_frames=num_frames or self.num_frames
            )
        if text is not None:
            encoded = self.tokenizer(
                check_texts(text), return_tensors=return_tensors, padding=padding, truncation=True, **kwargs
            )
            data.update(encoded)
        return BatchFeature(data=data)


__all__ = ["MACLIPProcessor"]
