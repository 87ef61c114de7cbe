"""Agreement across processes: stop a run on a non-finite loss on every process at once; reduce logged numbers."""

from __future__ import annotations

import torch
import torch.distributed as dist


def check_finite(loss: torch.Tensor, step: int) -> None:
    """Raise `FloatingPointError` when the loss is NaN / inf on any process.

    All processes agree through an all-reduce: if only the rank that saw the NaN raised, the others would block
    forever in the next gradient all-reduce instead of stopping.
    """
    bad = (~torch.isfinite(loss.detach())).any().to(torch.int32).reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if bad.item():
        raise FloatingPointError(
            f"Non-finite loss at optimisation step {step} (this process: {loss.detach().float().flatten()[:4].tolist()}). "
            "Expected a finite loss; try a lower --learning_rate, --max_grad_norm 1.0, or bf16 instead of fp16, and "
            "resume from the last checkpoint with --resume_from_checkpoint latest."
        )


def across_processes(accelerator, value: float, reduction: str = "mean") -> float:
    """A Python number reduced over all processes (`"mean"` or `"sum"`); every process must call it."""
    tensor = torch.tensor(float(value), dtype=torch.float64, device=accelerator.device)
    if accelerator.device.type == "mps":  # no float64 there
        tensor = tensor.float()
    return accelerator.reduce(tensor, reduction).item()


__all__ = ["across_processes", "check_finite"]
