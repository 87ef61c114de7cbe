"""`hf-clipzoo caption`: beam-search pseudo-captions with a tiny captioner built from a config, resumable."""

import json

import datasets
import pytest
import torch
from PIL import Image
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

from hf_clipzoo.cli import main as cli_main
from hf_clipzoo.data.captioning import caption_dataset

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "red", "blue", "square", "circle", "photo", "of"]


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blip")
    (folder / "vocab.txt").write_text("\n".join(WORDS))
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    config = BlipConfig(
        text_config=dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, bos_token_id=5, pad_token_id=0, sep_token_id=3, eos_token_id=3,
                         max_position_embeddings=32),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder / "model")
    processor.save_pretrained(folder / "model")
    return folder / "model"


def images_dataset(n=5, corrupt_at=None):
    rows = []
    for i in range(n):
        image = Image.new("RGB", (40, 40), (40 * i, 100, 200))
        rows.append({"image": image, "caption": f"image {i}"})
    data = datasets.Dataset.from_list(
        rows, features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    )
    if corrupt_at is not None:
        data = data.cast_column("image", datasets.Image(decode=False))
        data = data.map(
            lambda row, i: {"image": {"bytes": b"not an image", "path": None}} if i == corrupt_at else row,
            with_indices=True,
        )
    return data


def test_top_k_beams_per_image_in_a_new_column(captioner, tmp_path):
    result = caption_dataset(str(captioner), images_dataset(5, corrupt_at=2), tmp_path / "out", num_captions=3,
                             batch_size=2, shard_size=2, max_new_tokens=4)  # fmt: skip
    column = result["pseudo_captions"]
    assert len(column) == 5 and column[2] == []  # the corrupt image: no captions, the run goes on
    assert all(len(c) == 3 and all(isinstance(t, str) and t for t in c) for i, c in enumerate(column) if i != 2)
    saved = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    assert saved["pseudo_captions"] == column and saved["caption"][0] == "image 0"


def test_resumes_from_finished_shards(captioner, tmp_path):
    out = tmp_path / "out"
    first = caption_dataset(
        str(captioner), images_dataset(4), out, num_captions=2, batch_size=2, shard_size=2, max_new_tokens=3
    )
    shard = out / "shards" / "shard-000000000.json"
    marker = json.loads(shard.read_text())
    marker["captions"] = [["kept from the first run"]] * 2
    shard.write_text(json.dumps(marker))
    (out / "shards" / "shard-000000002.json").unlink()  # as if the run was killed before the second shard
    second = caption_dataset(
        str(captioner), images_dataset(4), out, num_captions=2, batch_size=2, shard_size=2, max_new_tokens=3
    )
    assert second["pseudo_captions"][:2] == [["kept from the first run"]] * 2  # not recomputed
    assert second["pseudo_captions"][2:] == first["pseudo_captions"][2:]  # recomputed, deterministic


def test_cli_and_bad_arguments(captioner, tmp_path):
    images_dataset(3).save_to_disk(str(tmp_path / "data"))
    assert cli_main(["caption", "--model", str(captioner), "--dataset", str(tmp_path / "data"), "--output_dir",
                     str(tmp_path / "out"), "--num_captions", "2", "--max_new_tokens", "3"]) == 0  # fmt: skip
    assert len(datasets.load_from_disk(str(tmp_path / "out" / "dataset"))["pseudo_captions"][0]) == 2
    with pytest.raises(ValueError, match="num_beams .* must be >= num_captions"):
        caption_dataset(str(captioner), images_dataset(1), tmp_path / "x", num_captions=3, num_beams=2)
    with pytest.raises(ValueError, match="no image column 'picture'"):
        caption_dataset(str(captioner), images_dataset(1), tmp_path / "x", image_column="picture")
    with pytest.raises(ValueError, match="already has a column 'caption'"):
        caption_dataset(str(captioner), images_dataset(1), tmp_path / "x", output_column="caption")
