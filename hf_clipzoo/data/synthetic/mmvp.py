"""MMVP-style image pairs (DIVA's metric): `make_mmvp_pairs`.

Each pair is two scenes that differ in exactly one thing, of one of the `MMVP_CATEGORIES`:

* ``orientation``: one oriented object (triangle / arrow; one is swapped in if the scene has none) points elsewhere;
* ``count``: one object is added (to an empty cell) or removed; nothing else moves;
* ``colour``: one object changes colour;
* ``position``: one object moves to an empty grid cell (same in-cell offset);
* ``size``: one object changes size.

Background, nuisances (colour jitter, in-cell offset) and all other objects are identical. Scenes have distinct shapes
so a statement can name an object by its shape. Statements are noun phrases meant for ``"a photo of " + statement``
(DIVA's prompt): ``statement_a`` is true of ``image_a`` and false of ``image_b``, and vice versa; e.g.
"a red triangle pointing up" / "a red triangle pointing left", "three shapes" / "two shapes", "a small blue star" /
"a large blue star", "a green ring in the center" / "a green ring at the top".

Category of pair ``i`` is ``MMVP_CATEGORIES[i % 5]`` (balanced). A count pair may exceed ``config.max_objects`` by one.

Columns: ``image_a``, ``image_b`` (`datasets.Image()`), ``statement_a``, ``statement_b``, ``category``
(a string of `MMVP_CATEGORIES`), ``objects_a``, ``objects_b`` (object specs as in `make_scenes`).
"""

from __future__ import annotations

from dataclasses import replace

import datasets
import numpy as np

from .captions import article, count_phrase
from .config import SCENE_SPLITS, WorldConfig, check_count, check_split, sample_rng
from .render import png_bytes
from .scenes import OBJECT_FEATURE, rows_to_dataset
from .spec import SceneSpec, render_scene, sample_object, sample_scene, with_attribute
from .vocab import COLOURS, ORIENTATIONS, ORIENTED_SHAPES, POSITION_PHRASES, POSITIONS, SHAPES, SIZES

MMVP_CATEGORIES: tuple[str, ...] = ("orientation", "count", "colour", "position", "size")

MMVP_FEATURES = datasets.Features(
    {
        "image_a": datasets.Image(),
        "image_b": datasets.Image(),
        "statement_a": datasets.Value("string"),
        "statement_b": datasets.Value("string"),
        "category": datasets.Value("string"),
        "objects_a": datasets.List(OBJECT_FEATURE),
        "objects_b": datasets.List(OBJECT_FEATURE),
    }
)


def _pick(rng: np.random.Generator, options: list) -> object:
    return options[int(rng.integers(len(options)))]


def sample_mmvp_pair(
    category: str, rng: np.random.Generator, config: WorldConfig
) -> tuple[SceneSpec, SceneSpec, str, str]:
    """Sample ``(scene_a, scene_b, statement_a, statement_b)`` differing only in `category`."""
    if category not in MMVP_CATEGORIES:
        raise ValueError(f"Unknown MMVP category {category!r}; expected one of {MMVP_CATEGORIES}.")
    # Distinct shapes (<= 8) and room for one more object for count pairs.
    low = min(config.min_objects, 7)
    num_objects = int(rng.integers(low, min(config.max_objects, 7) + 1))
    scene = sample_scene(rng, config, num_objects=num_objects, unique_shapes=True)
    objects = list(scene.objects)
    target = int(rng.integers(len(objects)))
    obj = objects[target]

    if category == "count":
        used_cells = {o.position for o in objects}
        if len(objects) == 1 or rng.random() < 0.5:
            shape = _pick(rng, [s for s in SHAPES if s not in {o.shape for o in objects}])
            cell = _pick(rng, [p for p in POSITIONS if p not in used_cells])
            extra = sample_object(rng, config, shape, _pick(rng, list(COLOURS)), cell)
            objects_b = objects + [extra]
        else:
            objects_b = objects[:target] + objects[target + 1 :]
        scene_a = replace(scene, objects=tuple(objects))
        scene_b = replace(scene, objects=tuple(objects_b))
        return scene_a, scene_b, count_phrase(len(objects)), count_phrase(len(objects_b))

    if category == "orientation" and obj.orientation == "none":
        oriented = [i for i, o in enumerate(objects) if o.orientation != "none"]
        if oriented:
            target = oriented[int(rng.integers(len(oriented)))]
        else:
            # No oriented object: turn the target into one (its shape is unused since none is oriented).
            shape = _pick(rng, list(ORIENTED_SHAPES))
            objects[target] = replace(obj, shape=shape, orientation=_pick(rng, list(ORIENTATIONS)))
        obj = objects[target]

    if category == "orientation":
        new = with_attribute(obj, "orientation", _pick(rng, [o for o in ORIENTATIONS if o != obj.orientation]))
        statements = (article(obj.phrase(orientation=True)), article(new.phrase(orientation=True)))
    elif category == "colour":
        new = with_attribute(obj, "colour", _pick(rng, [c for c in COLOURS if c != obj.colour]))
        # Keep the colour jitter: shift the drawn RGB by the same offset from the new named colour.
        delta = np.asarray(obj.rgb) - np.asarray(COLOURS[obj.colour])
        new = replace(new, rgb=tuple(int(c) for c in np.clip(np.asarray(COLOURS[new.colour]) + delta, 0, 255)))
        statements = (article(obj.phrase()), article(new.phrase()))
    elif category == "position":
        used_cells = {o.position for o in objects}
        new = with_attribute(obj, "position", _pick(rng, [p for p in POSITIONS if p not in used_cells]))
        statements = (
            f"{article(obj.phrase())} {POSITION_PHRASES[obj.position]}",
            f"{article(new.phrase())} {POSITION_PHRASES[new.position]}",
        )
    else:  # size
        new = with_attribute(obj, "size", _pick(rng, [s for s in SIZES if s != obj.size]))
        statements = (article(obj.phrase(size=True)), article(new.phrase(size=True)))
    objects_b = objects[:target] + [new] + objects[target + 1 :]
    return replace(scene, objects=tuple(objects)), replace(scene, objects=tuple(objects_b)), *statements


def generate_mmvp_pair(index: int, *, split: str = "test", config: WorldConfig | None = None) -> dict:
    """Row `index` of `make_mmvp_pairs(..., split=split, config=config)`, generated alone."""
    config = config or WorldConfig()
    check_split(split, SCENE_SPLITS)
    category = MMVP_CATEGORIES[index % len(MMVP_CATEGORIES)]
    rng = sample_rng(config, "mmvp", split, index)
    scene_a, scene_b, statement_a, statement_b = sample_mmvp_pair(category, rng, config)
    return {
        "image_a": png_bytes(render_scene(scene_a, config)[0]),
        "image_b": png_bytes(render_scene(scene_b, config)[0]),
        "statement_a": statement_a,
        "statement_b": statement_b,
        "category": category,
        "objects_a": [o.to_dict(config.image_size) for o in scene_a.objects],
        "objects_b": [o.to_dict(config.image_size) for o in scene_b.objects],
    }


def make_mmvp_pairs(num_pairs: int, *, split: str = "test", config: WorldConfig | None = None) -> datasets.Dataset:
    """Generate `num_pairs` MMVP-style pairs (columns and categories in the module docstring).

    Args:
        num_pairs (`int`): number of pairs (> 0); pair ``i`` has category ``MMVP_CATEGORIES[i % 5]``.
        split (`str`, defaults to `"test"`): one of `"train"`, `"val"`, `"test"`.
        config (`WorldConfig`, *optional*): world configuration.
    """
    check_count("num_pairs", num_pairs)
    config = config or WorldConfig()
    check_split(split, SCENE_SPLITS)
    rows = [generate_mmvp_pair(i, split=split, config=config) for i in range(num_pairs)]
    return rows_to_dataset(rows, MMVP_FEATURES)
