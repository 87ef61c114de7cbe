"""Each loss against its formula written out naively (explicit loops over rows and pairs), the chunked sigmoid loss
against the dense one (loss and every gradient), and bad inputs.

All single-process: `torch.distributed` is not initialised here, so the gathers are no-ops (the multi-process
invariant lives in `test_distributed.py`).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hf_clipzoo.losses import (
    ClipLoss,
    SigLipLoss,
    clamp_logit_scale_,
    clip_loss,
    gather_batch_sizes,
    gather_no_grad,
    gather_with_grad,
    multi_positive_contrastive_loss,
    sigmoid_loss,
    world_info,
)


def _embeds(rows: int, dim: int = 5, dtype=torch.float64) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, dtype=dtype), dim=-1).requires_grad_(True)


def _scalar(value: float, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, requires_grad=True)


# ----------------------------------------------------------------------------- naive references (explicit loops)


def naive_logit(image, text, log_scale, bias=0.0):
    return math.exp(log_scale) * sum(a * b for a, b in zip(image, text)) + bias


def naive_info_nce(images, texts, log_scale, targets):
    """Soft-target InfoNCE, one row at a time: -sum_j q_ij log(exp(l_ij) / sum_k exp(l_ik)), both directions."""
    images, texts = images.tolist(), texts.tolist()
    logits = [[naive_logit(x, y, log_scale) for y in texts] for x in images]
    image_to_text = 0.0
    for i in range(len(images)):
        weights = [targets[i][j] for j in range(len(texts))]
        normaliser = math.log(sum(math.exp(logits[i][k]) for k in range(len(texts))))
        image_to_text += sum(w / sum(weights) * (normaliser - logits[i][j]) for j, w in enumerate(weights) if w)
    text_to_image = 0.0
    for j in range(len(texts)):
        weights = [targets[i][j] for i in range(len(images))]
        normaliser = math.log(sum(math.exp(logits[k][j]) for k in range(len(images))))
        text_to_image += sum(w / sum(weights) * (normaliser - logits[i][j]) for i, w in enumerate(weights) if w)
    return (image_to_text / len(images) + text_to_image / len(texts)) / 2


def naive_sigmoid(images, texts, log_scale, bias, positive):
    """-(1 / num_images) * sum over every (image, text) pair of log(sigmoid(z * logit))."""
    total = 0.0
    for i, x in enumerate(images.tolist()):
        for j, y in enumerate(texts.tolist()):
            z = 1.0 if positive(i, j) else -1.0
            total -= math.log(1.0 / (1.0 + math.exp(-z * naive_logit(x, y, log_scale, bias))))
    return total / len(images)


# ----------------------------------------------------------------------------- values against the naive formulas


def test_world_info_and_gathers_are_no_ops_in_one_process():
    tensor = torch.randn(3, 2, requires_grad=True)
    assert world_info() == (0, 1)
    assert gather_with_grad(tensor) is tensor
    assert gather_no_grad(tensor) is tensor
    assert gather_batch_sizes(3) == [3]


def test_clip_loss_matches_naive_rowwise_cross_entropy():
    images, texts = _embeds(4), _embeds(4)
    eye = [[float(i == j) for j in range(4)] for i in range(4)]
    expected = naive_info_nce(images, texts, 1.3, eye)
    torch.testing.assert_close(clip_loss(images, texts, _scalar(1.3)).item(), expected, rtol=1e-12, atol=1e-12)
    # A bias shifts every logit of a row equally: the softmax, hence the loss, is unchanged.
    with_bias = clip_loss(images, texts, _scalar(1.3), logit_bias=_scalar(-4.0))
    torch.testing.assert_close(with_bias.item(), expected, rtol=1e-12, atol=1e-12)
    # local_loss has no effect in one process.
    torch.testing.assert_close(clip_loss(images, texts, 1.3, local_loss=False).item(), expected)


def test_clip_loss_gradients_match_autograd_of_the_textbook_formula():
    images, texts, log_scale = _embeds(5), _embeds(5), _scalar(0.7)
    loss = clip_loss(images, texts, log_scale)
    grads = torch.autograd.grad(loss, [images, texts, log_scale])
    # The textbook formula, written independently: -log of the diagonal of a row- and a column-softmax.
    logits = log_scale.exp() * images @ texts.t()
    textbook = -(logits.log_softmax(dim=1).diagonal().mean() + logits.log_softmax(dim=0).diagonal().mean()) / 2
    expected = torch.autograd.grad(textbook, [images, texts, log_scale])
    for actual, wanted in zip(grads, expected):
        torch.testing.assert_close(actual, wanted)


def test_multi_positive_loss_matches_naive_soft_targets():
    images, texts = _embeds(3), _embeds(6)
    mask = torch.zeros(3, 6)
    mask[0, [0, 1, 4]] = 1.0  # image 0 also owns text 4: a mined positive
    mask[1, [2, 3]] = torch.tensor([1.0, 0.25])  # soft weight
    mask[2, [4, 5]] = 1.0
    expected = naive_info_nce(images, texts, 2.0, mask.tolist())
    actual = multi_positive_contrastive_loss(images, texts, _scalar(2.0), mask)
    torch.testing.assert_close(actual.item(), expected, rtol=1e-12, atol=1e-12)
    # Bool masks are 0/1 weights.
    binary = mask > 0
    expected_binary = naive_info_nce(images, texts, 2.0, binary.double().tolist())
    torch.testing.assert_close(multi_positive_contrastive_loss(images, texts, 2.0, binary).item(), expected_binary)


def test_multi_positive_loss_with_identity_mask_is_clip_loss():
    images, texts = _embeds(4), _embeds(4)
    expected = clip_loss(images, texts, 1.1)
    torch.testing.assert_close(
        multi_positive_contrastive_loss(images, texts, 1.1, torch.eye(4, dtype=torch.bool)), expected
    )


def test_sigmoid_loss_matches_naive_double_loop_diagonal():
    images, texts = _embeds(4), _embeds(4)
    expected = naive_sigmoid(images, texts, 2.3, -1.5, positive=lambda i, j: i == j)
    actual = sigmoid_loss(images, texts, _scalar(2.3), _scalar(-1.5))
    torch.testing.assert_close(actual.item(), expected, rtol=1e-12, atol=1e-12)
    # No bias means bias 0.
    no_bias = naive_sigmoid(images, texts, 2.3, 0.0, positive=lambda i, j: i == j)
    torch.testing.assert_close(sigmoid_loss(images, texts, 2.3, None).item(), no_bias, rtol=1e-12, atol=1e-12)


def test_sigmoid_loss_matches_naive_double_loop_multi_positive_mask():
    # 3 images × 3·(K+1) texts with K = 2 (FFF / DreamLIP layout), plus one mined cross-image positive.
    images, texts = _embeds(3), _embeds(9)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for i in range(3):
        mask[i, 3 * i : 3 * i + 3] = True
    mask[2, 0] = True
    expected = naive_sigmoid(images, texts, 1.0, -2.0, positive=lambda i, j: bool(mask[i, j]))
    for chunk_size in (None, 2):
        actual = sigmoid_loss(images, texts, 1.0, -2.0, positive_mask=mask, chunk_size=chunk_size)
        torch.testing.assert_close(actual.item(), expected, rtol=1e-12, atol=1e-12)
    # The same mask as 0/1 floats.
    torch.testing.assert_close(sigmoid_loss(images, texts, 1.0, -2.0, positive_mask=mask.double()).item(), expected)


def test_sigmoid_loss_gradients_match_autograd_of_hf_siglip_formula():
    images, texts, log_scale, bias = _embeds(5), _embeds(5), _scalar(2.3), _scalar(-10.0)
    grads = torch.autograd.grad(sigmoid_loss(images, texts, log_scale, bias), [images, texts, log_scale, bias])
    # transformers' SiglipModel loss ("m1_diag1"), written out.
    logits = images @ texts.t() * log_scale.exp() + bias
    labels = 2 * torch.eye(5, dtype=torch.float64) - 1
    reference = -F.logsigmoid(labels * logits).sum() / 5
    expected = torch.autograd.grad(reference, [images, texts, log_scale, bias])
    for actual, wanted in zip(grads, expected):
        torch.testing.assert_close(actual, wanted)


# ----------------------------------------------------------------------------- chunked == dense


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_sigmoid_loss_equals_dense_with_gradients(chunk_size, masked):
    num_images, num_texts = 7, (14 if masked else 7)
    images, texts = _embeds(num_images, 8, torch.float32), _embeds(num_texts, 8, torch.float32)
    log_scale, bias = _scalar(2.3, torch.float32), _scalar(-3.0, torch.float32)
    mask = torch.rand(num_images, num_texts) < 0.3 if masked else None
    inputs = [images, texts, log_scale, bias]
    dense = sigmoid_loss(images, texts, log_scale, bias, positive_mask=mask)
    dense_grads = torch.autograd.grad(dense, inputs)
    chunked = sigmoid_loss(images, texts, log_scale, bias, positive_mask=mask, chunk_size=chunk_size)
    chunked_grads = torch.autograd.grad(chunked, inputs)
    torch.testing.assert_close(chunked, dense, atol=1e-5, rtol=1e-5)
    for name, actual, expected in zip(("images", "texts", "logit_scale", "logit_bias"), chunked_grads, dense_grads):
        assert expected.abs().max() > 0, name
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_chunked_sigmoid_loss_with_frozen_scale_and_bias_and_upstream_weighting():
    images, texts = _embeds(6, 4, torch.float32), _embeds(6, 4, torch.float32)
    scale, bias = torch.tensor(1.0), torch.tensor(-1.0)  # not trainable: backward must skip them, not fail
    dense_grad = torch.autograd.grad(3.0 * sigmoid_loss(images, texts, scale, bias), images)[0]
    chunked_grad = torch.autograd.grad(3.0 * sigmoid_loss(images, texts, scale, bias, chunk_size=4), images)[0]
    torch.testing.assert_close(chunked_grad, dense_grad, atol=1e-5, rtol=1e-5)


def test_chunked_sigmoid_loss_keeps_no_full_logit_matrix_for_backward():
    rows, dim, chunk = 64, 8, 16
    images, texts = _embeds(rows, dim, torch.float32), _embeds(rows, dim, torch.float32)

    def largest_saved(chunk_size):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            sigmoid_loss(
                images, texts, _scalar(1.0, torch.float32), _scalar(0.0, torch.float32), chunk_size=chunk_size
            )
        return max(sizes)

    assert largest_saved(None) >= rows * rows  # the dense path does keep the logits (the test can fail)
    assert largest_saved(chunk) <= rows * dim  # the chunked path keeps only its inputs


def test_chunked_sigmoid_loss_in_bfloat16_is_close_to_float32():
    images, texts = _embeds(16, 8, torch.float32), _embeds(16, 8, torch.float32)
    reference = sigmoid_loss(images, texts, 2.0, -2.0, chunk_size=5)
    low = sigmoid_loss(images.bfloat16(), texts.bfloat16(), 2.0, -2.0, chunk_size=5)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, atol=0.05, rtol=0.02)


# ----------------------------------------------------------------------------- modules, dicts, helpers


def test_modules_and_output_dict():
    images, texts = _embeds(4), _embeds(4)
    out = ClipLoss(output_dict=True)(images, texts, 1.0)
    assert set(out) == {"contrastive_loss"}
    torch.testing.assert_close(out["contrastive_loss"], clip_loss(images, texts, 1.0))
    siglip = SigLipLoss(chunk_size=2, output_dict=True)(images, texts, 1.0, -1.0)
    torch.testing.assert_close(siglip["contrastive_loss"], sigmoid_loss(images, texts, 1.0, -1.0))
    mask = torch.eye(4, dtype=torch.bool)
    assert set(multi_positive_contrastive_loss(images, texts, 1.0, mask, output_dict=True)) == {"contrastive_loss"}


def test_clamp_logit_scale_caps_at_log_100():
    param = torch.nn.Parameter(torch.tensor(7.0))
    clamp_logit_scale_(param)
    assert param.item() == pytest.approx(math.log(100))
    param.data.fill_(-1.0)
    clamp_logit_scale_(param)
    assert param.item() == 0.0


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "images, texts, match",
    [
        (torch.randn(4, 5), torch.randn(4, 6), "same feature dim"),
        (torch.randn(0, 5), torch.randn(0, 5), "empty batch"),
        (torch.randn(4), torch.randn(4, 5), "2-D tensor"),
        (torch.randint(0, 3, (4, 5)), torch.randn(4, 5), "floating-point"),
        (torch.randn(4, 5), torch.randn(3, 5), "same size"),
    ],
)
@pytest.mark.parametrize("loss_fn", ["clip", "sigmoid"])
def test_bad_embeddings_raise(images, texts, match, loss_fn):
    with pytest.raises(ValueError, match=match):
        if loss_fn == "clip":
            clip_loss(images, texts, 1.0)
        else:
            sigmoid_loss(images, texts, 1.0, 0.0)


def test_non_scalar_scale_or_bias_raises():
    images, texts = torch.randn(3, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="`logit_scale` must be a scalar"):
        clip_loss(images, texts, torch.ones(2))
    with pytest.raises(ValueError, match="`logit_bias` must be a scalar"):
        sigmoid_loss(images, texts, 1.0, torch.zeros(3))
    with pytest.raises(ValueError, match="`logit_scale` must be a scalar"):
        multi_positive_contrastive_loss(images, texts, "1.0", torch.eye(3))


def test_bad_positive_masks_raise():
    images, texts = torch.randn(3, 4), torch.randn(6, 4)
    good = torch.zeros(3, 6, dtype=torch.bool)
    good[torch.arange(3), torch.arange(3)] = True
    good[torch.arange(3), torch.arange(3, 6)] = True
    with pytest.raises(ValueError, match=r"shape \(num_images, num_texts\) = \(3, 6\)"):
        sigmoid_loss(images, texts, 1.0, 0.0, positive_mask=good.t())
    with pytest.raises(ValueError, match=r"\(3, 6\)"):
        multi_positive_contrastive_loss(images, texts, 1.0, good[:, :5])
    with pytest.raises(ValueError, match="only 0.0 and 1.0"):
        sigmoid_loss(images, texts, 1.0, 0.0, positive_mask=good.float() * 0.5)
    with pytest.raises(ValueError, match="bool or floating point"):
        sigmoid_loss(images, texts, 1.0, 0.0, positive_mask=good.long())
    with pytest.raises(ValueError, match="non-negative"):
        multi_positive_contrastive_loss(images, texts, 1.0, good.float() - 0.5)
    no_positive_image = good.clone()
    no_positive_image[1] = False
    with pytest.raises(ValueError, match=r"every image needs at least one positive text; images \[1\]"):
        multi_positive_contrastive_loss(images, texts, 1.0, no_positive_image)
    no_positive_text = good.clone()
    no_positive_text[:, 4] = False
    with pytest.raises(ValueError, match=r"every text needs at least one positive image; texts \[4\]"):
        multi_positive_contrastive_loss(images, texts, 1.0, no_positive_text)
    with pytest.raises(ValueError, match="same size"):  # no mask: image i pairs with text i
        sigmoid_loss(images, texts, 1.0, 0.0)


@pytest.mark.parametrize("chunk_size", [0, -2, 2.5, True])
def test_bad_chunk_size_raises(chunk_size):
    with pytest.raises(ValueError, match="`chunk_size` must be a positive int"):
        sigmoid_loss(torch.randn(3, 4), torch.randn(3, 4), 1.0, 0.0, chunk_size=chunk_size)
