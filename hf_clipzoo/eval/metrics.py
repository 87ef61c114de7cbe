"""Pure metric functions for the protocols hf-clipzoo reports.

Every function here takes numpy arrays, torch tensors or nested Python lists, validates them, and returns a dict
of plain Python floats / lists (JSON-serialisable, except that undefined per-class values are ``float("nan")``).
They hold no state and know nothing about models, so the model-level evaluators, the `evaluate` modules shipped in
``hf_clipzoo/eval/metric_scripts`` and users' own loops all compute the numbers the same way.

All accuracies and recalls are fractions in ``[0, 1]``; multiply by 100 to compare with papers that print percents.

Ties are resolved *pessimistically* everywhere a score decides a rank: a candidate whose score equals the positive's
score is ranked ahead of it. Otherwise a model that outputs constant scores would be credited by index order (e.g.
``argmax`` picks the first of equal values), and an untrained model could look better than chance. The one exception
is :func:`mmvp_pair_accuracy`, which reproduces the official MMVP-VLM script's rule exactly (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "zero_shot_accuracy",
    "retrieval_recall",
    "text_to_image_from_caption_ids",
    "segmentation_confusion_matrix",
    "mean_iou_from_confusion_matrix",
    "mean_iou",
    "mmvp_pair_accuracy",
    "episode_accuracies",
    "episode_accuracy_with_ci",
]


def _to_numpy(values: Any, name: str) -> np.ndarray:
    """Converts a tensor / array / (nested) list to a numpy array, raising a ValueError that names the argument."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        return (values.float() if values.dtype == torch.bfloat16 else values).numpy()  # numpy has no bfloat16
    try:
        array = np.asarray(values)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"`{name}` could not be converted to an array (ragged nested lists?): {error}") from None
    if array.dtype == object:
        raise ValueError(f"`{name}` must be a rectangular array of numbers, got ragged or non-numeric data.")
    return array


def _check_integer(array: np.ndarray, name: str) -> np.ndarray:
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"`{name}` must contain integer class ids, got dtype {array.dtype}.")
    return array.astype(np.int64)


def _check_finite(array: np.ndarray, name: str) -> None:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"`{name}` must contain numbers, got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or infinite values; scores must be finite.")


# ---------------------------------------------------------------------------------------------------------------------
# Zero-shot classification
# ---------------------------------------------------------------------------------------------------------------------


def zero_shot_accuracy(
    logits_or_preds: Any,
    labels: Any,
    num_classes: int | None = None,
    top_k: Sequence[int] = (1, 5),
    return_per_sample: bool = False,
) -> dict[str, Any]:
    """Top-k and mean-per-class accuracy of a classifier.

    Args:
        logits_or_preds: either scores of shape `(N, C)` (logits, cosine similarities, probabilities: only their
            order matters) or predicted class ids of shape `(N,)`.
        labels: ground-truth class ids of shape `(N,)`, each in `[0, C)`.
        num_classes: number of classes `C`. Taken from the scores' second dimension when scores are given;
            required to be at least `max(ids) + 1` when ids are given (defaults to that).
        top_k: which top-k accuracies to report. With scores, `k` is reported when `k <= C`; with predicted ids only
            top-1 exists.
        return_per_sample: also return `"top1_correct"`, the per-sample 0/1 hits in input order (and, with scores,
            `"top1_prediction"`, the arg-max class of each sample).

    Returns:
        `{"top1_accuracy", "top5_accuracy" (when scores with C >= 5), "mean_per_class_accuracy",
        "per_class_accuracy" (list of length C, NaN for classes with no sample), "num_samples"}`.
        `mean_per_class_accuracy` is the mean of the top-1 per-class recalls over the classes that have samples
        (the metric of e.g. FGVC-Aircraft, Oxford Pets, Caltech-101 in CLIP's evaluation suite).

    A sample counts as top-k correct when fewer than `k` *other* classes score `>=` its true class (pessimistic ties:
    constant scores give 0 accuracy, not `1/C` by index luck).
    """
    labels = _check_integer(_to_numpy(labels, "labels"), "labels")
    scores = _to_numpy(logits_or_preds, "logits_or_preds")
    if labels.ndim != 1:
        raise ValueError(f"`labels` must have shape (N,), got {labels.shape}.")
    if labels.size == 0:
        raise ValueError("`labels` is empty: zero-shot accuracy needs at least one sample.")
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"`logits_or_preds` has {scores.shape[0]} rows but `labels` has {labels.shape[0]}: they must be equal."
        )

    if scores.ndim == 2:
        _check_finite(scores, "logits_or_preds")
        if num_classes is not None and num_classes != scores.shape[1]:
            raise ValueError(f"`num_classes`={num_classes} does not match the scores' {scores.shape[1]} columns.")
        num_classes = scores.shape[1]
        _check_label_range(labels, num_classes, "labels")
        true_scores = scores[np.arange(len(labels)), labels]
        # Rank of the true class = number of other classes scoring at least as high (the true class itself is
        # always counted by `>=`, hence the -1).
        ranks = (scores >= true_scores[:, None]).sum(axis=1) - 1
        ks = sorted({int(k) for k in top_k if 1 <= int(k) <= num_classes} | {1})
    elif scores.ndim == 1:
        preds = _check_integer(scores, "logits_or_preds")
        inferred = int(max(preds.max(), labels.max())) + 1
        num_classes = inferred if num_classes is None else num_classes
        _check_label_range(labels, num_classes, "labels")
        _check_label_range(preds, num_classes, "logits_or_preds")
        ranks = np.where(preds == labels, 0, 1)
        ks = [1]
    else:
        raise ValueError(f"`logits_or_preds` must have shape (N, C) or (N,), got {scores.shape}.")

    results: dict[str, Any] = {f"top{k}_accuracy": float(np.mean(ranks < k)) for k in ks}
    samples = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels, weights=(ranks < 1).astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(samples > 0, hits / samples, np.nan)
    results["mean_per_class_accuracy"] = float(np.nanmean(per_class))
    results["per_class_accuracy"] = per_class.tolist()
    results["num_samples"] = int(labels.shape[0])
    if return_per_sample:  # what a paired bootstrap between two models resamples
        results["top1_correct"] = (ranks < 1).astype(np.int64).tolist()
        if scores.ndim == 2:
            results["top1_prediction"] = scores.argmax(axis=1).astype(np.int64).tolist()
    return results


def _check_label_range(ids: np.ndarray, num_classes: int, name: str) -> None:
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
    bad = (ids < 0) | (ids >= num_classes)
    if bad.any():
        raise ValueError(
            f"`{name}` contains class ids outside [0, {num_classes}): e.g. {ids[bad][:5].tolist()} "
            f"(at positions {np.flatnonzero(bad)[:5].tolist()})."
        )


# ---------------------------------------------------------------------------------------------------------------------
# Image-text retrieval
# ---------------------------------------------------------------------------------------------------------------------


def retrieval_recall(
    similarity: Any,
    text_to_image: Any | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    return_ranks: bool = False,
) -> dict[str, Any]:
    """Recall@k for image-to-text and text-to-image retrieval, with several captions per image.

    Args:
        similarity: scores of shape `(N_img, N_txt)`; higher means more similar.
        text_to_image: for each caption, the index of its image, shape `(N_txt,)`. Defaults to the identity, which
            requires `N_img == N_txt` (one caption per image, caption `i` describes image `i`). COCO / Flickr30k
            (5 captions per image) pass e.g. `[0, 0, 0, 0, 0, 1, 1, ...]`.
        ks: the `k`s to report.
        chunk_size: images processed at once (bounds memory at `chunk_size * N_txt` booleans).
        return_ranks: also return the per-query ranks (0 = the positive is first) `"image_to_text_ranks"` and
            `"text_to_image_ranks"`, in query order.

    Returns:
        `{"image_to_text_R@k": ..., "text_to_image_R@k": ...}` for every `k` in `ks`.

    Protocol (the one of CLIP / ALBEF / open_clip's retrieval code): an image query is correct at `k` when its *best*
    ranked ground-truth caption is in the top `k`; a caption query is correct at `k` when its image is in the top `k`.
    Ranks are pessimistic: the rank of a positive is the number of *negatives* scoring `>=` it, so a negative that
    ties with the positive is ranked ahead of it. Every image must have at least one caption.
    """
    sim = (
        similarity.detach()
        if isinstance(similarity, torch.Tensor)
        else torch.as_tensor(_to_numpy(similarity, "similarity"))
    )
    if sim.ndim != 2:
        raise ValueError(f"`similarity` must have shape (N_img, N_txt), got {tuple(sim.shape)}.")
    num_images, num_texts = sim.shape
    if num_images == 0 or num_texts == 0:
        raise ValueError(f"`similarity` is empty (shape {tuple(sim.shape)}): retrieval needs images and captions.")
    if not sim.is_floating_point():
        sim = sim.double()
    if not torch.isfinite(sim).all():
        raise ValueError("`similarity` contains NaN or infinite values; scores must be finite.")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}.")
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"`ks` must be a non-empty list of positive integers, got {ks}.")

    if text_to_image is None:
        if num_images != num_texts:
            raise ValueError(
                f"`similarity` is {num_images}x{num_texts}: without `text_to_image` it must be square "
                "(caption i describes image i). Pass `text_to_image` for several captions per image."
            )
        gt = torch.arange(num_texts)
    else:
        gt_np = _check_integer(_to_numpy(text_to_image, "text_to_image"), "text_to_image")
        if gt_np.shape != (num_texts,):
            raise ValueError(
                f"`text_to_image` must have shape ({num_texts},) (one image per caption), got {gt_np.shape}."
            )
        _check_label_range(gt_np, num_images, "text_to_image")
        gt = torch.from_numpy(gt_np)
    gt = gt.to(sim.device)
    captions_per_image = torch.bincount(gt, minlength=num_images)
    if (captions_per_image == 0).any():
        missing = torch.nonzero(captions_per_image == 0).flatten()[:5].tolist()
        raise ValueError(f"Images {missing} have no caption in `text_to_image`: every image needs at least one.")

    # Text -> image: one positive per caption; image -> text: rank of the best positive caption.
    t2i_ranks = torch.zeros(num_texts, dtype=torch.long, device=sim.device)
    i2t_ranks = torch.empty(num_images, dtype=torch.long, device=sim.device)
    text_ids = torch.arange(num_texts, device=sim.device)
    positive_scores = sim[gt, text_ids]  # (N_txt,)
    for start in range(0, num_images, chunk_size):
        block = sim[start : start + chunk_size]  # (b, N_txt)
        rows = torch.arange(start, start + block.shape[0], device=sim.device)
        is_positive = gt[None, :] == rows[:, None]  # (b, N_txt)
        # Column-wise, count images that tie or beat the caption's positive, accumulated over chunks.
        t2i_ranks += (block >= positive_scores[None, :]).sum(dim=0)
        best_positive = block.masked_fill(~is_positive, -math.inf).amax(dim=1)
        i2t_ranks[start : start + block.shape[0]] = ((block >= best_positive[:, None]) & ~is_positive).sum(dim=1)
    t2i_ranks = t2i_ranks - 1  # the positive image itself satisfies `>=`

    results = {}
    for k in ks:
        results[f"image_to_text_R@{k}"] = float((i2t_ranks < k).double().mean())
    for k in ks:
        results[f"text_to_image_R@{k}"] = float((t2i_ranks < k).double().mean())
    if return_ranks:  # what a paired bootstrap between two models resamples
        results["image_to_text_ranks"] = i2t_ranks.cpu().tolist()
        results["text_to_image_ranks"] = t2i_ranks.cpu().tolist()
    return results


def text_to_image_from_caption_ids(
    caption_ids_per_image: Sequence[Sequence[int]], num_texts: int | None = None
) -> list[int]:
    """Inverts "the caption indices of each image" into "the image index of each caption" (`text_to_image`).

    Every caption index in `[0, num_texts)` must belong to exactly one image (`num_texts` defaults to the number of
    caption indices given).
    """
    pairs = [(int(t), image) for image, ids in enumerate(caption_ids_per_image) for t in np.asarray(ids).reshape(-1)]
    num_texts = len(pairs) if num_texts is None else num_texts
    text_to_image = [-1] * num_texts
    for text, image in pairs:
        if not 0 <= text < num_texts:
            raise ValueError(f"Image {image} lists caption index {text}, outside [0, {num_texts}).")
        if text_to_image[text] != -1:
            raise ValueError(f"Caption {text} is listed for images {text_to_image[text]} and {image}; one image each.")
        text_to_image[text] = image
    unassigned = [t for t, image in enumerate(text_to_image) if image == -1]
    if unassigned:
        raise ValueError(f"Captions {unassigned[:5]} are not listed for any image.")
    return text_to_image


# ---------------------------------------------------------------------------------------------------------------------
# Semantic segmentation
# ---------------------------------------------------------------------------------------------------------------------


def _reduce_labels(reference: np.ndarray, ignore_index: int) -> np.ndarray:
    # The ADE20k convention (mmseg `reduce_zero_label`, HF evaluate `reduce_labels`): 0 is "other" and is ignored;
    # every other id shifts down by one.
    reference = reference.astype(np.int64)
    reduced = reference - 1
    reduced[reference == 0] = ignore_index
    reduced[reference == ignore_index] = ignore_index
    return reduced


def segmentation_confusion_matrix(
    prediction: Any,
    reference: Any,
    num_labels: int,
    ignore_index: int = 255,
    reduce_labels: bool = False,
) -> np.ndarray:
    """Confusion matrix `(num_labels, num_labels)` of one segmentation map, rows = reference, columns = prediction.

    Pixels whose reference is `ignore_index` are dropped. Summing these matrices over a dataset and calling
    :func:`mean_iou_from_confusion_matrix` gives the dataset-level mIoU (intersections and unions summed over all
    images, as mmseg does), which is what the streaming evaluators accumulate.
    """
    if num_labels < 1:
        raise ValueError(f"`num_labels` must be >= 1, got {num_labels}.")
    pred = _check_integer(_to_numpy(prediction, "predictions"), "predictions")
    ref = _check_integer(_to_numpy(reference, "references"), "references")
    if pred.shape != ref.shape:
        raise ValueError(f"A prediction of shape {pred.shape} does not match its reference of shape {ref.shape}.")
    if reduce_labels:
        ref = _reduce_labels(ref, ignore_index)
    valid = ref != ignore_index
    pred, ref = pred[valid], ref[valid]
    bad_ref = (ref < 0) | (ref >= num_labels)
    if bad_ref.any():
        raise ValueError(
            f"`references` contain ids {np.unique(ref[bad_ref])[:5].tolist()} outside [0, {num_labels}) that are not "
            f"`ignore_index`={ignore_index}."
        )
    bad_pred = (pred < 0) | (pred >= num_labels)
    if bad_pred.any():
        raise ValueError(
            f"`predictions` contain ids {np.unique(pred[bad_pred])[:5].tolist()} outside [0, {num_labels}) on "
            "pixels that are not ignored."
        )
    return np.bincount(ref * num_labels + pred, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def mean_iou_from_confusion_matrix(confusion: Any) -> dict[str, Any]:
    """mIoU, per-class IoU / accuracy and pixel accuracy from a (summed) confusion matrix; see :func:`mean_iou`."""
    confusion = _to_numpy(confusion, "confusion").astype(np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"`confusion` must be square (num_labels, num_labels), got {confusion.shape}.")
    intersection = np.diag(confusion)
    area_reference = confusion.sum(axis=1)
    area_prediction = confusion.sum(axis=0)
    union = area_reference + area_prediction - intersection
    total = area_reference.sum()
    if total == 0:
        raise ValueError("No labelled pixel: every reference pixel is `ignore_index` (or the inputs are empty).")
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
        accuracy = np.where(area_reference > 0, intersection / area_reference, np.nan)
    return {
        "mean_iou": float(np.nanmean(iou)),
        "mean_accuracy": float(np.nanmean(accuracy)),
        "overall_accuracy": float(intersection.sum() / total),
        "per_category_iou": iou.tolist(),
        "per_category_accuracy": accuracy.tolist(),
    }


def mean_iou(
    predictions: Iterable[Any],
    references: Iterable[Any],
    num_labels: int,
    ignore_index: int = 255,
    reduce_labels: bool = False,
) -> dict[str, Any]:
    """Dataset-level mean intersection-over-union of semantic segmentation maps.

    Args:
        predictions: one integer map per image (each `(H, W)`, sizes may differ between images), or one array
            `(N, H, W)`.
        references: the ground-truth maps, same shapes as `predictions`.
        num_labels: number of classes; ids are in `[0, num_labels)`.
        ignore_index: reference value of pixels that are not evaluated (their prediction is ignored too).
        reduce_labels: ADE20k convention: reference 0 becomes `ignore_index` and every other id is decreased by 1
            (applied to references only, like HF evaluate's `mean_iou` and mmseg's `reduce_zero_label`).

    Returns:
        `{"mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy"}`.

    Intersections and unions are summed over the whole dataset before dividing (mmseg's `total_area_*`), so large
    images weigh more than small ones. A class absent from both predictions and references has IoU NaN and is left
    out of the mean; a class predicted but never present has IoU 0 and counts. Per-class accuracy is NaN for classes
    absent from the references. `overall_accuracy` is the pixel accuracy over all non-ignored pixels.
    """
    if isinstance(predictions, (np.ndarray, torch.Tensor)) and predictions.ndim == 2:
        raise ValueError("`predictions` must be a list of (H, W) maps or an (N, H, W) array, got a single (H, W) map.")
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions but {len(references)} references: they must be equal.")
    if not predictions:
        raise ValueError("`predictions` is empty: mean IoU needs at least one segmentation map.")
    if num_labels < 1:
        raise ValueError(f"`num_labels` must be >= 1, got {num_labels}.")
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    for index, (pred, ref) in enumerate(zip(predictions, references)):
        try:
            confusion += segmentation_confusion_matrix(pred, ref, num_labels, ignore_index, reduce_labels)
        except ValueError as error:
            raise ValueError(f"Segmentation map {index}: {error}") from None
    return mean_iou_from_confusion_matrix(confusion)


# ---------------------------------------------------------------------------------------------------------------------
# MMVP-VLM pairs
# ---------------------------------------------------------------------------------------------------------------------


def mmvp_pair_accuracy(scores: Any, categories: Sequence[str], category_order: Sequence[str] | None = None) -> dict:
    """MMVP-VLM pair accuracy: a pair counts only when both of its statements pick their own image.

    Args:
        scores: shape `(P, 2, 2)`, `scores[p, s, i]` = similarity between statement `s` and image `i` of pair `p`
            (statement 0 describes image 0, statement 1 describes image 1).
        categories: the visual pattern of each pair, length `P`.
        category_order: order of the categories in the output (default: order of first appearance). Every category
            listed must have at least one pair.

    Returns:
        `{"per_category_accuracy": {category: acc}, "average_accuracy": mean of the per-category accuracies (the
        benchmark's headline number), "pair_accuracy": fraction of all pairs that are correct, "num_pairs": P}`.

    Tie rule: the official script (`tsb0601/MMVP scripts/evaluate_vlm.py`, copied by DIVA) predicts image 0 for a
    statement iff `softmax(logits)[0] > 0.5`, so an exact tie picks image 1. We reproduce it: statement 0 is right iff
    `scores[p, 0, 0] > scores[p, 0, 1]`, statement 1 is right iff `scores[p, 1, 1] >= scores[p, 1, 0]`. A model with
    constant scores therefore gets every pair wrong, as in the official code.
    """
    scores = _to_numpy(scores, "scores")
    if scores.ndim != 3 or scores.shape[1:] != (2, 2):
        raise ValueError(f"`scores` must have shape (num_pairs, 2, 2) = [pair, statement, image], got {scores.shape}.")
    if scores.shape[0] == 0:
        raise ValueError("`scores` is empty: MMVP accuracy needs at least one pair.")
    _check_finite(scores, "scores")
    categories = [str(c) for c in categories]
    if len(categories) != scores.shape[0]:
        raise ValueError(
            f"Got {scores.shape[0]} pairs of scores but {len(categories)} categories: they must be equal."
        )

    correct = (scores[:, 0, 0] > scores[:, 0, 1]) & (scores[:, 1, 1] >= scores[:, 1, 0])
    order = list(dict.fromkeys(categories)) if category_order is None else [str(c) for c in category_order]
    unknown = sorted(set(categories) - set(order))
    if unknown:
        raise ValueError(f"Categories {unknown} are not in `category_order`={order}.")
    per_category = {}
    categories_array = np.asarray(categories)
    for category in order:
        in_category = categories_array == category
        if not in_category.any():
            raise ValueError(f"Category {category!r} of `category_order` has no pair.")
        per_category[category] = float(correct[in_category].mean())
    return {
        "per_category_accuracy": per_category,
        "average_accuracy": float(np.mean(list(per_category.values()))),
        "pair_accuracy": float(correct.mean()),
        "num_pairs": int(scores.shape[0]),
        "pair_correct": correct.astype(np.int64).tolist(),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Few-shot episodes
# ---------------------------------------------------------------------------------------------------------------------


def episode_accuracies(predictions: Any, references: Any, episode_ids: Any) -> np.ndarray:
    """Accuracy of each episode from per-query predictions, ordered by episode id."""
    preds = _check_integer(_to_numpy(predictions, "predictions"), "predictions")
    refs = _check_integer(_to_numpy(references, "references"), "references")
    episodes = _check_integer(_to_numpy(episode_ids, "episode_ids"), "episode_ids")
    if not (preds.ndim == refs.ndim == episodes.ndim == 1):
        raise ValueError("`predictions`, `references` and `episode_ids` must be 1-D (one entry per query).")
    if not (len(preds) == len(refs) == len(episodes)):
        raise ValueError(
            f"Got {len(preds)} predictions, {len(refs)} references and {len(episodes)} episode ids: they must be equal."
        )
    if len(preds) == 0:
        raise ValueError("No query: few-shot accuracy needs at least one episode.")
    unique, inverse = np.unique(episodes, return_inverse=True)
    correct = np.bincount(inverse, weights=(preds == refs).astype(np.float64), minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique))
    return correct / counts


def episode_accuracy_with_ci(per_episode_accuracies: Any, z: float = 1.96, ddof: int = 0) -> dict[str, float]:
    """Mean accuracy over few-shot episodes and its 95% confidence-interval half-width.

    `confidence_interval = z * std / sqrt(n)` with `z = 1.96` and the population standard deviation (`ddof=0`),
    which is how the few-shot codebases the video methods build on compute it (TRX, CNAPs, LITE:
    `196.0 * np.std(accuracies) / np.sqrt(len(accuracies))`, in percent). CLIP-FSAR's own code reports no interval.
    Results are written `accuracy ± confidence_interval`.

    Args:
        per_episode_accuracies: one accuracy in `[0, 1]` per episode.
        z: the normal quantile (1.96 for 95%).
        ddof: 0 for the population std (the literature's choice), 1 for the sample std.

    Returns:
        `{"accuracy", "confidence_interval", "std", "num_episodes"}`.
    """
    acc = _to_numpy(per_episode_accuracies, "per_episode_accuracies").astype(np.float64)
    if acc.ndim != 1:
        raise ValueError(f"`per_episode_accuracies` must be 1-D (one value per episode), got shape {acc.shape}.")
    if acc.size == 0:
        raise ValueError("`per_episode_accuracies` is empty: need at least one episode.")
    _check_finite(acc, "per_episode_accuracies")
    if (acc < 0).any() or (acc > 1).any():
        raise ValueError("`per_episode_accuracies` must be fractions in [0, 1] (got values outside; percents?).")
    if ddof not in (0, 1):
        raise ValueError(f"`ddof` must be 0 or 1, got {ddof}.")
    if acc.size <= ddof:
        raise ValueError(f"Need more than {ddof} episode(s) for a standard deviation with ddof={ddof}.")
    std = float(np.std(acc, ddof=ddof))
    return {
        "accuracy": float(acc.mean()),
        "confidence_interval": float(z * std / math.sqrt(acc.size)),
        "std": std,
        "num_episodes": int(acc.size),
    }
