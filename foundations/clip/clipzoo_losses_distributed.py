"""Gathering tensors across processes for contrastive losses, with and without autograd.

Contrastive losses need every process's embeddings as negatives. Gathering them with `accelerator.gather` or
`torch.distributed.all_gather` cuts the autograd graph: the embeddings that came from other processes receive no
gradient, and the model silently learns from a fraction of its negatives. `gather_with_grad` keeps the graph: its
backward hands each process the *sum* over all processes of the gradients of its own rows (a reduce-scatter).

Gradient convention (what the losses in this package rely on): rank `r` computes its loss `L_r` from gathered
tensors, DDP then *averages* the parameter gradients over the `N` ranks. The gradient the optimiser sees is therefore
`(1 / N) * d(sum_r L_r) / d(theta)`, so a loss is distributed-correct when `mean_r L_r` equals the loss of one process
on the concatenated batch. The losses here are written to satisfy exactly that, with uneven per-rank batch sizes too.

Everything here is a no-op with one process, or when `torch.distributed` is unavailable or not initialised, so the
same code runs in a notebook, in `Trainer`-style single-GPU training and under `accelerate launch`.

Only `torch` is imported: this module is bundled into Hub remote-code folders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_info(group=None) -> tuple[int, int]:
    """Return `(rank, world_size)` of this process in `group` (the default group when `None`).

    Returns `(0, 1)` when `torch.distributed` is unavailable or not initialised, so callers never need to branch.
    """
    if not _is_distributed():
        return 0, 1
    return torch.distributed.get_rank(group), torch.distributed.get_world_size(group)


def gather_batch_sizes(local_size: int, *, device: torch.device | str = "cpu", group=None) -> list[int]:
    """Return the dim-0 size of every process's local batch, in rank order (`[local_size]` with one process).

    The last batch of an epoch is often smaller on some ranks; the gathers below use these sizes to pad and unpad.
    `device` must be a device the backend can communicate on (CUDA for NCCL, CPU for gloo): pass the embeddings'.
    """
    _, world_size = world_info(group)
    if world_size == 1:
        return [int(local_size)]
    size = torch.tensor([int(local_size)], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    torch.distributed.all_gather(sizes, size, group=group)
    return [int(s.item()) for s in sizes]


def _check_sizes(tensor: torch.Tensor, sizes: list[int], group) -> None:
    rank, world_size = world_info(group)
    if len(sizes) != world_size or sizes[rank] != tensor.shape[0]:
        raise ValueError(
            f"`sizes` must list the dim-0 size of every rank's tensor ({world_size} entries, entry {rank} == "
            f"{tensor.shape[0]} for this rank), got {sizes}."
        )


def _all_gather_autograd(tensor: torch.Tensor, group) -> torch.Tensor:
    """All-gather equal-sized tensors along dim 0 with a reduce-scatter (sum) backward."""
    # Imported lazily: some torch builds ship without distributed support, and importing this package must not fail
    # there (nothing is gathered with one process anyway).
    import torch.distributed._functional_collectives as funcol

    group = group if group is not None else torch.distributed.group.WORLD
    if hasattr(funcol, "all_gather_single_autograd"):  # current spelling
        gathered = funcol.all_gather_single_autograd(tensor.contiguous(), 0, group)
    elif hasattr(funcol, "all_gather_tensor_autograd"):  # its older, now deprecated name
        gathered = funcol.all_gather_tensor_autograd(tensor.contiguous(), 0, group)
    else:  # older torch: the (now deprecated) autograd-aware list all-gather
        import torch.distributed.nn.functional as dist_nn

        return torch.cat(dist_nn.all_gather(tensor.contiguous(), group=group), dim=0)
    # Functional collectives return an `AsyncCollectiveTensor`; waiting gives a plain tensor that keeps the graph.
    return gathered.wait() if hasattr(gathered, "wait") else gathered


def _pad_to(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    if tensor.shape[0] == rows:
        return tensor
    # F.pad pads the last dimension first: a zero pair for every trailing dim, then (0, missing) for dim 0.
    return F.pad(tensor, [0, 0] * (tensor.dim() - 1) + [0, rows - tensor.shape[0]])


def _unpad(gathered: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    max_size = max(sizes)
    if all(size == max_size for size in sizes):
        return gathered
    return torch.cat([gathered[r * max_size : r * max_size + size] for r, size in enumerate(sizes)], dim=0)


def gather_with_grad(tensor: torch.Tensor, *, sizes: list[int] | None = None, group=None) -> torch.Tensor:
    """Concatenate `tensor` along dim 0 across processes, keeping autograd through every process's rows.

    Rows come in rank order, so this process's rows start at `sum(sizes[:rank])`. Per-rank sizes may differ (the
    last batch of an epoch): they are exchanged (or taken from `sizes`, see `gather_batch_sizes`, to save one
    collective when several tensors are gathered) and the tensors padded to the largest before gathering.

    Backward: this process receives the sum over all processes of the gradients of its rows. Returns `tensor`
    itself with one process.
    """
    _, world_size = world_info(group)
    if world_size == 1:
        return tensor
    if sizes is None:
        sizes = gather_batch_sizes(tensor.shape[0], device=tensor.device, group=group)
    _check_sizes(tensor, sizes, group)
    gathered = _all_gather_autograd(_pad_to(tensor, max(sizes)), group)
    return _unpad(gathered, sizes)


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor, *, sizes: list[int] | None = None, group=None) -> torch.Tensor:
    """Concatenate `tensor` along dim 0 across processes without autograd (ids, labels, masks, metrics).

    Same ordering and uneven-size handling as `gather_with_grad`; the result is detached. Returns `tensor` with one
    process.
    """
    _, world_size = world_info(group)
    if world_size == 1:
        return tensor
    if sizes is None:
        sizes = gather_batch_sizes(tensor.shape[0], device=tensor.device, group=group)
    _check_sizes(tensor, sizes, group)
    padded = _pad_to(tensor.detach(), max(sizes)).contiguous()
    chunks = [torch.empty_like(padded) for _ in range(world_size)]
    torch.distributed.all_gather(chunks, padded, group=group)
    return _unpad(torch.cat(chunks, dim=0), sizes)


__all__ = ["gather_batch_sizes", "gather_no_grad", "gather_with_grad", "world_info"]
