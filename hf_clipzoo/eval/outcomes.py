"""Per-item evaluation outcomes, saved next to a run, and the paired bootstrap that compares two runs with them.

A bench claim ("method beats its control") is a difference of two metrics measured on the *same* test items (the
same held-out images, captions, MMVP pairs or few-shot episodes). Resampling the items with replacement and
recomputing both metrics on each resample gives a 95% interval for the difference that accounts for the test set's
size and for the pairing (Efron & Tibshirani, *An Introduction to the Bootstrap*, ch. 13, percentile interval). It
does not cover training noise (seeds); the bench says which interval each claim uses.

Scripts write `eval_outcomes.json` into their `--output_dir` (one list per outcome, item order fixed by the seeded
test split); `load_outcomes` reads it back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import mean_iou_from_confusion_matrix

OUTCOMES_FILE = "eval_outcomes.json"


def save_outcomes(output_dir: str | Path, outcomes: dict[str, Any]) -> Path:
    """Merge `outcomes` (name -> per-item values: 0/1 hits, per-episode accuracies, per-image confusion matrices)
    into `<output_dir>/eval_outcomes.json`; later calls overwrite earlier values of the same name."""
    path = Path(output_dir) / OUTCOMES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    for name, values in outcomes.items():
        array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
        if array.ndim == 0 or array.shape[0] == 0:
            raise ValueError(f"Outcome {name!r} must be a non-empty per-item sequence, got shape {array.shape}.")
        if not np.isfinite(array).all():
            raise ValueError(f"Outcome {name!r} has non-finite values.")
        existing[name] = array.tolist()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(existing) + "\n")
    tmp.replace(path)
    return path


def load_outcomes(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The outcomes a run saved (`{}` when it saved none)."""
    path = Path(run_dir) / OUTCOMES_FILE
    if not path.exists():
        return {}
    return {name: np.asarray(values, dtype=np.float64) for name, values in json.loads(path.read_text()).items()}


def mean_iou_statistic(confusions: np.ndarray) -> float:
    """Dataset-level mIoU of per-image confusion matrices `(n, C, C)` (or flattened `(n, C*C)`), summed over images
    as `hf_clipzoo.eval.metrics.mean_iou` does."""
    total = confusions.sum(axis=0)
    side = int(round(math.sqrt(total.size)))
    return mean_iou_from_confusion_matrix(total.reshape(side, side))["mean_iou"]


def _mean_iou_per_resample(confusions: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """`mean_iou_statistic(confusions[sample])` for every row of `samples` at once: each resample's summed confusion
    matrix is its item counts times the per-item matrices (integer pixel counts, so the sums are exact)."""
    num_resamples, n = samples.shape
    counts = np.zeros((num_resamples, n))
    np.add.at(counts, (np.repeat(np.arange(num_resamples), n), samples.ravel()), 1.0)
    side = int(round(math.sqrt(confusions[0].size)))
    totals = (counts @ confusions.reshape(n, -1)).reshape(num_resamples, side, side)
    intersection = np.diagonal(totals, axis1=1, axis2=2)
    union = totals.sum(axis=2) + totals.sum(axis=1) - intersection
    if (totals.sum(axis=(1, 2)) == 0).any():
        raise ValueError("No labelled pixel in a resample: every reference pixel is `ignore_index`.")
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
    return np.nanmean(iou, axis=1)


def _mean(values: np.ndarray) -> float:
    return float(values.mean())


def _mean_per_resample(values: np.ndarray, samples: np.ndarray) -> np.ndarray:
    # Row means sum in the same order as `values.mean()` on one resample.
    resampled = values[samples]
    return resampled.reshape(resampled.shape[0], -1).mean(axis=1)


# Statistics that can compute every resample at once (`fn(values, samples) -> [num_resamples]`); any other callable
# is applied to one resample at a time.
_PER_RESAMPLE = {_mean: _mean_per_resample, mean_iou_statistic: _mean_iou_per_resample}


def paired_bootstrap(
    method: Any,
    control: Any,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Difference `statistic(method) - statistic(control)` with a paired percentile bootstrap interval.

    Args:
        method, control: per-item outcomes of the two runs on the same items, in the same order (first axis = items).
        statistic: the metric computed from a (resampled) array of outcomes; `None` for the mean (accuracy from 0/1
            hits, mean episode accuracy), `mean_iou_statistic` for per-image confusion matrices.
        num_resamples: bootstrap resamples.
        confidence: the interval's coverage.
        seed: seed of the resampling (fixed, so the report is deterministic).

    Returns:
        `{"method", "control", "difference", "low", "high", "num_items", "num_resamples"}`.
    """
    method, control = np.asarray(method, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if method.shape != control.shape:
        raise ValueError(
            f"Paired outcomes must have the same shape (the same test items): got {method.shape} and {control.shape}."
        )
    if method.ndim == 0 or method.shape[0] < 2:
        raise ValueError(f"A bootstrap needs at least 2 items, got shape {method.shape}.")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence}.")
    rng = np.random.default_rng(seed)
    n = method.shape[0]
    # One draw per resample, in order: the same indices as the textbook loop, whichever branch computes with them.
    samples = np.stack([rng.integers(0, n, size=n) for _ in range(num_resamples)])
    statistic = statistic or _mean
    if statistic in _PER_RESAMPLE:
        differences = _PER_RESAMPLE[statistic](method, samples) - _PER_RESAMPLE[statistic](control, samples)
    else:
        differences = np.array([statistic(method[sample]) - statistic(control[sample]) for sample in samples])
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    method_value, control_value = statistic(method), statistic(control)
    return {
        "method": method_value,
        "control": control_value,
        "difference": method_value - control_value,
        "low": float(low),
        "high": float(high),
        "num_items": n,
        "num_resamples": num_resamples,
    }


__all__ = ["OUTCOMES_FILE", "load_outcomes", "mean_iou_statistic", "paired_bootstrap", "save_outcomes"]
