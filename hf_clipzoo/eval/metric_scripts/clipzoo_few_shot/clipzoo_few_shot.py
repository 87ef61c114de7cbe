"""`evaluate` module: few-shot episode accuracy with its 95% confidence interval."""

import datasets
import evaluate

from hf_clipzoo.eval.metrics import episode_accuracies, episode_accuracy_with_ci

_DESCRIPTION = """
Few-shot N-way K-shot evaluation: the accuracy of each episode is computed from its query predictions, then the
mean over episodes is reported with the half-width of its 95% confidence interval, 1.96 * std / sqrt(#episodes)
(population std, as in the TRX / CNAPs / LITE code). Computed by `hf_clipzoo.eval.metrics.episode_accuracy_with_ci`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): the predicted class of each query.
    references (`list[int]`): the true class of each query.
    episode_ids (`list[int]`): the episode each query belongs to.
    z (`float`, *optional*, defaults to 1.96): the normal quantile of the interval.
    ddof (`int`, *optional*, defaults to 0): 0 for the population std, 1 for the sample std.
Returns:
    accuracy (`float`, mean over episodes), confidence_interval (`float`, half-width), std (`float`),
    num_episodes (`int`).
Examples:
    >>> from hf_clipzoo.eval import load_metric
    >>> metric = load_metric("clipzoo_few_shot")
    >>> metric.compute(predictions=[0, 1, 1, 1], references=[0, 1, 0, 1], episode_ids=[0, 0, 1, 1])["accuracy"]
    0.75
"""

_CITATION = """
@article{wang2023clipfsar,
  title={CLIP-guided Prototype Modulating for Few-shot Action Recognition},
  author={Wang, Xiang and Zhang, Shiwei and Cen, Jun and Gao, Changxin and Zhang, Yingya and Zhao, Deli and Sang, Nong},
  journal={International Journal of Computer Vision},
  year={2023}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClipzooFewShot(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "episode_ids": datasets.Value("int64"),
                }
            ),
            format="numpy",
        )

    def _compute(self, predictions, references, episode_ids, z=1.96, ddof=0):
        accuracies = episode_accuracies(predictions, references, episode_ids)
        return episode_accuracy_with_ci(accuracies, z=z, ddof=ddof)
