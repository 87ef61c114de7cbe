"""SigLIP's pairwise sigmoid loss, with an arbitrary positive mask and an O(B·chunk)-memory chunked mode.

For all images i and texts j of the global batch (all processes), with `z_ij = +1` for positives and `-1` otherwise:

    loss = -(1 / num_images) * sum_ij log sigmoid(z_ij * (exp(logit_scale) * <x_i, y_j> + logit_bias))

(Zhai et al. 2023, eq. 1; `-log sigmoid(v) = softplus(-v)` is what is computed). Positives default to the diagonal
(image i ↔ text i); any `(num_images, num_texts)` mask gives the multi-positive form used by FFF (mined false
negatives, several captions per image, `num_texts != num_images` allowed).

Distributed: texts are gathered *with* gradient, each rank scores its local images against all texts and weighs its
sum by `world_size / num_images`, so the mean over ranks is the global loss and, with DDP's gradient averaging, the
gradients equal those of one process on the concatenated batch (see `distributed.py`). This is open_clip's `'gather'`
`dist_impl` rather than its ring exchange: simpler, and exact with uneven per-rank batches, at the cost of holding all
texts' embeddings (`num_texts × dim`) on every rank.

`logit_scale` is the *log* temperature (SigLIP initialises it to `ln 10` and `logit_bias` to -10); like HF's
`SiglipModel` and open_clip's `SigLipLoss`, nothing is clamped. This module only imports torch (Hub remote code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .clipzoo_losses__checks import check_embeddings, check_positive_mask, check_scalar
from .clipzoo_losses_distributed import gather_batch_sizes, gather_with_grad, world_info


def _signs(
    mask_rows: torch.Tensor | None, diagonal_offset: int, rows: int, start: int, stop: int, like: torch.Tensor
) -> torch.Tensor:
    """`z` for columns `start:stop` of this rank's rows: +1 for positives, -1 otherwise (only `rows × chunk` memory)."""
    if mask_rows is not None:
        positive = mask_rows[:, start:stop]
    else:
        row_ids = torch.arange(rows, device=like.device) + diagonal_offset
        positive = row_ids[:, None] == torch.arange(start, stop, device=like.device)[None, :]
    return positive.to(like.dtype).mul_(2).sub_(1)


class _ChunkedSigmoidLoss(torch.autograd.Function):
    """`norm * sum_ij softplus(-z_ij * (t * <x_i, y_j> + b))`, scanning the text columns in chunks.

    Neither forward nor backward keeps the `rows × num_texts` logits: forward saves only its inputs, backward
    recomputes each chunk's logits and uses `d softplus(-z l) / dl = -z * sigmoid(-z l)`. Operations are in place, so
    the extra memory is at most three `rows × chunk_size` blocks plus the gradient buffers (the size of the inputs).
    """

    @staticmethod
    def forward(ctx, images, texts, logit_scale, logit_bias, mask_rows, diagonal_offset, chunk_size, norm):
        scale = logit_scale.exp()
        # Accumulate in at least float32 so bf16/fp16 inputs do not lose precision over many chunks.
        accumulate = torch.promote_types(images.dtype, torch.float32)
        total = torch.zeros((), dtype=accumulate, device=images.device)
        for start in range(0, texts.shape[0], chunk_size):
            stop = min(start + chunk_size, texts.shape[0])
            logits = (images @ texts[start:stop].t()).mul_(scale).add_(logit_bias)
            logits.mul_(_signs(mask_rows, diagonal_offset, images.shape[0], start, stop, logits)).neg_()  # -z * l
            total += F.softplus(logits).sum(dtype=accumulate)
        ctx.save_for_backward(images, texts, logit_scale, logit_bias)
        ctx.mask_rows, ctx.diagonal_offset, ctx.chunk_size, ctx.norm = mask_rows, diagonal_offset, chunk_size, norm
        return (total * norm).to(images.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        images, texts, logit_scale, logit_bias = ctx.saved_tensors
        scale = logit_scale.exp()
        accumulate = torch.promote_types(images.dtype, torch.float32)  # as in forward
        # Gradients w.r.t. `images @ texts.T` are accumulated unscaled; the constant `scale` is applied once at the end.
        grad_images = torch.zeros(images.shape, dtype=accumulate, device=images.device)
        grad_texts = torch.empty(texts.shape, dtype=accumulate, device=texts.device)
        grad_scale = torch.zeros((), dtype=accumulate, device=images.device)
        grad_bias = torch.zeros((), dtype=accumulate, device=images.device)
        upstream = grad_output * ctx.norm
        for start in range(0, texts.shape[0], ctx.chunk_size):
            stop = min(start + ctx.chunk_size, texts.shape[0])
            text_chunk = texts[start:stop]
            similarity = images @ text_chunk.t()
            signs = _signs(ctx.mask_rows, ctx.diagonal_offset, images.shape[0], start, stop, similarity)
            # grad_logits = upstream * (-z) * sigmoid(-z * l), built in place in one buffer.
            grad_logits = (similarity * scale).add_(logit_bias).mul_(signs).neg_().sigmoid_().mul_(signs).neg_()
            del signs
            grad_logits.mul_(upstream)
            if grad_images.dtype == grad_logits.dtype:
                grad_images.addmm_(grad_logits, text_chunk)  # no (rows x dim) temporary
            else:
                grad_images += grad_logits @ text_chunk
            grad_texts[start:stop] = grad_logits.t() @ images
            grad_bias += grad_logits.sum(dtype=accumulate)
            # d(t * s) / d(log t) = t * s; `similarity` is not needed afterwards, so reuse its buffer.
            grad_scale += similarity.mul_(grad_logits).sum(dtype=accumulate) * scale
        return (
            grad_images.mul_(scale).to(images.dtype) if ctx.needs_input_grad[0] else None,
            grad_texts.mul_(scale).to(texts.dtype) if ctx.needs_input_grad[1] else None,
            grad_scale.to(logit_scale.dtype) if ctx.needs_input_grad[2] else None,
            grad_bias.to(logit_bias.dtype) if ctx.needs_input_grad[3] else None,
            None,
            None,
            None,
            None,
        )


def sigmoid_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None,
    *,
    positive_mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    output_dict: bool = False,
    group=None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """SigLIP's sigmoid loss over the global batch, summed over pairs and divided by the number of images.

    Args:
        image_embeds (`torch.Tensor` of shape `(num_local_images, dim)`): L2-normalised image embeddings.
        text_embeds (`torch.Tensor` of shape `(num_local_texts, dim)`): L2-normalised text embeddings.
        logit_scale (`torch.Tensor` scalar or `float`): the *log* temperature, used as `logit_scale.exp()`.
        logit_bias (`torch.Tensor` scalar, `float` or `None`): the learnable bias `b` (`None` means 0).
        positive_mask (`torch.Tensor` of shape `(num_images, num_texts)`, *optional*): bool (or 0/1 float) positives
            in global coordinates (all processes' images × all processes' texts, in rank order), identical on every
            rank. Defaults to the diagonal, which needs as many texts as images on every rank.
        chunk_size (`int`, *optional*): score `chunk_size` text columns at a time with a custom autograd function
            that never holds the `num_local_images × num_texts` logits, in forward or backward (memory
            O(num_local_images · chunk_size) besides the inputs). Same loss and gradients as the dense path.
        output_dict (`bool`, defaults to `False`): return `{"contrastive_loss": loss}`.
        group: the process group to gather over (default: the world).

    Returns:
        The scalar loss; in multi-process runs this rank's share, whose mean over ranks is the global loss.
    """
    fn = "sigmoid_loss"
    check_embeddings(image_embeds, text_embeds, paired=positive_mask is None, fn=fn)
    logit_scale = check_scalar(logit_scale, "logit_scale", fn, image_embeds)
    logit_bias = check_scalar(0.0 if logit_bias is None else logit_bias, "logit_bias", fn, image_embeds)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{fn}: `chunk_size` must be a positive int or None, got {chunk_size!r}.")

    rank, world_size = world_info(group)
    device = image_embeds.device
    image_sizes = gather_batch_sizes(image_embeds.shape[0], device=device, group=group)
    text_sizes = gather_batch_sizes(text_embeds.shape[0], device=device, group=group)
    num_images = sum(image_sizes)
    image_offset = sum(image_sizes[:rank])
    all_texts = gather_with_grad(text_embeds, sizes=text_sizes, group=group)

    mask_rows = None
    if positive_mask is not None:
        mask = check_positive_mask(positive_mask, (num_images, sum(text_sizes)), fn, binary=True)
        mask_rows = mask[image_offset : image_offset + image_embeds.shape[0]].to(device)
    # Each rank's sum is weighed so that the mean over ranks is `global sum / num_images` (see module docstring).
    norm = world_size / num_images

    if chunk_size is None:
        logits = logit_scale.exp() * image_embeds @ all_texts.t() + logit_bias
        signs = _signs(mask_rows, image_offset, image_embeds.shape[0], 0, all_texts.shape[0], logits)
        loss = F.softplus(-signs * logits).sum() * norm
    else:
        loss = _ChunkedSigmoidLoss.apply(
            image_embeds, all_texts, logit_scale, logit_bias, mask_rows, image_offset, chunk_size, norm
        )
    return {"contrastive_loss": loss} if output_dict else loss


class SigLipLoss(nn.Module):
    """`nn.Module` form of `sigmoid_loss`, holding `chunk_size` and `output_dict`."""

    def __init__(self, chunk_size: int | None = None, output_dict: bool = False):
        super().__init__()
        self.chunk_size = chunk_size
        self.output_dict = output_dict

    def forward(self, image_embeds, text_embeds, logit_scale, logit_bias, positive_mask=None):
        return sigmoid_loss(
            image_embeds,
            text_embeds,
            logit_scale,
            logit_bias,
            positive_mask=positive_mask,
            chunk_size=self.chunk_size,
            output_dict=self.output_dict,
        )


__all__ = ["SigLipLoss", "sigmoid_loss"]
