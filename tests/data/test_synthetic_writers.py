"""The embedded world written to disk is read back by the standard `datasets` loaders and by PyAV."""

import hashlib
import json

import datasets
import numpy as np
import pytest

from hf_clipzoo.data.synthetic import (
    WorldConfig,
    make_action_videos,
    make_mmvp_pairs,
    make_scenes,
    write_csv,
    write_imagefolder,
    write_video_folder,
    write_webdataset,
)

SMALL = WorldConfig(seed=0, image_size=32)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(7, config=SMALL)


def pixels(image) -> np.ndarray:
    return np.asarray(image)


def test_imagefolder_round_trip(scenes, tmp_path):
    metadata = write_imagefolder(scenes, tmp_path / "world")
    assert metadata.name == "metadata.jsonl"
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "world"), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert len(loaded) == len(scenes)
    for original, row in zip(scenes, loaded):
        for column in ("caption", "long_caption", "pseudo_captions", "nouns", "background"):
            assert row[column] == original[column]
        for column in ("image", "semantic_mask", "instance_mask"):
            np.testing.assert_array_equal(pixels(row[column]), pixels(original[column]))
        assert [o["shape"] for o in row["objects"]] == [o["shape"] for o in original["objects"]]


def test_imagefolder_with_several_image_columns_and_frame_lists(tmp_path):
    pairs = make_mmvp_pairs(3, config=SMALL)
    write_imagefolder(pairs, tmp_path / "mmvp")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "mmvp"), split="train",
                                   cache_dir=str(tmp_path / "cache"))  # fmt: skip
    np.testing.assert_array_equal(pixels(loaded[2]["image_b"]), pixels(pairs[2]["image_b"]))
    assert loaded["statement_a"] == pairs["statement_a"]

    videos = make_action_videos(1, split="meta_val", num_frames=4, config=SMALL)
    write_imagefolder(videos, tmp_path / "videos")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "videos"), split="train",
                                   cache_dir=str(tmp_path / "cache"))  # fmt: skip
    assert loaded["label_name"] == videos["label_name"]
    assert len(loaded[0]["frames"]) == 4
    np.testing.assert_array_equal(pixels(loaded[1]["frames"][3]), pixels(videos[1]["frames"][3]))


def test_webdataset_round_trip_and_deterministic_shards(scenes, tmp_path):
    shards = write_webdataset(scenes, tmp_path / "wds", shard_size=3)
    assert [s.name for s in shards] == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    loaded = datasets.load_dataset("webdataset", data_files={"train": [str(s) for s in shards]}, split="train",
                                   cache_dir=str(tmp_path / "cache"))  # fmt: skip
    assert len(loaded) == len(scenes)
    assert loaded["txt"] == scenes["caption"]
    assert [row["json"]["long_caption"] for row in loaded] == scenes["long_caption"]
    np.testing.assert_array_equal(pixels(loaded[4]["png"]), pixels(scenes[4]["image"]))
    np.testing.assert_array_equal(pixels(loaded[4]["semantic_mask.png"]), pixels(scenes[4]["semantic_mask"]))

    again = write_webdataset(make_scenes(7, config=SMALL), tmp_path / "wds2", shard_size=3)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in shards]
    assert digest == [hashlib.sha256(p.read_bytes()).hexdigest() for p in again]


def test_csv_round_trip(scenes, tmp_path):
    path = write_csv(scenes, tmp_path / "csv")
    loaded = datasets.load_dataset("csv", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert {"filepath", "caption", "long_caption", "pseudo_captions"} <= set(loaded.column_names)
    assert loaded["caption"] == scenes["caption"]
    assert loaded["long_caption"] == scenes["long_caption"]
    assert [text.split("\n") for text in loaded["pseudo_captions"]] == scenes["pseudo_captions"]
    from PIL import Image

    for row, original in zip(loaded, scenes):
        np.testing.assert_array_equal(pixels(Image.open(path.parent / row["filepath"])), pixels(original["image"]))
        assert json.loads(row["objects"])[0]["shape"] == original["objects"][0]["shape"]


def test_video_folder_is_readable_by_pyav(tmp_path):
    import av

    videos = make_action_videos(1, split="meta_test", num_frames=6, config=SMALL)
    metadata = write_video_folder(videos, tmp_path / "vid", fps=6)
    records = [json.loads(line) for line in metadata.read_text().splitlines()]
    assert [r["label_name"] for r in records] == videos["label_name"]
    for record, original in zip(records, videos):
        with av.open(str(tmp_path / "vid" / record["file_name"])) as container:
            decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        expected = np.stack([pixels(f) for f in original["frames"]])
        assert decoded.shape == expected.shape == (6, 32, 32, 3)
        # Lossy MPEG-4, but close: mean absolute error of a few grey levels.
        assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 8


def test_writers_reject_bad_input(scenes, tmp_path):
    with pytest.raises(ValueError, match="shard_size"):
        write_webdataset(scenes, tmp_path / "a", shard_size=0)
    with pytest.raises(ValueError, match="empty"):
        write_imagefolder(scenes.select([]), tmp_path / "b")
    with pytest.raises(ValueError, match="datasets.Dataset"):
        write_csv({"image": []}, tmp_path / "c")
    videos = make_action_videos(1, split="meta_val", num_frames=4, config=SMALL)
    with pytest.raises(ValueError, match="lists of images"):
        write_webdataset(videos, tmp_path / "d")
    with pytest.raises(ValueError, match="list-of-images column 'frames'"):
        write_video_folder(scenes, tmp_path / "e")
    odd = make_action_videos(1, split="meta_val", num_frames=4, config=WorldConfig(image_size=25))
    with pytest.raises(ValueError, match="even frame sides"):
        write_video_folder(odd, tmp_path / "f")
