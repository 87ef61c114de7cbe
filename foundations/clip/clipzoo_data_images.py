"""One policy for turning any image the zoo is given into the 8-bit RGB PIL image a CLIP model is trained on.

Every entry point that reads pixels goes through `to_rgb_image`: the processors (`check_images`), the training
collators (`decode_image`) and the video frame loading (`decode_video`, `preprocess_videos`). Without one place,
the processor refused 16-bit PNGs while the collator ran them through `convert("RGB")`, which clips 16-bit values at
255 (a white image that was then trained on), and float arrays already in [0, 1] (torchvision's `ToTensor`) were
rescaled by 1/255 a second time inside transformers.

The policy, which keeps every value it accepts and refuses what it cannot read unambiguously:

* PIL 8-bit modes (1, L, LA, P, PA, RGBA, CMYK, YCbCr, ...) use PIL's own conversion to RGB (alpha dropped);
* 16-bit modes (`I;16`, `I;16B`, ... and `I`, how Pillow opens 16-bit PNG / TIFF) are scaled by 255 / 65535;
  an `I` image with values outside [0, 65535] is refused;
* float data (PIL `F`, float arrays / tensors) in [0, 1] is taken as already scaled (x 255), float data in [0, 255]
  as 8-bit values (the same heuristic as transformers' "already rescaled" check: an image whose floats all lie in
  [0, 1] is taken as scaled); anything outside [0, 255] (e.g. mean/std-normalised pixels), NaN or inf is refused;
* integer arrays / tensors: uint16 is 16-bit, every other integer type must hold values in [0, 255]; bool is 0 / 255;
* arrays / tensors are (H, W), (H, W, C) or (C, H, W) with C in {1, 3, 4}; when both ends could be channels, the
  first wins (as transformers decides).

Refusals are `ValueError`s that name the image (`name`) and say what was expected.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
CHANNEL_COUNTS = (1, 3, 4)


def _float_to_uint8(values: np.ndarray, name: str, float_peak: float | None = None) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values; expected finite pixel values.")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise ValueError(
            f"{name} has float values in [{low:.4g}, {high:.4g}]; expected [0, 1] (already scaled) or [0, 255] "
            "(8-bit values). Pass the image before mean/std normalisation."
        )
    scale = 255.0 if (high if float_peak is None else float_peak) <= 1 else 1.0
    return np.rint(values.astype(np.float64) * scale).astype(np.uint8)


def _sixteen_bit_to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise ValueError(f"{name} has values in [{low}, {high}]; expected 16-bit values in [0, 65535].")
    # v * 255 / 65535 == v / 257: exact for the 8-bit values a 16-bit writer stores as v8 * 257.
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _array_to_uint8(values: np.ndarray, name: str, float_peak: float | None = None) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if values.dtype == np.uint16:
        return _sixteen_bit_to_uint8(values, name)
    if np.issubdtype(values.dtype, np.floating):
        return _float_to_uint8(values, name, float_peak)
    if np.issubdtype(values.dtype, np.integer):
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{name} has integer values in [{low}, {high}]; expected 8-bit values in [0, 255] "
                "(or a uint16 array for 16-bit images)."
            )
        return values.astype(np.uint8)
    raise ValueError(f"{name} has dtype {values.dtype}; expected uint8, uint16, bool, integer or float pixels.")


def _channels_last(values: np.ndarray, name: str) -> np.ndarray:
    """(H, W) or (H, W, C) view of a 2-D / 3-D array, C in {1, 3, 4}."""
    shape = tuple(values.shape)
    if len(shape) == 3 and shape[0] in CHANNEL_COUNTS:
        values = np.moveaxis(values, 0, -1)
    elif not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in CHANNEL_COUNTS)):
        raise ValueError(
            f"{name} has shape {shape}; expected (height, width), (height, width, 1|3|4) or (1|3|4, height, width)."
        )
    if min(shape) == 0:
        raise ValueError(f"{name} is empty (shape {shape}).")
    return values[..., 0] if values.ndim == 3 and values.shape[-1] == 1 else values


def to_rgb_image(image, name: str = "image", float_peak: float | None = None) -> Image.Image:
    """`image` (PIL image, numpy array or torch tensor) as an 8-bit RGB PIL image, or a `ValueError` naming `name`.

    `float_peak`: the largest value of the group a float image belongs to (the frames of one video), so that the
    [0, 1]-or-[0, 255] decision is made once for the group: a dark frame of a [0, 255] video is not scaled by 255.
    """
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{name} is empty ({image.width}x{image.height}).")
        if image.mode == "RGB":
            return image
        if image.mode in SIXTEEN_BIT_MODES:
            values = _sixteen_bit_to_uint8(np.asarray(image), f"{name} (mode {image.mode})")
            return Image.fromarray(values).convert("RGB")
        if image.mode == "F":
            values = _float_to_uint8(np.asarray(image), f"{name} (mode F)", float_peak)
            return Image.fromarray(values).convert("RGB")
        try:
            return image.convert("RGB")
        except ValueError as error:
            raise ValueError(f"{name} has mode {image.mode!r}, which PIL cannot convert to RGB ({error}).") from error
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image.float() if image.is_floating_point() else image).numpy()
    if isinstance(image, np.ndarray):
        values = _array_to_uint8(_channels_last(image, name), name, float_peak)
        return Image.fromarray(np.ascontiguousarray(values)).convert("RGB")
    raise ValueError(f"{name} has type {type(image).__name__}; expected a PIL image, numpy array or tensor.")


def float_peak(images) -> float | None:
    """The largest value over the float images among `images` (for `to_rgb_image(..., float_peak=)`), else None."""
    peaks = []
    for image in images:
        if isinstance(image, Image.Image) and image.mode == "F":
            image = np.asarray(image)
        if isinstance(image, torch.Tensor) and image.is_floating_point() and image.numel():
            peaks.append(float(image.detach().max()))
        elif isinstance(image, np.ndarray) and np.issubdtype(image.dtype, np.floating) and image.size:
            peaks.append(float(image.max()))
    return max(peaks) if peaks else None


__all__ = ["float_peak", "to_rgb_image"]
