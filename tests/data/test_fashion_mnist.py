"""The real-image track's loader, on IDX files written in the test (the Debian package is not installed here)."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.bench import PRESETS, BenchContext, fashion_mnist_few_shot, fashion_mnist_zero_shot
from hf_clipzoo.data.fashion_mnist import CLASS_NAMES, fashion_mnist_root, load_fashion_mnist, read_idx


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 30)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    return tmp_path


def test_reads_idx_and_balances_classes(fake_fashion_mnist):
    assert fashion_mnist_root() == fake_fashion_mnist
    test = load_fashion_mnist("test")
    assert len(test) == 30 and test.features["label"].names == list(CLASS_NAMES)
    assert test[0]["image"].size == (28, 28) and test[0]["image"].mode == "L"
    subset = load_fashion_mnist("train", num_per_class=2, seed=1)
    assert sorted(subset["label"]) == sorted(list(range(10)) * 2)
    assert subset["label"] == load_fashion_mnist("train", num_per_class=2, seed=1)["label"]


def test_bad_files(tmp_path, monkeypatch):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab"))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad.gz")
    write_idx(tmp_path / "short.gz", np.zeros((3,)))
    data = gzip.decompress((tmp_path / "short.gz").read_bytes())[:-1]
    (tmp_path / "short.gz").write_bytes(gzip.compress(data))
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short.gz")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test")


def test_bench_real_image_track(fake_fashion_mnist, tmp_path):
    torch.manual_seed(0)
    config = ZooCLIPConfig.from_preset("world-micro")
    ZooCLIPModel(config).save_pretrained(tmp_path / "model")
    build_clip_processor(32).save_pretrained(tmp_path / "model")
    context = BenchContext("smoke", PRESETS["smoke"], tmp_path, seed=0)
    row = fashion_mnist_zero_shot(tmp_path / "model", context)
    assert row["metrics"]["fashion_mnist/num_samples"] == 30  # 5 per class requested, 3 exist per class
    assert 0.0 <= row["metrics"]["fashion_mnist/top1_accuracy"] <= 1.0


def test_bench_real_image_few_shot_track(fake_fashion_mnist, tmp_path):
    """APE and the baselines on Fashion-MNIST: shots and validation from the train split, accuracy on test."""
    torch.manual_seed(0)
    ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro")).save_pretrained(tmp_path / "model")
    build_clip_processor(32).save_pretrained(tmp_path / "model")
    # 4 train images per class exist: 2 validate, 2 are the shots (smoke shots are (1, 2)).
    preset = PRESETS["smoke"]
    context = BenchContext("smoke", preset, tmp_path / "bench", seed=0, baseline_dir=tmp_path / "model")
    row = fashion_mnist_few_shot(context)
    for name in ("zero_shot", "tip_adapter", "ape", "ape_t", "tip_adapter_f"):
        assert 0.0 <= row["metrics"][f"{name}/test_accuracy"] <= 1.0, name
    assert row["metrics"]["num_classes"] == 10 and row["metrics"]["shots"] == 2
