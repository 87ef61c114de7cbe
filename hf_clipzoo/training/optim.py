"""Optimiser parameter groups and learning-rate schedules shared by every training script."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

# Parameters whose names end with one of these are never decayed: CLIP / open_clip exclude gains, biases, the
# temperature and the class / position embeddings, because shrinking them towards 0 changes what they mean
# (a temperature pulled to 0 is a change of the loss, not a regulariser).
NO_DECAY_NAME_SUFFIXES = (
    "bias",
    "logit_scale",
    "logit_bias",
    "class_embedding",
    "position_embedding.weight",
    "positional_embedding",
)
_NORM_TYPES = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw", "sgd")


def _no_decay_names(model: torch.nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _NORM_TYPES) or type(module).__name__.endswith(("LayerNorm", "RMSNorm")):
            names.update(f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False))
    for name, param in model.named_parameters():
        if param.ndim <= 1 or name.endswith(NO_DECAY_NAME_SUFFIXES):
            names.add(name)
    return names


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weight matrices, and everything that must not decay.

    Norm layers, biases, 1-D parameters, the logit scale / bias and class / position embeddings go to the group with
    `weight_decay=0`. Frozen parameters (`requires_grad=False`) are left out, so PEFT-style partial training works.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    no_decay = _no_decay_names(model)
    decay_params, no_decay_params = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay_params if name in no_decay else decay_params).append(param)
    if not decay_params and not no_decay_params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False).")
    groups = []
    if decay_params:
        groups.append({"params": decay_params, "weight_decay": weight_decay})
    if no_decay_params:
        groups.append({"params": no_decay_params, "weight_decay": 0.0})
    return groups


def build_optimizer(
    model_or_groups: torch.nn.Module | Iterable[dict],
    *,
    name: str = "adamw",
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum: float = 0.9,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """AdamW (CLIP, FFF, DreamLIP, APE-T, ...) or SGD with momentum (DIVA) over `param_groups(model, weight_decay)`.

    Pass explicit parameter groups instead of a model to set per-group learning rates; groups without a
    `weight_decay` get `weight_decay`. AdamW runs fused (one kernel for every parameter) when `fused` is None and
    `use_fused_adamw` says so: build the optimiser after the model is on its device to get it.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; expected one of {OPTIMIZERS}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}.")
    if isinstance(model_or_groups, torch.nn.Module):
        groups = param_groups(model_or_groups, weight_decay)
    else:
        groups = [{"weight_decay": weight_decay, **group} for group in model_or_groups]
    if name == "adamw":
        if fused is None:
            fused = use_fused_adamw(param for group in groups for param in group["params"])
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def use_fused_adamw(params: Iterable[torch.Tensor]) -> bool:
    """Whether AdamW should run fused: only when every parameter is a floating-point tensor on CUDA, where the fused
    kernel is the fastest path and steps like the per-parameter one. Elsewhere torch's default (foreach) stays, as
    fused AdamW on CPU is a different code path with no speed benefit to the tiny CPU runs."""
    params = list(params)
    return bool(params) and all(p.device.type == "cuda" and p.is_floating_point() for p in params)


def lr_multiplier(step: int, *, name: str, num_warmup_steps: int, num_training_steps: int) -> float:
    """The factor applied to the peak learning rate after `step` optimiser steps (linear warm-up, then decay)."""
    if step < num_warmup_steps:
        return (step + 1) / (num_warmup_steps + 1) if name != "constant" else 1.0
    if name in ("constant", "constant_with_warmup"):
        return 1.0
    progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
    progress = min(progress, 1.0)
    if name == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, name: str = "cosine", num_warmup_steps: int = 0, num_training_steps: int
) -> LambdaLR:
    """Linear warm-up followed by cosine / linear decay to 0 (or a constant), stepped once per optimiser step.

    Warm-up starts at `peak / (num_warmup_steps + 1)` rather than at 0, so the very first step already moves the
    weights (transformers' schedules start at exactly 0 and waste step 0). The state is plain numbers, so
    checkpoints store it as JSON.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"Unknown lr scheduler {name!r}; expected one of {SCHEDULERS}.")
    if num_training_steps <= 0 or num_warmup_steps < 0:
        raise ValueError(
            f"Need num_training_steps > 0 and num_warmup_steps >= 0, got {num_training_steps} and {num_warmup_steps}."
        )
    return LambdaLR(optimizer, _Schedule(name, num_warmup_steps, num_training_steps))


class _Schedule:
    """The lr lambda as a callable object, so `LambdaLR.state_dict()` records its settings as plain values."""

    def __init__(self, name: str, num_warmup_steps: int, num_training_steps: int):
        self.name, self.num_warmup_steps, self.num_training_steps = name, num_warmup_steps, num_training_steps

    def __call__(self, step: int) -> float:
        return lr_multiplier(
            step, name=self.name, num_warmup_steps=self.num_warmup_steps, num_training_steps=self.num_training_steps
        )


__all__ = [
    "NO_DECAY_NAME_SUFFIXES",
    "build_optimizer",
    "build_scheduler",
    "lr_multiplier",
    "param_groups",
    "use_fused_adamw",
]
