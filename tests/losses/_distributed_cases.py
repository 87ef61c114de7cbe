"""The cases of the distributed-loss invariant, and the worker that runs them as one rank of a gloo group.

Imported by `test_distributed.py` (for the single-process reference) and, once per rank, by the 2-process launch of
`distributed_utils.py`.

Each case builds the same global problem on every process (seeded): a tiny "model" (two Linears producing the image
and text embeddings, a log temperature and a bias), global image/text inputs, per-rank batch sizes (uneven on
purpose in most cases) and, where relevant, a global positive mask with cross-rank positives. A rank runs the loss on
its rows, backpropagates, and averages loss and parameter gradients over ranks exactly as DDP does; rank 0 writes
the results as safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hf_clipzoo.losses import (
    clip_loss,
    gather_no_grad,
    gather_with_grad,
    mined_positive_loss,
    multi_positive_contrastive_loss,
    sigmoid_loss,
    world_info,
)

IN_DIM, EMBED_DIM = 6, 4


@dataclass
class Problem:
    image_inputs: torch.Tensor  # (num_images, IN_DIM), global
    text_inputs: torch.Tensor  # (num_texts, IN_DIM), global
    image_sizes: list[int]  # rows of each rank, in rank order
    text_sizes: list[int]
    positive_mask: torch.Tensor | None  # global (num_images, num_texts)
    text_owner: torch.Tensor | None = None  # global image index of every text (FFF cases)


class TinyTowers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(1234)
        self.image_proj = torch.nn.Linear(IN_DIM, EMBED_DIM)
        self.text_proj = torch.nn.Linear(IN_DIM, EMBED_DIM)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))
        self.logit_scale = torch.nn.Parameter(torch.tensor(1.5))
        self.logit_bias = torch.nn.Parameter(torch.tensor(-2.0))

    def forward(self, images, texts):
        return F.normalize(self.image_proj(images), dim=-1), F.normalize(self.text_proj(texts), dim=-1)


def _inputs(rows: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, IN_DIM, generator=torch.Generator().manual_seed(seed))


def _paired(sizes: list[int], seed: int) -> Problem:
    total = sum(sizes)
    return Problem(_inputs(total, seed), _inputs(total, seed + 1), sizes, sizes, None)


def _captions_mask(image_sizes: list[int], captions_per_image: int) -> torch.Tensor:
    """Texts are laid out rank by rank, `captions_per_image` consecutive texts per image; plus cross-rank positives."""
    num_images = sum(image_sizes)
    mask = torch.zeros(num_images, num_images * captions_per_image)
    for image in range(num_images):
        mask[image, image * captions_per_image : (image + 1) * captions_per_image] = 1.0
    # Image 0 (rank 0) is also a positive of the last image's captions (rank 1), e.g. a mined false negative.
    mask[0, -captions_per_image:] = 1.0
    mask[num_images - 1, 0] = 1.0
    return mask


def build_problem(case: str) -> Problem:
    if case in ("clip_local_even", "clip_global_even"):
        return _paired([3, 3], seed=1)
    if case in ("clip_local_uneven", "clip_global_uneven", "sigmoid_dense", "sigmoid_chunked"):
        return _paired([3, 2], seed=2)
    if case in ("multi_positive_local", "multi_positive_global"):
        image_sizes = [3, 2]
        mask = _captions_mask(image_sizes, captions_per_image=2)
        mask[1, 2] = 0.5  # a soft weight, to exercise the row/column normalisation
        return Problem(_inputs(5, 3), _inputs(10, 4), image_sizes, [6, 4], mask)
    if case in ("sigmoid_dense_mask", "sigmoid_chunked_mask"):
        image_sizes = [3, 2]
        mask = _captions_mask(image_sizes, captions_per_image=2).bool()
        return Problem(_inputs(5, 5), _inputs(10, 6), image_sizes, [6, 4], mask)
    if case.startswith("fff_"):
        # Two captions per image, laid out image by image. Cross-rank duplicates for the mining to find: image 3
        # (rank 1) is a copy of image 1 (rank 0), and the first caption of image 4 (rank 1) repeats image 0's.
        images, texts = _inputs(5, 7), _inputs(10, 8)
        images[3] = images[1]
        texts[8] = texts[0]
        owner = torch.arange(5).repeat_interleave(2)
        return Problem(images, texts, [3, 2], [6, 4], None, owner)
    raise ValueError(f"unknown case {case!r}")


CASES = (
    "clip_local_even",
    "clip_global_even",
    "clip_local_uneven",
    "clip_global_uneven",
    "multi_positive_local",
    "multi_positive_global",
    "sigmoid_dense",
    "sigmoid_chunked",
    "sigmoid_dense_mask",
    "sigmoid_chunked_mask",
    "fff_sigmoid_mined",
    "fff_softmax_mined",
)


def _loss(case: str, model: TinyTowers, images: torch.Tensor, texts: torch.Tensor, mask, owner=None):
    image_embeds, text_embeds = model(images, texts)
    if case.startswith("fff_"):
        loss, _, num_mined = mined_positive_loss(
            image_embeds, text_embeds, owner, model.logit_scale, model.logit_bias,
            loss_type="sigmoid" if "sigmoid" in case else "softmax",
            image_image_threshold=0.999, text_text_threshold=0.999, combination="any", text_text_reference="first",
        )  # fmt: skip
        return loss, num_mined
    if case.startswith("clip_"):
        return clip_loss(image_embeds, text_embeds, model.logit_scale, local_loss="local" in case)
    if case.startswith("multi_positive"):
        return multi_positive_contrastive_loss(
            image_embeds, text_embeds, model.logit_scale, mask, local_loss="local" in case
        )
    chunk_size = 2 if "chunked" in case else None
    return sigmoid_loss(
        image_embeds, text_embeds, model.logit_scale, model.logit_bias, positive_mask=mask, chunk_size=chunk_size
    )


def run_case(case: str) -> dict[str, torch.Tensor]:
    """Loss and parameter gradients on this process's rows, averaged over ranks as DDP does."""
    rank, world_size = world_info()
    problem = build_problem(case)
    if world_size == 1:
        images, texts = problem.image_inputs, problem.text_inputs
    else:
        image_start, text_start = sum(problem.image_sizes[:rank]), sum(problem.text_sizes[:rank])
        images = problem.image_inputs[image_start : image_start + problem.image_sizes[rank]]
        texts = problem.text_inputs[text_start : text_start + problem.text_sizes[rank]]
    owner = None
    if problem.text_owner is not None:  # local image indices of this rank's texts
        text_start = sum(problem.text_sizes[:rank]) if world_size > 1 else 0
        image_start = sum(problem.image_sizes[:rank]) if world_size > 1 else 0
        owner = problem.text_owner[text_start : text_start + texts.shape[0]] - image_start
    model = TinyTowers()
    loss = _loss(case, model, images, texts, problem.positive_mask, owner)
    extra = {}
    if isinstance(loss, tuple):
        loss, num_mined = loss
        extra["num_mined"] = num_mined.float()  # global, so equal on every rank and to the one-process count
    loss.backward()
    results = {"loss": loss.detach().clone(), **extra}
    for name, param in model.named_parameters():
        # The softmax losses do not use the bias: report a zero gradient so every case has the same keys.
        results[f"grad.{name}"] = param.grad.clone() if param.grad is not None else torch.zeros_like(param)
    if world_size > 1:
        for key, value in results.items():
            if key == "num_mined":
                continue
            torch.distributed.all_reduce(value)  # DDP: sum, then divide by the world size
            value /= world_size
    return results


def before_cases() -> None:
    """`gather_with_grad` / `gather_no_grad` with uneven sizes: values in rank order, summed gradients."""
    rank, world_size = world_info()
    rows = 3 - rank  # 3 rows on rank 0, 2 on rank 1
    local = torch.arange(rows * 2, dtype=torch.float32).reshape(rows, 2) + 100 * rank
    local.requires_grad_(True)
    gathered = gather_with_grad(local)
    expected = torch.cat(
        [torch.arange((3 - r) * 2, dtype=torch.float32).reshape(3 - r, 2) + 100 * r for r in range(2)]
    )
    torch.testing.assert_close(gathered, expected)
    # Rank r weighs row k by (r + 1) * (k + 1): each rank's rows receive the sum of both ranks' weights.
    weights = (rank + 1) * torch.arange(1, gathered.shape[0] + 1, dtype=torch.float32)[:, None]
    (gathered * weights).sum().backward()
    offset = 0 if rank == 0 else 3
    expected_grad = 3 * torch.arange(offset + 1, offset + rows + 1, dtype=torch.float32)[:, None].expand(rows, 2)
    torch.testing.assert_close(local.grad, expected_grad)
    ids = gather_no_grad(torch.arange(rows) + 10 * rank)
    assert ids.tolist() == [0, 1, 2, 10, 11], ids
    flags = gather_no_grad(torch.tensor([rank == 0] * rows))
    assert flags.tolist() == [True, True, True, False, False], flags
    assert world_size == 2
