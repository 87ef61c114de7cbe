"""Contrastive losses shared by every method, correct under multi-process training.

- `clip_loss`: CLIP's symmetric InfoNCE (open_clip semantics: `local_loss`, rank-offset labels, `output_dict`).
- `multi_positive_contrastive_loss`: InfoNCE with soft targets from a global positive mask (DreamLIP-style).
- `sigmoid_loss`: SigLIP's sigmoid loss with an arbitrary positive mask (FFF) and an O(B·chunk)-memory chunked mode.
- `owner_positive_mask` / `gather_text_owner` / `mine_positives`: global positive masks for several texts per image
  and FFF's mined false negatives, identical on every rank.
- `gather_with_grad` / `gather_no_grad` / `world_info`: the distributed plumbing, no-ops with one process.

The invariant, tested with two gloo processes: N processes × local batch b, with DDP's gradient averaging, give the
same loss and gradients as one process on the concatenated batch. Only torch is imported (Hub remote code).
"""

from .contrastive import ClipLoss, clamp_logit_scale_, clip_loss, multi_positive_contrastive_loss
from .distributed import gather_batch_sizes, gather_no_grad, gather_with_grad, world_info
from .positives import gather_text_owner, mine_positives, mined_positive_loss, owner_positive_mask
from .sigmoid import SigLipLoss, sigmoid_loss

__all__ = [
    "ClipLoss",
    "SigLipLoss",
    "clamp_logit_scale_",
    "clip_loss",
    "gather_batch_sizes",
    "gather_no_grad",
    "gather_text_owner",
    "gather_with_grad",
    "mine_positives",
    "mined_positive_loss",
    "multi_positive_contrastive_loss",
    "owner_positive_mask",
    "sigmoid_loss",
    "world_info",
]
