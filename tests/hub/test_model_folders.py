"""Broken model folders fail with the path and what was expected, at every entry point that loads a model."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.cli import main as cli_main
from hf_clipzoo.data.captioning import caption_dataset
from hf_clipzoo.eval.cli import run_eval
from hf_clipzoo.pipelines.zero_shot_segmentation import ZeroShotSegmentationPipeline
from tests.testing_utils import TINY_TEXT_CONFIG, TINY_VISION_CONFIG, checked_without_package
from tests.training_scripts.script_utils import load_training_script

LOADERS = {"model class": ZooCLIPModel.from_pretrained, "AutoModel": AutoModel.from_pretrained}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = ZooCLIPModel(
        ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16)
    )
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(folder)
    return folder


def broken_copy(saved, tmp_path, name="model"):
    folder = tmp_path / name
    shutil.copytree(saved, folder)
    return folder


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_unreadable_weights_name_the_file(saved, tmp_path, loader, damage):
    folder = broken_copy(saved, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a safetensors file" * 8)
    with pytest.raises(OSError, match=rf"{weights}.* is not a valid safetensors file \(truncated or corrupt\?\)"):
        loader(folder)


def test_folder_without_config_names_it(saved, tmp_path):
    folder = broken_copy(saved, tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"folder {folder} has no config.json: expected a model folder saved"):
        ZooCLIPModel.from_pretrained(folder)
    # With the config passed in, config.json is not needed: the weights load as saved.
    config = ZooCLIPConfig.from_pretrained(saved)
    loaded = ZooCLIPModel.from_pretrained(folder, config=config)
    torch.testing.assert_close(loaded.logit_scale, ZooCLIPModel.from_pretrained(saved).logit_scale)


def test_sharded_folders_are_checked_shard_by_shard(saved, tmp_path):
    folder = broken_copy(saved, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    (folder / "model.safetensors").unlink()
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ZooCLIPModel.from_pretrained(folder)  # a healthy sharded folder loads

    second = folder / "model-00002-of-00002.safetensors"
    second.write_bytes(second.read_bytes()[:-5])
    with pytest.raises(OSError, match=rf"{second} is not a valid safetensors file"):
        ZooCLIPModel.from_pretrained(folder)
    second.unlink()
    with pytest.raises(FileNotFoundError, match=r"lists shards missing .*model-00002-of-00002"):
        ZooCLIPModel.from_pretrained(folder)


def test_paths_that_do_not_exist_or_are_files(saved, tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(FileNotFoundError, match=rf"'{missing}' is neither an existing local folder nor a Hub repo id"):
        ZooCLIPModel.from_pretrained(missing)
    with pytest.raises(NotADirectoryError, match=r"model.safetensors is a file; expected a model folder"):
        ZooCLIPModel.from_pretrained(saved / "model.safetensors")


def test_every_loading_entry_point_names_a_missing_path(tmp_path):
    missing = str(tmp_path / "typo" / "model")
    expected = rf"{{}}: '{missing}' is neither an existing local folder nor a Hub repo id"
    with pytest.raises(FileNotFoundError, match=expected.format("model_path")):
        run_eval(missing, str(tmp_path), "zero-shot")
    with pytest.raises(FileNotFoundError, match=expected.format("model_name_or_path")):
        caption_dataset(missing, str(tmp_path), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=expected.format("model_name_or_path")):
        cli_main(["caption", "--model", missing, "--dataset", str(tmp_path), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(FileNotFoundError, match=expected.format("path")):
        ZeroShotSegmentationPipeline.from_pretrained(missing)
    # The training scripts check their model flags with the other shared arguments, before loading any data.
    for script, flag in (("clip", "--model_name_or_path"), ("fff", "--teacher_model_name_or_path")):
        with pytest.raises(FileNotFoundError, match=expected.format(flag)):
            load_training_script(script).main([flag, missing, "--output_dir", str(tmp_path / "run")])


def _truncated_weights_case(folder):
    torch.manual_seed(0)
    ZooCLIPModel(
        ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16)
    ).save_pretrained(folder / "model")
    weights = folder / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return """
        import transformers
        try:
            transformers.AutoModel.from_pretrained("model", trust_remote_code=True)
        except OSError as error:
            assert "model.safetensors is not a valid safetensors file (truncated or corrupt?)" in str(error), error
        else:
            raise AssertionError("a truncated model.safetensors loaded")
        """


@checked_without_package(_truncated_weights_case)
def test_remote_code_loading_checks_the_folder_too(without_package):
    """Without hf_clipzoo installed, the bundled mixin gives the same message."""
    assert without_package.error is None, without_package.error
