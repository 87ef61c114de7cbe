"""Linear probe: how much of a label a frozen embedding carries, independent of any text tower.

Why it exists: zero-shot accuracy mixes two failures (the image features lack the information, or the text side
cannot point at it). A multinomial logistic regression fitted on frozen image embeddings of a train split and scored
on a held-out split answers the first question alone. The bench uses it to say *where* the world's CLIP foundation
loses shape (CLIP's paper reports linear probes the same way: L-BFGS logistic regression on frozen features; here
the L2 weight is fixed, not searched, so the probe never sees its test split).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["linear_probe_accuracy"]


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: Sequence[int] | torch.Tensor,
    test_features: torch.Tensor,
    test_labels: Sequence[int] | torch.Tensor,
    *,
    l2_weight: float = 1e-3,
    max_iter: int = 300,
) -> dict[str, float]:
    """Fit softmax regression on `train_features` (standardised with the train statistics), score `test_features`.

    Args:
        train_features (`torch.Tensor` ``[N, D]``), test_features (`torch.Tensor` ``[M, D]``): frozen embeddings.
        train_labels, test_labels: integer labels in ``[0, C)``; every class seen at test must occur in train.
        l2_weight (`float`, defaults to 1e-3): weight of ``sum(W ** 2)`` added to the mean cross-entropy.
        max_iter (`int`, defaults to 300): L-BFGS iterations (full batch, strong-Wolfe line search).

    Returns:
        `dict`: ``train_accuracy``, ``test_accuracy``, ``num_classes``.
    """
    train_labels = torch.as_tensor(train_labels, dtype=torch.long)
    test_labels = torch.as_tensor(test_labels, dtype=torch.long)
    for name, features, labels in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"`{name}_features` must be a non-empty [N, D] tensor, got {tuple(features.shape)}.")
        if labels.shape != (features.shape[0],):
            raise ValueError(
                f"`{name}_labels` must hold one label per row of `{name}_features` ({features.shape[0]}), "
                f"got shape {tuple(labels.shape)}."
            )
        if labels.min() < 0:
            raise ValueError(f"`{name}_labels` must be >= 0, got {int(labels.min())}.")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"Feature sizes differ: train {train_features.shape[1]}, test {test_features.shape[1]}.")
    unseen = set(test_labels.tolist()) - set(train_labels.tolist())
    if unseen:
        raise ValueError(f"Test labels {sorted(unseen)} never occur in train: the probe cannot learn them.")
    if l2_weight < 0:
        raise ValueError(f"`l2_weight` must be >= 0, got {l2_weight}.")
    train_features, test_features = train_features.double(), test_features.double()
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    x_train, x_test = (train_features - mean) / std, (test_features - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(x_train.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight + bias, train_labels) + l2_weight * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        train_accuracy = ((x_train @ weight + bias).argmax(-1) == train_labels).double().mean().item()
        test_accuracy = ((x_test @ weight + bias).argmax(-1) == test_labels).double().mean().item()
    return {"train_accuracy": train_accuracy, "test_accuracy": test_accuracy, "num_classes": num_classes}
