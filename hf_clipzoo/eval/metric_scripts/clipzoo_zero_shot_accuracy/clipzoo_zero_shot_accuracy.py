"""`evaluate` module: zero-shot classification accuracy (top-1, top-5, mean per class) as hf-clipzoo reports it."""

import datasets
import evaluate

from hf_clipzoo.eval.metrics import zero_shot_accuracy

_DESCRIPTION = """
Top-1 / top-5 / mean-per-class accuracy of a classifier, as reported for CLIP-style zero-shot classification.
Predictions are either class ids or per-class scores (logits, cosine similarities); with scores, a class tying with
the true class counts against the prediction, and top-5 is reported when there are at least 5 classes.
Computed by `hf_clipzoo.eval.metrics.zero_shot_accuracy`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]` or `list[list[float]]`): predicted class ids, or one row of class scores per sample.
    references (`list[int]`): ground-truth class ids.
    num_classes (`int`, *optional*): number of classes (inferred from the scores or the ids otherwise).
    top_k (`tuple[int]`, *optional*, defaults to `(1, 5)`): which top-k accuracies to report (scores only).
Returns:
    top1_accuracy (`float`), top5_accuracy (`float`, scores with >= 5 classes), mean_per_class_accuracy (`float`),
    per_class_accuracy (`list[float]`, NaN for classes without samples), num_samples (`int`).
Examples:
    >>> from hf_clipzoo.eval import load_metric
    >>> metric = load_metric("clipzoo_zero_shot_accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])["top1_accuracy"]
    0.6666666666666666
"""

_CITATION = """
@inproceedings{radford2021clip,
  title={Learning Transferable Visual Models From Natural Language Supervision},
  author={Radford, Alec and Kim, Jong Wook and Hallacy, Chris and others},
  booktitle={ICML},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClipzooZeroShotAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Two accepted formats; evaluate picks the first that encodes the first example.
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Value("int64"),
                    }
                ),
            ],
            reference_urls=["https://github.com/openai/CLIP"],
        )

    def _compute(self, predictions, references, num_classes=None, top_k=(1, 5)):
        return zero_shot_accuracy(predictions, references, num_classes=num_classes, top_k=top_k)
