"""`evaluate` module: MMVP-VLM pair accuracy (both statements of a pair must pick their own image)."""

import datasets
import evaluate

from hf_clipzoo.eval.metrics import mmvp_pair_accuracy

_DESCRIPTION = """
MMVP-VLM pair accuracy (Tong et al., "Eyes Wide Shut?", CVPR 2024). Each pair has two images that differ in one
visual pattern and two statements; statement a describes image a. A pair is correct only when statement a scores
image a higher than image b AND statement b scores image b at least as high as image a (the official script's
tie rule). The headline number is the mean over categories of the per-category pair accuracy.
Computed by `hf_clipzoo.eval.metrics.mmvp_pair_accuracy`.
"""

_KWARGS_DESCRIPTION = """
Args:
    scores (`list[list[list[float]]]`): one 2x2 matrix per pair, `scores[s][i]` = similarity of statement s and image i.
    categories (`list[str]`): the visual pattern of each pair.
    category_order (`list[str]`, *optional*): order of the categories in the output.
Returns:
    per_category_accuracy (`dict[str, float]`), average_accuracy (`float`), pair_accuracy (`float`),
    num_pairs (`int`).
Examples:
    >>> from hf_clipzoo.eval import load_metric
    >>> metric = load_metric("clipzoo_mmvp")
    >>> metric.compute(scores=[[[0.9, 0.1], [0.2, 0.8]]], categories=["Color and Appearance"])["average_accuracy"]
    1.0
"""

_CITATION = """
@inproceedings{tong2024eyes,
  title={Eyes Wide Shut? Exploring the Visual Shortcomings of Multimodal LLMs},
  author={Tong, Shengbang and Liu, Zhuang and Zhai, Yuexiang and Ma, Yi and LeCun, Yann and Xie, Saining},
  booktitle={CVPR},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClipzooMMVP(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "scores": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                    "categories": datasets.Value("string"),
                }
            ),
            codebase_urls=["https://github.com/tsb0601/MMVP"],
        )

    def _compute(self, scores, categories, category_order=None):
        return mmvp_pair_accuracy(scores, categories, category_order=category_order)
