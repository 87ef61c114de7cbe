"""Loading image-text training data through `datasets`, from whatever form it comes in.

`load_image_text_dataset(source)` accepts:
- a folder written by `Dataset.save_to_disk` (or a `DatasetDict` folder);
- an image folder with `metadata.jsonl` (`file_name` + caption columns) -> the `imagefolder` builder;
- WebDataset `.tar` shards (a folder, a file or a glob) -> the `webdataset` builder (`jpg`/`png` + `txt`/`json`);
- CSV or JSON Lines files with an image-path column and one or more caption columns (DreamLIP's long-caption
  layout); relative paths resolve against the file's folder;
- a `datasets` Hub id, which loads offline from the local cache (`HF_DATASETS_OFFLINE=1`);
- `streaming=True` for any of them: a `datasets.IterableDataset` with the same columns and features.
Image columns come back as `Image(decode=False)` so the collator decodes them and skips unreadable files instead of
crashing the run.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import datasets

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")


TABLE_BUILDERS = {".csv": "csv", ".jsonl": "json", ".json": "json"}


def _table_image_column(columns: list[str], image_column: str | None, builder: str) -> str:
    if image_column and image_column in columns:
        return image_column
    for candidate in ("image", "filepath", "file_name", "image_path", "path"):
        if candidate in columns:
            return candidate
    raise ValueError(f"{builder.upper()} files need an image-path column (e.g. `filepath`); found columns {columns}.")


def _with_features(dataset):
    # A streamed CSV / JSON dataset does not know its columns until it reads a row, and `cast_column` /
    # `column_names` need them; datasets reads the first rows to infer them (the stream itself is not consumed).
    if isinstance(dataset, datasets.IterableDataset) and dataset.features is None:
        return dataset._resolve_features()
    return dataset


def _table_files(source: str, path: Path) -> tuple[str, list[str]] | None:
    for suffix, builder in TABLE_BUILDERS.items():
        if path.is_dir():
            files = sorted(glob.glob(str(path / f"*{suffix}")))
        else:
            files = [f for f in sorted(glob.glob(source)) if f.endswith(suffix)]
        if files:
            return builder, files
    return None


def load_image_text_dataset(
    source: str,
    *,
    split: str = "train",
    image_column: str | None = "image",
    caption_column: str | None = None,
    name: str | None = None,
    streaming: bool = False,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load an image-text dataset from a saved dataset, an image folder, WebDataset tars, CSV files or a Hub id.

    Returns a dataset whose `image_column` is `datasets.Image(decode=False)` and which has `caption_column` (when
    given). Raises a `ValueError` naming the available columns when one is missing.
    """
    path = Path(source)
    tar_files = sorted(glob.glob(str(path / "*.tar"))) if path.is_dir() else sorted(glob.glob(source))
    tar_files = [f for f in tar_files if f.endswith(".tar")]
    table = _table_files(source, path)

    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        dataset = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        if streaming:
            dataset = dataset.to_iterable_dataset()
    elif path.is_dir() and any(path.rglob("metadata.jsonl")):
        dataset = datasets.load_dataset("imagefolder", data_dir=str(path), split=split, streaming=streaming)
    elif tar_files:
        dataset = _with_features(
            datasets.load_dataset("webdataset", data_files={split: tar_files}, split=split, streaming=streaming)
        )
        image_key = next((k for k in IMAGE_EXTENSIONS if k in (dataset.column_names or [])), None)
        if image_key and image_column and image_key != image_column:
            dataset = dataset.rename_column(image_key, image_column)
        if (
            caption_column
            and caption_column not in (dataset.column_names or [])
            and "txt" in (dataset.column_names or [])
        ):
            dataset = dataset.rename_column("txt", caption_column)
    elif table:
        builder, files = table
        dataset = _with_features(
            datasets.load_dataset(builder, data_files={split: files}, split=split, streaming=streaming)
        )
        path_column = _table_image_column(list(dataset.column_names), image_column, builder)
        root = os.path.dirname(os.path.abspath(files[0]))
        dataset = _with_features(dataset.map(lambda row: {"__image": os.path.join(root, str(row[path_column]))}))
        if path_column == image_column:
            dataset = dataset.remove_columns(path_column)
        dataset = dataset.rename_column("__image", image_column or "image")
        dataset = dataset.cast_column(image_column or "image", datasets.Image(decode=False))
    else:
        dataset = datasets.load_dataset(source, name, split=split, streaming=streaming)

    dataset = _with_features(dataset)
    columns = list(dataset.column_names or [])
    for column in (image_column, caption_column):
        if column and column not in columns:
            raise ValueError(f"Column {column!r} not found in {source!r}; available columns: {columns}.")
    if image_column and isinstance(dataset.features.get(image_column) if dataset.features else None, datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    return dataset


__all__ = ["load_image_text_dataset"]
