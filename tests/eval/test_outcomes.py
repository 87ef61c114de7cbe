"""Per-item outcomes and the paired bootstrap against naive versions of themselves."""

import numpy as np
import pytest

from hf_clipzoo.eval.metrics import mean_iou, segmentation_confusion_matrix
from hf_clipzoo.eval.outcomes import load_outcomes, mean_iou_statistic, paired_bootstrap, save_outcomes


def naive_paired_bootstrap(a, b, statistic, num_resamples, seed):
    """The textbook loop: draw item indices with replacement, recompute both statistics, take percentiles."""
    rng = np.random.default_rng(seed)
    n = len(a)
    diffs = []
    for _ in range(num_resamples):
        idx = rng.integers(0, n, size=n)
        diffs.append(statistic(a[idx]) - statistic(b[idx]))
    return np.quantile(diffs, [0.025, 0.975])


def test_paired_bootstrap_matches_the_naive_loop():
    rng = np.random.default_rng(1)
    a, b = (rng.random(300) < 0.6).astype(float), (rng.random(300) < 0.5).astype(float)
    result = paired_bootstrap(a, b, num_resamples=500, seed=3)
    low, high = naive_paired_bootstrap(a, b, np.mean, 500, 3)
    assert result["low"] == pytest.approx(low) and result["high"] == pytest.approx(high)
    assert result["difference"] == pytest.approx(a.mean() - b.mean())
    assert result["low"] <= result["difference"] <= result["high"]


def test_pairing_shrinks_the_interval_of_correlated_outcomes():
    # Two models that agree on almost every item: the paired interval is far narrower than the unpaired spread.
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.5).astype(float)
    b = a.copy()
    b[:20] = 1 - b[:20]
    result = paired_bootstrap(a, b, num_resamples=500)
    assert result["high"] - result["low"] < 0.06


def test_identical_runs_give_a_zero_interval_and_bad_shapes_are_refused():
    a = np.array([1.0, 0.0, 1.0, 1.0])
    result = paired_bootstrap(a, a, num_resamples=50)
    assert result["low"] == result["high"] == result["difference"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(a, a[:3])
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap(a[:1], a[:1])


def test_mean_iou_statistic_equals_the_dataset_level_mean_iou():
    rng = np.random.default_rng(0)
    predictions = [rng.integers(0, 4, size=(8, 8)) for _ in range(5)]
    references = [rng.integers(0, 4, size=(8, 8)) for _ in range(5)]
    confusions = np.stack([segmentation_confusion_matrix(p, r, 4).ravel() for p, r in zip(predictions, references)])
    assert mean_iou_statistic(confusions) == pytest.approx(mean_iou(predictions, references, num_labels=4)["mean_iou"])


def test_mean_iou_bootstrap_matches_the_naive_loop():
    # The per-resample confusion sums (item counts times per-image matrices) against recomputing each resample.
    rng = np.random.default_rng(2)
    references = [rng.integers(0, 5, size=(6, 6)) for _ in range(40)]
    confusions = []
    for noise in (0.3, 0.6):
        predictions = [np.where(rng.random(r.shape) < noise, rng.integers(0, 5, size=r.shape), r) for r in references]
        confusions.append(
            np.stack([segmentation_confusion_matrix(p, r, 5).ravel() for p, r in zip(predictions, references)])
        )
    result = paired_bootstrap(*confusions, statistic=mean_iou_statistic, num_resamples=300, seed=4)
    low, high = naive_paired_bootstrap(*confusions, mean_iou_statistic, 300, 4)
    assert result["low"] == pytest.approx(low, abs=1e-12) and result["high"] == pytest.approx(high, abs=1e-12)
    assert result["difference"] == pytest.approx(mean_iou_statistic(confusions[0]) - mean_iou_statistic(confusions[1]))
    assert result["low"] > 0  # less noise, higher mIoU, on every resample's worth of evidence


def test_outcomes_round_trip_and_merge(tmp_path):
    save_outcomes(tmp_path, {"a/hits": [1, 0, 1]})
    save_outcomes(tmp_path, {"b/ranks": np.array([0, 3])})
    outcomes = load_outcomes(tmp_path)
    assert outcomes["a/hits"].tolist() == [1, 0, 1] and outcomes["b/ranks"].tolist() == [0, 3]
    assert load_outcomes(tmp_path / "none") == {}
    with pytest.raises(ValueError, match="non-finite"):
        save_outcomes(tmp_path, {"c": [float("nan")]})
    with pytest.raises(ValueError, match="non-empty"):
        save_outcomes(tmp_path, {"c": []})


def test_the_bench_retrieval_statistic_is_the_mean_of_both_directions():
    from hf_clipzoo.bench import _retrieval_r1

    outcomes = {
        "retrieval/image_to_text_ranks": np.array([0.0, 0.0, 3.0, 1.0]),
        "retrieval/text_to_image_ranks": np.array([0.0, 2.0, 0.0, 5.0]),
    }
    naive = [(float(a == 0) + float(b == 0)) / 2 for a, b in zip(*outcomes.values())]
    assert _retrieval_r1(outcomes).tolist() == naive == [1.0, 0.5, 0.5, 0.0]
