"""DreamLIP's data side: long captions split into sentences, K subcaptions sampled per image and step, and a collator
that turns rows with several captions (raw + short / long ones from several captioners) into `(batch, 1 + K, length)`
token ids.

Behaviour of the released code (`training/data.py:CsvDataset`, DreamLIP, arXiv 2403.17007), kept here:
- captions are split on newlines, `</s>` and full stops, stripped, and empty pieces dropped (`split_sentences`);
- the pool of an image is the concatenation of the sentences of every captioner's short and long caption;
- K subcaptions are drawn from the pool *without* replacement when the pool is large enough, else *with*
  replacement (`replacement="auto"`);
- with `merge > 1`, each draw is a window of `merge` consecutive sentences joined by `". "`;
- the image's texts are `[raw caption] + K subcaptions`.

What differs, deliberately:
- pieces without any letter or digit (`"..."`, `"!"`) are dropped too, so no subcaption is ever empty or
  punctuation-only;
- every sentence (every window of `merge` sentences) can be drawn: the released code draws from `range(len - 1)`
  (`range(len - merge - 1)` when merging), which never selects the last one;
- a pool with fewer sentences than `merge` gives one window with all of them;
- draws are seeded by `(seed, epoch, row content)`, so a run resumed from a checkpoint, or a different number of
  data-loader workers, sees the same subcaptions (the released code uses the global `random` state).

DreamLIP's released long-caption CSVs have the columns, in order: image path, raw caption, then short and long
captions of InstructBLIP, ShareGPT4V and LLaVA-1.5 (`DREAMLIP_CSV_COLUMNS`); `rename_dreamlip_csv_columns` gives a
`datasets.Dataset` read from them these names. The embedded world's rows have `caption` (raw), `long_caption` and
`pseudo_captions` (a list), the default of `SubcaptionSampler`.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .collate import UnreadableSample, clean_caption, decode_image

logger = logging.getLogger(__name__)

# The released code's separators: newline, the end-of-sequence tag some captioners emit, and the full stop.
SENTENCE_SEPARATORS = re.compile(r"\n|</s>|\.")
_HAS_WORD = re.compile(r"[^\W_]")  # a letter or digit, in any script
REPLACEMENT_MODES = ("auto", "always", "never")

DREAMLIP_CSV_COLUMNS = (
    "image",
    "caption",
    "short_instructblip",
    "long_instructblip",
    "short_sharegpt4v",
    "long_sharegpt4v",
    "short_llava",
    "long_llava",
)
DREAMLIP_CAPTION_COLUMNS = DREAMLIP_CSV_COLUMNS[2:]


def split_sentences(text: str) -> list[str]:
    """Split a caption into sentences on newlines, `</s>` and `.`; strip them; drop pieces with no letter or digit.

    >>> split_sentences("A red circle. It is big.\\nA cat</s>...")
    ['A red circle', 'It is big', 'A cat']
    """
    if not isinstance(text, str):
        raise ValueError(f"split_sentences: expected a string, got {type(text).__name__}.")
    return [piece.strip() for piece in SENTENCE_SEPARATORS.split(text) if _HAS_WORD.search(piece)]


def sentence_pool(captions: str | Sequence[str] | None) -> list[str]:
    """All sentences of one caption or of several captions (e.g. one per captioner), in order."""
    if captions is None:
        return []
    if isinstance(captions, str):
        captions = [captions]
    pool: list[str] = []
    for caption in captions:
        if caption is None:
            continue
        pool.extend(split_sentences(caption))
    return pool


def sample_subcaptions(
    sentences: Sequence[str],
    num_subcaptions: int,
    rng: np.random.Generator,
    *,
    merge: int = 1,
    replacement: str = "auto",
) -> list[str]:
    """Draw `num_subcaptions` subcaptions from an image's sentences.

    Each draw picks a window of `merge` consecutive sentences (joined by `". "`); there are `len(sentences) - merge + 1`
    windows (one window of all sentences when there are fewer than `merge`).

    Args:
        sentences: the image's sentence pool (`sentence_pool`); must not be empty.
        num_subcaptions: K >= 1.
        rng: a numpy generator (seeded by the caller, see `SubcaptionSampler`).
        merge: sentences per subcaption (released code: `--merged_num`, default 1).
        replacement: `"auto"` (released code): without replacement when there are at least K windows, else with
            replacement, so images with few sentences repeat some; `"always"`: with replacement; `"never"`: without,
            raising a `ValueError` when there are fewer than K windows.

    Returns:
        K non-empty strings, in draw order.
    """
    if not isinstance(num_subcaptions, int) or num_subcaptions < 1:
        raise ValueError(f"`num_subcaptions` (K) must be an integer >= 1, got {num_subcaptions!r}.")
    if not isinstance(merge, int) or merge < 1:
        raise ValueError(f"`merge` must be an integer >= 1, got {merge!r}.")
    if replacement not in REPLACEMENT_MODES:
        raise ValueError(f"`replacement` must be one of {REPLACEMENT_MODES}, got {replacement!r}.")
    sentences = [s for s in sentences if isinstance(s, str) and _HAS_WORD.search(s)]
    if not sentences:
        raise ValueError("No sentence to sample subcaptions from: the image's captions are empty or only punctuation.")
    num_windows = max(len(sentences) - merge + 1, 1)
    if replacement == "never" and num_windows < num_subcaptions:
        raise ValueError(
            f"Cannot draw {num_subcaptions} subcaptions without replacement from {num_windows} window(s) of {merge} "
            f"sentence(s); use replacement='auto' or a smaller K."
        )
    with_replacement = replacement == "always" or (replacement == "auto" and num_windows < num_subcaptions)
    starts = rng.choice(num_windows, size=num_subcaptions, replace=with_replacement)
    return [". ".join(sentences[int(start) : int(start) + merge]) for start in starts]


def _row_key(raw: str, captions: Sequence[str]) -> int:
    """A stable 32-bit hash of a row's captions (Python's `hash` of strings changes between processes)."""
    return zlib.crc32("\x1f".join([raw, *captions]).encode("utf-8"))


@dataclass
class SubcaptionSampler:
    """Turns one row into DreamLIP's `1 + K` texts: the raw caption, then K subcaptions from the other captions.

    Args:
        caption_columns: columns whose captions are split into the sentence pool; each holds a string, a list of
            strings, or None (e.g. `DREAMLIP_CAPTION_COLUMNS`, or the embedded world's `long_caption` and
            `pseudo_captions`).
        raw_caption_column: column of the raw (alt-text) caption, slot 0; `None` fills every slot with subcaptions.
        num_subcaptions: K (released code: `--num_text 6`; the paper finds gains saturate around K = 8).
        merge / replacement: see `sample_subcaptions`.
        seed: draws are a function of `(seed, epoch, the row's captions)`: reproducible, and independent of batch
            composition, worker count and resumption. Call `set_epoch` to draw new subcaptions each epoch.
    """

    caption_columns: Sequence[str] = ("long_caption", "pseudo_captions")
    raw_caption_column: str | None = "caption"
    num_subcaptions: int = 6
    merge: int = 1
    replacement: str = "auto"
    seed: int = 0
    epoch: int = 0

    def __post_init__(self):
        if not isinstance(self.num_subcaptions, int) or self.num_subcaptions < 1:
            raise ValueError(f"`num_subcaptions` (K) must be an integer >= 1, got {self.num_subcaptions!r}.")
        if not isinstance(self.merge, int) or self.merge < 1:
            raise ValueError(f"`merge` must be an integer >= 1, got {self.merge!r}.")
        if self.replacement not in REPLACEMENT_MODES:
            raise ValueError(f"`replacement` must be one of {REPLACEMENT_MODES}, got {self.replacement!r}.")
        if isinstance(self.caption_columns, str):
            self.caption_columns = (self.caption_columns,)
        if not self.caption_columns:
            raise ValueError("`caption_columns` must name at least one column of captions to sample from.")

    @property
    def num_texts(self) -> int:
        """Texts per image: 1 + K with a raw caption column, else K."""
        return self.num_subcaptions + (1 if self.raw_caption_column else 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, row: dict[str, Any]) -> list[str]:
        """The texts of one row: `[raw caption, K subcaptions]`. Raises `ValueError` for a row without captions."""
        missing = [c for c in (*self.caption_columns, self.raw_caption_column) if c and c not in row]
        if missing:
            raise ValueError(f"The row has no column(s) {missing}; it has {sorted(row)}.")
        raw = None
        if self.raw_caption_column:
            raw = row[self.raw_caption_column]
            if not isinstance(raw, str) or not _HAS_WORD.search(raw):
                raise ValueError(
                    f"The raw caption ({self.raw_caption_column!r}) is empty or only punctuation: {raw!r}."
                )
            raw = raw.strip()
        captions: list[str] = []
        for column in self.caption_columns:
            value = row[column]
            captions.extend([value] if isinstance(value, str) else [v for v in (value or []) if isinstance(v, str)])
        pool = sentence_pool(captions)
        if not pool:
            raise ValueError(
                f"The image has no captions to sample subcaptions from: columns {list(self.caption_columns)} are "
                "empty or only punctuation."
            )
        rng = np.random.default_rng([self.seed, self.epoch, _row_key(raw or "", captions)])
        subcaptions = sample_subcaptions(
            pool, self.num_subcaptions, rng, merge=self.merge, replacement=self.replacement
        )
        return [raw, *subcaptions] if raw is not None else subcaptions


@dataclass
class SubcaptionCollator:
    """Rows → `pixel_values (B, 3, H, W)` and `input_ids` / `attention_mask` of shape `(B, 1 + K, length)`.

    Rows whose image is unreadable or whose captions are empty are skipped and counted (`num_skipped`), like
    `ImageTextCollator`. Every image gets exactly `sampler.num_texts` texts, the layout `DreamLIPModel` trains on.
    """

    processor: Any
    sampler: SubcaptionSampler
    image_column: str = "image"
    skipped: Counter = field(default_factory=Counter)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __call__(self, rows: list[dict]) -> dict:
        images, texts, skipped = [], [], 0
        for row in rows:
            try:
                image = decode_image(row[self.image_column])
                sample = self.sampler(row)
                sample = [clean_caption(text) for text in sample]
            except (UnreadableSample, ValueError) as reason:
                self.skipped[str(reason).split(":")[0]] += 1
                skipped += 1
                continue
            images.append(image)
            texts.append(sample)
        if skipped:
            logger.warning(
                "Skipped %d sample(s) in a batch of %d (totals: %s).", skipped, len(rows), dict(self.skipped)
            )
        if not images:
            raise ValueError(
                f"Every sample of a batch of {len(rows)} was unusable ({dict(self.skipped)}); check the "
                f"`{self.image_column}` column and the caption columns {list(self.sampler.caption_columns)}."
            )
        batch = dict(self.processor(images=images, text=texts, return_tensors="pt", padding=True, truncation=True))
        batch["num_skipped"] = skipped
        return batch


def rename_dreamlip_csv_columns(dataset, image_column: str | None = None):
    """Give a `datasets.Dataset` read from one of DreamLIP's long-caption CSVs the names of `DREAMLIP_CSV_COLUMNS`.

    The released loader reads the columns by position (its header row is skipped), so this renames by position too.
    `image_column`: the (already resolved) image column, wherever a loader moved it (e.g. `load_image_text_dataset`
    replaces the path column by an image column at the end); the other columns keep their CSV order.
    """
    names = list(dataset.column_names)
    if image_column is not None:
        if image_column not in names:
            raise ValueError(f"The image column {image_column!r} is not in the dataset's columns {names}.")
        names = [image_column] + [name for name in names if name != image_column]
    if len(names) < len(DREAMLIP_CSV_COLUMNS):
        raise ValueError(
            f"A DreamLIP long-caption CSV has {len(DREAMLIP_CSV_COLUMNS)} columns ({', '.join(DREAMLIP_CSV_COLUMNS)}); "
            f"got {len(names)}: {names}."
        )
    mapping = {old: new for old, new in zip(names, DREAMLIP_CSV_COLUMNS) if old != new}
    return dataset.rename_columns(mapping) if mapping else dataset


__all__ = [
    "DREAMLIP_CAPTION_COLUMNS",
    "DREAMLIP_CSV_COLUMNS",
    "REPLACEMENT_MODES",
    "SubcaptionCollator",
    "SubcaptionSampler",
    "rename_dreamlip_csv_columns",
    "sample_subcaptions",
    "sentence_pool",
    "split_sentences",
]
