"""`WorldConfig` and the seeding rule shared by every generator of the embedded world.

Seeding: each sample draws from its own `numpy.random.Generator` seeded by the tuple
``(config.seed, generator kind, split, index)`` through `numpy.random.SeedSequence`. Hence:

* the same config gives byte-identical data, and a different ``seed`` gives different data;
* splits (and the different generators) use disjoint, statistically independent streams;
* ``make_scenes(10)`` is exactly the first 10 rows of ``make_scenes(1000)`` (the size never changes a sample).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

MIN_IMAGE_SIZE = 24
"""Below 24 px a small object is ~4 px wide and shapes can no longer be told apart."""

MAX_IMAGE_SIZE = 1024

SCENE_SPLITS: tuple[str, ...] = ("train", "val", "test")
VIDEO_SPLITS: tuple[str, ...] = ("meta_train", "meta_val", "meta_test")

# Stable integer ids for the seed tuple. Never renumber: that would change every generated dataset.
_KIND_IDS = {"scenes": 1, "classification": 2, "mmvp": 3, "videos": 4}
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "meta_train": 3, "meta_val": 4, "meta_test": 5}

SHORT_CAPTION_KINDS: tuple[str, ...] = ("generic", "shape", "count", "one_object", "two_objects")


@dataclass
class WorldConfig:
    """Configuration of the procedural world.

    Args:
        seed (`int`, defaults to 0): master seed (a non-negative integer).
        image_size (`int`, defaults to 64): side of the square images and video frames, in pixels (24 to 1024).
        min_objects (`int`, defaults to 1): fewest objects in a scene.
        max_objects (`int`, defaults to 4): most objects in a scene (at most 9: one per 3x3 grid cell).
        num_pseudo_captions (`int`, defaults to 3): K, the number of paraphrased pseudo-captions per scene.
        short_caption_probs (`tuple[float, ...]`, defaults to `(0.15, 0.10, 0.05, 0.45, 0.25)`): probabilities of the
            short alt-text kinds `("generic", "shape", "count", "one_object", "two_objects")`, see `captions.py`.
        wrong_colour_prob (`float`, defaults to 0.1): probability that a short caption naming a colour names a wrong
            one (alt-text noise).
        colour_jitter (`int`, defaults to 12): maximum per-channel deviation of an object's RGB from its named colour.
        texture_strength (`int`, defaults to 22): amplitude of the background texture in grey levels.
    """

    seed: int = 0
    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    num_pseudo_captions: int = 3
    short_caption_probs: tuple[float, ...] = (0.15, 0.10, 0.05, 0.45, 0.25)
    wrong_colour_prob: float = 0.1
    colour_jitter: int = 12
    texture_strength: int = 22

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("short_caption_probs", "wrong_colour_prob"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"WorldConfig.{f.name} must be an integer, got {value!r}.")
        if self.seed < 0:
            raise ValueError(f"WorldConfig.seed must be a non-negative integer, got {self.seed}.")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"WorldConfig.image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels "
                f"(smaller images cannot show the shapes), got {self.image_size}."
            )
        if not 1 <= self.min_objects <= self.max_objects <= 9:
            raise ValueError(
                "WorldConfig needs 1 <= min_objects <= max_objects <= 9 (one object per 3x3 grid cell), got "
                f"min_objects={self.min_objects}, max_objects={self.max_objects}."
            )
        if self.num_pseudo_captions < 0:
            raise ValueError(f"WorldConfig.num_pseudo_captions must be >= 0, got {self.num_pseudo_captions}.")
        probs = tuple(float(p) for p in self.short_caption_probs)
        if len(probs) != len(SHORT_CAPTION_KINDS) or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(
                f"WorldConfig.short_caption_probs must be {len(SHORT_CAPTION_KINDS)} non-negative probabilities for "
                f"{SHORT_CAPTION_KINDS} summing to 1, got {self.short_caption_probs!r}."
            )
        self.short_caption_probs = probs
        if not 0.0 <= float(self.wrong_colour_prob) <= 1.0:
            raise ValueError(f"WorldConfig.wrong_colour_prob must be in [0, 1], got {self.wrong_colour_prob}.")
        if not 0 <= self.colour_jitter <= 60:
            raise ValueError(f"WorldConfig.colour_jitter must be in [0, 60], got {self.colour_jitter}.")
        if not 0 <= self.texture_strength <= 60:
            raise ValueError(f"WorldConfig.texture_strength must be in [0, 60], got {self.texture_strength}.")


def check_split(split: str, allowed: tuple[str, ...]) -> None:
    """Raise a `ValueError` naming the allowed splits when `split` is not one of them."""
    if split not in allowed:
        raise ValueError(f"Unknown split {split!r}; expected one of {allowed}.")


def check_count(name: str, value: int) -> None:
    """Raise a `ValueError` unless `value` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def sample_rng(config: WorldConfig, kind: str, split: str, index: int) -> np.random.Generator:
    """The generator of one sample: seeded by `(config.seed, kind, split, index)`, see the module docstring."""
    return np.random.Generator(np.random.PCG64([config.seed, _KIND_IDS[kind], _SPLIT_IDS[split], index]))
