"""Processor of MA-CLIP: CLIP-FSAR's video processor with MA-CLIP's class prompt and frame minimum.

Videos → `pixel_values [B, T, 3, H, W]` (lists of PIL frames, uint8 arrays or video files; per-frame CLIP
preprocessing), class names → prompt token ids with the CLIP BPE tokenizer. The episode inputs are the same as
CLIP-FSAR's, so both models share the few-shot video pipeline.
"""

from __future__ import annotations

from ..clip_fsar.processing_clip_fsar import CLIPFSARProcessor
from .configuration_ma_clip import MIN_FRAMES


class MACLIPProcessor(CLIPFSARProcessor):
    r"""
    [`CLIPFSARProcessor`] with MA-CLIP's defaults.

    Args:
        image_processor (`CLIPImageProcessorPil`): applied to every frame.
        tokenizer (`CLIPTokenizer`): the CLIP BPE.
        num_frames (`int`, *optional*, defaults to 8): `T`; videos with another frame count are resampled uniformly.
            At least 2: MA-CLIP's temporal adapters mix neighbouring frames.
        text_prompt (`str`, *optional*, defaults to `"a video of {}."`): the prompt `training_scripts/ma_clip.py`
            trains with; `{}` is the class name.
        sampling_mode (`str`, *optional*, defaults to `"uniform"`): see [`CLIPFSARProcessor`].

    `processor(videos=[...], class_names=[...])` returns `pixel_values` `[B, T, 3, H, W]` and / or `input_ids` /
    `attention_mask` (one prompt per episode label, padded to the longest); `text=` takes prompts as given.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_frames: int = 8,
        text_prompt: str = "a video of {}.",
        sampling_mode: str = "uniform",
        **kwargs,
    ):
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < MIN_FRAMES:
            raise ValueError(f"`num_frames` must be an integer >= {MIN_FRAMES}, got {num_frames!r}.")
        super().__init__(
            image_processor, tokenizer, num_frames=num_frames, text_prompt=text_prompt, sampling_mode=sampling_mode
        )


__all__ = ["MACLIPProcessor"]
