"""Multi-object scenes with masks and three kinds of captions: `make_scenes`.

Columns of the returned `datasets.Dataset`:

* ``image``: `datasets.Image()` (PNG, decodes to an RGB `PIL.Image`);
* ``caption``: the short, noisy alt-text; ``long_caption``: the full description; ``pseudo_captions``: K paraphrases;
  ``nouns``: the shape nouns (see `captions.py` for how each is made and its noise rates);
* ``semantic_mask``: `datasets.Image()` PNG mode "L"; pixel value = index into `SEGMENTATION_CLASSES`
  (0 background, then the 8 shapes: the class is the *shape*, colour is an attribute); ``np.array(row[...])`` gives
  the uint8 id map;
* ``instance_mask``: `datasets.Image()` PNG mode "L"; 0 background, ``i + 1`` for ``objects[i]``;
* ``objects``: list of dicts (shape, colour, size, position, orientation, cx, cy, radius in pixels, rgb);
* ``background``: dict (texture, colour).
"""

from __future__ import annotations

from collections import OrderedDict

import datasets
import numpy as np

from .captions import long_caption, nouns, pseudo_captions, short_caption
from .config import SCENE_SPLITS, WorldConfig, check_count, check_split, sample_rng
from .render import png_bytes
from .spec import SceneSpec, render_scene, sample_scene

OBJECT_FEATURE = {
    "shape": datasets.Value("string"),
    "colour": datasets.Value("string"),
    "size": datasets.Value("string"),
    "position": datasets.Value("string"),
    "orientation": datasets.Value("string"),
    "cx": datasets.Value("float32"),
    "cy": datasets.Value("float32"),
    "radius": datasets.Value("float32"),
    "rgb": datasets.List(datasets.Value("uint8")),
}
BACKGROUND_FEATURE = {"texture": datasets.Value("string"), "colour": datasets.Value("string")}

SCENE_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "caption": datasets.Value("string"),
        "long_caption": datasets.Value("string"),
        "pseudo_captions": datasets.List(datasets.Value("string")),
        "nouns": datasets.List(datasets.Value("string")),
        "semantic_mask": datasets.Image(),
        "instance_mask": datasets.Image(),
        "objects": datasets.List(OBJECT_FEATURE),
        "background": BACKGROUND_FEATURE,
    }
)


def scene_texts(scene: SceneSpec, rng: np.random.Generator, config: WorldConfig) -> dict:
    """The text columns of `scene`'s row (`caption`, `long_caption`, `pseudo_captions`, `nouns`); rendering draws
    nothing from `rng`, so these are the row's texts without rendering its image."""
    return {
        "caption": short_caption(scene, rng, config),
        "long_caption": long_caption(scene),
        "pseudo_captions": pseudo_captions(scene, rng, config.num_pseudo_captions),
        "nouns": nouns(scene),
    }


def generate_scene_texts(index: int, *, split: str = "train", config: WorldConfig | None = None) -> dict:
    """The text columns of row `index` of `make_scenes(..., split=split, config=config)`, without rendering it."""
    config = config or WorldConfig()
    check_split(split, SCENE_SPLITS)
    rng = sample_rng(config, "scenes", split, index)
    return scene_texts(sample_scene(rng, config), rng, config)


def scene_row(scene: SceneSpec, rng: np.random.Generator, config: WorldConfig, *, encode: bool = True) -> dict:
    """Render `scene` and write its captions; with ``encode=False`` images stay numpy arrays (for benchmarking)."""
    image, semantic, instance = render_scene(scene, config)
    encoder = png_bytes if encode else (lambda array: array)
    return {
        "image": encoder(image),
        **scene_texts(scene, rng, config),
        "semantic_mask": encoder(semantic),
        "instance_mask": encoder(instance),
        "objects": [obj.to_dict(config.image_size) for obj in scene.objects],
        "background": {"texture": scene.background.texture, "colour": scene.background.colour},
    }


def generate_scene(
    index: int, *, split: str = "train", config: WorldConfig | None = None, encode: bool = True
) -> dict:
    """Row `index` of `make_scenes(..., split=split, config=config)`, generated alone."""
    config = config or WorldConfig()
    check_split(split, SCENE_SPLITS)
    rng = sample_rng(config, "scenes", split, index)
    return scene_row(sample_scene(rng, config), rng, config, encode=encode)


def rows_to_dataset(rows: list[dict], features: datasets.Features) -> datasets.Dataset:
    """Column-major conversion of generated rows into an in-memory `datasets.Dataset`."""
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)


# The last few worlds made in this process: the bench runs a dozen scripts in one process on the same world, and
# regenerating 8k scenes per script would cost more than some of the runs. `datasets.Dataset` operations return new
# objects, so sharing one is safe (nothing in the package calls the in-place `set_format` / `set_transform`).
_RECENT_SCENES: OrderedDict[tuple, datasets.Dataset] = OrderedDict()
_RECENT_SCENES_SIZE = 4


def make_scenes(num_images: int, *, split: str = "train", config: WorldConfig | None = None) -> datasets.Dataset:
    """Generate `num_images` multi-object scenes with masks and captions (columns in the module docstring).

    Args:
        num_images (`int`): number of rows (> 0).
        split (`str`, defaults to `"train"`): one of `"train"`, `"val"`, `"test"`; splits use disjoint seed streams.
        config (`WorldConfig`, *optional*): world configuration (seed, resolution, object counts, caption noise).

    Row ``i`` depends only on ``(config, split, i)``: same config gives byte-identical data.

    Example:
        >>> ds = make_scenes(8, config=WorldConfig(seed=0, image_size=32))
        >>> ds[0]["image"].size
        (32, 32)
    """
    check_count("num_images", num_images)
    config = config or WorldConfig()
    check_split(split, SCENE_SPLITS)
    key = (num_images, split, repr(config))
    if key in _RECENT_SCENES:
        _RECENT_SCENES.move_to_end(key)
        return _RECENT_SCENES[key]
    rows = [generate_scene(i, split=split, config=config) for i in range(num_images)]
    dataset = rows_to_dataset(rows, SCENE_FEATURES)
    _RECENT_SCENES[key] = dataset
    while len(_RECENT_SCENES) > _RECENT_SCENES_SIZE:
        _RECENT_SCENES.popitem(last=False)
    return dataset
