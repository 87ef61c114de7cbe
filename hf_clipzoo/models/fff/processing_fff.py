"""Processor of FFF: the CLIP processor, plus several captions per image flattened with their `text_owner`."""

import torch

from ..clip.processing_clip import ZooCLIPProcessor, flatten_captions


class FFFProcessor(ZooCLIPProcessor):
    r"""
    [`ZooCLIPProcessor`] that also accepts, for `text=`, one *list* of captions per image (raw caption first, then
    pseudo-captions): the captions are flattened into `input_ids` and `text_owner[j]` gives the image of caption j,
    the layout [`FFFModel`] trains on. A flat list of strings behaves exactly like the CLIP processor (zero-shot
    classification, retrieval).
    """

    def __call__(self, images=None, text=None, return_tensors="pt", padding=True, truncation=True, **kwargs):
        if text is not None and not isinstance(text, str) and any(isinstance(t, (list, tuple)) for t in text):
            texts, owner = flatten_captions(text)
            if images is not None:
                num_images = 1 if not isinstance(images, (list, tuple)) else len(images)
                if num_images != len(text):
                    raise ValueError(
                        f"Got {num_images} images but captions for {len(text)} images; expected one caption list per image."
                    )
            batch = super().__call__(
                images=images,
                text=texts,
                return_tensors=return_tensors,
                padding=padding,
                truncation=truncation,
                **kwargs,
            )
            batch["text_owner"] = torch.tensor(owner) if return_tensors == "pt" else owner
            return batch
        return super().__call__(
            images=images, text=text, return_tensors=return_tensors, padding=padding, truncation=truncation, **kwargs
        )


__all__ = ["FFFProcessor", "flatten_captions"]
