"""Input validation shared by the losses: every message says what was wrong and what was expected."""

from __future__ import annotations

import torch


def check_embeddings(image_embeds: torch.Tensor, text_embeds: torch.Tensor, *, paired: bool, fn: str) -> None:
    """Both embeddings 2-D floating tensors with the same feature dim; same batch size when `paired`."""
    for name, embeds in (("image_embeds", image_embeds), ("text_embeds", text_embeds)):
        if not isinstance(embeds, torch.Tensor) or embeds.dim() != 2:
            shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise ValueError(f"{fn}: `{name}` must be a 2-D tensor of shape (batch, dim), got {shape}.")
        if not embeds.is_floating_point():
            raise ValueError(f"{fn}: `{name}` must be a floating-point tensor, got dtype {embeds.dtype}.")
        if embeds.shape[0] == 0:
            raise ValueError(f"{fn}: `{name}` is an empty batch (shape {tuple(embeds.shape)}); need at least one row.")
    if image_embeds.shape[1] != text_embeds.shape[1]:
        raise ValueError(
            f"{fn}: image and text embeddings must have the same feature dim, got image_embeds "
            f"{tuple(image_embeds.shape)} and text_embeds {tuple(text_embeds.shape)}."
        )
    if paired and image_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"{fn}: image i is paired with text i, so both batches must have the same size, got "
            f"{image_embeds.shape[0]} images and {text_embeds.shape[0]} texts (pass a `positive_mask` to the "
            "multi-positive losses for other layouts)."
        )


def check_scalar(value, name: str, fn: str, like: torch.Tensor) -> torch.Tensor:
    """A python number or a one-element tensor, returned as a 0-d tensor (keeping autograd) on `like`'s device."""
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), dtype=like.dtype, device=like.device)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{fn}: `{name}` must be a scalar (a number or a one-element tensor), got {shape}.")
    return value.reshape(())


def check_positive_mask(mask, shape: tuple[int, int], fn: str, *, binary: bool) -> torch.Tensor:
    """A bool or float `(num_images, num_texts)` mask in global coordinates; `binary` floats must be 0 or 1.

    Returns a bool tensor when `binary`, else a float tensor of non-negative weights.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{fn}: `positive_mask` must be a tensor of shape {shape}, got {type(mask).__name__}.")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{fn}: `positive_mask` must have shape (num_images, num_texts) = {tuple(shape)} in global coordinates "
            f"(all images x all texts across processes), got {tuple(mask.shape)}."
        )
    if mask.dtype == torch.bool:
        return mask if binary else mask.float()
    if not mask.is_floating_point():
        raise ValueError(f"{fn}: `positive_mask` must be bool or floating point, got dtype {mask.dtype}.")
    if binary:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{fn}: a float `positive_mask` must hold only 0.0 and 1.0 (1 marks a positive pair).")
        return mask.bool()
    if not bool((mask >= 0).all()) or not bool(torch.isfinite(mask).all()):
        raise ValueError(f"{fn}: `positive_mask` weights must be finite and non-negative.")
    return mask
