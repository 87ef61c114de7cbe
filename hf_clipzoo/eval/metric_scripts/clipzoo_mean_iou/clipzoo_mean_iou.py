"""`evaluate` module: dataset-level mean IoU of semantic segmentation maps (mmseg's accumulation)."""

import datasets
import evaluate

from hf_clipzoo.eval.metrics import mean_iou

_DESCRIPTION = """
Mean intersection-over-union of semantic segmentation maps. Intersections and unions are summed over the whole
dataset before dividing (as mmseg and GroupViT's evaluation do); classes absent from both predictions and references
get NaN and are left out of the mean. Pixels whose reference is `ignore_index` are not evaluated.
Computed by `hf_clipzoo.eval.metrics.mean_iou`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[list[int]]]` or `list[np.ndarray]`): one (H, W) map of class ids per image.
    references (same as predictions): the ground-truth maps.
    num_labels (`int`): number of classes.
    ignore_index (`int`, *optional*, defaults to 255): reference value of pixels that are not evaluated.
    reduce_labels (`bool`, *optional*, defaults to `False`): ADE20k convention (0 -> ignored, other ids - 1).
Returns:
    mean_iou, mean_accuracy, overall_accuracy (`float`), per_category_iou, per_category_accuracy (`list[float]`).
Examples:
    >>> from hf_clipzoo.eval import load_metric
    >>> metric = load_metric("clipzoo_mean_iou")
    >>> metric.compute(predictions=[[[0, 1]]], references=[[[0, 0]]], num_labels=2)["mean_iou"]
    0.25
"""

_CITATION = """
@inproceedings{xu2022groupvit,
  title={GroupViT: Semantic Segmentation Emerges from Text Supervision},
  author={Xu, Jiarui and De Mello, Shalini and Liu, Sifei and Byeon, Wonmin and Breuel, Thomas and Kautz, Jan and Wang, Xiaolong},
  booktitle={CVPR},
  year={2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClipzooMeanIou(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
                }
            ),
            reference_urls=["https://github.com/open-mmlab/mmsegmentation"],
        )

    def _compute(self, predictions, references, num_labels, ignore_index=255, reduce_labels=False):
        return mean_iou(predictions, references, num_labels, ignore_index=ignore_index, reduce_labels=reduce_labels)
