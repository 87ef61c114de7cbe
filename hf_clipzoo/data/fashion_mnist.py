"""Fashion-MNIST from the Debian package `dataset-fashion-mnist`: the real-image track of `hf-clipzoo bench`.

Fashion-MNIST (Xiao et al. 2017, MIT licence, Zalando) is 70,000 real 28×28 grey photos of clothing in 10 classes.
When `apt install dataset-fashion-mnist` has put its IDX files under `/usr/share/datasets/fashion-mnist/`, the bench
adds zero-shot ("a photo of a {class}") and few-shot rows on it; without the package it says the track was skipped.
The IDX format is parsed with numpy (magic number, dimensions, unsigned bytes), no extra dependency.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import datasets
import numpy as np

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
TEMPLATES = ("a photo of a {}.",)
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}  # fmt: skip


def fashion_mnist_root() -> Path | None:
    """The folder holding the IDX files (`$FASHION_MNIST_DIR` or the Debian location), or None if absent."""
    root = Path(os.environ.get("FASHION_MNIST_DIR", DEFAULT_ROOT))
    return root if all((root / name).is_file() for files in _FILES.values() for name in files) else None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX array (`.gz` or plain): 2 zero bytes, type 0x08 (ubyte), the number of dimensions, big-endian sizes."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()}).")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} ({int(np.prod(shape))} bytes), file has {body.size}.")
    return body.reshape(shape)


def load_fashion_mnist(split: str = "test", *, root: str | os.PathLike | None = None, num_per_class: int | None = None,
                       seed: int = 0) -> datasets.Dataset:  # fmt: skip
    """`image` (grey PIL) + `label` (ClassLabel) rows; `num_per_class` takes a seeded, class-balanced subset."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}.")
    root = Path(root) if root is not None else fashion_mnist_root()
    if root is None:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {DEFAULT_ROOT} (install the Debian package `dataset-fashion-mnist`) "
            "or in $FASHION_MNIST_DIR."
        )
    images = read_idx(root / _FILES[split][0])
    labels = read_idx(root / _FILES[split][1]).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"Inconsistent Fashion-MNIST files in {root}: images {images.shape}, labels {labels.shape}.")
    indices = np.arange(len(labels))
    if num_per_class is not None:
        rng = np.random.default_rng(seed)
        indices = np.sort(np.concatenate([
            rng.permutation(np.flatnonzero(labels == c))[:num_per_class] for c in range(len(CLASS_NAMES))
        ]))  # fmt: skip
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))})
    return datasets.Dataset.from_dict(
        {"image": [images[i] for i in indices], "label": labels[indices].tolist()}, features=features
    )


__all__ = ["CLASS_NAMES", "TEMPLATES", "fashion_mnist_root", "load_fashion_mnist", "read_idx"]
