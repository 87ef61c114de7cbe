"""Video input for the few-shot action methods (CLIP-FSAR, MA-CLIP): frame sampling, PyAV decoding, preprocessing.

Why this module exists: the video methods see a clip as T frames that go one by one through a CLIP image tower, so
everything video-specific reduces to *which* frames are taken (`sample_frame_indices`), *how* they are read from a
file (`decode_video`, PyAV, because torchvision has no CPU build here) and *how* a batch of clips becomes a
``pixel_values`` tensor of shape ``[B, T, 3, H, W]`` (`preprocess_videos`, the CLIP image processor applied per
frame). Only PIL / numpy / torch are needed at import time; `av` is imported inside `decode_video`.

Frame sampling follows CLIP-FSAR's released configs (``../shared/methods/clip_fsar.md`` section 1.3):

* ``"uniform"``: the centres of T equal segments, deterministic (the usual test-time choice);
* ``"segment"``: TSN sampling, T equal segments and one random frame in each (CLIP-FSAR's ``SAMPLING_RATE > 40``
  path, which it also uses at test time); without a random generator the segment centre is taken, which makes it
  identical to ``"uniform"``.

Short videos (fewer frames than requested) are not an error: every available frame is repeated in order, as evenly as
possible (e.g. 3 frames -> 8 gives ``[0, 0, 0, 1, 1, 2, 2, 2]``), which keeps the temporal order that OTAM matching
relies on. Only an empty video is rejected.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .images import float_peak, to_rgb_image

SAMPLING_MODES = ("uniform", "segment")


def _check_positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def sample_frame_indices(
    num_available: int,
    num_frames: int,
    mode: str = "uniform",
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Indices of the `num_frames` frames to take from a video of `num_available` frames.

    The video is cut into `num_frames` equal segments ``[floor(i * n / T), floor((i + 1) * n / T))``.

    * ``mode="uniform"``: the centre ``floor((i + 0.5) * n / T)`` of each segment; deterministic, `rng` is ignored.
    * ``mode="segment"`` (TSN): one uniformly random frame per segment when `rng` is given, the segment centre (same
      as ``"uniform"``) when `rng` is None.

    Short videos (``num_available < num_frames``) repeat the available frames in order, as evenly as possible, with
    the same centre formula: 3 frames -> 8 gives ``[0, 0, 0, 1, 1, 2, 2, 2]``. ``"segment"`` then has nothing to
    randomise (some segments are empty) and returns the same indices.

    Args:
        num_available (`int`): frames in the video (>= 1).
        num_frames (`int`): frames wanted, T (>= 1).
        mode (`str`, defaults to `"uniform"`): `"uniform"` or `"segment"`.
        rng (`np.random.Generator` or `int`, *optional*): random source for `"segment"`; an int is used as a seed.

    Returns:
        `np.ndarray` of shape ``[num_frames]``, dtype int64, non-decreasing, values in ``[0, num_available)``.

    Raises:
        ValueError: `num_available` is 0 (an empty video), a count is not a positive integer, or `mode` is unknown.
    """
    if isinstance(num_available, bool) or not isinstance(num_available, (int, np.integer)):
        raise ValueError(f"`num_available` must be an integer, got {num_available!r}.")
    if num_available <= 0:
        raise ValueError(
            f"Expected a video with at least 1 frame to sample from, got num_available={num_available} "
            "(empty or undecodable video?)."
        )
    num_frames = _check_positive_int("num_frames", num_frames, 1)
    if mode not in SAMPLING_MODES:
        raise ValueError(f"`mode` must be one of {SAMPLING_MODES}, got {mode!r}.")
    n = int(num_available)
    steps = np.arange(num_frames, dtype=np.int64)
    # Integer arithmetic for the centres: floor((2i + 1) * n / (2T)) avoids float rounding at segment borders.
    centres = ((2 * steps + 1) * n) // (2 * num_frames)
    if mode == "uniform" or rng is None or n < num_frames:
        return centres.astype(np.int64)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    starts = (steps * n) // num_frames
    ends = ((steps + 1) * n) // num_frames  # n >= T, so every segment holds at least one frame
    # `integers` draws in [start, end) per segment; the segments are disjoint and ordered, hence non-decreasing.
    return rng.integers(starts, ends).astype(np.int64)


def _import_av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "decode_video needs PyAV (the `av` package) to read video files: `pip install av`. "
            "Frames already decoded to PIL images or arrays can go straight to `preprocess_videos`."
        ) from error
    return av


def decode_video(
    path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview,
    num_frames: int,
    mode: str = "uniform",
    rng: np.random.Generator | int | None = None,
) -> list[Image.Image]:
    """Decode the first video stream of a file (or its bytes) and return `num_frames` sampled RGB frames.

    Every frame of the stream is decoded first (container frame counts are often missing or wrong, so the true
    length is only known after decoding), then `sample_frame_indices` picks the frames; only the picked frames are
    converted to RGB, which keeps memory close to that of the compressed YUV frames.

    Args:
        path_or_bytes: a path to a video file, or the file's content as bytes.
        num_frames (`int`): frames to return, T.
        mode (`str`, defaults to `"uniform"`): `"uniform"` or `"segment"` (see `sample_frame_indices`).
        rng (`np.random.Generator` or `int`, *optional*): random source for `"segment"`.

    Returns:
        a list of T `PIL.Image` in RGB mode, in temporal order (repeated frames for videos shorter than T).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be decoded, has no video stream, or the stream has zero frames.
        ImportError: PyAV is not installed.
    """
    num_frames = _check_positive_int("num_frames", num_frames, 1)
    if mode not in SAMPLING_MODES:
        raise ValueError(f"`mode` must be one of {SAMPLING_MODES}, got {mode!r}.")
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        source: Any = io.BytesIO(bytes(path_or_bytes))
        name = f"<{len(source.getbuffer())} bytes>"
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        name = os.fspath(path_or_bytes)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"Video file not found: {name!r}.")
        source = name
    else:
        raise TypeError(f"`path_or_bytes` must be a path or bytes, got {type(path_or_bytes).__name__}.")
    av = _import_av()
    try:
        container = av.open(source, mode="r")
    except av.FFmpegError as error:
        raise ValueError(f"Could not open video {name}: {error}") from error
    try:
        if not container.streams.video:
            raise ValueError(f"Video {name} has no video stream (streams: {[s.type for s in container.streams]}).")
        stream = container.streams.video[0]
        # Frame-level threading decodes several frames at once; harmless for tiny files, much faster for long ones.
        stream.thread_type = "AUTO"
        try:
            frames = list(container.decode(stream))
        except av.FFmpegError as error:
            raise ValueError(f"Could not decode video {name}: {error}") from error
    finally:
        container.close()
    if not frames:
        raise ValueError(f"Video {name} has a video stream but zero decodable frames; expected at least 1 frame.")
    indices = sample_frame_indices(len(frames), num_frames, mode=mode, rng=rng)
    # Repeated indices (short videos) share one converted image instead of converting the same frame twice.
    converted: dict[int, Image.Image] = {}
    for index in np.unique(indices):
        converted[int(index)] = to_rgb_image(frames[int(index)].to_image(), name=f"Video {name}, frame {index}")
    return [converted[int(index)] for index in indices]


def _video_to_frames(video: Any, position: int) -> list[Image.Image]:
    """One video (list of PIL images / arrays, or an array ``[T, H, W, C]`` / ``[T, H, W]``) as RGB PIL frames."""
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu()
        video = (video.float() if video.is_floating_point() else video).numpy()
    if isinstance(video, np.ndarray):
        if video.ndim not in (3, 4):
            raise ValueError(
                f"Video {position}: expected an array of shape [T, H, W, 3] (or [T, H, W]), got shape {video.shape}."
            )
        video = list(video)
    if isinstance(video, (str, bytes)) or not isinstance(video, Sequence):
        raise ValueError(
            f"Video {position}: expected a list of frames (PIL images or [H, W, 3] arrays) or an array "
            f"[T, H, W, 3], got {type(video).__name__}."
        )
    if len(video) == 0:
        raise ValueError(f"Video {position}: expected at least 1 frame, got an empty video.")
    for k, frame in enumerate(video):
        if not isinstance(frame, (Image.Image, np.ndarray, torch.Tensor)):
            raise ValueError(
                f"Video {position}, frame {k}: expected a PIL image or an array, got {type(frame).__name__}."
            )
    # One [0, 1]-or-[0, 255] decision per video, so that its dark frames are scaled like its bright ones.
    peak = float_peak(video)
    return [to_rgb_image(frame, name=f"Video {position}, frame {k}", float_peak=peak) for k, frame in enumerate(video)]


def preprocess_videos(
    videos: Sequence[Any],
    image_processor: Any,
    num_frames: int | None = None,
    mode: str = "uniform",
    rng: np.random.Generator | int | None = None,
) -> torch.Tensor:
    """Turn a batch of videos into CLIP ``pixel_values`` of shape ``[B, T, 3, H, W]``.

    Each frame goes through the CLIP image processor (resize, centre crop, normalise), so frames of any size work and
    videos in one batch may differ in resolution. Videos whose frame count differs from `num_frames` are resampled
    with `sample_frame_indices` (`mode`, `rng`); short videos repeat frames in order.

    Args:
        videos: B videos, each a list of PIL images / ``[H, W, 3]`` arrays, or an array ``[T, H, W, 3]`` (numpy or
            torch). Frames follow the zoo's one image policy (`hf_clipzoo.data.images.to_rgb_image`): non-RGB PIL
            modes are converted to RGB, 16-bit and float frames scaled to 8 bits (floats in [0, 1] taken as scaled).
        image_processor: a CLIP image processor (e.g. ``build_clip_processor().image_processor``), or a processor
            with an ``image_processor`` attribute; called as ``image_processor(images=..., return_tensors="pt")``.
        num_frames (`int`, *optional*): T. When None, every video must already have the same number of frames
            (an arbitrary choice such as "the first video's length" would silently change what the model sees).
        mode (`str`, defaults to `"uniform"`): frame sampling for videos that are resampled.
        rng (`np.random.Generator` or `int`, *optional*): random source for ``mode="segment"``.

    Returns:
        `torch.FloatTensor` ``[B, T, 3, H, W]``.

    Raises:
        ValueError: no videos, an empty video ("expected at least 1 frame"), unsupported frame types, or differing
            frame counts with ``num_frames=None``.
    """
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
        videos = list(videos)
    if isinstance(videos, (str, bytes)) or not isinstance(videos, Sequence):
        raise ValueError(f"`videos` must be a list of videos, got {type(videos).__name__}.")
    if len(videos) == 0:
        raise ValueError("`videos` is empty: expected at least 1 video.")
    if num_frames is not None:
        num_frames = _check_positive_int("num_frames", num_frames, 1)
    processor = getattr(image_processor, "image_processor", image_processor)
    if not callable(processor):
        raise ValueError(f"`image_processor` must be callable, got {type(image_processor).__name__}.")
    clips = [_video_to_frames(video, position) for position, video in enumerate(videos)]
    if num_frames is None:
        lengths = sorted({len(clip) for clip in clips})
        if len(lengths) > 1:
            raise ValueError(
                f"Videos have different frame counts {lengths}; pass `num_frames` to resample them to one length."
            )
        num_frames = lengths[0]
    if rng is not None and not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    flat: list[Image.Image] = []
    for clip in clips:
        if len(clip) != num_frames:
            clip = [clip[i] for i in sample_frame_indices(len(clip), num_frames, mode=mode, rng=rng)]
        flat.extend(clip)
    # One processor call for all B * T frames: same result as per-frame calls, much less Python overhead.
    pixel_values = processor(images=flat, return_tensors="pt")["pixel_values"]
    if not isinstance(pixel_values, torch.Tensor):
        pixel_values = torch.as_tensor(np.asarray(pixel_values))
    if pixel_values.ndim != 4 or pixel_values.shape[0] != len(flat):
        raise ValueError(
            f"The image processor returned pixel_values of shape {tuple(pixel_values.shape)} for {len(flat)} "
            "frames; expected [frames, 3, H, W]."
        )
    return pixel_values.reshape(len(clips), num_frames, *pixel_values.shape[1:])


__all__ = ["SAMPLING_MODES", "decode_video", "preprocess_videos", "sample_frame_indices"]
