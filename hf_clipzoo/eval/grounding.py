"""Patch-level grounding of a dual encoder: how well text–patch similarity finds the objects a caption names.

DreamLIP (arXiv 2403.17007, §4.4) shows that subcaption grouping makes the patch tokens of CLIP align with words; we
measure it on scenes with semantic masks (the embedded world's `make_scenes`, or any dataset with an image, an
integer mask and class names) with two protocols that need no extra training:

- **pointing game**: for every class present in an image, the pixel where "a photo of a {class}." is most similar to
  the (bilinearly upsampled) patch embeddings must fall inside that class's mask;
- **segmentation with the image's labels**: per pixel, the present class with the largest similarity, min-max
  normalised per class over the image; pixels whose best normalised similarity is below `background_threshold`
  are background. mIoU over the dataset (intersections and unions summed, like mmseg).

Both use the image-level labels (the classes present), as weakly supervised grounding benchmarks do: they measure
where the model looks, not whether it recognises the classes (zero-shot accuracy does that).

Patch embeddings: `model.get_patch_features(pixel_values)` when the model has it (DreamLIP); otherwise the CLIP
recipe DreamLIP uses — the vision tower's patch tokens through its final layer norm and the visual projection — so a
baseline CLIP is measured the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.images import to_rgb_image
from .embeddings import encode_texts, model_device
from .metrics import mean_iou_from_confusion_matrix, segmentation_confusion_matrix


def patch_embeddings(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """L2-normalised patch embeddings `(batch, num_patches, dim)` in the joint image-text space."""
    if hasattr(model, "get_patch_features"):
        patches = model.get_patch_features(pixel_values)
    elif hasattr(model, "vision_model") and hasattr(model, "visual_projection"):
        hidden = model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
        patches = model.visual_projection(model.vision_model.post_layernorm(hidden[:, 1:, :]))
    else:
        raise ValueError(
            f"{type(model).__name__} exposes neither `get_patch_features` nor CLIP's `vision_model` + "
            "`visual_projection`: patch-level grounding needs patch embeddings in the joint space."
        )
    return F.normalize(patches.float(), dim=-1)


def similarity_maps(patches: torch.Tensor, text_embeds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(batch, classes, H, W)`: patch–text cosine similarities on the patch grid, bilinearly upsampled to `size`."""
    batch, num_patches, _ = patches.shape
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"Expected a square patch grid, got {num_patches} patches.")
    sims = torch.einsum("bpd,cd->bcp", patches, text_embeds).reshape(batch, -1, grid, grid)
    return F.interpolate(sims, size=size, mode="bilinear", align_corners=False)


def ground_with_labels(
    maps: np.ndarray, present: Sequence[int], background_threshold: float
) -> tuple[np.ndarray, dict[int, bool]]:
    """Segmentation and pointing-game hits of one image from its similarity maps.

    Args:
        maps: `(num_classes, H, W)` similarities (index = class id − 1; class 0 is background).
        present: class ids (>= 1) present in the image.
        background_threshold: pixels whose best min-max normalised similarity is below it are background.

    Returns:
        `(prediction (H, W) int64 map of class ids, {class id: argmax pixel's class id == class id})` — the second
        item still needs the reference mask; here it maps each present class to its argmax pixel as a flat index.
    """
    height, width = maps.shape[1:]
    prediction = np.zeros((height, width), dtype=np.int64)
    if not present:
        return prediction, {}
    present = sorted(present)
    selected = maps[[c - 1 for c in present]]
    low = selected.reshape(len(present), -1).min(axis=1)[:, None, None]
    high = selected.reshape(len(present), -1).max(axis=1)[:, None, None]
    normalised = (selected - low) / np.maximum(high - low, 1e-12)
    best = normalised.argmax(axis=0)
    prediction = np.asarray(present, dtype=np.int64)[best]
    prediction[normalised.max(axis=0) < background_threshold] = 0
    argmax_pixels = {c: int(selected[i].argmax()) for i, c in enumerate(present)}
    return prediction, argmax_pixels


@torch.inference_mode()
def evaluate_patch_grounding(
    model: torch.nn.Module,
    processor: Any,
    dataset,
    *,
    class_names: Sequence[str],
    image_column: str = "image",
    mask_column: str = "semantic_mask",
    template: str = "a photo of a {}.",
    background_threshold: float = 0.5,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Pointing-game accuracy and mIoU of text–patch similarity (see the module docstring).

    Args:
        model: a dual encoder with patch embeddings (see `patch_embeddings`).
        processor: a CLIP-like processor (images and text).
        dataset: rows with `image_column` (PIL image) and `mask_column` (mode "L" image or array; 0 = background,
            `c` = `class_names[c − 1]`), e.g. `make_scenes(...)` with `SEGMENTATION_CLASSES[1:]` as class names.
        class_names: the names of classes 1..C.
        background_threshold: in [0, 1].

    Returns:
        `{"pointing_accuracy", "pointing_chance", "mean_iou", "num_images", "num_objects", "pointing_hits"}`;
        `pointing_chance` is the mean area fraction of the objects (what a random pixel scores), `pointing_hits`
        the 0/1 outcome of every (image, class present) pair in dataset order.
    """
    if not 0.0 <= background_threshold <= 1.0:
        raise ValueError(f"`background_threshold` must be in [0, 1], got {background_threshold}.")
    if not class_names:
        raise ValueError("`class_names` is empty: grounding needs the names of the mask's classes 1..C.")
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: nothing to ground.")
    for column in (image_column, mask_column):
        if column not in dataset.column_names:
            raise ValueError(f"The dataset has no column {column!r}; it has {dataset.column_names}.")
    was_training = model.training
    model.eval()
    device = model_device(model)
    text_embeds = encode_texts(model, processor, [template.format(name) for name in class_names], device=device)
    num_labels = len(class_names) + 1
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    hits = objects = 0
    point_hits: list[int] = []  # per (image, class present) pair, in dataset order: what a bootstrap resamples
    area = 0.0  # the pointing game's chance level: a uniformly random pixel lands in the object
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        images = [to_rgb_image(image, name=f"Image {start + i}") for i, image in enumerate(rows[image_column])]
        masks = [np.asarray(mask, dtype=np.int64) for mask in rows[mask_column]]
        pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
        patches = patch_embeddings(model, pixel_values.to(next(model.parameters()).dtype))
        for index, mask in enumerate(masks):
            if mask.max() >= num_labels:
                raise ValueError(
                    f"Row {start + index}: mask id {int(mask.max())} has no class name ({len(class_names)} given)."
                )
            maps = similarity_maps(patches[index : index + 1], text_embeds, mask.shape)[0].cpu().numpy()
            present = [int(c) for c in np.unique(mask) if c != 0]
            prediction, argmax_pixels = ground_with_labels(maps, present, background_threshold)
            confusion += segmentation_confusion_matrix(prediction, mask, num_labels)
            for class_id, pixel in argmax_pixels.items():
                hit = int(mask.reshape(-1)[pixel] == class_id)
                hits += hit
                point_hits.append(hit)
                area += float((mask == class_id).mean())
                objects += 1
    if was_training:
        model.train()
    return {
        "pointing_accuracy": hits / objects if objects else float("nan"),
        "pointing_chance": area / objects if objects else float("nan"),
        "mean_iou": mean_iou_from_confusion_matrix(confusion)["mean_iou"],
        "num_images": len(dataset),
        "num_objects": objects,
        "pointing_hits": point_hits,
    }


__all__ = ["evaluate_patch_grounding", "ground_with_labels", "patch_embeddings", "similarity_maps"]
