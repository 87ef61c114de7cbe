"""Zero-shot semantic segmentation pipeline: an image and candidate labels in, one binary mask per label out.

Runs the official GroupViT protocol (`ZooGroupViTProcessor.segment`: keep-ratio resize to a 448 short side, 448 / 224
sliding window, one-hot groups, top-5 image-level class filter, background threshold). It is a `transformers.Pipeline`
registered as the custom task `zero-shot-image-segmentation`, and every saved GroupViT folder carries it, so

    >>> from transformers import pipeline
    >>> segmenter = pipeline("zero-shot-image-segmentation", model="path/to/groupvit", trust_remote_code=True)
    >>> results = segmenter(image, candidate_labels=["cat", "dog"])  # [{"label", "mask", "score"}, ...]

works with or without hf_clipzoo installed. With the package, the class can also be built directly:

    >>> from hf_clipzoo.pipelines.zero_shot_segmentation import ZeroShotSegmentationPipeline
    >>> segmenter = ZeroShotSegmentationPipeline.from_pretrained("path/to/groupvit")
    >>> overlay = segmenter.overlay(image, segmenter(image, candidate_labels=["cat", "dog"]))  # PIL RGB
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import Pipeline
from transformers.image_utils import load_image

from .processing_groupvit import check_labels, check_segmentation_options, overlay_masks

# Not a Hub task and not a transformers built-in: the Hub's `image-segmentation` takes no labels.
TASK = "zero-shot-image-segmentation"
_OPTIONS = ("crop_size", "stride", "short_side", "bg_thresh", "top_k")


class ZeroShotSegmentationPipeline(Pipeline):
    """`(image, candidate_labels) -> [{"label", "mask", "score"}]`, one entry per label, in label order.

    `image` is a PIL image, an array / tensor, a local path or a URL; a list of them gives a list of results.
    `mask` is a PIL "L" image (255 where the label wins, 0 elsewhere), `score` the fraction of pixels it covers.
    Pixels that are background (below the threshold) belong to no label.

    The protocol options (`crop_size`, `stride`, `short_side`, `bg_thresh`, `top_k`) can be set when the pipeline is
    built and overridden per call. Without `device`, the pipeline runs where the model is.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, model, processor=None, *, device=None, **kwargs):
        if not hasattr(processor, "segment"):
            raise ValueError(
                "The processor must be a ZooGroupViTProcessor (it implements the segmentation protocol), "
                f"got {type(processor).__name__}."
            )
        # Options given here are the pipeline's defaults; a call can override each of them.
        self._options = dict(crop_size=448, stride=224, short_side=448, bg_thresh=0.95, top_k=5)
        self._options.update({name: kwargs.pop(name) for name in _OPTIONS if name in kwargs})
        check_segmentation_options(self._options["bg_thresh"], self._options["top_k"])
        super().__init__(model=model, processor=processor, device=model.device if device is None else device, **kwargs)
        self.model.eval()

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> ZeroShotSegmentationPipeline:
        from transformers import AutoModel, AutoProcessor

        from .clipzoo_hub_folders import check_model_path

        check_model_path(path, argument="path")
        return cls(AutoModel.from_pretrained(path), AutoProcessor.from_pretrained(path), task=TASK, **kwargs)

    def __call__(self, image, candidate_labels=None, **kwargs):
        """`pipeline(image, ["cat", "dog"])` or `pipeline(image, candidate_labels=[...])`, as transformers' zero-shot
        pipelines take their labels (its base `__call__` would drop a positional second argument)."""
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        return super().__call__(image, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, **options):
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise ValueError(f"Unknown options {sorted(unknown)}; expected some of {sorted(_OPTIONS)}.")
        merged = {**self._options, **options}
        check_segmentation_options(merged["bg_thresh"], merged["top_k"])
        preprocess_params = {} if candidate_labels is None else {"candidate_labels": candidate_labels}
        return preprocess_params, options, {}

    def preprocess(self, image, candidate_labels=None):
        if candidate_labels is None:
            raise ValueError("Pass `candidate_labels`: the class names to segment.")
        if isinstance(image, str):
            image = load_image(image)
        return {"image": image, "candidate_labels": check_labels(candidate_labels)}

    def _forward(self, model_inputs, **options):
        # The sliding window needs the model once per crop, so the protocol runs here as a whole.
        labels = model_inputs["candidate_labels"]
        label_map = self.processor.segment(self.model, model_inputs["image"], labels, **{**self._options, **options})
        return {"label_map": label_map, "candidate_labels": labels}

    def postprocess(self, model_outputs):
        label_map = model_outputs["label_map"]
        label_map = np.asarray(label_map.cpu() if isinstance(label_map, torch.Tensor) else label_map)
        results = []
        for index, label in enumerate(model_outputs["candidate_labels"], start=1):
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


__all__ = ["TASK", "ZeroShotSegmentationPipeline"]
