"""Zero-shot semantic segmentation pipeline: an image and candidate labels in, one binary mask per label out.

Runs the official GroupViT protocol (`ZooGroupViTProcessor.segment`: keep-ratio resize to a 448 short side, 448 / 224
sliding window, one-hot groups, top-5 image-level class filter, background threshold). Usage:

    >>> from hf_clipzoo.pipelines.zero_shot_segmentation import ZeroShotSegmentationPipeline
    >>> segmenter = ZeroShotSegmentationPipeline.from_pretrained("path/to/groupvit")
    >>> results = segmenter(image, candidate_labels=["cat", "dog"])  # [{"label", "mask", "score"}, ...]
    >>> overlay = segmenter.overlay(image, results)                      # PIL RGB, save as PNG
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..models.groupvit.processing_groupvit import check_labels, check_segmentation_options, overlay_masks


class ZeroShotSegmentationPipeline:
    """Callable `(image, candidate_labels) -> [{"label", "mask", "score"}]`, one entry per label, in label order.

    `mask` is a PIL "L" image (255 where the label wins, 0 elsewhere), `score` the fraction of pixels it covers.
    Pixels that are background (below the threshold) belong to no label.
    """

    def __init__(self, model, processor, crop_size: int = 448, stride: int = 224, short_side: int = 448,
                 bg_thresh: float = 0.95, top_k: int = 5):  # fmt: skip
        if not hasattr(processor, "segment"):
            raise ValueError("The processor must be a ZooGroupViTProcessor (it implements the segmentation protocol).")
        check_segmentation_options(bg_thresh, top_k)
        self.model = model.eval()
        self.processor = processor
        self.options = dict(
            crop_size=crop_size, stride=stride, short_side=short_side, bg_thresh=bg_thresh, top_k=top_k
        )

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> ZeroShotSegmentationPipeline:
        from transformers import AutoModel, AutoProcessor

        from ..hub.folders import check_model_path

        check_model_path(path, argument="path")
        return cls(AutoModel.from_pretrained(path), AutoProcessor.from_pretrained(path), **kwargs)

    def __call__(self, image, candidate_labels, **overrides) -> list[dict]:
        labels = check_labels(candidate_labels)
        unknown = set(overrides) - set(self.options)
        if unknown:
            raise ValueError(f"Unknown options {sorted(unknown)}; expected some of {sorted(self.options)}.")
        label_map = self.processor.segment(self.model, image, labels, **{**self.options, **overrides})
        label_map = np.asarray(label_map.cpu() if isinstance(label_map, torch.Tensor) else label_map)
        results = []
        for index, label in enumerate(labels, start=1):
            mask = label_map == index
            results.append(
                {
                    "label": label,
                    "mask": Image.fromarray(mask.astype(np.uint8) * 255, mode="L"),
                    "score": float(mask.mean()),
                }
            )
        return results

    @staticmethod
    def overlay(image, results: list[dict], alpha: float = 0.5) -> Image.Image:
        """Colour each label's mask over the image (label order = palette order)."""
        label_map = np.zeros((image.height, image.width), dtype=np.int64)
        for index, result in enumerate(results, start=1):
            label_map[np.asarray(result["mask"]) > 0] = index
        return overlay_masks(image, label_map, alpha=alpha)


__all__ = ["ZeroShotSegmentationPipeline"]
