"""Tests of the few-shot video metric: OTAM against plain dynamic programming, cosine frame distances, episode CI."""

import math

import numpy as np
import pytest
import torch

from hf_clipzoo.data.episodes import Episode, EpisodeSampler
from hf_clipzoo.eval.few_shot import cosine_frame_distances, evaluate_episodes, otam_distance

# ----------------------------------------------------------------------------------------------- naive references


def _naive_otam(dists: list[list[float]], lam: float) -> float:
    """CLIP-FSAR's OTAM_cum_dist_v2 for one [T_q, T_s] matrix, written with scalar loops and math.log / math.exp."""
    t_q, t_s = len(dists), len(dists[0])
    padded = [[0.0, *row, 0.0] for row in dists]
    cum = [[0.0] * (t_s + 2) for _ in range(t_q)]
    for m in range(1, t_s + 2):
        cum[0][m] = padded[0][m] + cum[0][m - 1]
    for l in range(1, t_q):  # noqa: E741
        cum[l][1] = padded[l][1] - lam * math.log(
            math.exp(-cum[l - 1][0] / lam) + math.exp(-cum[l - 1][1] / lam) + math.exp(-cum[l][0] / lam)
        )
        for m in range(2, t_s + 1):
            cum[l][m] = padded[l][m] - lam * math.log(
                math.exp(-cum[l - 1][m - 1] / lam) + math.exp(-cum[l][m - 1] / lam)
            )
        last = t_s + 1
        cum[l][last] = padded[l][last] - lam * math.log(
            math.exp(-cum[l - 1][last - 1] / lam)
            + math.exp(-cum[l - 1][last] / lam)
            + math.exp(-cum[l][last - 1] / lam)
        )
    return cum[t_q - 1][t_s + 1]


def _hard_dtw(dists: list[list[float]]) -> float:
    """The same recursion and move set with a hard min (the lam -> 0 limit)."""
    t_q, t_s = len(dists), len(dists[0])
    padded = [[0.0, *row, 0.0] for row in dists]
    cum = [[0.0] * (t_s + 2) for _ in range(t_q)]
    for m in range(1, t_s + 2):
        cum[0][m] = padded[0][m] + cum[0][m - 1]
    for l in range(1, t_q):  # noqa: E741
        cum[l][1] = padded[l][1] + min(cum[l - 1][0], cum[l - 1][1], cum[l][0])
        for m in range(2, t_s + 1):
            cum[l][m] = padded[l][m] + min(cum[l - 1][m - 1], cum[l][m - 1])
        last = t_s + 1
        cum[l][last] = padded[l][last] + min(cum[l - 1][last - 1], cum[l - 1][last], cum[l][last - 1])
    return cum[t_q - 1][t_s + 1]


def _apply_naive(fn, dists: torch.Tensor, *args) -> torch.Tensor:
    flat = dists.reshape(-1, *dists.shape[-2:])
    values = [fn(matrix.tolist(), *args) for matrix in flat]
    return torch.tensor(values, dtype=torch.float64).reshape(dists.shape[:-2])


# ----------------------------------------------------------------------------------------------- OTAM


@pytest.mark.parametrize("shape", [(8, 8), (3, 5), (5, 3), (2, 4, 6), (2, 3, 4, 7), (1, 1), (1, 4), (4, 1), (3, 2, 2)])
@pytest.mark.parametrize("lam", [0.5, 0.1, 2.0])
def test_otam_matches_scalar_dynamic_programming(shape, lam):
    generator = torch.Generator().manual_seed(sum(shape))
    dists = torch.rand(shape, generator=generator, dtype=torch.float64) * 2  # cosine distances lie in [0, 2]
    single = otam_distance(dists, lam=lam, bidirectional=False)
    assert single.shape == shape[:-2]
    torch.testing.assert_close(single, _apply_naive(_naive_otam, dists, lam), rtol=1e-10, atol=1e-10)


def _bench_otam_module():
    """`benchmarks/bench_otam.py`, whose reference is the official batched `OTAM_cum_dist_v2` written out."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_otam.py"
    spec = importlib.util.spec_from_file_location("bench_otam", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shape", [(25, 5, 8, 8), (3, 4, 5, 7), (2, 6, 3), (1, 1), (4, 1), (1, 4)])
@pytest.mark.parametrize("lam", [0.5, 0.1])
def test_otam_equals_the_benchmarks_official_batched_reference(shape, lam):
    """What bench_otam.py times against: the same numbers and the same gradients, in both directions."""
    bench = _bench_otam_module()
    generator = torch.Generator().manual_seed(len(shape) + shape[-1])
    dists = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2).requires_grad_()
    ours, official = otam_distance(dists, lam=lam), bench.official_bidirectional_otam(dists, lam)
    torch.testing.assert_close(ours, official, rtol=1e-12, atol=1e-12)
    weights = torch.rand(ours.shape, generator=generator, dtype=torch.float64)
    (ours_grad,) = torch.autograd.grad((ours * weights).sum(), dists)
    (official_grad,) = torch.autograd.grad((official * weights).sum(), dists)
    torch.testing.assert_close(ours_grad, official_grad, rtol=1e-10, atol=1e-12)
    one_way = bench.official_otam_cum_dist_v2(dists.detach(), lam)
    torch.testing.assert_close(otam_distance(dists.detach(), lam=lam, bidirectional=False), one_way)


def test_otam_is_bidirectional_sum_and_float32_agrees():
    dists = torch.rand(3, 5, 4, 6, dtype=torch.float64)
    forward = otam_distance(dists, bidirectional=False)
    backward = otam_distance(dists.transpose(-1, -2), bidirectional=False)
    torch.testing.assert_close(otam_distance(dists), forward + backward)
    torch.testing.assert_close(otam_distance(dists, lam=0.5, bidirectional=True), forward + backward)
    torch.testing.assert_close(otam_distance(dists.float()), (forward + backward).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 3), (2, 5, 5)])
def test_otam_tends_to_hard_dtw_for_small_lambda(shape):
    lam = 1e-3
    dists = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    soft = otam_distance(dists, lam=lam, bidirectional=False)
    hard = _apply_naive(_hard_dtw, dists)
    # A soft-min of k terms lies in [min - lam * log(k), min]; the gap accumulates over at most all cells.
    bound = shape[-2] * (shape[-1] + 2) * lam * math.log(3)
    assert (soft <= hard + 1e-12).all() and (hard - soft <= bound).all()
    torch.testing.assert_close(soft, hard, rtol=0, atol=1e-2)


def test_otam_does_not_overflow_for_large_distances():
    dists = torch.full((2, 8, 8), 50.0, dtype=torch.float32)
    value = otam_distance(dists, lam=0.01)
    assert torch.isfinite(value).all()


def test_otam_gradients():
    dists = torch.rand(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: otam_distance(d, lam=0.5), (dists,))
    assert torch.autograd.gradcheck(lambda d: otam_distance(d, lam=0.1, bidirectional=False), (dists,))
    # Through the cosine distances down to the features, in float32 as in training.
    query = torch.randn(2, 4, 8, requires_grad=True)
    protos = torch.randn(3, 4, 8, requires_grad=True)
    otam_distance(cosine_frame_distances(query, protos)).sum().backward()
    assert torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0 and protos.grad.abs().sum() > 0


def test_otam_prefers_the_right_temporal_order():
    # One-hot frame features: a query equals prototype 0 and is prototype 1 reversed. Only order separates them.
    frames = torch.eye(6)
    query = frames[None]
    protos = torch.stack([frames, frames.flip(0)])
    distances = otam_distance(cosine_frame_distances(query, protos))
    assert distances.shape == (1, 2) and distances[0, 0] < distances[0, 1]


def test_otam_errors():
    with pytest.raises(ValueError, match=r"\[\.\.\., T_q, T_s\]"):
        otam_distance(torch.rand(5))
    with pytest.raises(ValueError, match="lam"):
        otam_distance(torch.rand(3, 3), lam=0)
    with pytest.raises(ValueError, match="floating-point"):
        otam_distance(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        otam_distance(np.ones((3, 3)))


# ----------------------------------------------------------------------------------------------- cosine distances


def test_cosine_frame_distances_match_naive_loop():
    query, protos = torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(2, 6, 5, dtype=torch.float64)
    protos[1, 2] = 0  # a zero feature: eps keeps it finite (distance 1)
    out = cosine_frame_distances(query, protos)
    assert out.shape == (3, 2, 4, 6)
    for i in range(3):
        for j in range(2):
            for l in range(4):  # noqa: E741
                for m in range(6):
                    x, y = query[i, l], protos[j, m]
                    expected = 1 - float(x @ y) / (float(x.norm()) * float(y.norm()) + 0.01)
                    assert out[i, j, l, m].item() == pytest.approx(expected, abs=1e-12)
    assert (out[:, 1, :, 2] == 1).all()
    torch.testing.assert_close(
        cosine_frame_distances(query, protos, eps=0.0)[:, 0],
        1 - torch.nn.functional.cosine_similarity(query[:, :, None], protos[0][None, None], dim=-1),
    )
    with pytest.raises(ValueError, match="Feature dims differ"):
        cosine_frame_distances(torch.randn(1, 2, 3), torch.randn(1, 2, 4))
    with pytest.raises(ValueError, match=r"\[N_q, T, D\]"):
        cosine_frame_distances(torch.randn(2, 3), torch.randn(1, 2, 3))


# ----------------------------------------------------------------------------------------------- episodes


def _toy_episode(index: int) -> Episode:
    return Episode(
        support_indices=[10 * index, 10 * index + 1],
        support_labels=[0, 1],
        query_indices=[10 * index + 2, 10 * index + 3],
        query_labels=[0, 1],
        class_ids=[index, index + 1],
    )


def test_evaluate_episodes_known_toy():
    episodes = [_toy_episode(i) for i in range(4)]
    # Episode accuracies 1, 0.5, 0.5, 0 -> mean 0.5, sample std sqrt(0.5 / 3), ci = 1.96 * std / 2.
    answers = {0: [0, 1], 1: [0, 0], 2: [1, 1], 3: [1, 0]}
    result = evaluate_episodes(lambda e: answers[int(e.class_ids[0])], episodes)
    assert set(result) == {"accuracy", "ci95", "num_episodes", "per_episode"}
    assert result["per_episode"] == [1.0, 0.5, 0.5, 0.0]
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["ci95"] == pytest.approx(1.96 * math.sqrt(0.5 / 3) / 2)
    assert result["num_episodes"] == 4
    # Scores [N*Q, N] (torch) are argmaxed.
    logits = {k: torch.nn.functional.one_hot(torch.tensor(v), 2).float() for k, v in answers.items()}
    assert evaluate_episodes(lambda e: logits[int(e.class_ids[0])], episodes) == result
    perfect = evaluate_episodes(lambda e: e.query_labels, episodes)
    assert perfect == {"accuracy": 1.0, "ci95": 0.0, "num_episodes": 4, "per_episode": [1.0] * 4}
    single = evaluate_episodes(lambda e: e.query_labels, episodes[:1])
    assert single["accuracy"] == 1.0 and math.isnan(single["ci95"])


def test_evaluate_episodes_with_the_sampler_and_an_oracle_on_features():
    # Rows are noisy copies of a per-class frame sequence: OTAM on cosine distances classifies them.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 4)
    centres = rng.normal(size=(6, 4, 16))
    features = torch.tensor(centres[labels] + 0.1 * rng.normal(size=(24, 4, 16)))

    def predict(episode):
        protos = features[episode.support_indices].reshape(episode.way, episode.shot, 4, 16).mean(1)
        return -otam_distance(cosine_frame_distances(features[episode.query_indices], protos))

    result = evaluate_episodes(predict, EpisodeSampler(labels, way=5, shot=2, query=2, seed=0, num_episodes=8))
    assert result == {"accuracy": 1.0, "ci95": 0.0, "num_episodes": 8, "per_episode": [1.0] * 8}


def test_evaluate_episodes_errors():
    with pytest.raises(ValueError, match="infinite"):
        evaluate_episodes(lambda e: e.query_labels, EpisodeSampler(np.repeat(np.arange(3), 2), 2, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        evaluate_episodes(lambda e: e.query_labels, [])
    with pytest.raises(ValueError, match=r"must return \[2\] labels or \[2, 2\] scores"):
        evaluate_episodes(lambda e: [0, 1, 1], [_toy_episode(0)])
