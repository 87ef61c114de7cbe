"""DreamLIP's losses (`hf_clipzoo.losses.grouping`) against naive, loop-by-loop versions of their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hf_clipzoo.losses import clip_loss
from hf_clipzoo.losses.grouping import (
    multi_caption_circle_loss,
    multi_caption_contrastive_loss,
    subcaption_grouping_loss,
    subcaption_grouping_weights,
)

B, S, M, D = 4, 3, 5, 8


def _embeds(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(B, D, generator=generator, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(B, S, D, generator=generator, dtype=torch.float64), dim=-1)
    patches = torch.randn(B, M, D, generator=generator, dtype=torch.float64)
    return images, texts, patches


def _log_softmax_at(values: list[float], index: int) -> float:
    return values[index] - math.log(sum(math.exp(v) for v in values))


def naive_per_slot(images, texts, scale: float) -> float:
    """1/S Σ_s [ mean_i -log softmax_j(s<I_i,T_js>)[i] + mean_j -log softmax_i(s<T_js,I_i>)[j] ] / 2."""
    total = 0.0
    for s in range(S):
        image_to_text = text_to_image = 0.0
        for i in range(B):
            row = [scale * float(images[i] @ texts[j, s]) for j in range(B)]
            image_to_text -= _log_softmax_at(row, i)
        for j in range(B):
            column = [scale * float(texts[j, s] @ images[i]) for i in range(B)]
            text_to_image -= _log_softmax_at(column, j)
        total += (image_to_text / B + text_to_image / B) / 2
    return total / S


def naive_soft_target(images, texts, scale: float) -> float:
    """Image i vs all B·S captions, target 1/S on its own; caption (j, s) vs all images, target its image j."""
    flat = [(j, s) for j in range(B) for s in range(S)]
    image_to_text = 0.0
    for i in range(B):
        row = [scale * float(images[i] @ texts[j, s]) for j, s in flat]
        image_to_text -= sum(_log_softmax_at(row, k) for k, (j, _) in enumerate(flat) if j == i) / S
    text_to_image = 0.0
    for j, s in flat:
        column = [scale * float(texts[j, s] @ images[i]) for i in range(B)]
        text_to_image -= _log_softmax_at(column, j)
    return (image_to_text / B + text_to_image / (B * S)) / 2


def naive_weights(texts, patches, norm="minmax", threshold=0.0):
    weights = torch.zeros(B, S, M, dtype=torch.float64)
    for b in range(B):
        for s in range(S):
            t = texts[b, s] / texts[b, s].norm()
            sims = [float(t @ (patches[b, p] / patches[b, p].norm())) for p in range(M)]
            if norm == "minmax":
                low, high = min(sims), max(sims)
                values = [(v - low) / (high - low + 1e-10) for v in sims]
            else:
                denominator = sum(math.exp(v) for v in sims)
                values = [math.exp(v) / denominator for v in sims]
            sigma = 1.0 / M if threshold < 0 else threshold
            values = [0.0 if v < sigma else v for v in values]
            total = sum(values)
            values = [v / total for v in values] if total > 0 else [1.0 / M] * M
            weights[b, s] = torch.tensor(values, dtype=torch.float64)
    return weights


def naive_grouping_loss(texts, patches, scale: float, negatives: str, **weight_kwargs) -> float:
    weights = naive_weights(texts, patches, **weight_kwargs)
    units = F.normalize(patches, dim=-1)
    grouped = {}
    for b in range(B):
        for s in range(S):
            vector = sum(weights[b, s, p] * units[b, p] for p in range(M))
            grouped[b, s] = vector / vector.norm()
    caption = {(b, s): texts[b, s] / texts[b, s].norm() for b in range(B) for s in range(S)}
    pairs = list(grouped)
    total = 0.0
    for b, s in pairs:
        candidates = pairs if negatives == "batch" else [(b, t) for t in range(S)]
        index = candidates.index((b, s))
        group_to_text = [scale * float(grouped[b, s] @ caption[c]) for c in candidates]
        text_to_group = [scale * float(caption[b, s] @ grouped[c]) for c in candidates]
        total -= (_log_softmax_at(group_to_text, index) + _log_softmax_at(text_to_group, index)) / 2
    return total / len(pairs)


@pytest.mark.parametrize("mode, naive", [("per_slot", naive_per_slot), ("soft_target", naive_soft_target)])
def test_multi_caption_contrastive_loss_matches_naive(mode, naive):
    images, texts, _ = _embeds()
    logit_scale = torch.tensor(1.3, dtype=torch.float64)
    loss = multi_caption_contrastive_loss(images, texts, logit_scale, mode=mode)
    assert loss.item() == pytest.approx(naive(images, texts, math.exp(1.3)), rel=1e-10)


def test_per_slot_is_the_mean_of_clip_losses_and_differs_from_soft_target():
    images, texts, _ = _embeds(1)
    per_slot = multi_caption_contrastive_loss(images, texts, 2.0)
    slot_mean = sum(clip_loss(images, texts[:, s], 2.0) for s in range(S)) / S
    torch.testing.assert_close(per_slot, slot_mean)
    assert abs(per_slot - multi_caption_contrastive_loss(images, texts, 2.0, mode="soft_target")) > 1e-3


@pytest.mark.parametrize(
    "norm, threshold", [("minmax", 0.0), ("minmax", 0.4), ("minmax", -1.0), ("softmax", 0.0), ("softmax", -1.0)]
)
def test_grouping_weights_match_naive(norm, threshold):
    _, texts, patches = _embeds(2)
    weights = subcaption_grouping_weights(texts, patches, norm=norm, threshold=threshold)
    torch.testing.assert_close(weights, naive_weights(texts, patches, norm, threshold).to(weights.dtype))
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, S, dtype=weights.dtype))
    if norm == "minmax" and threshold >= 0:
        # The least similar patch of every (image, caption) always gets weight 0 after min-max.
        assert bool((weights.min(-1).values == 0).all())


def test_grouping_weights_fall_back_to_mean_pooling():
    _, texts, _ = _embeds(3)
    constant = torch.ones(B, M, D, dtype=torch.float64)  # every patch equally similar: min-max leaves nothing
    weights = subcaption_grouping_weights(texts, constant)
    torch.testing.assert_close(weights, torch.full((B, S, M), 1.0 / M, dtype=torch.float64))
    _, texts, patches = _embeds(4)
    weights = subcaption_grouping_weights(texts, patches, norm="softmax", threshold=1.0)  # σ above every softmax
    torch.testing.assert_close(weights, torch.full((B, S, M), 1.0 / M, dtype=torch.float64))


@pytest.mark.parametrize("negatives", ["batch", "image"])
@pytest.mark.parametrize("norm, threshold", [("minmax", 0.0), ("softmax", -1.0)])
def test_grouping_loss_matches_naive(negatives, norm, threshold):
    _, texts, patches = _embeds(5)
    loss, grouped = subcaption_grouping_loss(
        texts, patches, 0.7, norm=norm, threshold=threshold, negatives=negatives, return_grouped=True
    )
    naive = naive_grouping_loss(texts, patches, math.exp(0.7), negatives, norm=norm, threshold=threshold)
    assert loss.item() == pytest.approx(naive, rel=1e-9)
    assert grouped.shape == (B, S, D)


def test_grouping_loss_gradients_reach_patches_texts_and_scale():
    _, texts, patches = _embeds(6)
    texts.requires_grad_(True)
    patches.requires_grad_(True)
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    subcaption_grouping_loss(texts, patches, scale).backward()
    for tensor in (texts, patches, scale):
        assert tensor.grad is not None and tensor.grad.abs().max() > 0


def naive_circle_loss(images, texts, gamma, margin):
    """The released `I2mT_loss` (before its `/ 10`), pair by pair: captions in the released slot-major order (slot s
    of every image, then slot s + 1), the positives of image i the captions it owns, `pairwise_circleloss` per row."""
    batch, slots, _ = texts.shape
    captions = [(texts[j, s], j) for s in range(slots) for j in range(batch)]
    losses = []
    for i in range(batch):
        positives, negatives = [], []
        for caption, owner in captions:
            sim = images[i] @ caption
            if owner == i:
                alpha = torch.clamp(-sim.detach() + 1 + margin, min=0.0)
                positives.append(torch.exp(-gamma * alpha * (sim - (1 - margin))))
            else:
                alpha = torch.clamp(sim.detach() + margin, min=0.0)
                negatives.append(torch.exp(gamma * alpha * (sim - margin)))
        exponent = torch.log(sum(positives)) + torch.log(sum(negatives))
        losses.append(torch.log1p(torch.exp(exponent)))  # softplus
    return sum(losses) / batch


@pytest.mark.parametrize("slots", [1, S])
@pytest.mark.parametrize(("gamma", "margin"), [(32.0, 0.25), (8.0, 0.1)])
def test_circle_loss_matches_naive(slots, gamma, margin):
    images, texts, _ = _embeds(3)
    texts = texts[:, :slots]
    ours_inputs = [images.clone().requires_grad_(), texts.clone().requires_grad_()]
    naive_inputs = [images.clone().requires_grad_(), texts.clone().requires_grad_()]
    ours = multi_caption_circle_loss(*ours_inputs, gamma=gamma, margin=margin)
    naive = naive_circle_loss(*naive_inputs, gamma, margin)
    torch.testing.assert_close(ours, naive, atol=1e-10, rtol=1e-10)
    ours.backward()
    naive.backward()
    for mine, reference in zip(ours_inputs, naive_inputs):
        assert reference.grad.abs().max() > 1e-3
        torch.testing.assert_close(mine.grad, reference.grad, atol=1e-10, rtol=1e-8)


def test_circle_loss_without_negatives_is_zero_with_a_zero_gradient():
    images, texts, _ = _embeds(4)
    image = images[:1].clone().requires_grad_()
    loss = multi_caption_circle_loss(image, texts[:1], gamma=32.0, margin=0.25)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(image.grad, torch.zeros_like(image))


def test_bad_inputs_raise_clear_errors():
    images, texts, patches = _embeds()
    with pytest.raises(ValueError, match="mode"):
        multi_caption_contrastive_loss(images, texts, 1.0, mode="triplet")
    with pytest.raises(ValueError, match=r"\(batch, 1 \+ K caption slots, dim\)"):
        multi_caption_contrastive_loss(images, texts.flatten(0, 1), 1.0)
    with pytest.raises(ValueError, match="match"):
        multi_caption_contrastive_loss(images[:2], texts, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        multi_caption_contrastive_loss(images, texts[:, :0], 1.0)
    with pytest.raises(ValueError, match="norm"):
        subcaption_grouping_weights(texts, patches, norm="sparsemax")
    with pytest.raises(ValueError, match="threshold"):
        subcaption_grouping_weights(texts, patches, threshold=1.5)
    with pytest.raises(ValueError, match="project the patch tokens"):
        subcaption_grouping_weights(texts, patches[..., :4])
    with pytest.raises(ValueError, match="S >= 2"):
        subcaption_grouping_loss(texts[:, :1], patches, 1.0, negatives="image")
    with pytest.raises(ValueError, match="negatives"):
        subcaption_grouping_loss(texts, patches, 1.0, negatives="global")
    with pytest.raises(ValueError, match="`gamma` must be a finite number > 0"):
        multi_caption_circle_loss(images, texts, gamma=0.0)
    with pytest.raises(ValueError, match="`margin` must be a finite number"):
        multi_caption_circle_loss(images, texts, margin=float("nan"))
    with pytest.raises(ValueError, match=r"\(batch, 1 \+ K caption slots, dim\)"):
        multi_caption_circle_loss(images, texts.flatten(0, 1))
