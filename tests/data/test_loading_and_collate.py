import io
import json
import tarfile

import datasets
import pytest
from PIL import Image

from hf_clipzoo.data.collate import ImageTextCollator, decode_image
from hf_clipzoo.data.loading import load_image_text_dataset
from tests.models.clip.test_processing_clip import tiny_processor


def png_bytes(color: str, size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


CAPTIONS = ["a red square", "a blue square", "a green dot"]
COLORS = ["red", "blue", "green"]


def write_imagefolder(root):
    root.mkdir()
    with open(root / "metadata.jsonl", "w") as f:
        for i, (color, caption) in enumerate(zip(COLORS, CAPTIONS)):
            (root / f"{i}.png").write_bytes(png_bytes(color))
            f.write(json.dumps({"file_name": f"{i}.png", "text": caption}) + "\n")
    return root


def test_imagefolder(tmp_path):
    ds = load_image_text_dataset(str(write_imagefolder(tmp_path / "imgs")), caption_column="text")
    assert len(ds) == 3 and sorted(ds["text"]) == sorted(CAPTIONS)
    assert isinstance(ds.features["image"], datasets.Image) and not ds.features["image"].decode
    assert decode_image(ds[0]["image"]).size == (32, 32)


def test_webdataset(tmp_path):
    shard = tmp_path / "wds" / "shard-000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for i, (color, caption) in enumerate(zip(COLORS, CAPTIONS)):
            for ext, data in (("png", png_bytes(color)), ("txt", caption.encode())):
                info = tarfile.TarInfo(f"{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    ds = load_image_text_dataset(str(shard.parent), caption_column="caption")
    assert len(ds) == 3 and sorted(ds["caption"]) == sorted(CAPTIONS)
    streamed = load_image_text_dataset(str(shard.parent), caption_column="caption", streaming=True)
    assert sorted(row["caption"] for row in streamed) == sorted(CAPTIONS)


def test_csv_with_relative_paths_and_several_caption_columns(tmp_path):
    (tmp_path / "images").mkdir()
    rows = ["filepath,raw_caption,long_caption"]
    for i, (color, caption) in enumerate(zip(COLORS, CAPTIONS)):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(color))
        rows.append(f"images/{i}.png,{caption},A long description of {caption}.")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    ds = load_image_text_dataset(str(tmp_path / "data.csv"), caption_column="long_caption")
    assert set(ds.column_names) >= {"image", "raw_caption", "long_caption"}
    assert decode_image(ds[2]["image"]).getpixel((0, 0)) == (0, 128, 0)


def test_save_to_disk_and_missing_column(tmp_path):
    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "caption": ["x"]})
    ds = ds.cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    assert len(load_image_text_dataset(str(tmp_path / "saved"), caption_column="caption")) == 1
    with pytest.raises(ValueError, match=r"Column 'text' not found .* available columns: \['image', 'caption'\]"):
        load_image_text_dataset(str(tmp_path / "saved"), caption_column="text")


def test_collator_skips_and_counts_corrupt_samples():
    collator = ImageTextCollator(tiny_processor())
    rows = [
        {"image": {"bytes": png_bytes("red"), "path": None}, "caption": "a red square"},
        {"image": {"bytes": b"not a png", "path": None}, "caption": "broken"},
        {"image": {"bytes": png_bytes("blue"), "path": None}, "caption": None},
        {"image": {"bytes": png_bytes("blue"), "path": None}, "caption": "   "},
        {"image": Image.new("L", (16, 16)), "caption": "a grey square"},
    ]
    batch = collator(rows)
    assert batch["pixel_values"].shape[0] == 2 and batch["input_ids"].shape[0] == 2
    assert batch["num_skipped"] == 3
    assert sum(collator.skipped.values()) == 3 and collator.skipped["missing or empty caption"] == 2


def test_collator_all_corrupt_raises():
    collator = ImageTextCollator(tiny_processor())
    with pytest.raises(ValueError, match="Every sample of a batch of 1 was unreadable"):
        collator([{"image": {"bytes": b"xx", "path": None}, "caption": "a"}])


# --- every on-disk format, as a map-style and as a streamed dataset ---------------------------------------------
def _write_rows_with_paths(root, suffix):
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (color, caption) in enumerate(zip(COLORS, CAPTIONS)):
        (root / "images" / f"{i}.png").write_bytes(png_bytes(color))
        rows.append({"filepath": f"images/{i}.png", "caption": caption})
    if suffix == "csv":
        lines = ["filepath,caption"] + [f"{row['filepath']},{row['caption']}" for row in rows]
        (root / "data.csv").write_text("\n".join(lines) + "\n")
    else:
        (root / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / f"data.{suffix}"


def _write_tar_shards(root):
    root.mkdir()
    for shard, indices in enumerate(([0, 1], [2])):  # two shards, as real WebDatasets come
        with tarfile.open(root / f"shard-{shard:03d}.tar", "w") as tar:
            for i in indices:
                for ext, data in (("png", png_bytes(COLORS[i])), ("txt", CAPTIONS[i].encode())):
                    info = tarfile.TarInfo(f"{i:04d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root


def _write_imagefolder_with_caption(root):
    root.mkdir()
    with open(root / "metadata.jsonl", "w") as f:
        for i, (color, caption) in enumerate(zip(COLORS, CAPTIONS)):
            (root / f"{i}.png").write_bytes(png_bytes(color))
            f.write(json.dumps({"file_name": f"{i}.png", "caption": caption}) + "\n")
    return root


WRITERS = {
    "csv": lambda tmp: _write_rows_with_paths(tmp / "csv", "csv"),
    "jsonl": lambda tmp: _write_rows_with_paths(tmp / "jsonl", "jsonl"),
    "imagefolder": lambda tmp: _write_imagefolder_with_caption(tmp / "imagefolder"),
    "webdataset": lambda tmp: _write_tar_shards(tmp / "wds"),
}


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streamed"])
@pytest.mark.parametrize("source_format", sorted(WRITERS))
def test_every_format_loads_and_collates_streamed_or_not(tmp_path, source_format, streaming):
    source = WRITERS[source_format](tmp_path)
    ds = load_image_text_dataset(str(source), caption_column="caption", streaming=streaming)
    assert isinstance(ds, datasets.IterableDataset if streaming else datasets.Dataset)
    assert {"image", "caption"} <= set(ds.column_names)
    assert isinstance(ds.features["image"], datasets.Image) and not ds.features["image"].decode
    rows = list(ds)
    assert sorted(row["caption"] for row in rows) == sorted(CAPTIONS)
    batch = ImageTextCollator(tiny_processor())(rows)
    assert batch["pixel_values"].shape[0] == 3 and batch["num_skipped"] == 0
    by_caption = {row["caption"]: decode_image(row["image"]).getpixel((0, 0)) for row in rows}
    assert by_caption["a green dot"] == (0, 128, 0)
