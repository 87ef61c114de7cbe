"""Loads the `evaluate` modules shipped inside the package.

Hub metrics (`evaluate.load("accuracy")`) need the network; these modules are local folders
`hf_clipzoo/eval/metric_scripts/<name>/<name>.py`, which `evaluate.load(<folder>)` imports offline. evaluate copies
the script into its modules cache and imports it standalone, so the scripts only use absolute imports of installed
packages (`from hf_clipzoo.eval.metrics import ...`), one per line (evaluate parses imports textually).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["METRIC_SCRIPTS_DIR", "METRIC_NAMES", "metric_path", "load_metric"]

METRIC_SCRIPTS_DIR = Path(__file__).resolve().parent / "metric_scripts"
METRIC_NAMES: tuple[str, ...] = (
    "clipzoo_zero_shot_accuracy",
    "clipzoo_retrieval",
    "clipzoo_mean_iou",
    "clipzoo_mmvp",
    "clipzoo_few_shot",
)


def metric_path(name: str) -> Path:
    """The folder of the shipped `evaluate` module `name` (one of `METRIC_NAMES`)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown hf-clipzoo metric {name!r}; available: {list(METRIC_NAMES)}.")
    path = METRIC_SCRIPTS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise FileNotFoundError(f"The metric script {path / f'{name}.py'} is missing from the installed package.")
    return path


def load_metric(name: str, **kwargs: Any):
    """`evaluate.load` of a shipped metric, offline. `kwargs` go to `evaluate.load` (`experiment_id`,
    `num_process`, `process_id`, `keep_in_memory`, ...).

    Example:
        >>> metric = load_metric("clipzoo_zero_shot_accuracy")
        >>> metric.add_batch(predictions=[0, 1], references=[0, 0])
        >>> metric.compute()["top1_accuracy"]
        0.5
    """
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)
