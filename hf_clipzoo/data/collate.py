"""Collators: dataset rows -> model inputs, skipping (and counting) samples that cannot be read.

Images are decoded here rather than by `datasets` (the loaders cast image columns to `Image(decode=False)`), so a
corrupt file costs one sample, not the run. Every batch reports how many samples it dropped in `num_skipped`, which
the training scripts sum (across processes) and log.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from .images import to_rgb_image

logger = logging.getLogger(__name__)


class UnreadableSample(Exception):
    """Raised for one sample that cannot be turned into model inputs; the collator drops it and counts the reason."""


def decode_image(value: Any) -> Image.Image:
    """A PIL RGB image from what a `datasets` image column holds: a PIL image, `{"bytes", "path"}`, a path or bytes.

    Modes are converted by the zoo's one image policy (`to_rgb_image`: 16-bit and float images scaled to 8 bits);
    what it refuses (an `I` image outside 16 bits, NaN in a float TIFF) is an `UnreadableSample`, skipped and counted.
    """
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, dict) and (value.get("bytes") or value.get("path")):
            image = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
        elif isinstance(value, (bytes, bytearray)):
            image = Image.open(io.BytesIO(value))
        elif isinstance(value, str):
            image = Image.open(value)
        else:
            raise UnreadableSample(f"image of type {type(value).__name__}")
        image.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise UnreadableSample(f"unreadable image ({error.__class__.__name__})") from error
    if image.width == 0 or image.height == 0:
        raise UnreadableSample("empty image")
    try:
        return to_rgb_image(image)
    except ValueError as error:
        # The reason is a count key, so it names the mode, not the per-image values the message carries.
        logger.debug("Dropping an image: %s", error)
        raise UnreadableSample(f"unconvertible image (mode {image.mode})") from error


def clean_caption(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UnreadableSample("missing or empty caption")
    return value.strip()


@dataclass
class ImageTextCollator:
    """Turns `{image_column: ..., caption_column: ...}` rows into `input_ids`, `attention_mask`, `pixel_values`.

    Args:
        processor: a zoo processor (or any `CLIPProcessor`-like callable taking `images=` and `text=`).
        image_column / caption_column: the dataset columns to read.
        skipped: running count of dropped samples by reason, for this process (`num_skipped` is per batch).
    """

    processor: Any
    image_column: str = "image"
    caption_column: str = "caption"
    skipped: Counter = field(default_factory=Counter)

    def __call__(self, rows: list[dict]) -> dict:
        images, captions, skipped = [], [], 0
        for row in rows:
            try:
                image = decode_image(row[self.image_column])
                caption = clean_caption(row[self.caption_column])
            except UnreadableSample as reason:
                self.skipped[str(reason)] += 1
                skipped += 1
                continue
            images.append(image)
            captions.append(caption)
        if skipped:
            logger.warning(
                "Skipped %d unreadable sample(s) in a batch of %d (totals: %s).",
                skipped,
                len(rows),
                dict(self.skipped),
            )
        if not images:
            raise ValueError(
                f"Every sample of a batch of {len(rows)} was unreadable ({dict(self.skipped)}); "
                f"check the `{self.image_column}` and `{self.caption_column}` columns of the dataset."
            )
        batch = dict(self.processor(images=images, text=captions, return_tensors="pt", padding=True, truncation=True))
        batch["num_skipped"] = skipped
        return batch


@dataclass
class MultiCaptionCollator:
    """Rows with a raw caption and a list of extra captions → one batch with every caption and its `text_owner`.

    FFF's batch text augmentation: image i brings its raw caption plus up to `num_extra_captions` captions from
    `extra_caption_column` (the first ones, so a resumed run sees the same batches), all of them positives of image
    i. Images may bring different numbers of captions (a row with fewer extras, or none, contributes what it has);
    `text_owner[j]` records the image of caption j, so nothing needs padding. Empty extras are dropped; a row whose
    image or raw caption is unreadable is skipped and counted, like `ImageTextCollator`.
    """

    processor: Any
    image_column: str = "image"
    caption_column: str = "caption"
    extra_caption_column: str | None = "pseudo_captions"
    num_extra_captions: int = 5
    skipped: Counter = field(default_factory=Counter)

    def __post_init__(self):
        if self.num_extra_captions < 0:
            raise ValueError(f"num_extra_captions must be >= 0, got {self.num_extra_captions}.")

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        images, texts, owner, skipped = [], [], [], 0
        for row in rows:
            try:
                image = decode_image(row[self.image_column])
                caption = clean_caption(row[self.caption_column])
            except UnreadableSample as reason:
                self.skipped[str(reason)] += 1
                skipped += 1
                continue
            extras = []
            if self.extra_caption_column and self.num_extra_captions:
                values = row.get(self.extra_caption_column) or []
                if isinstance(values, str):
                    values = [values]
                extras = [v.strip() for v in values if isinstance(v, str) and v.strip()][: self.num_extra_captions]
            owner.extend([len(images)] * (1 + len(extras)))
            texts.extend([caption, *extras])
            images.append(image)
        if skipped:
            logger.warning(
                "Skipped %d unreadable sample(s) in a batch of %d (totals: %s).",
                skipped,
                len(rows),
                dict(self.skipped),
            )
        if not images:
            raise ValueError(
                f"Every sample of a batch of {len(rows)} was unreadable ({dict(self.skipped)}); "
                f"check the `{self.image_column}` and `{self.caption_column}` columns of the dataset."
            )
        batch = dict(self.processor(images=images, text=texts, return_tensors="pt", padding=True, truncation=True))
        batch["text_owner"] = torch.tensor(owner, dtype=torch.long)
        batch["num_skipped"] = skipped
        return batch


__all__ = ["ImageTextCollator", "MultiCaptionCollator", "UnreadableSample", "clean_caption", "decode_image"]
