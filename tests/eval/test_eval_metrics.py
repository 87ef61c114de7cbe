"""The pure metric functions against hand-computed cases and naive, loop-based re-implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_clipzoo.eval.metrics import (
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

# ----------------------------------------------------------------------------------------------------------------------
# Zero-shot accuracy
# ----------------------------------------------------------------------------------------------------------------------


def naive_zero_shot(scores, labels, k):
    """Sort the classes by decreasing score, putting the true class *after* the classes it ties with."""
    hits = 0
    for row, label in zip(scores, labels):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c == label))
        hits += label in order[:k]
    return hits / len(labels)


def test_zero_shot_hand_computed_with_tie():
    scores = [[0.1, 0.5, 0.2], [0.3, 0.3, 0.1]]
    result = zero_shot_accuracy(scores, [1, 0])
    # Sample 1 ties its true class 0 with class 1: counted wrong.
    assert result["top1_accuracy"] == 0.5
    assert "top5_accuracy" not in result  # only 3 classes
    assert result["per_class_accuracy"][:2] == [0.0, 1.0] and math.isnan(result["per_class_accuracy"][2])
    assert result["mean_per_class_accuracy"] == 0.5
    assert result["num_samples"] == 2


def test_zero_shot_constant_scores_get_zero():
    assert zero_shot_accuracy(np.zeros((4, 6)), [0, 1, 2, 3])["top1_accuracy"] == 0.0


def test_zero_shot_matches_naive_with_many_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(200, 7)).astype(float)  # small integers: ties everywhere
    labels = rng.integers(0, 7, size=200)
    result = zero_shot_accuracy(torch.from_numpy(scores), torch.from_numpy(labels))
    assert result["top1_accuracy"] == pytest.approx(naive_zero_shot(scores, labels, 1))
    assert result["top5_accuracy"] == pytest.approx(naive_zero_shot(scores, labels, 5))
    per_class = []
    for c in range(7):
        rows = [i for i in range(200) if labels[i] == c]
        per_class.append(naive_zero_shot(scores[rows], labels[rows], 1))
    assert result["per_class_accuracy"] == pytest.approx(per_class)
    assert result["mean_per_class_accuracy"] == pytest.approx(sum(per_class) / 7)


def test_zero_shot_from_predicted_ids():
    result = zero_shot_accuracy([0, 2, 2, 1], [0, 2, 1, 1], num_classes=4)
    assert result["top1_accuracy"] == 0.75
    assert result["per_class_accuracy"][:3] == [1.0, 0.5, 1.0] and math.isnan(result["per_class_accuracy"][3])
    assert result["mean_per_class_accuracy"] == pytest.approx(2.5 / 3)


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([[0.1, 0.2]], [0, 1], "rows"),
        ([[0.1, 0.2]], [2], "outside"),
        ([[0.1, 0.2]], [-1], "outside"),
        ([], [], "empty"),
        ([[0.1, float("nan")]], [0], "NaN"),
        ([0, 1], [0, 5], None),  # ids: num_classes inferred, fine
        ([0, 1], [0, 1.5], "integer"),
        ([["a", "b"]], [0], "numbers"),
    ],
)
def test_zero_shot_bad_input(scores, labels, match):
    if match is None:
        zero_shot_accuracy(scores, labels)
        with pytest.raises(ValueError, match="outside"):
            zero_shot_accuracy(scores, labels, num_classes=3)
        return
    with pytest.raises(ValueError, match=match):
        zero_shot_accuracy(scores, labels)


# ----------------------------------------------------------------------------------------------------------------------
# Retrieval
# ----------------------------------------------------------------------------------------------------------------------


def naive_retrieval(sim, text_to_image, ks):
    num_images, num_texts = sim.shape
    results = {}
    i2t_ranks = []
    for i in range(num_images):
        positive = [text_to_image[t] == i for t in range(num_texts)]
        order = sorted(range(num_texts), key=lambda t: (-sim[i, t], positive[t]))
        i2t_ranks.append(min(order.index(t) for t in range(num_texts) if positive[t]))
    t2i_ranks = []
    for t in range(num_texts):
        order = sorted(range(num_images), key=lambda i: (-sim[i, t], i == text_to_image[t]))
        t2i_ranks.append(order.index(text_to_image[t]))
    for k in ks:
        results[f"image_to_text_R@{k}"] = sum(r < k for r in i2t_ranks) / num_images
    for k in ks:
        results[f"text_to_image_R@{k}"] = sum(r < k for r in t2i_ranks) / num_texts
    return results


def test_retrieval_ties_count_against_the_query():
    result = retrieval_recall([[1.0, 1.0], [0.0, 1.0]], ks=(1, 5))
    assert result == {
        "image_to_text_R@1": 0.5,
        "image_to_text_R@5": 1.0,
        "text_to_image_R@1": 0.5,
        "text_to_image_R@5": 1.0,
    }


def test_retrieval_several_captions_hand_computed():
    sim = [[0.1, 0.9, 0.8, 0.2], [0.5, 0.6, 0.55, 0.1]]
    result = retrieval_recall(sim, text_to_image=[0, 0, 1, 1], ks=(1, 2))
    assert result["image_to_text_R@1"] == 0.5  # image 1's best caption (0.55) is beaten by 0.6
    assert result["image_to_text_R@2"] == 1.0
    assert result["text_to_image_R@1"] == 0.25  # only caption 1 ranks its image first
    assert result["text_to_image_R@2"] == 1.0


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_retrieval_matches_naive(chunk_size):
    rng = np.random.default_rng(1)
    text_to_image = np.concatenate([np.arange(7), rng.integers(0, 7, size=10)])
    rng.shuffle(text_to_image)
    sim = rng.integers(0, 5, size=(7, 17)).astype(np.float32)  # many ties
    result = retrieval_recall(sim, text_to_image, ks=(1, 2, 5, 10), chunk_size=chunk_size)
    assert result == pytest.approx(naive_retrieval(sim, text_to_image, (1, 2, 5, 10)))
    continuous = rng.normal(size=(7, 17))
    assert retrieval_recall(torch.from_numpy(continuous), text_to_image, chunk_size=chunk_size) == pytest.approx(
        naive_retrieval(continuous, text_to_image, (1, 5, 10))
    )


def test_text_to_image_from_caption_ids():
    assert text_to_image_from_caption_ids([[0, 2], [1]]) == [0, 1, 0]
    with pytest.raises(ValueError, match="listed for images"):
        text_to_image_from_caption_ids([[0, 1], [1]])
    with pytest.raises(ValueError, match="not listed"):
        text_to_image_from_caption_ids([[0], [2]], num_texts=3)
    with pytest.raises(ValueError, match="outside"):
        text_to_image_from_caption_ids([[0], [5]], num_texts=2)


@pytest.mark.parametrize(
    "sim, text_to_image, match",
    [
        (np.zeros((2, 3)), None, "square"),
        (np.zeros((2, 3)), [0, 0, 0], "no caption"),
        (np.zeros((2, 3)), [0, 1], "shape"),
        (np.zeros((2, 2)), [0, 2], "outside"),
        (np.zeros((0, 0)), None, "empty"),
        (np.full((2, 2), np.nan), None, "NaN"),
        (np.zeros(3), None, "shape"),
    ],
)
def test_retrieval_bad_input(sim, text_to_image, match):
    with pytest.raises(ValueError, match=match):
        retrieval_recall(sim, text_to_image)


# ----------------------------------------------------------------------------------------------------------------------
# Mean IoU
# ----------------------------------------------------------------------------------------------------------------------


def naive_mean_iou(predictions, references, num_labels, ignore_index):
    inter = [0] * num_labels
    pred_area = [0] * num_labels
    ref_area = [0] * num_labels
    for pred, ref in zip(predictions, references):
        for p, r in zip(np.asarray(pred).ravel().tolist(), np.asarray(ref).ravel().tolist()):
            if r == ignore_index:
                continue
            pred_area[p] += 1
            ref_area[r] += 1
            inter[r] += p == r
    ious = [
        inter[c] / (pred_area[c] + ref_area[c] - inter[c]) if pred_area[c] + ref_area[c] else None
        for c in range(num_labels)
    ]
    accs = [inter[c] / ref_area[c] if ref_area[c] else None for c in range(num_labels)]
    valid_ious = [x for x in ious if x is not None]
    valid_accs = [x for x in accs if x is not None]
    return {
        "mean_iou": sum(valid_ious) / len(valid_ious),
        "mean_accuracy": sum(valid_accs) / len(valid_accs),
        "overall_accuracy": sum(inter) / sum(ref_area),
        "per_category_iou": ious,
        "per_category_accuracy": accs,
    }


def assert_same_segmentation(result, expected):
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert result[key] == pytest.approx(expected[key]), key
    for key in ("per_category_iou", "per_category_accuracy"):
        for got, want in zip(result[key], expected[key], strict=True):
            assert math.isnan(got) if want is None else got == pytest.approx(want), key


def test_mean_iou_hand_computed():
    predictions = [np.array([[0, 0], [1, 1]]), np.array([[2, 2, 2]])]
    references = [np.array([[0, 1], [1, 255]]), np.array([[2, 0, 0]])]
    result = mean_iou(predictions, references, num_labels=4)
    # class 0: inter 1, pred 2, ref 3 -> 1/4; class 1: 1/(1+2-1) = 1/2; class 2: 1/(3+1-1) = 1/3; class 3 absent.
    assert result["per_category_iou"][:3] == pytest.approx([0.25, 0.5, 1 / 3])
    assert math.isnan(result["per_category_iou"][3])
    assert result["mean_iou"] == pytest.approx((0.25 + 0.5 + 1 / 3) / 3)
    assert result["overall_accuracy"] == 0.5  # 3 of 6 labelled pixels
    assert result["per_category_accuracy"][:3] == pytest.approx([1 / 3, 0.5, 1.0])
    assert result["mean_accuracy"] == pytest.approx((1 / 3 + 0.5 + 1.0) / 3)
    # Dataset-level accumulation differs from averaging per-image mIoUs (image 2 alone: classes 0 -> 0, 2 -> 1/3).
    per_image = [mean_iou([p], [r], num_labels=4)["mean_iou"] for p, r in zip(predictions, references)]
    assert result["mean_iou"] != pytest.approx(sum(per_image) / 2)


def test_mean_iou_class_predicted_but_absent_counts_as_zero():
    result = mean_iou([[[0, 1]]], [[[0, 0]]], num_labels=3)
    assert result["per_category_iou"][:2] == [0.5, 0.0] and math.isnan(result["per_category_iou"][2])
    assert result["mean_iou"] == 0.25
    assert math.isnan(result["per_category_accuracy"][1])


def test_mean_iou_ignored_pixels_do_not_count_whatever_is_predicted():
    # The prediction 255 on an ignored pixel is neither a class nor an error.
    result = mean_iou([[[1, 255]]], [[[1, 255]]], num_labels=2)
    assert result["mean_iou"] == 1.0 and result["overall_accuracy"] == 1.0


def test_mean_iou_reduce_labels():
    # Reference 0 ("other") is ignored, 1 -> class 0, 2 -> class 1.
    result = mean_iou([[[5, 0, 1]]], [[[0, 1, 2]]], num_labels=2, reduce_labels=True)
    assert result["per_category_iou"] == [1.0, 1.0]


def test_mean_iou_matches_naive_and_confusion_accumulation():
    rng = np.random.default_rng(2)
    predictions, references = [], []
    for height, width in [(5, 7), (3, 3), (8, 2)]:
        predictions.append(rng.integers(0, 5, size=(height, width)))
        reference = rng.integers(0, 5, size=(height, width))
        reference[rng.random((height, width)) < 0.2] = 255
        references.append(reference)
    expected = naive_mean_iou(predictions, references, 6, 255)  # class 5 never appears: NaN
    assert_same_segmentation(mean_iou(predictions, references, num_labels=6), expected)
    confusion = sum(segmentation_confusion_matrix(p, r, 6) for p, r in zip(predictions, references))
    assert_same_segmentation(mean_iou_from_confusion_matrix(confusion), expected)
    stacked = mean_iou(torch.from_numpy(np.stack([predictions[1]] * 2)), np.stack([references[1]] * 2), num_labels=6)
    assert_same_segmentation(stacked, naive_mean_iou([predictions[1]] * 2, [references[1]] * 2, 6, 255))


@pytest.mark.parametrize(
    "predictions, references, match",
    [
        ([[[0, 1]]], [[[0, 1, 1]]], "shape"),
        ([[[0, 1]]], [[[0, 7]]], "references"),
        ([[[0, 9]]], [[[0, 1]]], "predictions"),
        ([[[0, -1]]], [[[0, 1]]], "predictions"),
        ([[[0, 1]]], [[[255, 255]]], "No labelled pixel"),
        ([], [], "empty"),
        ([[[0]]], [[[0]], [[1]]], "references"),
        (np.zeros((2, 2), dtype=int), np.zeros((2, 2), dtype=int), "single"),
    ],
)
def test_mean_iou_bad_input(predictions, references, match):
    with pytest.raises(ValueError, match=match):
        mean_iou(predictions, references, num_labels=2)


# ----------------------------------------------------------------------------------------------------------------------
# MMVP
# ----------------------------------------------------------------------------------------------------------------------

OFFICIAL_CATEGORIES = [
    "Orientation and Direction",
    "Presence of Specific Features",
    "State and Condition",
    "Quantity and Count",
    "Positional and Relational Context",
    "Color and Appearance",
    "Structural Characteristics",
    "Texts",
    "Viewpoint and Perspective",
]


def official_mmvp(scores):
    """A transcription of tsb0601/MMVP `scripts/evaluate_vlm.py`'s loop (softmax over the two images, > 0.5)."""
    pair_accuracies = {category: 0 for category in OFFICIAL_CATEGORIES}
    num_pairs = 0
    for pair in scores:
        qid1, qid2 = 2 * num_pairs + 1, 2 * num_pairs + 2
        probs1 = np.exp(pair[0] * 100) / np.exp(pair[0] * 100).sum()
        probs2 = np.exp(pair[1] * 100) / np.exp(pair[1] * 100).sum()
        pred1 = "img1" if probs1[0] > 0.5 else "img2"
        pred2 = "img1" if probs2[0] > 0.5 else "img2"
        gt1 = "img1" if qid1 % 2 == 1 else "img2"
        gt2 = "img1" if qid2 % 2 == 1 else "img2"
        current_category = OFFICIAL_CATEGORIES[num_pairs // 15]
        if pred1 == gt1 and pred2 == gt2:
            pair_accuracies[current_category] += 1
        num_pairs += 1
    for category in pair_accuracies:
        pair_accuracies[category] = pair_accuracies[category] / (num_pairs // len(OFFICIAL_CATEGORIES)) * 100
    pair_accuracies["average_score"] = sum(pair_accuracies.values()) / len(OFFICIAL_CATEGORIES)
    return pair_accuracies


def test_mmvp_hand_computed_with_official_tie_rule():
    scores = [
        [[0.9, 0.1], [0.2, 0.8]],  # correct
        [[0.9, 0.1], [0.9, 0.8]],  # statement b picks image a: wrong
        [[0.5, 0.5], [0.1, 0.9]],  # tie on statement a -> image b: wrong
        [[0.6, 0.5], [0.4, 0.4]],  # tie on statement b -> image b: correct (official rule)
    ]
    result = mmvp_pair_accuracy(scores, ["A", "A", "B", "B"])
    assert result == {
        "per_category_accuracy": {"A": 0.5, "B": 0.5},
        "average_accuracy": 0.5,
        "pair_accuracy": 0.5,
        "num_pairs": 4,
        "pair_correct": [1, 0, 0, 1],
    }


def test_mmvp_matches_official_script():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, size=(135, 2, 2)).astype(np.float64) / 10  # ties included
    categories = [OFFICIAL_CATEGORIES[i // 15] for i in range(135)]
    result = mmvp_pair_accuracy(scores, categories)
    official = official_mmvp(scores)
    assert list(result["per_category_accuracy"]) == OFFICIAL_CATEGORIES
    for category in OFFICIAL_CATEGORIES:
        assert 100 * result["per_category_accuracy"][category] == pytest.approx(official[category])
    assert 100 * result["average_accuracy"] == pytest.approx(official["average_score"])
    assert 0 < result["pair_accuracy"] < 1


def test_mmvp_unbalanced_categories_and_order():
    scores = [[[1, 0], [0, 1]]] * 3 + [[[0, 1], [0, 1]]]
    result = mmvp_pair_accuracy(scores, ["x", "y", "y", "y"], category_order=["y", "x"])
    assert list(result["per_category_accuracy"]) == ["y", "x"]
    assert result["per_category_accuracy"] == {"y": pytest.approx(2 / 3), "x": 1.0}
    assert result["average_accuracy"] == pytest.approx((2 / 3 + 1) / 2)  # mean of categories, not of pairs
    assert result["pair_accuracy"] == 0.75


@pytest.mark.parametrize(
    "scores, categories, order, match",
    [
        (np.zeros((2, 2)), ["a", "b"], None, "shape"),
        (np.zeros((2, 2, 2)), ["a"], None, "categories"),
        (np.zeros((0, 2, 2)), [], None, "empty"),
        (np.zeros((1, 2, 2)), ["a"], ["b"], "not in"),
        (np.zeros((1, 2, 2)), ["a"], ["a", "b"], "no pair"),
    ],
)
def test_mmvp_bad_input(scores, categories, order, match):
    with pytest.raises(ValueError, match=match):
        mmvp_pair_accuracy(scores, categories, order)


# ----------------------------------------------------------------------------------------------------------------------
# Few-shot episodes
# ----------------------------------------------------------------------------------------------------------------------


def test_episode_ci_hand_computed():
    result = episode_accuracy_with_ci([0.5, 1.0, 0.75, 0.25])
    # mean 0.625; deviations ±0.125, ±0.375 -> population variance 0.078125
    std = math.sqrt(0.078125)
    assert result["accuracy"] == 0.625
    assert result["std"] == pytest.approx(std)
    assert result["confidence_interval"] == pytest.approx(1.96 * std / 2)
    assert result["num_episodes"] == 4
    sample = episode_accuracy_with_ci([0.5, 1.0, 0.75, 0.25], ddof=1)
    assert sample["confidence_interval"] == pytest.approx(1.96 * math.sqrt(0.3125 / 3) / 2)


def test_episode_ci_matches_naive():
    rng = np.random.default_rng(4)
    accuracies = rng.integers(0, 6, size=1000) / 5  # 5-way 1-shot episodes
    mean = sum(accuracies) / len(accuracies)
    std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / len(accuracies))
    result = episode_accuracy_with_ci(accuracies.tolist())
    assert result["accuracy"] == pytest.approx(mean)
    assert result["confidence_interval"] == pytest.approx(1.96 * std / math.sqrt(1000))


def test_episode_accuracies_from_queries():
    predictions = [0, 1, 2, 0, 0, 1, 1]
    references = [0, 1, 1, 0, 1, 1, 0]
    episodes = [5, 5, 5, 2, 2, 9, 9]
    # Ordered by episode id: 2 -> 1/2, 5 -> 2/3, 9 -> 1/2.
    assert episode_accuracies(predictions, references, episodes) == pytest.approx([0.5, 2 / 3, 0.5])


@pytest.mark.parametrize(
    "values, kwargs, match",
    [([], {}, "empty"), ([50.0, 60.0], {}, "percents"), ([[0.5]], {}, "1-D"), ([0.5], {"ddof": 1}, "more than")],
)
def test_episode_ci_bad_input(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        episode_accuracy_with_ci(values, **kwargs)


def test_episode_accuracies_bad_input():
    with pytest.raises(ValueError, match="must be equal"):
        episode_accuracies([0, 1], [0, 1], [0])
    with pytest.raises(ValueError, match="at least one"):
        episode_accuracies([], [], [])
