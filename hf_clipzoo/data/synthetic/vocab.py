"""The closed vocabulary of the embedded world.

Every word a caption, a class name or a statement can contain is defined here, once, so that captions, class lists,
segmentation classes and MMVP statements always agree. The vocabulary is chosen for *learnability at 32-64 px*:

* 8 shapes whose silhouettes differ at low resolution (a round blob, a ring, straight edges, points, an arrow shaft);
* 8 saturated object colours that are far apart in RGB and far from the muted background colours;
* 3 sizes, given as object radii in fractions of the image side;
* 9 positions, the cells of a 3x3 grid (one object per cell, so objects never overlap and relations are unambiguous);
* 4 orientations (the direction the tip points), visible only for the shapes in `ORIENTED_SHAPES`.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "arrow")
"""Shape names; their order fixes the semantic-segmentation class ids (`SEGMENTATION_CLASSES`)."""

ORIENTED_SHAPES: tuple[str, ...] = ("triangle", "arrow")
"""Shapes whose orientation is visible (no 90-degree rotational symmetry). Others have orientation ``"none"``."""

ORIENTATIONS: tuple[str, ...] = ("up", "right", "down", "left")
"""Direction the tip points; the rotation angle is ``90 * index`` degrees, clockwise on screen."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 230, 30),
    "green": (30, 190, 50),
    "cyan": (20, 210, 230),
    "blue": (30, 70, 240),
    "purple": (150, 40, 220),
    "white": (250, 250, 250),
}
"""Object colour names and their RGB values (a per-object jitter of ``WorldConfig.colour_jitter`` is added)."""

SIZES: dict[str, float] = {"small": 0.09, "medium": 0.12, "large": 0.15}
"""Object radius as a fraction of the image side. Even "large" fits in a 3x3 grid cell (half-width 1/6)."""

POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
"""Grid-cell names in row-major order: cell index ``3 * row + col``."""

POSITION_PHRASES: dict[str, str] = {
    "top left": "in the top left corner",
    "top": "at the top",
    "top right": "in the top right corner",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left corner",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}

BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "grey": (110, 110, 110),
    "dark grey": (65, 65, 65),
    "brown": (105, 85, 65),
    "slate": (75, 85, 105),
    "olive": (90, 95, 65),
}
"""Muted background colours: a nuisance the captions mention only in long / pseudo captions."""

TEXTURES: tuple[str, ...] = ("noisy", "striped", "checkered")
"""Background textures (coarse value noise, sinusoidal stripes at one of 4 angles, a checkerboard)."""

SEGMENTATION_CLASSES: tuple[str, ...] = ("background",) + SHAPES
"""Semantic-mask class list: pixel value 0 is background, ``1 + SHAPES.index(shape)`` is that shape."""

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little"),
    "medium": ("medium", "medium-sized"),
    "large": ("large", "big"),
    "shapes": ("shapes", "objects"),
}
"""The only synonyms used (by pseudo-captions alone): size words and "shapes". Shape and colour words never vary,
so zero-shot class names and statements stay inside the words the captions teach."""
