"""Evaluation protocols of the hf-clipzoo papers: metric functions, `evaluate` modules and model-level evaluators.

- `metrics`: pure functions (zero-shot accuracy, retrieval recall, mIoU, MMVP pair accuracy, few-shot episodes).
- `load_metric(name)`: the same metrics as `evaluate` modules shipped in the package (Hub metrics are offline-unusable).
- `evaluate_zero_shot`, `evaluate_retrieval`, `evaluate_mmvp`: run any dual encoder exposing `get_image_features` /
  `get_text_features` (transformers' `CLIPModel` and every hf-clipzoo model) on a `datasets.Dataset`.
- `cli.run_eval`: load a saved model and a dataset, evaluate, write JSON.
"""

from .embeddings import embedding_from_output, encode_images, encode_texts
from .loading import METRIC_NAMES, load_metric
from .metrics import (
    episode_accuracies,
    episode_accuracy_with_ci,
    mean_iou,
    mean_iou_from_confusion_matrix,
    mmvp_pair_accuracy,
    retrieval_recall,
    segmentation_confusion_matrix,
    text_to_image_from_caption_ids,
    zero_shot_accuracy,
)
from .mmvp import MMVP_VLM_CATEGORIES, evaluate_mmvp, load_mmvp_vlm, read_mmvp_vlm_questions
from .retrieval import evaluate_retrieval
from .zero_shot import (
    DEFAULT_TEMPLATES,
    OPENAI_IMAGENET_TEMPLATES,
    build_zero_shot_classifier,
    evaluate_zero_shot,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "METRIC_NAMES",
    "MMVP_VLM_CATEGORIES",
    "OPENAI_IMAGENET_TEMPLATES",
    "build_zero_shot_classifier",
    "embedding_from_output",
    "encode_images",
    "encode_texts",
    "episode_accuracies",
    "episode_accuracy_with_ci",
    "evaluate_mmvp",
    "evaluate_retrieval",
    "evaluate_zero_shot",
    "load_metric",
    "load_mmvp_vlm",
    "mean_iou",
    "mean_iou_from_confusion_matrix",
    "mmvp_pair_accuracy",
    "read_mmvp_vlm_questions",
    "retrieval_recall",
    "segmentation_confusion_matrix",
    "text_to_image_from_caption_ids",
    "zero_shot_accuracy",
]
