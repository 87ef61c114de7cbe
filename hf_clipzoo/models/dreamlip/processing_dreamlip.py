"""Processor of DreamLIP: the CLIP processor, plus one list of 1 + K captions per image → `(batch, 1 + K, length)` ids."""

import numpy as np

from ..clip.processing_clip import ZooCLIPProcessor, flatten_captions


def stack_caption_slots(captions_per_image) -> tuple[list[str], int]:
    """`[[c00, c01], [c10, c11]]` → `([c00, c01, c10, c11], 2)`, checking every image has the same number of captions."""
    texts, owner = flatten_captions(captions_per_image)
    counts = np.bincount(owner, minlength=len(captions_per_image))
    if len(counts) == 0:
        raise ValueError("`text` is an empty list of caption lists.")
    uneven = np.flatnonzero(counts != counts[0])
    if len(uneven):
        raise ValueError(
            f"Image {uneven[0]} has {counts[uneven[0]]} captions but image 0 has {counts[0]}; DreamLIP needs the same "
            "number (1 + K) for every image: sample them with `hf_clipzoo.data.subcaptions.SubcaptionSampler`."
        )
    return texts, int(counts[0])


class DreamLIPProcessor(ZooCLIPProcessor):
    r"""
    [`ZooCLIPProcessor`] that also accepts, for `text=`, one *list* of captions per image (raw caption first, then K
    subcaptions, the same count for every image): `input_ids` and `attention_mask` then have shape
    `(batch, 1 + K, length)`, the layout [`DreamLIPModel`] trains on. A flat list of strings behaves exactly like the
    CLIP processor (zero-shot classification, retrieval). For captions longer than 77 tokens (a model with
    `text_position_interpolation`), build the processor with a tokenizer whose `model_max_length` is the model's
    `max_text_length`.
    """

    def __call__(self, images=None, text=None, return_tensors="pt", padding=True, truncation=True, **kwargs):
        if text is not None and not isinstance(text, str) and any(isinstance(t, (list, tuple)) for t in text):
            texts, num_slots = stack_caption_slots(text)
            if images is not None:
                num_images = 1 if not isinstance(images, (list, tuple)) else len(images)
                if num_images != len(text):
                    raise ValueError(
                        f"Got {num_images} images but captions for {len(text)} images; expected one caption list per "
                        "image."
                    )
            if return_tensors != "pt":
                raise ValueError("Lists of captions per image need `return_tensors='pt'` (they become 3-D tensors).")
            batch = super().__call__(
                images=images, text=texts, return_tensors="pt", padding=padding, truncation=truncation, **kwargs
            )
            for key in ("input_ids", "attention_mask"):
                if key in batch:
                    batch[key] = batch[key].reshape(len(text), num_slots, -1)
            return batch
        return super().__call__(
            images=images, text=text, return_tensors=return_tensors, padding=padding, truncation=truncation, **kwargs
        )


__all__ = ["DreamLIPProcessor", "stack_caption_slots"]
