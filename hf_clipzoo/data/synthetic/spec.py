"""Structured scene specifications (`ObjectSpec`, `SceneSpec`): sampling and rendering.

A scene is fully described by its spec; pixels, masks and every caption are functions of the spec (plus the sample's
RNG for caption wording). Specs are what tests compare (e.g. "MMVP pairs differ in exactly one attribute") and what
the `objects` column of the datasets stores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .config import WorldConfig
from .render import BackgroundSpec, draw_object, render_background, sample_background
from .vocab import COLOURS, ORIENTATIONS, ORIENTED_SHAPES, POSITIONS, SHAPES, SIZES

OBJECT_ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position", "orientation")
"""The discrete attributes of an object (the other fields of `ObjectSpec` are continuous nuisances)."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object: its discrete attributes plus two continuous nuisances (colour jitter and in-cell jitter).

    `orientation` is one of `ORIENTATIONS` for `ORIENTED_SHAPES` and ``"none"`` otherwise. `rgb` is the drawn colour
    (the named colour plus jitter). `offset` in [-1, 1]^2 is the position inside the grid cell, scaled at render time
    by the free room around the object, so that no object ever leaves its cell.
    """

    shape: str
    colour: str
    size: str
    position: str
    orientation: str
    rgb: tuple[int, int, int]
    offset: tuple[float, float]

    @property
    def row(self) -> int:
        return POSITIONS.index(self.position) // 3

    @property
    def col(self) -> int:
        return POSITIONS.index(self.position) % 3

    @property
    def angle(self) -> float:
        """Rotation in degrees, clockwise; 0 for shapes without a visible orientation."""
        return 0.0 if self.orientation == "none" else 90.0 * ORIENTATIONS.index(self.orientation)

    def geometry(self, image_size: int) -> tuple[float, float, float]:
        """Centre ``(cx, cy)`` and radius in pixels for an image of side `image_size`."""
        radius = SIZES[self.size] * image_size
        cell = image_size / 3
        room = max(0.0, cell / 2 - 1.1 * radius)  # shapes reach at most ~1.06 radius from their centre
        cx = (self.col + 0.5) * cell + self.offset[0] * room
        cy = (self.row + 0.5) * cell + self.offset[1] * room
        return cx, cy, radius

    def to_dict(self, image_size: int) -> dict:
        """Row form stored in the `objects` column (discrete attributes + pixel geometry)."""
        cx, cy, radius = self.geometry(image_size)
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "position": self.position,
            "orientation": self.orientation,
            "cx": float(cx),
            "cy": float(cy),
            "radius": float(radius),
            "rgb": list(self.rgb),
        }

    def phrase(self, *, size: bool = False, orientation: bool = False) -> str:
        """Noun phrase without article: "[size] colour shape [pointing dir]"."""
        words = ([self.size] if size else []) + [self.colour, self.shape]
        text = " ".join(words)
        if orientation and self.orientation != "none":
            text += f" pointing {self.orientation}"
        return text


@dataclass(frozen=True)
class SceneSpec:
    """A scene: its objects (in drawing order; instance id = index + 1) and background."""

    objects: tuple[ObjectSpec, ...]
    background: BackgroundSpec


def jitter_rgb(colour: str, rng: np.random.Generator, jitter: int) -> tuple[int, int, int]:
    """The named colour plus a uniform per-channel jitter in [-jitter, jitter], clipped to [0, 255]."""
    base = np.asarray(COLOURS[colour], dtype=np.int64)
    noise = rng.integers(-jitter, jitter + 1, size=3) if jitter > 0 else np.zeros(3, dtype=np.int64)
    return tuple(int(c) for c in np.clip(base + noise, 0, 255))


def sample_object(
    rng: np.random.Generator, config: WorldConfig, shape: str, colour: str, position: str, size: str | None = None
) -> ObjectSpec:
    """An object with the given shape / colour / position and random size, orientation and nuisances."""
    if size is None:
        size = list(SIZES)[int(rng.integers(len(SIZES)))]
    orientation = ORIENTATIONS[int(rng.integers(4))] if shape in ORIENTED_SHAPES else "none"
    rgb = jitter_rgb(colour, rng, config.colour_jitter)
    offset = tuple(float(x) for x in rng.uniform(-1.0, 1.0, size=2))
    return ObjectSpec(shape, colour, size, position, orientation, rgb, offset)


def sample_scene(
    rng: np.random.Generator, config: WorldConfig, *, num_objects: int | None = None, unique_shapes: bool = False
) -> SceneSpec:
    """Sample a scene of `num_objects` (default: uniform in [min_objects, max_objects]) objects in distinct cells.

    Colour-shape combinations are distinct within a scene, so "the red circle" always names one object; with
    `unique_shapes=True` shapes are distinct too (MMVP statements refer to objects by shape alone).
    """
    if num_objects is None:
        num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    cells = rng.choice(len(POSITIONS), size=num_objects, replace=False)
    colours = list(COLOURS)
    if unique_shapes:
        shape_ids = rng.choice(len(SHAPES), size=num_objects, replace=False)
        pairs = [(int(s), int(rng.integers(len(colours)))) for s in shape_ids]
    else:
        combos = rng.choice(len(SHAPES) * len(colours), size=num_objects, replace=False)
        pairs = [(int(c) // len(colours), int(c) % len(colours)) for c in combos]
    objects = tuple(
        sample_object(rng, config, SHAPES[s], colours[c], POSITIONS[int(cell)]) for (s, c), cell in zip(pairs, cells)
    )
    return SceneSpec(objects, sample_background(rng))


def render_scene(scene: SceneSpec, config: WorldConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render `scene` into ``(image (S, S, 3), semantic (S, S), instance (S, S))`` uint8 arrays.

    Semantic ids follow `SEGMENTATION_CLASSES` (0 = background, 1 + shape index); instance ids are 1 + the object's
    index in `scene.objects` (0 = background).
    """
    size = config.image_size
    image = render_background(scene.background, size, config.texture_strength)
    semantic = np.zeros((size, size), dtype=np.uint8)
    instance = np.zeros((size, size), dtype=np.uint8)
    for index, obj in enumerate(scene.objects):
        cx, cy, radius = obj.geometry(size)
        draw_object(image, obj.shape, obj.rgb, cx, cy, radius, obj.angle, 1.0, semantic, instance, index + 1)
    return image, semantic, instance


def with_attribute(obj: ObjectSpec, attribute: str, value: str) -> ObjectSpec:
    """A copy of `obj` with one discrete attribute changed (nuisances kept)."""
    if attribute not in OBJECT_ATTRIBUTES:
        raise ValueError(f"Unknown attribute {attribute!r}; expected one of {OBJECT_ATTRIBUTES}.")
    return replace(obj, **{attribute: value})
