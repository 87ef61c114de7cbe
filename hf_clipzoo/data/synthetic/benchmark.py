"""Throughput of the embedded world's generators (`benchmark`), and the caption statistics worth reporting."""

from __future__ import annotations

import time

from .captions import false_negative_rate
from .config import WorldConfig, sample_rng
from .scenes import make_scenes, scene_row
from .spec import sample_scene


def benchmark(num_images: int = 2000, image_size: int = 64, seed: int = 0) -> dict[str, float]:
    """Measure generation speed on the current process (set one thread for a one-core number).

    Returns images per second for (a) sampling + rendering + captions without PNG encoding (`render_per_s`) and
    (b) the full `make_scenes` path to an in-memory `datasets.Dataset` (`dataset_per_s`), plus the in-batch
    false-negative rates of the short captions at batch 256 (`false_negative_rate_image` / `_pair`).
    """
    config = WorldConfig(seed=seed, image_size=image_size)
    start = time.perf_counter()
    for index in range(num_images):
        rng = sample_rng(config, "scenes", "train", index)
        scene_row(sample_scene(rng, config), rng, config, encode=False)
    render_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ds = make_scenes(num_images, config=config)
    dataset_seconds = time.perf_counter() - start
    captions = ds["caption"]
    return {
        "num_images": num_images,
        "image_size": image_size,
        "render_per_s": num_images / render_seconds,
        "dataset_per_s": num_images / dataset_seconds,
        "false_negative_rate_image": false_negative_rate(captions, batch_size=256, unit="image"),
        "false_negative_rate_pair": false_negative_rate(captions, batch_size=256, unit="pair"),
    }
