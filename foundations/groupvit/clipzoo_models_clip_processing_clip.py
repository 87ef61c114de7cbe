"""Processor of the baseline dual encoder: a PIL/numpy CLIP image processor paired with the CLIP BPE tokenizer.

Same outputs as transformers' `CLIPProcessor` (`input_ids`, `attention_mask`, `pixel_values`), with the input checks
the zoo promises: every image goes through the zoo's one image policy (`hf_clipzoo.data.images.to_rgb_image`:
16-bit and float images scaled to 8 bits, floats in [0, 1] taken as already scaled), and images it cannot read
unambiguously (NaN, normalised values, unsupported shapes) and empty captions fail with a message saying what was
expected, instead of a wrong image or a shape error deep inside the model.
"""

import numpy as np
import torch
from PIL import Image
from transformers import ProcessorMixin

from .clipzoo_data_images import to_rgb_image
from .clipzoo_hub_export import RemoteCodeProcessorMixin


def check_images(images) -> list[Image.Image]:
    """One image or a list of images (PIL, numpy or torch; see `hf_clipzoo.data.images.to_rgb_image`) as a list of
    8-bit RGB PIL images. Converting here, rather than leaving arrays to the image processor, is what makes float
    arrays in [0, 1] come out right: transformers would rescale them by 1/255 a second time."""
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        images = [images]
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError("`images` must be a PIL image, an array, or a non-empty list of them.")
    return [to_rgb_image(image, name=f"Image {i}") for i, image in enumerate(images)]


def check_texts(text) -> list[str]:
    """Validate one caption or a list of captions and return them as a list."""
    if isinstance(text, str):
        text = [text]
    if not isinstance(text, (list, tuple)) or len(text) == 0:
        raise ValueError("`text` must be a string or a non-empty list of strings.")
    for i, caption in enumerate(text):
        if not isinstance(caption, str):
            raise ValueError(f"Text {i} has type {type(caption).__name__}; expected a string.")
        if not caption.strip():
            raise ValueError(f"Text {i} is empty; every caption needs at least one word.")
    return list(text)


def flatten_captions(captions_per_image) -> tuple[list[str], list[int]]:
    """`[[c00, c01], [c10]]` → `([c00, c01, c10], [0, 0, 1])`, checking that every image has non-empty captions."""
    texts, owner = [], []
    for index, captions in enumerate(captions_per_image):
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, (list, tuple)) or len(captions) == 0:
            raise ValueError(f"Image {index} has no captions; every image needs at least one (its raw caption).")
        try:
            captions = check_texts(list(captions))
        except ValueError as error:
            raise ValueError(f"Image {index}: {error}") from error
        texts.extend(captions)
        owner.extend([index] * len(captions))
    return texts, owner


class ZooCLIPProcessor(RemoteCodeProcessorMixin, ProcessorMixin):
    r"""
    Wraps a CLIP image processor (PIL backend, no torchvision needed) and the CLIP BPE tokenizer.

    Args:
        image_processor (`CLIPImageProcessorPil`): resizes, crops and normalises images.
        tokenizer (`CLIPTokenizer`): the 49,408-token CLIP BPE (`hf_clipzoo.backbones.load_clip_tokenizer()`).

    Call with `text=`, `images=` or both; returns a `BatchFeature` with `input_ids`, `attention_mask` and
    `pixel_values`. Captions are padded to the longest and truncated to the tokenizer's `model_max_length`.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer)

    def __call__(self, images=None, text=None, return_tensors="pt", padding=True, truncation=True, **kwargs):
        if images is None and text is None:
            raise ValueError("Pass `images`, `text` or both.")
        if images is not None:
            images = check_images(images)
        if text is not None:
            text = check_texts(text)
        return super().__call__(
            images=images, text=text, return_tensors=return_tensors, padding=padding, truncation=truncation, **kwargs
        )


__all__ = ["flatten_captions", "ZooCLIPProcessor", "check_images", "check_texts"]
