"""Softmax contrastive losses: CLIP's symmetric InfoNCE and its multi-positive (soft-target) generalisation.

Semantics follow open_clip's `ClipLoss` (`local_loss`, gather with gradient, rank-offset labels, optional
`logit_bias`, `output_dict`), with three deliberate choices:

- Embeddings are gathered *with* gradient, always. open_clip's `gather_with_grad=False` leaves the gathered rows
  without gradient, which under DDP's mean gives 1/N of the single-process gradient for `local_loss=False` and a
  wrong one for `local_loss=True` (open_clip#616, #894).
- `logit_scale` is the learnable *log* temperature, exponentiated here (open_clip's loss takes the exponentiated
  value). The loss does **not** clamp it: clamping inside the forward would zero its gradient above the cap and make
  the loss disagree with the model's `logits_per_image`. Like open_clip's training loop, clamp the parameter in place
  after each optimiser step with `clamp_logit_scale_` (CLIP paper: temperature capped at 100, i.e. `ln(100)`).
- Uneven per-rank batches (the last batch of an epoch) are supported; each rank's loss is weighted so that the mean
  over ranks is the loss of the concatenated batch.

Distributed invariant (tested with 2 gloo processes): N processes with local batches b_1..b_N, gradients averaged
over ranks (DDP), give the same loss (mean over ranks) and the same gradients as one process on the concatenated
batch, for `local_loss=True` and `local_loss=False`. With `local_loss=False` every rank computes the full loss, so
the backward through the all-gather sums N identical contributions and each rank's embedding gradient is N times the
single-process one; DDP's division by N restores it exactly. If you *sum* gradients over ranks instead of averaging,
divide by the world size (or use `local_loss=True`, which is also cheaper: O(b·N·b) logits instead of O((N·b)^2)).

Embeddings must already be L2-normalised (the models do it); this module only imports torch (Hub remote code).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .clipzoo_losses__checks import check_embeddings, check_positive_mask, check_scalar
from .clipzoo_losses_distributed import gather_batch_sizes, gather_with_grad, world_info


def _logits(rows: torch.Tensor, columns: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    logits = scale * rows @ columns.t()
    return logits if bias is None else logits + bias


def _wrap(loss: torch.Tensor, output_dict: bool):
    return {"contrastive_loss": loss} if output_dict else loss


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    logit_bias: torch.Tensor | float | None = None,
    local_loss: bool = True,
    output_dict: bool = False,
    group=None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """CLIP's symmetric InfoNCE: the mean of the image→text and text→image cross-entropies, image i ↔ text i.

    `loss = (CE(logits, labels) + CE(logits.T, labels)) / 2` with `logits = exp(logit_scale) * I @ T.T (+ logit_bias)`
    over the *global* batch (all processes) and `labels = arange(global_batch)`.

    Args:
        image_embeds (`torch.Tensor` of shape `(batch, dim)`): this process's L2-normalised image embeddings.
        text_embeds (`torch.Tensor` of shape `(batch, dim)`): the paired, L2-normalised text embeddings.
        logit_scale (`torch.Tensor` scalar or `float`): the *log* temperature; multiplied in as `logit_scale.exp()`,
            not clamped (see `clamp_logit_scale_`).
        logit_bias (`torch.Tensor` scalar, *optional*): added to every logit. It cancels in a softmax (its gradient is
            0); accepted so that a model with a bias can pass the same logits it returns.
        local_loss (`bool`, defaults to `True`): in multi-process runs, compute only this process's rows (local
            images against all texts and local texts against all images; labels offset by the rows of lower ranks)
            instead of the full global matrix on every rank. Same loss and gradients, less memory.
        output_dict (`bool`, defaults to `False`): return `{"contrastive_loss": loss}`.
        group: the process group to gather over (default: the world).

    Returns:
        The scalar loss. In multi-process runs each rank returns its share, such that the mean over ranks is the
        global loss (with equal batch sizes and `local_loss=True` that is the mean over the local rows).
    """
    fn = "clip_loss"
    check_embeddings(image_embeds, text_embeds, paired=True, fn=fn)
    scale = check_scalar(logit_scale, "logit_scale", fn, image_embeds).exp()
    bias = None if logit_bias is None else check_scalar(logit_bias, "logit_bias", fn, image_embeds)

    rank, world_size = world_info(group)
    batch = image_embeds.shape[0]
    if world_size == 1:
        logits = _logits(image_embeds, text_embeds, scale, bias)
        labels = torch.arange(batch, device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        return _wrap(loss, output_dict)

    sizes = gather_batch_sizes(batch, device=image_embeds.device, group=group)
    all_images = gather_with_grad(image_embeds, sizes=sizes, group=group)
    all_texts = gather_with_grad(text_embeds, sizes=sizes, group=group)
    total = sum(sizes)
    if local_loss:
        # Local rows against all columns; the positive of local row i is global column offset + i.
        labels = torch.arange(batch, device=image_embeds.device) + sum(sizes[:rank])
        loss_sum = F.cross_entropy(_logits(image_embeds, all_texts, scale, bias), labels, reduction="sum")
        loss_sum = loss_sum + F.cross_entropy(_logits(text_embeds, all_images, scale, bias), labels, reduction="sum")
        # sum over ranks of loss_sum / (2 * total) is the global loss; DDP averages, hence the factor world_size.
        loss = loss_sum * (world_size / (2 * total))
    else:
        logits = _logits(all_images, all_texts, scale, bias)
        labels = torch.arange(total, device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    return _wrap(loss, output_dict)


def multi_positive_contrastive_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    positive_mask: torch.Tensor,
    *,
    logit_bias: torch.Tensor | float | None = None,
    local_loss: bool = True,
    output_dict: bool = False,
    group=None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """InfoNCE with soft targets, for images with several positive texts (and texts with several positive images).

    With `P = positive_mask` (global `(num_images, num_texts)`, all processes' rows and columns in rank order) and
    `logits = exp(logit_scale) * I @ T.T (+ logit_bias)`:

    - image→text: for image i, cross-entropy between `softmax(logits[i, :])` and the row-normalised target
      `P[i, :] / sum_j P[i, j]`;
    - text→image: for text j, cross-entropy between `softmax(logits[:, j])` and the column-normalised target
      `P[:, j] / sum_i P[i, j]`;
    - `loss = (mean over images of the image→text terms + mean over texts of the text→image terms) / 2`.

    Each image and each text weighs the same, whatever its number of positives. With `P = eye` this is `clip_loss`.
    Images and texts may differ in number (e.g. B images × B·(K+1) captions, DreamLIP); each rank passes its own
    images and texts and the *same* global mask (build it from gathered ids with `gather_no_grad`).

    Args:
        image_embeds (`torch.Tensor` of shape `(num_local_images, dim)`): L2-normalised image embeddings.
        text_embeds (`torch.Tensor` of shape `(num_local_texts, dim)`): L2-normalised text embeddings.
        logit_scale (`torch.Tensor` scalar or `float`): the *log* temperature (exponentiated, not clamped).
        positive_mask (`torch.Tensor` of shape `(num_images, num_texts)`, bool or float): global positives; floats
            are non-negative weights (normalised per row / column). Every image and every text needs at least one
            positive, or a `ValueError` is raised.
        logit_bias, local_loss, output_dict, group: as in `clip_loss`.
    """
    fn = "multi_positive_contrastive_loss"
    check_embeddings(image_embeds, text_embeds, paired=False, fn=fn)
    scale = check_scalar(logit_scale, "logit_scale", fn, image_embeds).exp()
    bias = None if logit_bias is None else check_scalar(logit_bias, "logit_bias", fn, image_embeds)

    rank, world_size = world_info(group)
    device = image_embeds.device
    image_sizes = gather_batch_sizes(image_embeds.shape[0], device=device, group=group)
    text_sizes = gather_batch_sizes(text_embeds.shape[0], device=device, group=group)
    num_images, num_texts = sum(image_sizes), sum(text_sizes)
    mask = check_positive_mask(positive_mask, (num_images, num_texts), fn, binary=False)
    # Normalise the targets in at least float32 (and in float64 for float64 embeddings), whatever the mask's dtype.
    mask = mask.to(device=device, dtype=torch.promote_types(image_embeds.dtype, torch.float32))
    row_sums, column_sums = mask.sum(dim=1), mask.sum(dim=0)
    if bool((row_sums <= 0).any()):
        missing = torch.nonzero(row_sums <= 0).flatten()[:10].tolist()
        raise ValueError(f"{fn}: every image needs at least one positive text; images {missing} have none.")
    if bool((column_sums <= 0).any()):
        missing = torch.nonzero(column_sums <= 0).flatten()[:10].tolist()
        raise ValueError(f"{fn}: every text needs at least one positive image; texts {missing} have none.")
    image_to_text_targets = mask / row_sums[:, None]
    text_to_image_targets = (mask / column_sums[None, :]).t()

    all_images = gather_with_grad(image_embeds, sizes=image_sizes, group=group)
    all_texts = gather_with_grad(text_embeds, sizes=text_sizes, group=group)
    if world_size == 1 or not local_loss:
        logits = _logits(all_images, all_texts, scale, bias)
        image_to_text = F.cross_entropy(logits, image_to_text_targets.to(logits.dtype), reduction="sum")
        text_to_image = F.cross_entropy(logits.t(), text_to_image_targets.to(logits.dtype), reduction="sum")
        loss = (image_to_text / num_images + text_to_image / num_texts) / 2
        return _wrap(loss, output_dict)

    image_offset, text_offset = sum(image_sizes[:rank]), sum(text_sizes[:rank])
    image_rows = slice(image_offset, image_offset + image_embeds.shape[0])
    text_rows = slice(text_offset, text_offset + text_embeds.shape[0])
    image_logits = _logits(image_embeds, all_texts, scale, bias)
    text_logits = _logits(text_embeds, all_images, scale, bias)
    image_to_text = F.cross_entropy(
        image_logits, image_to_text_targets[image_rows].to(image_logits.dtype), reduction="sum"
    )
    text_to_image = F.cross_entropy(
        text_logits, text_to_image_targets[text_rows].to(text_logits.dtype), reduction="sum"
    )
    # As in `clip_loss`: the mean over ranks of these shares is the global loss.
    loss = world_size * (image_to_text / num_images + text_to_image / num_texts) / 2
    return _wrap(loss, output_dict)


@torch.no_grad()
def clamp_logit_scale_(logit_scale: torch.Tensor, max_value: float = math.log(100), min_value: float = 0.0) -> None:
    """Clamp the learnable log temperature in place, as open_clip does after every optimiser step.

    CLIP (Radford et al. 2021, §2.5) caps the temperature at 100 so training stays stable: `ln(100) ≈ 4.605`.
    Call it on the parameter (e.g. `clamp_logit_scale_(unwrap_model(model).logit_scale)`) after `optimizer.step()`.
    """
    logit_scale.clamp_(min_value, max_value)


class ClipLoss(nn.Module):
    """`nn.Module` form of `clip_loss` (open_clip-style), holding the distributed options."""

    def __init__(self, local_loss: bool = True, output_dict: bool = False):
        super().__init__()
        self.local_loss = local_loss
        self.output_dict = output_dict

    def forward(self, image_embeds, text_embeds, logit_scale, logit_bias=None):
        return clip_loss(
            image_embeds,
            text_embeds,
            logit_scale,
            logit_bias=logit_bias,
            local_loss=self.local_loss,
            output_dict=self.output_dict,
        )


__all__ = ["ClipLoss", "clamp_logit_scale_", "clip_loss", "multi_positive_contrastive_loss"]
