"""Ready-made processors: the CLIP BPE tokenizer (built offline) with a PIL image processor at a given resolution."""

from __future__ import annotations

from transformers import CLIPImageProcessorPil

from ..models.clip.processing_clip import ZooCLIPProcessor
from .tokenizer import load_clip_tokenizer

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_clip_processor(
    image_size: int = 224,
    model_max_length: int = 77,
    image_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN,
    image_std: tuple[float, float, float] = OPENAI_CLIP_STD,
) -> ZooCLIPProcessor:
    """OpenAI CLIP preprocessing (resize shortest edge, bicubic, centre crop, normalise) + the 49,408-token BPE."""
    if image_size <= 0 or model_max_length <= 2:
        raise ValueError(f"Need image_size > 0 and model_max_length > 2, got {image_size} and {model_max_length}.")
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(image_mean),
        image_std=list(image_std),
    )
    return ZooCLIPProcessor(image_processor=image_processor, tokenizer=load_clip_tokenizer(model_max_length))


__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "build_clip_processor"]
