"""The `evaluate` modules shipped in the package load offline and give the pure functions' numbers."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from hf_clipzoo.eval import METRIC_NAMES, load_metric
from hf_clipzoo.eval.loading import metric_path
from hf_clipzoo.eval.metrics import (
    episode_accuracies,
    episode_accuracy_with_ci,
    mean_iou,
    mmvp_pair_accuracy,
    retrieval_recall,
    zero_shot_accuracy,
)


def assert_same(result, expected):
    assert result.keys() == expected.keys()
    for key, want in expected.items():
        got = result[key]
        if isinstance(want, dict):
            assert_same(got, want)
        elif isinstance(want, list):
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w), key
        else:
            assert got == pytest.approx(want), key


@pytest.fixture(scope="module")
def metrics():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by tests/conftest.py: a Hub lookup would fail
    return {name: load_metric(name, keep_in_memory=True) for name in METRIC_NAMES}


def test_every_metric_is_an_evaluation_module_imported_from_the_cache(metrics):
    import evaluate

    for name, metric in metrics.items():
        assert isinstance(metric, evaluate.EvaluationModule)
        # evaluate copied the script to its modules cache and imported it from there, not from the package.
        assert type(metric).__module__.startswith("evaluate_modules.metrics."), type(metric).__module__
        assert metric.name == name


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="Unknown hf-clipzoo metric 'accuracy'"):
        load_metric("accuracy")
    assert metric_path("clipzoo_mmvp").name == "clipzoo_mmvp"


def test_zero_shot_module(metrics):
    metric = metrics["clipzoo_zero_shot_accuracy"]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 6))
    labels = rng.integers(0, 6, size=20)
    # Scores in two batches.
    metric.add_batch(predictions=logits[:12].tolist(), references=labels[:12].tolist())
    metric.add_batch(predictions=logits[12:].tolist(), references=labels[12:].tolist())
    assert_same(metric.compute(), zero_shot_accuracy(logits, labels))
    # Predicted ids in one call.
    preds = logits.argmax(axis=1)
    assert_same(
        metric.compute(predictions=preds.tolist(), references=labels.tolist(), num_classes=6),
        zero_shot_accuracy(preds, labels, num_classes=6),
    )
    with pytest.raises(ValueError, match="outside"):
        metric.compute(predictions=[0, 1], references=[0, 1], num_classes=1)


def test_retrieval_module(metrics):
    metric = metrics["clipzoo_retrieval"]
    rng = np.random.default_rng(1)
    sim = rng.normal(size=(4, 9))
    text_to_image = [0, 1, 2, 3, 0, 1, 2, 3, 3]
    caption_ids = [[t for t, i in enumerate(text_to_image) if i == image] for image in range(4)]
    for image in range(4):
        metric.add_batch(predictions=[sim[image].tolist()], references=[caption_ids[image]])
    assert_same(metric.compute(ks=[1, 2, 5]), retrieval_recall(sim, text_to_image, ks=[1, 2, 5]))
    with pytest.raises(ValueError, match="listed for images"):
        metric.compute(predictions=sim[:2].tolist(), references=[[0, 1], [1, 2]])


def test_mean_iou_module(metrics):
    metric = metrics["clipzoo_mean_iou"]
    rng = np.random.default_rng(2)
    predictions = [rng.integers(0, 3, size=(4, 5)), rng.integers(0, 3, size=(2, 3))]
    references = [rng.integers(0, 3, size=(4, 5)), np.full((2, 3), 255)]
    references[0][0, :] = 255
    for p, r in zip(predictions, references):
        metric.add_batch(predictions=[p.tolist()], references=[r.tolist()])
    assert_same(metric.compute(num_labels=4), mean_iou(predictions, references, num_labels=4))
    assert_same(
        metric.compute(predictions=[[[1, 0, 1]]], references=[[[0, 1, 2]]], num_labels=2, reduce_labels=True),
        mean_iou([[[1, 0, 1]]], [[[0, 1, 2]]], num_labels=2, reduce_labels=True),
    )


def test_mmvp_module(metrics):
    metric = metrics["clipzoo_mmvp"]
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, size=(10, 2, 2)).astype(float)
    categories = ["Texts"] * 4 + ["Color and Appearance"] * 6
    metric.add_batch(scores=scores[:5].tolist(), categories=categories[:5])
    metric.add_batch(scores=scores[5:].tolist(), categories=categories[5:])
    assert_same(metric.compute(), mmvp_pair_accuracy(scores, categories))
    order = ["Color and Appearance", "Texts"]
    result = metric.compute(scores=scores.tolist(), categories=categories, category_order=order)
    assert list(result["per_category_accuracy"]) == order


def test_few_shot_module(metrics):
    metric = metrics["clipzoo_few_shot"]
    rng = np.random.default_rng(4)
    predictions = rng.integers(0, 5, size=50)
    references = rng.integers(0, 5, size=50)
    episodes = np.repeat(np.arange(10), 5)
    metric.add_batch(predictions=predictions[:20], references=references[:20], episode_ids=episodes[:20])
    metric.add_batch(predictions=predictions[20:], references=references[20:], episode_ids=episodes[20:])
    expected = episode_accuracy_with_ci(episode_accuracies(predictions, references, episodes))
    assert_same(metric.compute(), expected)
    assert 0 < expected["confidence_interval"] < 1
