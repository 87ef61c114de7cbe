"""Short action videos whose class depends on temporal order (CLIP-FSAR, MA-CLIP): `make_action_videos`.

Each video shows one object (two for "coming together" / "moving apart") on a static textured background. The class
is the *motion*; shape, colour, background, start point, speed and size are nuisances. Classes come in reversal
pairs: playing a video backwards turns "moving left" into "moving right", "growing" into "shrinking", "appearing"
into "disappearing", "approaching the center" into "leaving the center", and so on (`reverse_action`). The
order-independent classes ("pulsing", "shaking", "blinking", "standing still") are exact palindromes: their frames
reversed are their frames, so they map to themselves.

Meta splits (`ACTION_CLASSES`) keep every reversal pair inside one split, so a 5-way episode of meta-val / meta-test
always contains a pair that a model blind to frame order cannot separate:

* ``meta_train`` (12): cardinal moves, rotations, growing / shrinking, coming together / moving apart, pulsing,
  shaking;
* ``meta_val`` (5): diagonal up-right / down-left, approaching / leaving the center, blinking;
* ``meta_test`` (5): diagonal up-left / down-right, appearing / disappearing, standing still.

Trajectories (``t`` = frame / (T - 1) in [0, 1], S = image size): moves are linear over 0.35-0.5 S (cardinal) or
0.25-0.35 S per axis (diagonal, exactly 45 degrees); "approaching the center" ends exactly at the centre from a
direction at least 12 degrees away from any multiple of 45 degrees (so it is never a cardinal or diagonal move);
rotations turn an arrow by 180 degrees (clockwise on screen = increasing angle); growing goes from radius 0.05 S to
0.2 S; appearing fades the opacity from 0 to 1; coming together shrinks the distance of two objects from ~0.55 S to
~0.25 S. Palindromic profiles are computed on ``min(t, 1 - t)`` so reversal is exact in floating point.

Columns: ``frames`` (`datasets.List(datasets.Image())`: a list of T RGB `PIL.Image`s, which an image processor
takes as a batch of frames, e.g. ``processor(images=row["frames"])``), ``label`` (`datasets.ClassLabel` over the
split's classes), ``label_name``, ``objects`` (per object: shape, colour and per-frame ``cx``, ``cy``, ``radius`` in
pixels, ``angle`` in degrees, ``opacity``), ``background`` (texture, colour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import datasets
import numpy as np

from .config import VIDEO_SPLITS, WorldConfig, check_count, check_split, sample_rng
from .render import BackgroundSpec, draw_object, png_bytes, render_background, sample_background
from .scenes import rows_to_dataset
from .spec import jitter_rgb
from .vocab import COLOURS, ORIENTED_SHAPES, SHAPES

ACTION_CLASSES: dict[str, tuple[str, ...]] = {
    "meta_train": (
        "moving left",
        "moving right",
        "moving up",
        "moving down",
        "rotating clockwise",
        "rotating counter-clockwise",
        "growing",
        "shrinking",
        "coming together",
        "moving apart",
        "pulsing",
        "shaking",
    ),
    "meta_val": (
        "moving up and right",
        "moving down and left",
        "approaching the center",
        "leaving the center",
        "blinking",
    ),
    "meta_test": (
        "moving up and left",
        "moving down and right",
        "appearing",
        "disappearing",
        "standing still",
    ),
}

_REVERSAL_PAIRS = (
    ("moving left", "moving right"),
    ("moving up", "moving down"),
    ("moving up and right", "moving down and left"),
    ("moving up and left", "moving down and right"),
    ("rotating clockwise", "rotating counter-clockwise"),
    ("growing", "shrinking"),
    ("appearing", "disappearing"),
    ("coming together", "moving apart"),
    ("approaching the center", "leaving the center"),
)
ORDER_INDEPENDENT_ACTIONS: tuple[str, ...] = ("pulsing", "shaking", "blinking", "standing still")
REVERSE_ACTIONS: dict[str, str] = {
    **{a: b for a, b in _REVERSAL_PAIRS},
    **{b: a for a, b in _REVERSAL_PAIRS},
    **{a: a for a in ORDER_INDEPENDENT_ACTIONS},
}
ALL_ACTIONS: tuple[str, ...] = tuple(name for split in VIDEO_SPLITS for name in ACTION_CLASSES[split])

MIN_FRAMES = 4  # palindromic classes need a middle; direction needs at least two steps to be unambiguous
MAX_FRAMES = 256

# Unit displacement (dx, dy) of the linear moves, screen coordinates (y down).
_DIRECTIONS = {
    "moving left": (-1, 0),
    "moving right": (1, 0),
    "moving up": (0, -1),
    "moving down": (0, 1),
    "moving up and right": (1, -1),
    "moving down and left": (-1, 1),
    "moving up and left": (-1, -1),
    "moving down and right": (1, 1),
}


def reverse_action(name: str) -> str:
    """The class of a video of class `name` played backwards (order-independent classes map to themselves)."""
    if name not in REVERSE_ACTIONS:
        raise ValueError(f"Unknown action {name!r}; expected one of {ALL_ACTIONS}.")
    return REVERSE_ACTIONS[name]


@dataclass(frozen=True)
class TrackSpec:
    """One object of a video: appearance plus per-frame geometry (pixels, degrees clockwise, opacity in [0, 1])."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    cx: tuple[float, ...]
    cy: tuple[float, ...]
    radius: tuple[float, ...]
    angle: tuple[float, ...]
    opacity: tuple[float, ...]

    def reversed(self) -> TrackSpec:
        def r(values: tuple[float, ...]) -> tuple[float, ...]:
            return tuple(values[::-1])

        return TrackSpec(
            self.shape, self.colour, self.rgb, r(self.cx), r(self.cy), r(self.radius), r(self.angle), r(self.opacity)
        )

    def to_dict(self) -> dict:
        return {
            "shape": self.shape,
            "colour": self.colour,
            "cx": list(self.cx),
            "cy": list(self.cy),
            "radius": list(self.radius),
            "angle": list(self.angle),
            "opacity": list(self.opacity),
        }


@dataclass(frozen=True)
class VideoSpec:
    """A video: its class, background and object tracks."""

    action: str
    background: BackgroundSpec
    tracks: tuple[TrackSpec, ...]

    @property
    def num_frames(self) -> int:
        return len(self.tracks[0].cx)

    def reversed(self) -> VideoSpec:
        """The same video played backwards, labelled with `reverse_action`."""
        return VideoSpec(reverse_action(self.action), self.background, tuple(t.reversed() for t in self.tracks))


def _track(rng, config, shape, colour, cx, cy, radius, angle, opacity, num_frames) -> TrackSpec:
    def full(values):
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), (num_frames,))
        return tuple(float(v) for v in values)

    rgb = jitter_rgb(colour, rng, config.colour_jitter)
    return TrackSpec(shape, colour, rgb, full(cx), full(cy), full(radius), full(angle), full(opacity))


def sample_video(action: str, rng: np.random.Generator, config: WorldConfig, num_frames: int) -> VideoSpec:
    """Sample a video of class `action` with `num_frames` frames (trajectories in the module docstring)."""
    if action not in REVERSE_ACTIONS:
        raise ValueError(f"Unknown action {action!r}; expected one of {ALL_ACTIONS}.")
    size = float(config.image_size)
    t = np.linspace(0.0, 1.0, num_frames)
    sym = np.minimum(t, t[::-1])  # exactly palindromic "distance to the nearest end", in [0, 0.5]
    colours = list(COLOURS)
    shape = "arrow" if action.startswith("rotating") else SHAPES[int(rng.integers(len(SHAPES)))]
    colour = colours[int(rng.integers(len(colours)))]
    angle0 = 90.0 * int(rng.integers(4)) if shape in ORIENTED_SHAPES else 0.0
    radius = size * rng.uniform(0.09, 0.13)
    cx0, cy0 = size * rng.uniform(0.3, 0.7, size=2)
    cx, cy, r, angle, opacity = cx0, cy0, radius, angle0, 1.0

    if action in _DIRECTIONS:
        dx, dy = _DIRECTIONS[action]
        step = size * (rng.uniform(0.35, 0.5) if dx == 0 or dy == 0 else rng.uniform(0.25, 0.35))
        # Start so that the whole path stays inside [0.2 S, 0.8 S] on both axes.
        low, high = 0.2 * size, 0.8 * size
        x_start = rng.uniform(low + max(0.0, -dx * step), high - max(0.0, dx * step)) if dx else cx0
        y_start = rng.uniform(low + max(0.0, -dy * step), high - max(0.0, dy * step)) if dy else cy0
        cx, cy = x_start + dx * step * t, y_start + dy * step * t
    elif action in ("approaching the center", "leaving the center"):
        phi = math.radians(45.0 * int(rng.integers(8)) + rng.uniform(12.0, 33.0))
        distance = size * rng.uniform(0.28, 0.36) * (1.0 - t if action == "approaching the center" else t)
        cx, cy = size / 2 + distance * math.cos(phi), size / 2 + distance * math.sin(phi)
    elif action.startswith("rotating"):
        angle = angle0 + (180.0 if action == "rotating clockwise" else -180.0) * t
    elif action in ("growing", "shrinking"):
        ramp = t if action == "growing" else 1.0 - t
        r = size * (0.05 + 0.15 * ramp)
    elif action in ("appearing", "disappearing"):
        opacity = t if action == "appearing" else 1.0 - t
    elif action == "pulsing":
        r = size * (0.06 + 0.12 * np.sin(math.pi * sym))
    elif action == "shaking":
        cx = cx0 + 0.08 * size * np.cos(4 * math.pi * sym)
    elif action == "blinking":
        opacity = np.cos(math.pi * sym)
    elif action in ("coming together", "moving apart"):
        phi = rng.uniform(0.0, math.pi)
        separation = size * (0.25 + rng.uniform(0.25, 0.32) * (1.0 - t if action == "coming together" else t))
        centre_x, centre_y = size * rng.uniform(0.4, 0.6, size=2)
        other_shape = SHAPES[int(rng.integers(len(SHAPES)))]
        other_colour = colours[(colours.index(colour) + 1 + int(rng.integers(len(colours) - 1))) % len(colours)]
        half_x, half_y = separation / 2 * math.cos(phi), separation / 2 * math.sin(phi)
        r = size * 0.09
        other = _track(
            rng, config, other_shape, other_colour, centre_x + half_x, centre_y + half_y, r, 0.0, 1.0, num_frames
        )
        first = _track(rng, config, shape, colour, centre_x - half_x, centre_y - half_y, r, angle0, 1.0, num_frames)
        return VideoSpec(action, sample_background(rng), (first, other))
    # "standing still" keeps every default.
    track = _track(rng, config, shape, colour, cx, cy, r, angle, opacity, num_frames)
    return VideoSpec(action, sample_background(rng), (track,))


def render_video(video: VideoSpec, config: WorldConfig) -> np.ndarray:
    """Render `video` as a ``(T, S, S, 3)`` uint8 array (the background is drawn once and copied per frame)."""
    background = render_background(video.background, config.image_size, config.texture_strength)
    frames = np.repeat(background[None], video.num_frames, axis=0)
    for k in range(video.num_frames):
        for track in video.tracks:
            draw_object(
                frames[k], track.shape, track.rgb, track.cx[k], track.cy[k], track.radius[k], track.angle[k],
                track.opacity[k],
            )  # fmt: skip
    return frames


def action_features(split: str) -> datasets.Features:
    track = {
        "shape": datasets.Value("string"),
        "colour": datasets.Value("string"),
        **{key: datasets.List(datasets.Value("float32")) for key in ("cx", "cy", "radius", "angle", "opacity")},
    }
    return datasets.Features(
        {
            "frames": datasets.List(datasets.Image()),
            "label": datasets.ClassLabel(names=list(ACTION_CLASSES[split])),
            "label_name": datasets.Value("string"),
            "objects": datasets.List(track),
            "background": {"texture": datasets.Value("string"), "colour": datasets.Value("string")},
        }
    )


def generate_action_video_spec(
    index: int, *, split: str = "meta_train", num_frames: int = 8, config: WorldConfig | None = None
) -> VideoSpec:
    """The spec of row `index` of `make_action_videos(..., split=split, num_frames=num_frames, config=config)`."""
    config = config or WorldConfig()
    check_split(split, VIDEO_SPLITS)
    classes = ACTION_CLASSES[split]
    rng = sample_rng(config, "videos", split, index)
    return sample_video(classes[index % len(classes)], rng, config, num_frames)


def make_action_videos(
    num_per_class: int, *, split: str = "meta_train", num_frames: int = 8, config: WorldConfig | None = None
) -> datasets.Dataset:
    """Generate ``num_per_class * len(ACTION_CLASSES[split])`` videos (columns in the module docstring).

    Args:
        num_per_class (`int`): videos per class (> 0); row ``i`` has label ``i % num_classes``.
        split (`str`, defaults to `"meta_train"`): one of `"meta_train"`, `"meta_val"`, `"meta_test"`.
        num_frames (`int`, defaults to 8): frames per video (4 to 256).
        config (`WorldConfig`, *optional*): world configuration (seed, image_size, colour_jitter, texture_strength).
    """
    check_count("num_per_class", num_per_class)
    config = config or WorldConfig()
    check_split(split, VIDEO_SPLITS)
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be an integer, got {num_frames!r}.")
    if not MIN_FRAMES <= num_frames <= MAX_FRAMES:
        raise ValueError(f"num_frames must be between {MIN_FRAMES} and {MAX_FRAMES}, got {num_frames}.")
    classes = ACTION_CLASSES[split]
    rows = []
    for index in range(num_per_class * len(classes)):
        video = generate_action_video_spec(index, split=split, num_frames=num_frames, config=config)
        frames = render_video(video, config)
        rows.append(
            {
                "frames": [png_bytes(frame) for frame in frames],
                "label": classes.index(video.action),
                "label_name": video.action,
                "objects": [track.to_dict() for track in video.tracks],
                "background": {"texture": video.background.texture, "colour": video.background.colour},
            }
        )
    return rows_to_dataset(rows, action_features(split))
