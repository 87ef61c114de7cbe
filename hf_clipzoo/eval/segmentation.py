"""Zero-shot semantic segmentation of the embedded world's scenes with a segmenting dual encoder (GroupViT).

One evaluation shared by `training_scripts/groupvit.py`, the shipped foundation's validation and the bench: the
official protocol scaled to the model's input size (crop = image size, stride = half of it, short side = image size,
background threshold `bg_thresh`), mIoU over background + the world's shape classes, and the same numbers for the
trivial prediction "background everywhere" — the level a segmenter must beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import mean_iou_from_confusion_matrix, segmentation_confusion_matrix


def evaluate_world_segmentation(model, processor, scenes, num_images: int, bg_thresh: float = 0.95) -> dict[str, Any]:
    """mIoU / pixel accuracy of `processor.segment` on the first `num_images` scenes, the all-background mIoU, and
    the per-image confusion matrices of both (flattened, for a bootstrap over images)."""
    from ..data.synthetic import SEGMENTATION_CLASSES

    num_labels = len(SEGMENTATION_CLASSES)
    size = model.config.vision_config.image_size
    confusions, background = [], []
    for row in scenes.select(range(min(num_images, len(scenes)))):
        prediction = processor.segment(
            model, row["image"], list(SEGMENTATION_CLASSES[1:]), crop_size=size, stride=size // 2, short_side=size,
            bg_thresh=bg_thresh,
        ).cpu().numpy()  # fmt: skip
        reference = np.asarray(row["semantic_mask"], dtype=np.int64)
        confusions.append(segmentation_confusion_matrix(prediction, reference, num_labels))
        background.append(segmentation_confusion_matrix(np.zeros_like(reference), reference, num_labels))
    if not confusions:
        raise ValueError("No scene to segment: `scenes` is empty or `num_images` is 0.")
    result = mean_iou_from_confusion_matrix(np.sum(confusions, axis=0))
    return {
        "mean_iou": result["mean_iou"],
        "overall_accuracy": result["overall_accuracy"],
        "all_background_mean_iou": mean_iou_from_confusion_matrix(np.sum(background, axis=0))["mean_iou"],
        "confusions": [c.ravel().tolist() for c in confusions],
        "all_background_confusions": [c.ravel().tolist() for c in background],
    }


__all__ = ["evaluate_world_segmentation"]
