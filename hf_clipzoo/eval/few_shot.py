"""Few-shot video matching and episode evaluation: OTAM distance, frame cosine distances, episode accuracy + CI.

Why this module exists: CLIP-FSAR and MA-CLIP classify a query video by its temporally aligned distance to each class
prototype, computed with OTAM (Ordered Temporal Alignment Module, Cao et al. 2020) using the soft-min recursion of
CLIP-FSAR's ``OTAM_cum_dist_v2`` (``../shared/methods/clip_fsar.md`` section 1.2, step 4). Both methods, their
pipelines and the evaluators need the same metric, so it lives here once:

* `cosine_frame_distances`: ``1 - cos`` between every query frame and every prototype frame, with CLIP-FSAR's
  ``eps = 0.01`` in the denominator;
* `otam_distance`: the OTAM recursion, vectorised over any leading batch dims, differentiable, optionally
  bidirectional (query->support plus support->query, CLIP-FSAR's default);
* `evaluate_episodes`: mean per-episode accuracy with a 95% confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ..data.episodes import Episode, EpisodeSampler
from .metrics import _to_numpy, episode_accuracy_with_ci


def _softmin(lam: float, *values: torch.Tensor) -> torch.Tensor:
    """``-lam * log(sum_i exp(-v_i / lam))``, computed with `torch.logaddexp` so large distances never overflow."""
    acc = -values[0] / lam
    for value in values[1:]:
        acc = torch.logaddexp(acc, -value / lam)
    return -lam * acc


def _otam_one_direction(dists: torch.Tensor, lam: float) -> torch.Tensor:
    """OTAM_cum_dist_v2 on ``[..., T_q, T_s]`` -> ``[...]`` (no in-place writes, so autograd sees a plain graph).

    With ``D~ = pad(D, (1, 1))`` (a zero column before and after the support axis) and C of the same shape:
    row 0 is the cumulative sum of ``D~[0]``; for rows l >= 1, ``C[l, 0] = 0``, column 1 and column ``T_s + 1``
    take the soft-min of three predecessors (``C[l-1, m-1]``, ``C[l-1, m]``, ``C[l, m-1]``), columns 2..T_s of two
    (diagonal ``C[l-1, m-1]`` and horizontal ``C[l, m-1]``). The result is ``C[T_q - 1, T_s + 1]``.
    """
    num_q, num_s = dists.shape[-2], dists.shape[-1]
    zero = dists.new_zeros(dists.shape[:-2])
    # Row 0: plain cumulative sum over the padded row [0, D[0, 0], ..., D[0, T_s - 1], 0].
    first = torch.cumsum(dists[..., 0, :], dim=-1).unbind(-1)
    prev = [zero, *first, first[-1]]
    for l in range(1, num_q):  # noqa: E741 - `l` is the spec's row index
        row = dists[..., l, :].unbind(-1)  # row[m - 1] is D~[l, m] for m = 1..T_s
        cur = [zero]  # C[l, 0] stays 0: an alignment may start at any query row through the padding column
        cur.append(row[0] + _softmin(lam, prev[0], prev[1], cur[0]))
        for m in range(2, num_s + 1):
            cur.append(row[m - 1] + _softmin(lam, prev[m - 1], cur[m - 1]))
        # Last (padding) column: D~[l, T_s + 1] = 0; it can also be entered vertically, so the path may end early.
        cur.append(_softmin(lam, prev[num_s], prev[num_s + 1], cur[num_s]))
        prev = cur
    return prev[num_s + 1]


def otam_distance(frame_dists: torch.Tensor, lam: float = 0.5, bidirectional: bool = True) -> torch.Tensor:
    """OTAM alignment distance between frame sequences (CLIP-FSAR's ``OTAM_cum_dist_v2``, lambda = 0.5).

    The recursion is written with Python loops over the T_q x T_s cells only; every step is one tensor operation over
    all leading batch dims, and the soft-min uses `torch.logaddexp` (a stable log-sum-exp), so it is differentiable
    and does not overflow for small `lam`. As ``lam -> 0`` one direction tends to the hard-min DTW with the same moves.

    Args:
        frame_dists (`torch.Tensor` ``[..., T_q, T_s]``): distance of query frame l to support frame m, e.g. from
            `cosine_frame_distances` (``[N_q, N_p, T, T]``). Floating point; T_q and T_s may differ.
        lam (`float`, defaults to 0.5): soft-min temperature (> 0). CLIP-FSAR uses 0.5, the plain OTAM head 0.1.
        bidirectional (`bool`, defaults to `True`): return ``otam(D) + otam(D^T)`` (query->support plus
            support->query), as CLIP-FSAR does unless ``TRAIN.SINGLE_DIRECT``; otherwise ``otam(D)`` only.

    Returns:
        `torch.Tensor` ``[...]``: the distances (lower = more similar); CLIP-FSAR's logits are their negatives.
    """
    if not isinstance(frame_dists, torch.Tensor):
        raise TypeError(f"`frame_dists` must be a torch.Tensor, got {type(frame_dists).__name__}.")
    if frame_dists.ndim < 2 or frame_dists.shape[-1] == 0 or frame_dists.shape[-2] == 0:
        raise ValueError(
            f"`frame_dists` must have shape [..., T_q, T_s] with T_q, T_s >= 1, got {tuple(frame_dists.shape)}."
        )
    if not frame_dists.is_floating_point():
        raise ValueError(f"`frame_dists` must be a floating-point tensor, got {frame_dists.dtype}.")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"`lam` must be a finite number > 0, got {lam!r}.")
    distance = _otam_one_direction(frame_dists, float(lam))
    if bidirectional:
        distance = distance + _otam_one_direction(frame_dists.transpose(-1, -2), float(lam))
    return distance


def cosine_frame_distances(query: torch.Tensor, protos: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """Frame-to-frame cosine distances ``1 - x.y / (|x| |y| + eps)`` (CLIP-FSAR's ``1 - cos_sim``).

    The ``eps`` sits in the denominator *outside* the product of norms, exactly as the official ``cos_sim``; it keeps
    distances finite for zero features and makes them slightly above ``1 - cos``.

    Args:
        query (`torch.Tensor` ``[N_q, T_q, D]``): query frame features.
        protos (`torch.Tensor` ``[N_p, T_s, D]``): prototype (or support) frame features.
        eps (`float`, defaults to 0.01): added to the product of norms (>= 0).

    Returns:
        `torch.Tensor` ``[N_q, N_p, T_q, T_s]``: entry ``[i, j, l, m]`` compares query i frame l with prototype j
        frame m, ready for `otam_distance`.
    """
    if query.ndim != 3 or protos.ndim != 3:
        raise ValueError(
            f"Expected query [N_q, T, D] and protos [N_p, T, D], got shapes {tuple(query.shape)} and "
            f"{tuple(protos.shape)}."
        )
    if query.shape[-1] != protos.shape[-1]:
        raise ValueError(f"Feature dims differ: query D={query.shape[-1]}, protos D={protos.shape[-1]}.")
    if eps < 0:
        raise ValueError(f"`eps` must be >= 0, got {eps}.")
    dots = torch.einsum("qld,pmd->qplm", query, protos)
    norms = torch.einsum("ql,pm->qplm", query.norm(dim=-1), protos.norm(dim=-1))
    return 1 - dots / (norms + eps)


def evaluate_episodes(
    predict_fn: Callable[[Episode], Any],
    episodes: Iterable[Episode],
) -> dict[str, float | int]:
    """Mean per-episode accuracy over few-shot episodes with its 95% confidence interval.

    ``ci95 = 1.96 * std / sqrt(n)`` with the **sample** standard deviation (``ddof=1``) of the per-episode
    accuracies. (The TRX / CNAPs code the video literature copies uses the population std, ``ddof=0``; the
    difference is a factor ``sqrt(n / (n - 1))``, negligible at the usual 10,000 episodes.) With a single episode
    the interval is undefined and reported as NaN.

    Args:
        predict_fn: called with each `Episode`; returns the predicted *episode* labels of its queries, either
            ``[N*Q]`` integers in ``0..N-1`` or scores / logits ``[N*Q, N]`` (argmax taken), numpy or torch.
        episodes: an iterable of `Episode`, e.g. ``EpisodeSampler(..., num_episodes=10_000)`` (finite).

    Returns:
        ``{"accuracy": mean accuracy in [0, 1], "ci95": half-width in [0, 1], "num_episodes": n,
        "per_episode": [n accuracies]}``.

    Raises:
        ValueError: an infinite sampler, no episodes, or predictions of the wrong shape.
    """
    if isinstance(episodes, EpisodeSampler) and episodes.num_episodes is None:
        raise ValueError("`episodes` is an infinite EpisodeSampler: build it with `num_episodes=...` to evaluate.")
    accuracies = []
    for number, episode in enumerate(episodes):
        predictions = _to_numpy(predict_fn(episode), "predictions")
        num_queries = len(episode.query_labels)
        if predictions.ndim == 2 and predictions.shape == (num_queries, episode.way):
            predictions = predictions.argmax(axis=-1)
        if predictions.shape != (num_queries,):
            raise ValueError(
                f"Episode {number}: predict_fn must return [{num_queries}] labels or [{num_queries}, {episode.way}] "
                f"scores, got shape {predictions.shape}."
            )
        accuracies.append(float((predictions == episode.query_labels).mean()) if num_queries else float("nan"))
    if not accuracies:
        raise ValueError("`episodes` is empty: need at least one episode to evaluate.")
    if any(math.isnan(acc) for acc in accuracies):
        raise ValueError("An episode has no queries (query=0): its accuracy is undefined.")
    if len(accuracies) == 1:
        return {"accuracy": accuracies[0], "ci95": float("nan"), "num_episodes": 1, "per_episode": accuracies}
    summary = episode_accuracy_with_ci(np.asarray(accuracies), z=1.96, ddof=1)
    return {
        "accuracy": summary["accuracy"],
        "ci95": summary["confidence_interval"],
        "num_episodes": summary["num_episodes"],
        "per_episode": accuracies,
    }


__all__ = ["cosine_frame_distances", "evaluate_episodes", "otam_distance"]
