"""Global positive masks for batches where an image has several texts, and on-the-fly mining of false negatives.

A batch with several captions per image (FFF's batch text augmentation, DreamLIP's 1+K caption slots) is described
by `text_owner`: for every text, the index of its image. Across processes, `gather_text_owner` turns each rank's
local owners into global image indices (rank order, as `gather_with_grad` orders rows), so every rank builds the
*same* global `(num_images, num_texts)` mask that `sigmoid_loss` / `multi_positive_contrastive_loss` expect.

`mine_positives` implements FFF's assignment matrix (Bulat et al. 2024, arXiv 2405.10286, §3): pairs (image i,
text j) whose image–text, image–image or text–text similarity passes a threshold become positives. The paper's exact
rule and thresholds are not public; the combination and the thresholds are arguments. Only torch is imported.
"""

from __future__ import annotations

import torch

from .contrastive import multi_positive_contrastive_loss
from .distributed import gather_batch_sizes, gather_no_grad, world_info
from .sigmoid import sigmoid_loss

COMBINATIONS = ("any", "all")
TEXT_TEXT_REFERENCES = ("first", "max", "mean")


def check_text_owner(text_owner: torch.Tensor, num_images: int, fn: str) -> torch.Tensor:
    """`text_owner` must be integers in `[0, num_images)` with every image owning at least one text."""
    if not isinstance(text_owner, torch.Tensor) or text_owner.ndim != 1 or text_owner.dtype.is_floating_point:
        raise ValueError(
            f"{fn}: `text_owner` must be a 1-D integer tensor (one image index per text), got {text_owner!r}."
        )
    if text_owner.numel() == 0:
        raise ValueError(f"{fn}: `text_owner` is empty; every image needs at least one text.")
    if int(text_owner.min()) < 0 or int(text_owner.max()) >= num_images:
        raise ValueError(
            f"{fn}: `text_owner` values must lie in [0, {num_images}) (the local image indices), got "
            f"[{int(text_owner.min())}, {int(text_owner.max())}]."
        )
    counts = torch.bincount(text_owner, minlength=num_images)
    if bool((counts == 0).any()):
        orphans = torch.nonzero(counts == 0).flatten()[:10].tolist()
        raise ValueError(f"{fn}: every image needs at least one text; images {orphans} have none in `text_owner`.")
    return text_owner.long()


def gather_text_owner(text_owner: torch.Tensor, num_local_images: int, group=None) -> torch.Tensor:
    """Global image index of every text of the global batch (all processes, rank order)."""
    check_text_owner(text_owner, num_local_images, "gather_text_owner")
    rank, _ = world_info(group)
    image_sizes = gather_batch_sizes(num_local_images, device=text_owner.device, group=group)
    return gather_no_grad(text_owner.long() + sum(image_sizes[:rank]), group=group)


def owner_positive_mask(text_owner: torch.Tensor, num_images: int) -> torch.Tensor:
    """`mask[i, j] = (text_owner[j] == i)`: every image's own texts are its positives."""
    return torch.arange(num_images, device=text_owner.device)[:, None] == text_owner[None, :]


def _check_threshold(name: str, value: float | None) -> None:
    if value is not None and not -1.0 <= value <= 1.0:
        raise ValueError(
            f"`{name}` is a cosine-similarity threshold and must lie in [-1, 1] (or be None), got {value}."
        )


@torch.no_grad()
def mine_positives(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_owner: torch.Tensor,
    *,
    image_text_threshold: float | None = None,
    image_image_threshold: float | None = None,
    text_text_threshold: float | None = None,
    combination: str = "any",
    text_text_reference: str = "first",
) -> torch.Tensor:
    """FFF's mined positives: a bool `(num_images, num_texts)` mask, *not* including each image's own texts.

    With L2-normalised features, for image i and text j (owned by image `o(j)`):
    - image–text: `S_it[i, j] = <x_i, t_j>`;
    - image–image: `S_ii[i, j] = <x_i, x_o(j)>` (the images behind the two captions look alike);
    - text–text: `S_tt[i, j] = <t_r(i), t_j>`, where `r(i)` is image i's reference caption: its first text
      (`"first"`, the raw alt-text in FFF's batch layout), or the max / mean over all of i's texts.
    Each condition with a threshold (None disables it) compares `S > threshold`; `combination="any"` ORs the enabled
    conditions (the rule `(S_ii > p2) or (S_tt > p3)` of the adaptation cited in the spec), `"all"` ANDs them. With
    `"first"` and only image–image / text–text conditions on a one-caption-per-image batch, the mask is symmetric.

    Args:
        image_features (`(num_images, dim)`), text_features (`(num_texts, dim)`): L2-normalised features of the
            *global* batch (gather them with `gather_no_grad`), from the model without gradient, a frozen teacher or
            precomputed embeddings.
        text_owner (`(num_texts,)` long): global image index of every text (`gather_text_owner`).
    """
    fn = "mine_positives"
    for name, value in (
        ("image_text_threshold", image_text_threshold),
        ("image_image_threshold", image_image_threshold),
        ("text_text_threshold", text_text_threshold),
    ):
        _check_threshold(name, value)
    if combination not in COMBINATIONS:
        raise ValueError(f"{fn}: `combination` must be one of {COMBINATIONS}, got {combination!r}.")
    if text_text_reference not in TEXT_TEXT_REFERENCES:
        raise ValueError(
            f"{fn}: `text_text_reference` must be one of {TEXT_TEXT_REFERENCES}, got {text_text_reference!r}."
        )
    if image_features.ndim != 2 or text_features.ndim != 2 or image_features.shape[1] != text_features.shape[1]:
        raise ValueError(
            f"{fn}: expected (num_images, dim) and (num_texts, dim) features, got {tuple(image_features.shape)} and "
            f"{tuple(text_features.shape)}."
        )
    num_images, num_texts = image_features.shape[0], text_features.shape[0]
    if text_owner.shape != (num_texts,):
        raise ValueError(f"{fn}: `text_owner` must have shape ({num_texts},), got {tuple(text_owner.shape)}.")
    text_owner = check_text_owner(text_owner, num_images, fn)
    image_features, text_features = image_features.float(), text_features.float()

    conditions = []
    if image_text_threshold is not None:
        conditions.append(image_features @ text_features.t() > image_text_threshold)
    if image_image_threshold is not None:
        conditions.append((image_features @ image_features.t())[:, text_owner] > image_image_threshold)
    if text_text_threshold is not None:
        text_similarity = text_features @ text_features.t()  # (num_texts, num_texts)
        if text_text_reference == "first":
            first = torch.full((num_images,), num_texts, dtype=torch.long, device=text_owner.device)
            first.scatter_reduce_(0, text_owner, torch.arange(num_texts, device=text_owner.device), reduce="amin")
            per_image = text_similarity[first]
        else:
            reduce = "amax" if text_text_reference == "max" else "mean"
            per_image = torch.zeros(num_images, num_texts, dtype=text_similarity.dtype, device=text_similarity.device)
            index = text_owner[:, None].expand(num_texts, num_texts)
            per_image.scatter_reduce_(0, index, text_similarity, reduce=reduce, include_self=False)
        conditions.append(per_image > text_text_threshold)
    if not conditions:
        return torch.zeros(num_images, num_texts, dtype=torch.bool, device=image_features.device)
    mined = conditions[0]
    for condition in conditions[1:]:
        mined = mined | condition if combination == "any" else mined & condition
    return mined & ~owner_positive_mask(text_owner, num_images)


def mined_positive_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_owner: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
    *,
    loss_type: str = "sigmoid",
    mine: bool = True,
    mining_features: tuple[torch.Tensor, torch.Tensor] | None = None,
    image_text_threshold: float | None = None,
    image_image_threshold: float | None = None,
    text_text_threshold: float | None = None,
    combination: str = "any",
    text_text_reference: str = "first",
    chunk_size: int | None = None,
    local_loss: bool = True,
    group=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FFF's objective: the loss over all (image, text) pairs of the global batch with the assignment matrix
    `M = own captions ∪ mined pairs` (every process builds the same `M` from gathered, gradient-free features).

    Args:
        image_embeds (`(num_local_images, dim)`), text_embeds (`(num_local_texts, dim)`): L2-normalised, with grad.
        text_owner (`(num_local_texts,)` long): local image index of every text.
        logit_scale / logit_bias: the learnable log temperature and bias.
        loss_type: `"sigmoid"` (`sigmoid_loss` with `M`) or `"softmax"` (`multi_positive_contrastive_loss`).
        mine: add mined positives (`mine_positives` with the thresholds); `False` keeps the own captions only.
        mining_features: `(image_features, text_features)` to mine with (a teacher's or precomputed, local rows);
            default: the embeddings themselves, detached.
        chunk_size / local_loss / group: passed to the loss.

    Returns:
        `(loss, M, number of mined pairs beyond the own captions)`; `M` and the count are global.
    """
    if loss_type not in ("sigmoid", "softmax"):
        raise ValueError(f"mined_positive_loss: `loss_type` must be 'sigmoid' or 'softmax', got {loss_type!r}.")
    text_owner = check_text_owner(text_owner, image_embeds.shape[0], "mined_positive_loss")
    if text_owner.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"mined_positive_loss: `text_owner` has {text_owner.shape[0]} entries for {text_embeds.shape[0]} texts."
        )
    global_owner = gather_text_owner(text_owner, image_embeds.shape[0], group=group)
    num_images = sum(gather_batch_sizes(image_embeds.shape[0], device=image_embeds.device, group=group))
    positives = owner_positive_mask(global_owner, num_images)
    num_mined = torch.zeros((), dtype=torch.long, device=image_embeds.device)
    if mine:
        image_features, text_features = mining_features or (image_embeds, text_embeds)
        mined = mine_positives(
            gather_no_grad(image_features.detach(), group=group),
            gather_no_grad(text_features.detach(), group=group),
            global_owner,
            image_text_threshold=image_text_threshold,
            image_image_threshold=image_image_threshold,
            text_text_threshold=text_text_threshold,
            combination=combination,
            text_text_reference=text_text_reference,
        )
        positives = positives | mined
        num_mined = mined.sum()
    if loss_type == "sigmoid":
        loss = sigmoid_loss(
            image_embeds,
            text_embeds,
            logit_scale,
            logit_bias,
            positive_mask=positives,
            chunk_size=chunk_size,
            group=group,
        )
    else:
        loss = multi_positive_contrastive_loss(
            image_embeds,
            text_embeds,
            logit_scale,
            positives,
            logit_bias=logit_bias,
            local_loss=local_loss,
            group=group,
        )
    return loss, positives, num_mined


__all__ = [
    "COMBINATIONS",
    "TEXT_TEXT_REFERENCES",
    "check_text_owner",
    "gather_text_owner",
    "mine_positives",
    "mined_positive_loss",
    "owner_positive_mask",
]
