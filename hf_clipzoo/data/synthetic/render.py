"""Vectorised numpy rendering of the embedded world (no per-pixel Python loops, no PIL drawing).

Geometry conventions:

* pixel ``(row, col)`` has its centre at ``(x, y) = (col + 0.5, row + 0.5)``; ``y`` grows downwards (screen coordinates);
* a shape is defined in a unit object frame ``(u, v)`` (radius 1, tip pointing up at ``v = -1``) and every shape fits
  in the disc of radius ~1.06;
* ``angle`` is in degrees, clockwise on screen: 0 = tip up, 90 = right, 180 = down, 270 = left. A pixel at offset
  ``(dx, dy)`` from the centre maps to ``u = (dx cos a + dy sin a) / r``, ``v = (-dx sin a + dy cos a) / r``
  (the inverse of the clockwise rotation ``(x, y) -> (x cos a - y sin a, x sin a + y cos a)``).

Drawing an object only touches its bounding box, so the cost is O(object area), not O(image area).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .vocab import BACKGROUND_COLOURS, SHAPES, TEXTURES


@dataclass(frozen=True)
class BackgroundSpec:
    """A textured background: its texture kind and colour name plus the texture's random parameters."""

    texture: str
    colour: str
    period: float  # stripe period / checker cell, as a fraction of the image side
    angle: int  # stripe angle in degrees (0, 45, 90, 135)
    phase: float  # stripe phase in [0, 1)
    noise_seed: int  # seed of the coarse value noise

    def to_dict(self) -> dict:
        return {
            "texture": self.texture,
            "colour": self.colour,
            "period": self.period,
            "angle": self.angle,
            "phase": self.phase,
            "noise_seed": self.noise_seed,
        }


def sample_background(rng: np.random.Generator) -> BackgroundSpec:
    """Draw a random background (texture, muted colour and texture parameters)."""
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    colour = list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))]
    period = float(rng.choice((0.125, 0.1667, 0.25)))
    angle = int(rng.choice((0, 45, 90, 135)))
    phase = float(rng.random())
    noise_seed = int(rng.integers(2**31))
    return BackgroundSpec(texture, colour, period, angle, phase, noise_seed)


def render_background(background: BackgroundSpec, size: int, strength: int) -> np.ndarray:
    """Render `background` as a `(size, size, 3)` uint8 array; `strength` is the texture amplitude in grey levels."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    if background.texture == "striped":
        theta = math.radians(background.angle)
        proj = coords[None, :] * math.cos(theta) + coords[:, None] * math.sin(theta)
        texture = np.sin(2 * math.pi * (proj / (background.period * size) + background.phase))
    elif background.texture == "checkered":
        cell = max(2, int(round(background.period * size)))
        idx = (np.arange(size) // cell).astype(np.int8)
        texture = ((idx[None, :] + idx[:, None]) % 2).astype(np.float32) * 2 - 1
    elif background.texture == "noisy":
        # Coarse (blocky) value noise: textured like paper grain, yet cheap to PNG-compress, unlike per-pixel noise.
        cell = max(2, size // 16)
        n = -(-size // cell)
        grid = np.random.Generator(np.random.PCG64(background.noise_seed)).random((n, n), dtype=np.float32) * 2 - 1
        texture = np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)[:size, :size]
    else:
        raise ValueError(f"Unknown background texture {background.texture!r}; expected one of {TEXTURES}.")
    base = np.asarray(BACKGROUND_COLOURS[background.colour], dtype=np.float32)
    out = base[None, None, :] + (strength * texture)[:, :, None]
    return np.clip(out, 0, 255).astype(np.uint8)


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of `shape` in the unit object frame (tip up); `u`, `v` broadcast together."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "ring":
        d2 = u * u + v * v
        return (d2 <= 1.0) & (d2 >= 0.3)
    if shape == "square":
        return (np.abs(u) <= 0.75) & (np.abs(v) <= 0.75)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.34) & (av <= 0.95)) | ((av <= 0.34) & (au <= 0.95))
    if shape == "triangle":
        # Tip (0, -1), base corners (+-0.95, 0.65).
        return (v <= 0.65) & (v >= -1.0 + (1.65 / 0.95) * np.abs(u))
    if shape == "arrow":
        # Head: tip (0, -1), barbs (+-0.8, 0); shaft: half-width 0.3 from the head down to v = 1.
        head = (v <= 0.0) & (v >= -1.0 + 1.25 * np.abs(u))
        shaft = (np.abs(u) <= 0.3) & (v >= -0.05) & (v <= 1.0)
        return head | shaft
    if shape == "star":
        # Five points: the boundary radius goes linearly from 1 (tips) to 0.45 (valleys) with the angle.
        rho = np.sqrt(u * u + v * v)
        theta = np.arctan2(u, -v)  # 0 along the tip direction
        period = 2 * math.pi / 5
        t = np.abs(np.mod(theta, period) / period - 0.5) * 2  # 1 at a tip, 0 at a valley
        return rho <= 0.45 + 0.55 * t
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def draw_object(
    image: np.ndarray,
    shape: str,
    rgb: tuple[int, int, int],
    cx: float,
    cy: float,
    radius: float,
    angle: float = 0.0,
    opacity: float = 1.0,
    semantic: np.ndarray | None = None,
    instance: np.ndarray | None = None,
    instance_id: int = 0,
) -> int:
    """Draw one object into `image` (H, W, 3 uint8) in place, and into the masks when given.

    `cx`, `cy`, `radius` are in pixels, `angle` in degrees clockwise. `opacity` < 1 alpha-blends the colour (used by
    fading videos); masks are written wherever the object is drawn with opacity > 0. Returns the number of pixels.
    """
    if opacity <= 0.0 or radius <= 0.0:
        return 0
    height, width = image.shape[:2]
    reach = 1.1 * radius
    x0, x1 = max(0, int(math.floor(cx - reach))), min(width, int(math.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(math.floor(cy - reach))), min(height, int(math.ceil(cy + reach)) + 1)
    if x0 >= x1 or y0 >= y1:
        return 0
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    if angle % 360 == 0:
        u, v = dx / radius, dy / radius
    else:
        a = math.radians(angle)
        c, s = math.cos(a), math.sin(a)
        u = (dx * c + dy * s) / radius
        v = (-dx * s + dy * c) / radius
    mask = shape_mask(shape, u, v)
    mask = np.broadcast_to(mask, (y1 - y0, x1 - x0))
    region = image[y0:y1, x0:x1]
    colour = np.asarray(rgb, dtype=np.uint8)
    if opacity >= 1.0:
        region[mask] = colour
    else:
        blended = (1.0 - opacity) * region[mask].astype(np.float32) + opacity * colour.astype(np.float32)
        region[mask] = np.round(blended).astype(np.uint8)
    if semantic is not None:
        semantic[y0:y1, x0:x1][mask] = SHAPES.index(shape) + 1
    if instance is not None:
        instance[y0:y1, x0:x1][mask] = instance_id
    return int(mask.sum())


def png_bytes(array: np.ndarray) -> dict:
    """Encode a uint8 array (H, W, 3) or (H, W) as PNG, in the `{"bytes", "path"}` form `datasets.Image` stores.

    PNG is lossless, so masks keep their exact ids; compression level 1 because encoding dominates generation time.
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return {"bytes": buffer.getvalue(), "path": None}
