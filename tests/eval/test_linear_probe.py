import pytest
import torch
import torch.nn.functional as F

from hf_clipzoo.eval.linear_probe import linear_probe_accuracy


def naive_probe_predictions(x_train, y_train, x_test, l2_weight, steps=4000, lr=0.5):
    """Plain full-batch gradient descent on the same convex objective (standardised features, L2 on W only)."""
    mean, std = x_train.mean(0), x_train.std(0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    num_classes = int(y_train.max()) + 1
    weight = torch.zeros(x_train.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        loss = F.cross_entropy(x_train @ weight + bias, y_train) + l2_weight * (weight**2).sum()
        grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
        with torch.no_grad():
            weight -= lr * grad_w
            bias -= lr * grad_b
    return (x_test @ weight + bias).argmax(-1)


def blobs(n, dim, classes, spread, seed):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123), dtype=torch.float64) * 2
    labels = torch.arange(n) % classes
    return centres[labels] + spread * torch.randn(n, dim, generator=generator, dtype=torch.float64), labels


def test_matches_naive_gradient_descent_on_overlapping_classes():
    x_train, y_train = blobs(120, 5, 3, spread=2.0, seed=0)
    x_test, y_test = blobs(90, 5, 3, spread=2.0, seed=1)
    result = linear_probe_accuracy(x_train.float(), y_train, x_test.float(), y_test, l2_weight=1e-2)
    naive = naive_probe_predictions(x_train, y_train, x_test, l2_weight=1e-2)
    assert result["test_accuracy"] == pytest.approx((naive == y_test).double().mean().item())
    assert 0.4 < result["test_accuracy"] < 1.0  # the classes overlap: a probe that always wins would be a bug
    assert result["num_classes"] == 3


def test_separable_is_perfect_and_random_labels_are_near_chance():
    x_train, y_train = blobs(200, 8, 4, spread=0.05, seed=0)
    x_test, y_test = blobs(200, 8, 4, spread=0.05, seed=1)
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test)["test_accuracy"] == 1.0
    shuffled = y_test[torch.randperm(len(y_test), generator=torch.Generator().manual_seed(0))]
    assert linear_probe_accuracy(x_train, y_train, x_test, shuffled)["test_accuracy"] < 0.45


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"train_labels": [0, 1]}, "one label per row"),
        ({"test_labels": [0, 5, 1, 2]}, "never occur in train"),
        ({"test_features": torch.zeros(4, 3)}, "Feature sizes differ"),
        ({"train_features": torch.zeros(0, 2), "train_labels": []}, "non-empty"),
        ({"l2_weight": -1.0}, "l2_weight"),
    ],
)
def test_bad_input_says_what_was_expected(kwargs, message):
    arguments = {
        "train_features": torch.randn(4, 2),
        "train_labels": [0, 1, 2, 0],
        "test_features": torch.randn(4, 2),
        "test_labels": [0, 1, 2, 1],
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        linear_probe_accuracy(**arguments)
