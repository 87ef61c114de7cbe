"""DreamLIP's two objectives for images with 1 + K captions: the multi-caption contrastive loss and the
subcaption-specific grouping loss (Zheng et al., ECCV 2024, arXiv 2403.17007, §3.2-3.3).

Layout: every image of the batch brings the same number `S = 1 + K` of caption slots (slot 0 the raw caption, then K
sampled subcaptions), so texts come as `(batch, S, dim)`.

- `multi_caption_contrastive_loss` (MPCL). `mode="per_slot"` is the released code's `CLIP_loss + (De)CLIP_loss`: for
  every slot s, CLIP's symmetric InfoNCE between all images and the slot-s captions of all images, averaged over the S
  slots (each subcaption is a positive of its image; the negatives are the same-slot captions of the other images).
  `mode="soft_target"` instead uses `multi_positive_contrastive_loss`: each image against *all* B·S captions with its
  own S captions as (soft) positives. The text→image half is the same in both modes.
- `subcaption_grouping_loss` (SGL). For image i with patch embeddings `V_i (M, dim)` and caption `t_is`, the
  similarities `t_is · V_ip` are min-max normalised over the M patches, entries below a threshold σ are zeroed, the
  rest renormalised to weights `w_isp` summing to 1, and the *grouped* visual embedding `v_is = normalize(Σ_p w_isp
  V_ip)` is contrasted with `t_is`. `negatives="batch"` (the released code) contrasts all B·S (caption, group) pairs
  of the global batch with CLIP's symmetric InfoNCE; `negatives="image"` (the paper's formula) only the S pairs of the
  same image.
- `multi_caption_circle_loss`: the released code's optional `use_multipos_loss` term (`I2mT_loss`), a pair-wise
  circle loss (Sun et al., CVPR 2020) from every image to all B·S captions, its own S captions the positives.

Distributed: both losses follow the package's invariant (N processes × b images give, under DDP's gradient averaging,
the loss and gradients of one process on the N·b images). The grouping is per image, so the patch tokens are never
gathered (the released code gathers all `(B, M, C)` patch tokens to every GPU); only the grouped `(b·S, dim)`
embeddings and the captions are. Only torch is imported (bundled into Hub remote code).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_scalar
from .contrastive import clip_loss, multi_positive_contrastive_loss
from .distributed import gather_batch_sizes, gather_with_grad, world_info
from .positives import gather_text_owner, owner_positive_mask

CONTRASTIVE_MODES = ("per_slot", "soft_target")
GROUPING_NORMS = ("minmax", "softmax")
GROUPING_NEGATIVES = ("batch", "image")


def _check_slots(image_embeds: torch.Tensor, text_embeds: torch.Tensor, fn: str) -> None:
    if not isinstance(image_embeds, torch.Tensor) or image_embeds.ndim != 2:
        shape = tuple(image_embeds.shape) if isinstance(image_embeds, torch.Tensor) else type(image_embeds).__name__
        raise ValueError(f"{fn}: `image_embeds` must have shape (batch, dim), got {shape}.")
    if not isinstance(text_embeds, torch.Tensor) or text_embeds.ndim != 3:
        shape = tuple(text_embeds.shape) if isinstance(text_embeds, torch.Tensor) else type(text_embeds).__name__
        raise ValueError(
            f"{fn}: `text_embeds` must have shape (batch, 1 + K caption slots, dim), got {shape}. Flat "
            "(num_texts, dim) captions must be reshaped image by image first."
        )
    if not image_embeds.is_floating_point() or not text_embeds.is_floating_point():
        raise ValueError(f"{fn}: embeddings must be floating point, got {image_embeds.dtype} / {text_embeds.dtype}.")
    if image_embeds.shape[0] == 0 or text_embeds.shape[1] == 0:
        raise ValueError(
            f"{fn}: need at least one image and one caption slot, got image_embeds {tuple(image_embeds.shape)} and "
            f"text_embeds {tuple(text_embeds.shape)}."
        )
    if text_embeds.shape[0] != image_embeds.shape[0] or text_embeds.shape[2] != image_embeds.shape[1]:
        raise ValueError(
            f"{fn}: `text_embeds` (batch, slots, dim) must match `image_embeds` (batch, dim) in batch and dim, got "
            f"{tuple(text_embeds.shape)} and {tuple(image_embeds.shape)}."
        )


def multi_caption_contrastive_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    mode: str = "per_slot",
    local_loss: bool = True,
    group=None,
) -> torch.Tensor:
    """DreamLIP's multi-positive contrastive loss (MPCL) over the 1 + K caption slots of every image.

    With `scale = exp(logit_scale)`, global images `I (B, dim)` and captions `T (B, S, dim)` (all processes):

    - `mode="per_slot"` (released code): `L = 1/S Σ_s [CE(scale·I·T_sᵀ, arange) + CE(scale·T_s·Iᵀ, arange)] / 2`,
      CE the mean cross-entropy over the B rows, `T_s = T[:, s]`.
    - `mode="soft_target"`: `multi_positive_contrastive_loss(I, T.flatten(0, 1), logit_scale, P)` with
      `P[i, j] = 1` when caption j belongs to image i (image i against all B·S captions, its S captions as uniform
      soft targets; each caption against all images).

    Args:
        image_embeds (`torch.Tensor` of shape `(batch, dim)`): this process's L2-normalised image embeddings.
        text_embeds (`torch.Tensor` of shape `(batch, S, dim)`): the L2-normalised embeddings of every image's S
            caption slots (raw caption first).
        logit_scale (`torch.Tensor` scalar or `float`): the *log* temperature (exponentiated here, not clamped).
        mode (`str`, defaults to `"per_slot"`): see above.
        local_loss (`bool`, defaults to `True`): compute only this process's rows against all gathered columns
            (same loss and gradients as the full matrix, less memory).
        group: the process group (default: the world).
    """
    fn = "multi_caption_contrastive_loss"
    if mode not in CONTRASTIVE_MODES:
        raise ValueError(f"{fn}: `mode` must be one of {CONTRASTIVE_MODES}, got {mode!r}.")
    _check_slots(image_embeds, text_embeds, fn)
    batch, num_slots, dim = text_embeds.shape

    if mode == "soft_target":
        owner = torch.arange(batch, device=image_embeds.device).repeat_interleave(num_slots)
        global_owner = gather_text_owner(owner, batch, group=group)
        num_images = sum(gather_batch_sizes(batch, device=image_embeds.device, group=group))
        return multi_positive_contrastive_loss(
            image_embeds,
            text_embeds.reshape(batch * num_slots, dim),
            logit_scale,
            owner_positive_mask(global_owner, num_images),
            local_loss=local_loss,
            group=group,
        )

    scale = check_scalar(logit_scale, "logit_scale", fn, image_embeds).exp()
    rank, world_size = world_info(group)
    sizes = gather_batch_sizes(batch, device=image_embeds.device, group=group)
    total = sum(sizes)
    # One gather per tensor: the slots travel together as (b, S·dim) rows.
    all_images = gather_with_grad(image_embeds, sizes=sizes, group=group)
    all_texts = gather_with_grad(text_embeds.reshape(batch, num_slots * dim), sizes=sizes, group=group)
    all_texts = all_texts.reshape(total, num_slots, dim)

    if world_size == 1 or not local_loss:
        # logits[s, i, j] = scale * <image i, slot-s caption of image j>
        logits = scale * torch.einsum("id,jsd->sij", all_images, all_texts)
        labels = torch.arange(total, device=logits.device).repeat(num_slots)
        image_to_text = F.cross_entropy(logits.reshape(num_slots * total, total), labels)
        text_to_image = F.cross_entropy(logits.transpose(1, 2).reshape(num_slots * total, total), labels)
        return (image_to_text + text_to_image) / 2

    # Local rows only: local images against every slot-s caption, local slot-s captions against every image.
    offset = sum(sizes[:rank])
    labels = (torch.arange(batch, device=image_embeds.device) + offset).repeat(num_slots)
    image_logits = scale * torch.einsum("id,jsd->sij", image_embeds, all_texts)  # (S, b, B)
    text_logits = scale * torch.einsum("isd,jd->sij", text_embeds, all_images)  # (S, b, B)
    loss_sum = F.cross_entropy(image_logits.reshape(num_slots * batch, total), labels, reduction="sum")
    loss_sum = loss_sum + F.cross_entropy(text_logits.reshape(num_slots * batch, total), labels, reduction="sum")
    # The mean over ranks of these shares is the global loss (see `clip_loss`).
    return loss_sum * (world_size / (2 * num_slots * total))


def _circle_loss_per_row(
    similarity: torch.Tensor, positive: torch.Tensor, gamma: float, margin: float
) -> torch.Tensor:
    """Pair-wise circle loss of every row of `similarity` (cosines) with a bool `positive` mask of the same shape."""
    detached = similarity.detach()
    # Self-paced weights, without gradient (released code: `.detach()`): a pair far from its optimum weighs more.
    positive_weight = (1 + margin - detached).clamp_min(0)
    negative_weight = (detached + margin).clamp_min(0)
    positive_logits = -gamma * positive_weight * (similarity - (1 - margin))
    negative_logits = gamma * negative_weight * (similarity - margin)
    # A finite fill rather than -inf: a row without negatives (a global batch of one image) then gives a loss of 0
    # with a zero gradient instead of NaN, as the released code's additive -1e8 mask does.
    excluded = torch.finfo(similarity.dtype).min / 4
    positive_term = torch.where(positive, positive_logits, excluded).logsumexp(dim=1)
    negative_term = torch.where(positive, excluded, negative_logits).logsumexp(dim=1)
    return F.softplus(positive_term + negative_term)


def multi_caption_circle_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    *,
    gamma: float = 32.0,
    margin: float = 0.25,
    local_loss: bool = True,
    group=None,
) -> torch.Tensor:
    """The released code's `use_multipos_loss` term (`I2mT_loss`): image → multiple texts, pair-wise circle loss.

    For image i of the global batch, with cosine similarities `s_j = <I_i, T_j>` (no temperature) to all B·S
    captions `T` of the global batch, its own S captions the positives `P_i` and all other captions the negatives
    `N_i`, and the self-paced weights `α⁺_j = max(0, 1 + m − s_j)`, `α⁻_j = max(0, s_j + m)` (without gradient):

        L_i = softplus( logsumexp_{j∈P_i} −γ·α⁺_j·(s_j − (1 − m)) + logsumexp_{j∈N_i} γ·α⁻_j·(s_j − m) ),
        L = mean_i L_i.

    Only the image→text direction (the released text→image `T2mI_loss` is commented out). The released code adds
    `L / 10` to its total loss; `DreamLIPConfig.circle_loss_weight = 0.1` reproduces that. The loss does not depend on
    the order of the captions (the released code flattens them slot-major, this package image-major).

    Args:
        image_embeds (`torch.Tensor` of shape `(batch, dim)`): this process's L2-normalised image embeddings.
        text_embeds (`torch.Tensor` of shape `(batch, S, dim)`): the L2-normalised embeddings of every image's S
            caption slots.
        gamma (`float`, defaults to 32): the scale γ (released `--gamma 32`). Must be > 0.
        margin (`float`, defaults to 0.25): the relaxation margin m (released `--margin 0.25`).
        local_loss (`bool`, defaults to `True`): compute only this process's images against all gathered captions
            (same loss and gradients as every rank computing all images, less memory).
        group: the process group (default: the world).
    """
    fn = "multi_caption_circle_loss"
    _check_slots(image_embeds, text_embeds, fn)
    if not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or not gamma > 0:
        raise ValueError(f"{fn}: `gamma` must be a finite number > 0, got {gamma!r}.")
    if not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise ValueError(f"{fn}: `margin` must be a finite number, got {margin!r}.")
    batch, num_slots, dim = text_embeds.shape
    rank, world_size = world_info(group)
    sizes = gather_batch_sizes(batch, device=image_embeds.device, group=group)
    total = sum(sizes)
    all_texts = gather_with_grad(text_embeds.reshape(batch, num_slots * dim), sizes=sizes, group=group)
    all_texts = all_texts.reshape(total * num_slots, dim)
    local = world_size > 1 and local_loss
    rows = image_embeds if local else gather_with_grad(image_embeds, sizes=sizes, group=group)
    first_image = sum(sizes[:rank]) if local else 0
    # Cosines near ±1 decide the weights: at least float32 (bf16 autocast), float64 stays float64.
    similarity = rows @ all_texts.t()
    similarity = similarity.to(torch.promote_types(similarity.dtype, torch.float32))
    owner = torch.arange(total, device=rows.device).repeat_interleave(num_slots)
    positive = (torch.arange(rows.shape[0], device=rows.device) + first_image)[:, None] == owner[None, :]
    per_image = _circle_loss_per_row(similarity, positive, float(gamma), float(margin))
    if not local:
        return per_image.mean()
    # The mean over ranks of these shares is the mean over the global batch (see `clip_loss`).
    return per_image.sum() * (world_size / total)


def subcaption_grouping_weights(
    text_embeds: torch.Tensor,
    patch_embeds: torch.Tensor,
    *,
    norm: str = "minmax",
    threshold: float = 0.0,
) -> torch.Tensor:
    """The weights `w (batch, S, M)` with which each caption pools its image's patches (SGL, DreamLIP §3.3).

    `sim[i, s, p] = <t_is, V_ip>` on L2-normalised embeddings; per (image, caption), over the M patches:
    `norm="minmax"`: `(sim - min) / (max - min + 1e-10)`; `norm="softmax"`: `softmax(sim)`. Entries below
    `threshold` (σ; a negative value means `1 / M`, as in the released code) are set to 0 and the rest renormalised to
    sum to 1. Where nothing is left (all patches equally similar, or σ above every entry) the weights fall back to the
    uniform `1 / M` (mean pooling) instead of the released code's division by zero. Gradients flow through the
    weights, as in the released code.
    """
    fn = "subcaption_grouping_weights"
    if norm not in GROUPING_NORMS:
        raise ValueError(f"{fn}: `norm` must be one of {GROUPING_NORMS}, got {norm!r}.")
    if not isinstance(threshold, (int, float)) or not threshold <= 1.0:
        raise ValueError(f"{fn}: `threshold` must be a number <= 1 (negative for 1/num_patches), got {threshold!r}.")
    if text_embeds.ndim != 3 or patch_embeds.ndim != 3:
        raise ValueError(
            f"{fn}: expected text_embeds (batch, S, dim) and patch_embeds (batch, num_patches, dim), got "
            f"{tuple(text_embeds.shape)} and {tuple(patch_embeds.shape)}."
        )
    if text_embeds.shape[0] != patch_embeds.shape[0] or text_embeds.shape[2] != patch_embeds.shape[2]:
        raise ValueError(
            f"{fn}: text_embeds {tuple(text_embeds.shape)} and patch_embeds {tuple(patch_embeds.shape)} must agree in "
            "batch size and dim (project the patch tokens into the joint space first)."
        )
    if patch_embeds.shape[1] == 0:
        raise ValueError(f"{fn}: `patch_embeds` has no patches.")
    num_patches = patch_embeds.shape[1]
    similarity = torch.einsum("bsd,bpd->bsp", F.normalize(text_embeds, dim=-1), F.normalize(patch_embeds, dim=-1))
    # Min-max of near-equal values needs at least float32 (bf16 autocast); float64 stays float64.
    similarity = similarity.to(torch.promote_types(similarity.dtype, torch.float32))
    if norm == "minmax":
        low = similarity.min(dim=-1, keepdim=True).values
        high = similarity.max(dim=-1, keepdim=True).values
        normalised = (similarity - low) / (high - low + 1e-10)
    else:
        normalised = similarity.softmax(dim=-1)
    sigma = 1.0 / num_patches if threshold < 0 else float(threshold)
    kept = torch.where(normalised < sigma, torch.zeros_like(normalised), normalised)
    total = kept.sum(dim=-1, keepdim=True)
    empty = total <= 0
    uniform = torch.full_like(kept, 1.0 / num_patches)
    return torch.where(empty, uniform, kept / torch.where(empty, torch.ones_like(total), total))


def subcaption_grouping_loss(
    text_embeds: torch.Tensor,
    patch_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    norm: str = "minmax",
    threshold: float = 0.0,
    negatives: str = "batch",
    local_loss: bool = True,
    return_grouped: bool = False,
    group=None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """DreamLIP's subcaption-specific grouping loss (SGL).

    Grouped embeddings `g_is = normalize(Σ_p w_isp V_ip)` with the weights of `subcaption_grouping_weights`
    (V L2-normalised), then, with `scale = exp(logit_scale)` (the *local* temperature):

    - `negatives="batch"` (released code): `clip_loss` between the B·S grouped embeddings and the B·S captions of
      the global batch, pair (i, s) ↔ (i, s): `[CE(scale·G·Tᵀ) + CE(scale·T·Gᵀ)] / 2` over all pairs.
    - `negatives="image"` (the paper's formula): for every image the S×S matrix `scale·G_i·T_iᵀ`, symmetric
      cross-entropy with identity labels, averaged over the captions of all images of the global batch. Needs S ≥ 2
      (with one caption there is nothing to contrast).

    Args:
        text_embeds (`torch.Tensor` of shape `(batch, S, dim)`): caption embeddings (normalised here).
        patch_embeds (`torch.Tensor` of shape `(batch, num_patches, dim)`): patch tokens in the joint space.
        logit_scale (`torch.Tensor` scalar or `float`): the *log* temperature of this loss.
        norm / threshold: see `subcaption_grouping_weights`.
        negatives (`str`, defaults to `"batch"`): see above.
        local_loss / group: as in `clip_loss` (used with `negatives="batch"`).
        return_grouped (`bool`): also return the grouped embeddings `(batch, S, dim)`.
    """
    fn = "subcaption_grouping_loss"
    if negatives not in GROUPING_NEGATIVES:
        raise ValueError(f"{fn}: `negatives` must be one of {GROUPING_NEGATIVES}, got {negatives!r}.")
    weights = subcaption_grouping_weights(text_embeds, patch_embeds, norm=norm, threshold=threshold)
    batch, num_slots, dim = text_embeds.shape
    if negatives == "image" and num_slots < 2:
        raise ValueError(f"{fn}: `negatives='image'` contrasts the captions of one image and needs S >= 2, got S=1.")
    texts = F.normalize(text_embeds, dim=-1)
    patches = F.normalize(patch_embeds, dim=-1)
    grouped = F.normalize(torch.einsum("bsp,bpd->bsd", weights.to(patches.dtype), patches), dim=-1)

    if negatives == "batch":
        loss = clip_loss(
            grouped.reshape(batch * num_slots, dim),
            texts.reshape(batch * num_slots, dim),
            logit_scale,
            local_loss=local_loss,
            group=group,
        )
    else:
        scale = check_scalar(logit_scale, "logit_scale", fn, texts).exp()
        logits = scale * torch.einsum("bsd,btd->bst", grouped, texts)  # group s of image b vs caption t of image b
        labels = torch.arange(num_slots, device=logits.device).repeat(batch)
        loss_sum = F.cross_entropy(logits.reshape(batch * num_slots, num_slots), labels, reduction="sum")
        loss_sum = loss_sum + F.cross_entropy(
            logits.transpose(1, 2).reshape(batch * num_slots, num_slots), labels, reduction="sum"
        )
        # Each rank's share of the mean over the captions of the global batch (DDP averages over ranks).
        _, world_size = world_info(group)
        total = sum(gather_batch_sizes(batch, device=texts.device, group=group))
        loss = loss_sum * (world_size / (2 * num_slots * total))
    return (loss, grouped) if return_grouped else loss


__all__ = [
    "CONTRASTIVE_MODES",
    "GROUPING_NEGATIVES",
    "GROUPING_NORMS",
    "multi_caption_circle_loss",
    "multi_caption_contrastive_loss",
    "subcaption_grouping_loss",
    "subcaption_grouping_weights",
]
