"""N-way K-shot episodes for few-shot action recognition (CLIP-FSAR, MA-CLIP): `Episode`, `EpisodeSampler`, split lists.

Why this module exists: few-shot video methods are trained and evaluated on *episodes* (N classes drawn from a
split, K labelled support videos and Q query videos per class), and the published benchmarks fix the class splits
with plain-text list files. Both are needed by the training scripts, the evaluators and the pipelines, so they live
here once.

* `Episode`: the indices and labels of one episode, in the layout CLIP-FSAR's episodic dataset produces
  (``../shared/methods/clip_fsar.md`` section 1.2): supports and queries are *class-major* (all K supports of episode
  class 0, then class 1, ...), episode labels are ``0..N-1`` and ``class_ids`` maps them back to the split's global
  class ids (CLIP-FSAR's ``real_support_labels``, needed to pick the text embeddings).
* `EpisodeSampler`: episode ``i`` depends only on ``(seed, i)`` (``np.random.default_rng([seed, i])``), so a run can
  resume at any episode and every process of a distributed evaluation sees the same episodes without communication.
* `parse_split_file`: the split list formats of the OTAM / CMN / ARN benchmarks (section 1.4) and simple
  ``id label`` / CSV variants.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


def _as_index_array(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
    if array.size == 0:
        array = array.astype(np.int64)
    if array.ndim != 1:
        raise ValueError(f"inconsistent episode: `{name}` must be 1-D, got shape {array.shape}.")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"inconsistent episode: `{name}` must hold integers, got dtype {array.dtype}.")
    return array.astype(np.int64)


@dataclass
class Episode:
    """One N-way K-shot episode: dataset row indices and labels of its support and query videos.

    Layout (what `EpisodeSampler` produces and what the video models expect): class-major, i.e. the supports are
    ``[class 0 x K, class 1 x K, ...]`` so ``support.reshape(N, K, ...)`` groups the shots of each class for the
    prototype mean.

    Attributes:
        support_indices (`np.ndarray` ``[N*K]``): rows of the split's dataset used as supports.
        support_labels (`np.ndarray` ``[N*K]``): episode labels ``0..N-1`` of the supports.
        query_indices (`np.ndarray` ``[N*Q]``): rows used as queries (disjoint from the supports).
        query_labels (`np.ndarray` ``[N*Q]``): episode labels ``0..N-1`` of the queries.
        class_ids (`np.ndarray` ``[N]``): global class id (within the split) of each episode label.

    The arrays are converted to int64 numpy arrays and checked (`check`) at construction.
    """

    support_indices: np.ndarray
    support_labels: np.ndarray
    query_indices: np.ndarray
    query_labels: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        for name in ("support_indices", "support_labels", "query_indices", "query_labels", "class_ids"):
            setattr(self, name, _as_index_array(name, getattr(self, name)))
        self.check()

    @property
    def way(self) -> int:
        """N, the number of classes."""
        return len(self.class_ids)

    @property
    def shot(self) -> int:
        """K, supports per class."""
        return len(self.support_indices) // max(self.way, 1)

    @property
    def query_per_class(self) -> int:
        """Q, queries per class."""
        return len(self.query_indices) // max(self.way, 1)

    @property
    def support_class_ids(self) -> np.ndarray:
        """``[N*K]`` global class ids of the supports (CLIP-FSAR's ``real_support_labels``)."""
        return self.class_ids[self.support_labels]

    @property
    def query_class_ids(self) -> np.ndarray:
        """``[N*Q]`` global class ids of the queries (CLIP-FSAR's ``real_target_labels``)."""
        return self.class_ids[self.query_labels]

    def check(self) -> None:
        """Raise ``ValueError("inconsistent episode: ...")`` unless the episode is a valid N-way K-shot episode.

        Checked: matching lengths of indices and labels; at least one class, distinct class ids; labels in
        ``0..N-1``; every class with exactly K supports (K >= 1) and exactly Q queries; supports and queries
        disjoint and without repeated rows; non-negative indices.
        """
        n = len(self.class_ids)
        if n == 0:
            raise ValueError("inconsistent episode: `class_ids` is empty, an episode needs at least one class.")
        if len(np.unique(self.class_ids)) != n:
            raise ValueError(f"inconsistent episode: `class_ids` must be distinct, got {self.class_ids.tolist()}.")
        for part in ("support", "query"):
            indices, labels = getattr(self, f"{part}_indices"), getattr(self, f"{part}_labels")
            if len(indices) != len(labels):
                raise ValueError(
                    f"inconsistent episode: {len(indices)} {part}_indices but {len(labels)} {part}_labels."
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= n):
                raise ValueError(
                    f"inconsistent episode: {part}_labels must be in 0..{n - 1} (N={n} classes), "
                    f"got values in {labels.min()}..{labels.max()}."
                )
            if len(indices) and indices.min() < 0:
                raise ValueError(f"inconsistent episode: {part}_indices must be >= 0, got {indices.min()}.")
            if len(np.unique(indices)) != len(indices):
                raise ValueError(f"inconsistent episode: {part}_indices contain repeated rows.")
            counts = np.bincount(labels, minlength=n)
            if part == "support":
                if len(labels) % n or len(labels) == 0 or (counts != len(labels) // n).any():
                    raise ValueError(
                        f"inconsistent episode: every class needs the same number K >= 1 of supports; "
                        f"supports per class are {counts.tolist()}."
                    )
            elif (counts != counts[0]).any():
                raise ValueError(
                    f"inconsistent episode: every class needs the same number Q of queries; "
                    f"queries per class are {counts.tolist()}."
                )
        overlap = np.intersect1d(self.support_indices, self.query_indices)
        if len(overlap):
            raise ValueError(
                f"inconsistent episode: rows {overlap[:10].tolist()} are both supports and queries "
                "(they must be disjoint)."
            )

    def to_dict(self) -> dict[str, list[int]]:
        """Plain lists (JSON-serialisable), e.g. to log or store the episodes of an evaluation."""
        return {
            name: getattr(self, name).tolist()
            for name in ("support_indices", "support_labels", "query_indices", "query_labels", "class_ids")
        }


class EpisodeSampler:
    """Deterministic, resumable sampler of N-way K-shot Q-query episodes over a labelled split.

    Episode ``i`` uses its own generator ``np.random.default_rng([seed, i])``: it draws N distinct classes (the
    episode labels follow the draw order, so label 0 is not always the smallest class id), then K + Q distinct rows
    of each class, the first K as supports and the rest as queries. Episodes are therefore independent of each
    other, identical across processes and runs, and ``sampler[i]`` can be computed directly (resume, sharding).

    Args:
        labels: the split's integer class id of each row (``[num_rows]``, e.g. ``dataset["label"]``).
        way (`int`): N, classes per episode.
        shot (`int`): K, supports per class.
        query (`int`): Q, queries per class.
        seed (`int`, defaults to 0): non-negative seed.
        num_episodes (`int`, *optional*): length of the iteration; None iterates forever (training).

    Raises:
        ValueError: bad arguments, fewer than `way` classes, or a class with fewer than ``shot + query`` rows.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        way: int,
        shot: int,
        query: int,
        seed: int = 0,
        num_episodes: int | None = None,
    ) -> None:
        for name, value, minimum in (("way", way, 1), ("shot", shot, 1), ("query", query, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
        if num_episodes is not None and (
            isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)) or num_episodes < 0
        ):
            raise ValueError(f"`num_episodes` must be None or an integer >= 0, got {num_episodes!r}.")
        labels = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"`labels` must be a non-empty 1-D sequence of class ids, got shape {labels.shape}.")
        if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"`labels` must be integer class ids, got dtype {labels.dtype}; map class names to ids first "
                "(e.g. with the `classes` of `parse_split_file`)."
            )
        self.way, self.shot, self.query, self.seed = int(way), int(shot), int(query), int(seed)
        self.num_episodes = None if num_episodes is None else int(num_episodes)
        self.labels = labels.astype(np.int64)
        self.classes = np.unique(self.labels)
        # Rows of each class, ascending: a fixed order makes the draw depend only on (seed, i) and the labels.
        self.rows_per_class = {int(c): np.flatnonzero(self.labels == c) for c in self.classes}
        needed = self.shot + self.query
        too_small = {c: len(rows) for c, rows in self.rows_per_class.items() if len(rows) < needed}
        if too_small:
            raise ValueError(
                f"Every class needs at least shot + query = {self.shot} + {self.query} = {needed} examples; "
                f"these classes have fewer (class id: count): {dict(list(too_small.items())[:10])}."
            )
        if len(self.classes) < self.way:
            raise ValueError(
                f"A {self.way}-way episode needs at least {self.way} classes, the labels have {len(self.classes)}."
            )

    def __len__(self) -> int:
        if self.num_episodes is None:
            raise TypeError("This EpisodeSampler is infinite (num_episodes=None) and has no length.")
        return self.num_episodes

    def __getitem__(self, index: int) -> Episode:
        return self.episode(index)

    def episode(self, index: int) -> Episode:
        """Episode number `index` (>= 0); a pure function of ``(seed, index)`` and the labels."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise IndexError(f"Episode index must be an integer >= 0, got {index!r}.")
        if self.num_episodes is not None and index >= self.num_episodes:
            raise IndexError(f"Episode index {index} out of range for {self.num_episodes} episodes.")
        rng = np.random.default_rng([self.seed, int(index)])
        class_ids = rng.choice(self.classes, size=self.way, replace=False)
        support, query = [], []
        for c in class_ids:
            rows = rng.choice(self.rows_per_class[int(c)], size=self.shot + self.query, replace=False)
            support.append(rows[: self.shot])
            query.append(rows[self.shot :])
        return Episode(
            support_indices=np.concatenate(support),
            support_labels=np.repeat(np.arange(self.way), self.shot),
            query_indices=np.concatenate(query),
            query_labels=np.repeat(np.arange(self.way), self.query),
            class_ids=class_ids,
        )

    def iter_from(self, start: int = 0) -> Iterator[Episode]:
        """Episodes ``start, start + 1, ...`` (to `num_episodes`, or forever): resume a run at episode `start`."""
        index = start
        while self.num_episodes is None or index < self.num_episodes:
            yield self.episode(index)
            index += 1

    def __iter__(self) -> Iterator[Episode]:
        return self.iter_from(0)


class SplitList(NamedTuple):
    """What `parse_split_file` returns: ``(videos, classes)``; it unpacks like a tuple."""

    videos: list[tuple[str, str]]
    """``(video_id, class_name)`` per line, in file order."""
    classes: list[str]
    """Class names in first-seen order; ``classes.index(name)`` is the split's class id."""


SPLIT_FORMATS = ("auto", "class_dir", "id_label", "csv")
# CLIP-FSAR's lists prefix each path with the class index inside the split: `test0//videos/BlowingCandles/v_x.avi`.
_PREFIX_RE = re.compile(r"^(?:train|val|test)\d+//(?P<path>.+)$")
_HEADER_LABELS = {"label", "labels", "class", "class_name", "classname", "category"}


def _detect_format(line: str) -> str:
    if "/" in line:
        tail = line.rsplit("/", 1)[1]
        if tail and not any(ch.isspace() for ch in tail) and "," not in tail:
            return "class_dir"
    if "," in line:
        return "csv"
    if len(line.split(maxsplit=1)) == 2:
        return "id_label"
    raise ValueError(
        f"Cannot detect the split-file format from the line {line!r}: expected `classname/videoid`, "
        "`videoid label` or `path,label`."
    )


def _parse_class_dir(line: str) -> tuple[str, str]:
    prefixed = _PREFIX_RE.match(line)
    if prefixed:
        # `test0//videos/BlowingCandles/v_x.avi`: the path after `//` is what gets joined to the data root; its
        # parent folder is the class. `train8/78687` (SSv2) has no `//` and falls through: class "train8".
        path = prefixed.group("path").strip("/")
        parts = path.split("/")
        if len(parts) < 2:
            raise ValueError("expected `<split><k>//<folder>/<classname>/<video>`")
        return path, parts[-2]
    parts = line.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        raise ValueError("expected `classname/videoid`")
    return parts[-1], parts[-2]


def _parse_id_label(line: str) -> tuple[str, str]:
    fields = line.split(maxsplit=1)
    if len(fields) != 2:
        raise ValueError("expected `videoid label`")
    return fields[0], fields[1].strip()


def _parse_csv(line: str) -> tuple[str, str]:
    row = next(csv.reader(io.StringIO(line)))
    if len(row) < 2:
        raise ValueError("expected `path,label`")
    # Split at the first comma only: SSv2 class names contain commas ("Putting something, something and ...").
    return row[0].strip(), ",".join(row[1:]).strip()


_PARSERS = {"class_dir": _parse_class_dir, "id_label": _parse_id_label, "csv": _parse_csv}


def parse_split_file(path: str | os.PathLike, format: str = "auto") -> SplitList:
    """Read a few-shot split list: one video per line, returning ``(videos, classes)``.

    Formats (``format="auto"`` picks one from the first data line and applies it to the whole file):

    * ``"class_dir"``: ``classname/videoid`` (OTAM / CMN SSv2 lists, ARN UCF101 / HMDB51 lists); deeper paths use
      the parent folder as class (``root/BlowingCandles/v_x.avi`` -> ``("v_x.avi", "BlowingCandles")``).
      CLIP-FSAR's prefixed lines ``test0//videos/BlowingCandles/v_x.avi`` give the path after ``//`` as video id
      (the part joined to the data root) and its parent folder as class. SSv2 lines such as ``train8/78687`` give
      class ``"train8"``: that prefix is CLIP-FSAR's class index, the names live in its configs.
    * ``"id_label"``: ``videoid label`` separated by whitespace; the label is the rest of the line (it may contain
      spaces, as SSv2 class names do, or be an integer, kept as a string).
    * ``"csv"``: ``path,label``; quoted fields are honoured, the label is everything after the first comma, and a
      header line (``path,label``, ``video,class``, ...) is skipped.

    Blank lines and lines starting with ``#`` are ignored; ``\\r\\n`` line ends are fine.

    Args:
        path: the list file.
        format (`str`, defaults to `"auto"`): one of `"auto"`, `"class_dir"`, `"id_label"`, `"csv"`.

    Returns:
        `SplitList` ``(videos, classes)``: ``videos`` is a list of ``(video_id, class_name)`` in file order,
        ``classes`` the distinct class names in first-seen order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown format, a line that does not match it (with its line number), or no entries.
    """
    if format not in SPLIT_FORMATS:
        raise ValueError(f"`format` must be one of {SPLIT_FORMATS}, got {format!r}.")
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"Split file not found: {name!r}.")
    with open(name, encoding="utf-8-sig") as handle:
        lines = [(number, line.strip()) for number, line in enumerate(handle, start=1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"Split file {name!r} has no entries (only blank or comment lines).")
    chosen = _detect_format(lines[0][1]) if format == "auto" else format
    parser = _PARSERS[chosen]
    videos: list[tuple[str, str]] = []
    seen: dict[str, None] = {}
    for position, (number, line) in enumerate(lines):
        try:
            video_id, class_name = parser(line)
        except (ValueError, StopIteration) as error:
            raise ValueError(f"{name}, line {number}: {line!r} does not match format {chosen!r}: {error}") from None
        if position == 0 and chosen == "csv" and class_name.lower() in _HEADER_LABELS:
            continue
        if not video_id or not class_name:
            raise ValueError(f"{name}, line {number}: {line!r} has an empty video id or class ({chosen!r} format).")
        videos.append((video_id, class_name))
        seen.setdefault(class_name, None)
    if not videos:
        raise ValueError(f"Split file {name!r} has no entries after its header.")
    return SplitList(videos=videos, classes=list(seen))


__all__ = ["SPLIT_FORMATS", "Episode", "EpisodeSampler", "SplitList", "parse_split_file"]
