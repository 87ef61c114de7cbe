"""DreamLIP's losses under the distributed invariant: cases, and the worker that runs them as one rank of a gloo group.

Imported by `test_distributed_grouping.py` (for the single-process reference) and, once per rank, by the 2-process
launch of `distributed_utils.py`.

Every process builds the same global problem (seeded): 5 images split 3 + 2 over the ranks, each with S = 3 caption
slots and M = 4 patches, and a tiny "model" (three Linears for image, caption and patch embeddings, a global and a
local log temperature). A rank runs the loss on its rows, backpropagates, and averages loss and gradients over ranks
as DDP does; rank 0 writes the results as safetensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_clipzoo.losses import world_info
from hf_clipzoo.losses.grouping import (
    multi_caption_circle_loss,
    multi_caption_contrastive_loss,
    subcaption_grouping_loss,
)

IN_DIM, EMBED_DIM, NUM_SLOTS, NUM_PATCHES = 6, 4, 3, 4
IMAGE_SIZES = [3, 2]

CASES = (
    "mpcl_per_slot_local",
    "mpcl_per_slot_global",
    "mpcl_soft_target_local",
    "mpcl_soft_target_global",
    "sgl_batch_local",
    "sgl_batch_global",
    "sgl_image",
    "sgl_softmax_threshold",
    "circle_local",
    "circle_global",
)


class TinyTowers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(4321)
        self.image_proj = torch.nn.Linear(IN_DIM, EMBED_DIM)
        self.text_proj = torch.nn.Linear(IN_DIM, EMBED_DIM)
        self.patch_proj = torch.nn.Linear(IN_DIM, EMBED_DIM)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))
        self.logit_scale = torch.nn.Parameter(torch.tensor(1.5))
        self.logit_scale_local = torch.nn.Parameter(torch.tensor(1.0))


def global_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(99)
    total = sum(IMAGE_SIZES)
    images = torch.randn(total, IN_DIM, generator=generator)
    texts = torch.randn(total, NUM_SLOTS, IN_DIM, generator=generator)
    patches = torch.randn(total, NUM_PATCHES, IN_DIM, generator=generator)
    return images, texts, patches


def _loss(case: str, model: TinyTowers, images, texts, patches) -> torch.Tensor:
    image_embeds = F.normalize(model.image_proj(images), dim=-1)
    text_embeds = F.normalize(model.text_proj(texts), dim=-1)
    if case.startswith("mpcl_"):
        mode = "soft_target" if "soft_target" in case else "per_slot"
        return multi_caption_contrastive_loss(
            image_embeds, text_embeds, model.logit_scale, mode=mode, local_loss=case.endswith("_local")
        )
    if case.startswith("circle_"):
        return multi_caption_circle_loss(
            image_embeds, text_embeds, gamma=32.0, margin=0.25, local_loss=case.endswith("_local")
        )
    patch_embeds = model.patch_proj(patches)
    kwargs = dict(norm="minmax", threshold=0.0, negatives="batch", local_loss=case.endswith("_local"))
    if case == "sgl_image":
        kwargs.update(negatives="image")
    if case == "sgl_softmax_threshold":
        kwargs.update(norm="softmax", threshold=-1.0)
    # The image embeddings join in so that every case has a gradient for every parameter.
    return subcaption_grouping_loss(text_embeds, patch_embeds, model.logit_scale_local, **kwargs) + 0.0 * (
        image_embeds.sum() * model.logit_scale
    )


def run_case(case: str) -> dict[str, torch.Tensor]:
    """Loss and gradients on this process's rows, averaged over ranks as DDP does."""
    rank, world_size = world_info()
    images, texts, patches = global_inputs()
    if world_size > 1:
        start = sum(IMAGE_SIZES[:rank])
        rows = slice(start, start + IMAGE_SIZES[rank])
        images, texts, patches = images[rows], texts[rows], patches[rows]
    model = TinyTowers()
    loss = _loss(case, model, images, texts, patches)
    loss.backward()
    results = {"loss": loss.detach().clone()}
    for name, param in model.named_parameters():
        results[f"grad.{name}"] = param.grad.clone() if param.grad is not None else torch.zeros_like(param)
    if world_size > 1:
        for value in results.values():
            torch.distributed.all_reduce(value)  # DDP: sum, then divide by the world size
            value /= world_size
    return results
