"""Many-class image classification (APE, Tip-Adapter, zero-shot evaluation): `make_classification`.

Classes are the 64 colour x shape combinations ("red circle", ..., "white arrow"); an image shows exactly one object
of its class at a random grid cell, size and orientation on a random textured background, so colour and shape are the
only label-relevant factors and everything else is a nuisance. Rows are interleaved by class (row ``i`` has label
``i % 64``), so any prefix of ``64 * k`` rows is balanced. Splits use disjoint seed streams.

Columns: ``image`` (`datasets.Image()`), ``label`` (`datasets.ClassLabel` with `class_names()`).
"""

from __future__ import annotations

import datasets

from .config import SCENE_SPLITS, WorldConfig, check_count, check_split, sample_rng
from .render import png_bytes, sample_background
from .scenes import rows_to_dataset
from .spec import SceneSpec, render_scene, sample_object
from .vocab import COLOURS, POSITIONS, SHAPES

CLASSIFICATION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "a rendering of a {}.",
    "an image showing a {}.",
    "a {} on a textured background.",
)
"""Prompt templates for zero-shot classification with a prompt ensemble (CLIP's protocol)."""


def class_names() -> list[str]:
    """The 64 class names, ``f"{colour} {shape}"`` in colour-major order (label = 8 * colour + shape)."""
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def classification_features() -> datasets.Features:
    return datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=class_names())})


def generate_classification_example(index: int, *, split: str = "train", config: WorldConfig | None = None) -> dict:
    """Row `index` of `make_classification(..., split=split, config=config)`, generated alone."""
    config = config or WorldConfig()
    check_split(split, SCENE_SPLITS)
    names = class_names()
    label = index % len(names)
    colour, shape = names[label].split(" ")
    rng = sample_rng(config, "classification", split, index)
    position = POSITIONS[int(rng.integers(len(POSITIONS)))]
    scene = SceneSpec((sample_object(rng, config, shape, colour, position),), sample_background(rng))
    image, _, _ = render_scene(scene, config)
    return {"image": png_bytes(image), "label": label}


def make_classification(
    num_per_class: int, *, split: str = "train", config: WorldConfig | None = None
) -> datasets.Dataset:
    """Generate ``num_per_class * 64`` single-object images labelled by colour x shape.

    Args:
        num_per_class (`int`): images per class (> 0).
        split (`str`, defaults to `"train"`): one of `"train"`, `"val"`, `"test"`.
        config (`WorldConfig`, *optional*): world configuration (only seed, image_size, colour_jitter and
            texture_strength matter here).
    """
    check_count("num_per_class", num_per_class)
    config = config or WorldConfig()
    check_split(split, SCENE_SPLITS)
    total = num_per_class * len(class_names())
    rows = [generate_classification_example(i, split=split, config=config) for i in range(total)]
    return rows_to_dataset(rows, classification_features())
