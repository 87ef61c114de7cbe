"""Image-text retrieval (Recall@1/5/10 in both directions) of a dual encoder on a captioned image dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .embeddings import encode_images, encode_texts, map_batches, model_device, require_columns
from .metrics import retrieval_recall

__all__ = ["flatten_captions", "evaluate_retrieval"]


def flatten_captions(captions_per_image: Sequence[str | Sequence[str]]) -> tuple[list[str], list[int]]:
    """Flattens a caption column (a string or a list of strings per image) into `(texts, text_to_image)`.

    Raises a ValueError for an image without caption or an empty caption: both would silently change the recall.
    """
    texts: list[str] = []
    text_to_image: list[int] = []
    for image_index, captions in enumerate(captions_per_image):
        captions = [captions] if isinstance(captions, str) else list(captions or [])
        if not captions:
            raise ValueError(f"Image {image_index} has no caption; every image needs at least one.")
        for caption in captions:
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError(f"Image {image_index} has an empty or non-string caption: {caption!r}.")
            texts.append(caption)
            text_to_image.append(image_index)
    return texts, text_to_image


def evaluate_retrieval(
    model: torch.nn.Module,
    processor: Callable,
    dataset: Any,
    image_column: str = "image",
    caption_column: str = "caption",
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 64,
    device: torch.device | None = None,
    accelerator: Any | None = None,
    tokenizer: Callable | None = None,
    return_ranks: bool = False,
) -> dict[str, Any]:
    """Recall@k for image-to-text and text-to-image retrieval over the whole dataset.

    Args:
        model: a dual encoder (`get_image_features` / `get_text_features`).
        processor: a `CLIPProcessor`-like processor; see `tokenizer`.
        dataset: a map-style `datasets.Dataset`, one row per image.
        image_column: the image column.
        caption_column: a string column (one caption per image) or a list-of-strings column (e.g. the 5 captions
            of COCO / Flickr30k); every caption is a query and a candidate.
        ks: the recall cut-offs.
        batch_size: images (and captions) per forward pass.
        device: where to run; defaults to the model's device (or the accelerator's).
        accelerator: an optional `accelerate.Accelerator`; work is sharded and embeddings gathered in order.
        tokenizer: the text tokenizer when `processor` only handles images (defaults to `processor`).
        return_ranks: also return the per-query ranks (for a paired bootstrap).

    Returns:
        `{"image_to_text_R@k", "text_to_image_R@k" for each k, "num_images", "num_texts"}`; ties are counted
        against the query (see :func:`hf_clipzoo.eval.metrics.retrieval_recall`).
    """
    require_columns(dataset, [image_column, caption_column], "evaluate_retrieval")
    texts, text_to_image = flatten_captions(dataset[caption_column])
    if accelerator is not None and device is None:
        device = accelerator.device
    device = device if device is not None else model_device(model)
    model.eval()
    images = dataset.select_columns([image_column])

    def embed_images(indices: list[int]) -> dict[str, torch.Tensor]:
        return {"embeddings": encode_images(model, processor, images[indices][image_column], device)}

    def embed_texts(indices: list[int]) -> dict[str, torch.Tensor]:
        return {"embeddings": encode_texts(model, tokenizer or processor, [texts[i] for i in indices], device)}

    image_embeddings = map_batches(len(images), batch_size, embed_images, accelerator)["embeddings"]
    text_embeddings = map_batches(len(texts), batch_size, embed_texts, accelerator)["embeddings"]
    results = retrieval_recall(image_embeddings @ text_embeddings.T, text_to_image, ks=ks, return_ranks=return_ranks)
    results["num_images"] = len(images)
    results["num_texts"] = len(texts)
    return results
