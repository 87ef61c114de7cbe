"""Write `datasets.Dataset`s (the embedded world's, or any with `datasets.Image` columns) in the on-disk formats that
the real-data loaders read, so that the exact same loading code runs on synthetic and on real data.

* `write_imagefolder`: PNG files + ``metadata.jsonl`` -> ``load_dataset("imagefolder", data_dir=out_dir)``.
  The ``image`` column is ``file_name``; other image columns ``<col>_file_name`` and lists of images (video frames)
  ``<col>_file_names``, which `datasets` restores as columns of the same name.
* `write_webdataset`: tar shards of ``{key}.png`` (the main image), ``{key}.<col>.png`` (other image columns),
  ``{key}.txt`` (the caption) and ``{key}.json`` (every other column) ->
  ``load_dataset("webdataset", data_files=".../*.tar")``. Tar members have fixed mtime / owner, so the same dataset
  gives byte-identical shards.
* `write_csv`: images under ``images/`` + a CSV with ``filepath`` (relative to the CSV's folder) and one column per
  caption type, DreamLIP-style; list-of-string columns (``pseudo_captions``) are joined with newlines (DreamLIP's
  sub-caption splitter splits on ``\\n``) -> ``load_dataset("csv", data_files=...)``.
* `write_video_folder`: one MPEG-4 ``.mp4`` per row (PyAV's ``mpeg4`` encoder, yuv420p) + ``metadata.jsonl``
  (``file_name`` and the other columns) -> readable by PyAV / ``transformers.video_utils.load_video(...,
  backend="pyav")`` and by ``load_dataset("videofolder", ...)``.

Image bytes are copied as stored (no decode / re-encode) when they are PNG or JPEG; other formats are re-encoded as
PNG. Columns that are neither images nor text are written as JSON values.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

_IMAGE = "image"
_LIST_OF_IMAGES = "list_of_images"


def _column_kinds(ds: datasets.Dataset) -> dict[str, str]:
    """Map each column to "image", "list_of_images" or "value"."""
    kinds = {}
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            kinds[name] = _IMAGE
        elif isinstance(feature, (datasets.List, datasets.Sequence)) and isinstance(feature.feature, datasets.Image):
            kinds[name] = _LIST_OF_IMAGES
        else:
            kinds[name] = "value"
    return kinds


def _check_dataset(ds, writer: str) -> dict[str, str]:
    if not isinstance(ds, datasets.Dataset):
        raise ValueError(f"{writer} expects a datasets.Dataset, got {type(ds).__name__}.")
    if len(ds) == 0:
        raise ValueError(f"{writer} got an empty dataset; nothing to write.")
    return _column_kinds(ds)


def _undecoded(ds: datasets.Dataset, kinds: dict[str, str]) -> datasets.Dataset:
    """The same dataset with image columns left as stored ``{"bytes", "path"}`` dicts (no PIL decoding)."""
    for name, kind in kinds.items():
        if kind == _IMAGE:
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif kind == _LIST_OF_IMAGES:
            ds = ds.cast_column(name, datasets.List(datasets.Image(decode=False)))
    return ds


def _image_file(stored: dict) -> tuple[bytes, str]:
    """``(file bytes, extension)`` of a stored image: PNG / JPEG bytes as they are, anything else re-encoded as PNG."""
    data = stored.get("bytes")
    if data is None:
        path = stored.get("path")
        if not path:
            raise ValueError("An image has neither bytes nor a path; cannot write it.")
        data = Path(path).read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data, "png"
    if data[:3] == b"\xff\xd8\xff":
        return data, "jpg"
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def _json_value(value):
    """Convert numpy scalars / arrays inside a row value into JSON-serialisable Python objects."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _key(index: int) -> str:
    return f"{index:08d}"


def write_imagefolder(ds: datasets.Dataset, out_dir: str | os.PathLike) -> Path:
    """Write `ds` as an image folder with ``metadata.jsonl``; returns the metadata path.

    Loadable with ``datasets.load_dataset("imagefolder", data_dir=out_dir, split="train")``; text, list and dict
    columns round-trip through JSON (a `ClassLabel` becomes its integer).
    """
    kinds = _check_dataset(ds, "write_imagefolder")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata_path = out / "metadata.jsonl"
    with metadata_path.open("w", encoding="utf-8") as metadata:
        for index, row in enumerate(_undecoded(ds, kinds)):
            key = _key(index)
            record = {}
            for name, kind in kinds.items():
                if kind == _IMAGE:
                    data, ext = _image_file(row[name])
                    file_name = f"{key}.{ext}" if name == "image" else f"{key}_{name}.{ext}"
                    _write_bytes(out / file_name, data)
                    record["file_name" if name == "image" else f"{name}_file_name"] = file_name
                elif kind == _LIST_OF_IMAGES:
                    names = []
                    for k, stored in enumerate(row[name]):
                        data, ext = _image_file(stored)
                        names.append(f"{key}_{name}/{k:04d}.{ext}")
                        _write_bytes(out / names[-1], data)
                    record[f"{name}_file_names"] = names
                else:
                    record[name] = _json_value(row[name])
            metadata.write(json.dumps(record, ensure_ascii=False) + "\n")
    return metadata_path


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # fixed metadata: identical datasets give byte-identical shards
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(
    ds: datasets.Dataset,
    out_dir: str | os.PathLike,
    *,
    shard_size: int = 1000,
    text_column: str | None = "caption",
    image_column: str | None = None,
) -> list[Path]:
    """Write `ds` as WebDataset tar shards ``shard-00000.tar, ...``; returns the shard paths.

    Args:
        ds (`datasets.Dataset`): rows to write; needs at least one `datasets.Image` column.
        out_dir (`str` or `os.PathLike`): output folder.
        shard_size (`int`, defaults to 1000): samples per shard (> 0).
        text_column (`str`, *optional*, defaults to `"caption"`): string column written as ``{key}.txt``
            (skipped when the dataset has no such column).
        image_column (`str`, *optional*): the column written as ``{key}.png``; defaults to ``"image"`` or the first
            image column. Other image columns become ``{key}.<col>.png``.

    Lists of images (video frames) cannot be stored as one WebDataset field: use `write_video_folder` or
    `write_imagefolder` for videos.
    """
    kinds = _check_dataset(ds, "write_webdataset")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}.")
    listed = [name for name, kind in kinds.items() if kind == _LIST_OF_IMAGES]
    if listed:
        raise ValueError(
            f"write_webdataset cannot store lists of images (columns {listed}); use write_video_folder or "
            "write_imagefolder for videos."
        )
    images = [name for name, kind in kinds.items() if kind == _IMAGE]
    if not images:
        raise ValueError("write_webdataset needs at least one datasets.Image column; the dataset has none.")
    if image_column is None:
        image_column = "image" if "image" in images else images[0]
    elif image_column not in images:
        raise ValueError(f"image_column {image_column!r} is not an image column; image columns: {images}.")
    if (
        text_column is not None
        and text_column in ds.column_names
        and ds.features[text_column] != datasets.Value("string")
    ):
        raise ValueError(f"text_column {text_column!r} must be a string column, got {ds.features[text_column]}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    tar = None
    for index, row in enumerate(_undecoded(ds, kinds)):
        if index % shard_size == 0:
            if tar is not None:
                tar.close()
            shards.append(out / f"shard-{len(shards):05d}.tar")
            tar = tarfile.open(shards[-1], "w", format=tarfile.USTAR_FORMAT)
        key = _key(index)
        extra = {}
        for name, kind in kinds.items():
            if kind == _IMAGE:
                data, ext = _image_file(row[name])
                _tar_add(tar, f"{key}.{ext}" if name == image_column else f"{key}.{name}.{ext}", data)
            elif name == text_column:
                _tar_add(tar, f"{key}.txt", row[name].encode("utf-8"))
            else:
                extra[name] = _json_value(row[name])
        if extra:
            _tar_add(tar, f"{key}.json", json.dumps(extra, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    tar.close()
    return shards


def write_csv(ds: datasets.Dataset, out_dir: str | os.PathLike, *, filename: str = "train.csv") -> Path:
    """Write images under ``out_dir/images/`` and a CSV ``out_dir/filename``; returns the CSV path.

    Columns: ``filepath`` (the ``image`` column, or the first image column; relative to `out_dir`), ``<col>_filepath``
    for other image columns, string columns as they are, list-of-string columns joined with ``"\\n"``, other columns
    as JSON strings.
    """
    kinds = _check_dataset(ds, "write_csv")
    listed = [name for name, kind in kinds.items() if kind == _LIST_OF_IMAGES]
    if listed:
        raise ValueError(f"write_csv cannot store lists of images (columns {listed}); use write_video_folder.")
    images = [name for name, kind in kinds.items() if kind == _IMAGE]
    if not images:
        raise ValueError("write_csv needs at least one datasets.Image column; the dataset has none.")
    main = "image" if "image" in images else images[0]
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    header = [
        ("filepath" if name == main else f"{name}_filepath") if kinds[name] == _IMAGE else name for name in kinds
    ]
    csv_path = out / filename
    with csv_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, row in enumerate(_undecoded(ds, kinds)):
            cells = []
            for name, kind in kinds.items():
                value = row[name]
                feature = ds.features[name]
                if kind == _IMAGE:
                    data, ext = _image_file(value)
                    suffix = "" if name == main else f"_{name}"
                    relative = f"images/{_key(index)}{suffix}.{ext}"
                    _write_bytes(out / relative, data)
                    cells.append(relative)
                elif feature == datasets.Value("string"):
                    cells.append(value)
                elif isinstance(feature, (datasets.List, datasets.Sequence)) and feature.feature == datasets.Value(
                    "string"
                ):
                    cells.append("\n".join(value))
                elif isinstance(feature, (datasets.Value, datasets.ClassLabel)):
                    cells.append(_json_value(value))
                else:
                    cells.append(json.dumps(_json_value(value), ensure_ascii=False))
            writer.writerow(cells)
    return csv_path


def write_video_folder(
    ds: datasets.Dataset, out_dir: str | os.PathLike, *, frames_column: str = "frames", fps: int = 8
) -> Path:
    """Encode each row's frames as an MPEG-4 ``.mp4`` and write ``metadata.jsonl``; returns the metadata path.

    Frame sides must be even (yuv420p). The encoder is PyAV's ``mpeg4`` at a high bit rate, so decoded frames are
    close to (not equal to) the originals: lossy video, like real data.
    """
    import av  # PyAV: imported lazily, only video writing needs it

    kinds = _check_dataset(ds, "write_video_folder")
    if kinds.get(frames_column) != _LIST_OF_IMAGES:
        raise ValueError(
            f"write_video_folder needs a list-of-images column {frames_column!r}; columns: {dict(kinds)}."
        )
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata_path = out / "metadata.jsonl"
    with metadata_path.open("w", encoding="utf-8") as metadata:
        for index, row in enumerate(ds):
            frames = [np.asarray(frame.convert("RGB")) for frame in row[frames_column]]
            if not frames:
                raise ValueError(f"Row {index} has no frames.")
            height, width = frames[0].shape[:2]
            if height % 2 or width % 2:
                raise ValueError(f"MPEG-4 (yuv420p) needs even frame sides; row {index} has {width}x{height} frames.")
            file_name = f"{_key(index)}.mp4"
            with av.open(str(out / file_name), "w") as container:
                stream = container.add_stream("mpeg4", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.bit_rate = max(1_000_000, 400 * width * height)
                for frame in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            record = {"file_name": file_name}
            for name, kind in kinds.items():
                if kind == "value":
                    record[name] = _json_value(row[name])
            metadata.write(json.dumps(record, ensure_ascii=False) + "\n")
    return metadata_path
