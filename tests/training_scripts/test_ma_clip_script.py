"""`training_scripts/ma_clip.py` on tiny sizes: train a few episodes, select on val, test, save the PEFT adapter."""

import json
import shutil

import pytest
import torch

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.models.ma_clip import MACLIPModel, MACLIPProcessor
from hf_clipzoo.models.ma_clip.peft_ma_clip import load_ma_clip_adapter
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch


def save_encoder(folder):
    torch.manual_seed(0)
    ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro", vision_config=dict(image_size=16))).save_pretrained(folder)
    build_clip_processor(16, 77).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save_encoder(tmp_path_factory.mktemp("encoder"))


def tiny_run(encoder_dir, out) -> list[str]:
    return [
        "--model_name_or_path", str(encoder_dir), "--output_dir", str(out), "--num_frames", "4",
        "--videos_per_class", "3", "--val_episodes", "2", "--test_episodes", "2", "--test_shots", "1", "2",
        "--max_train_steps", "4", "--eval_steps", "2", "--logging_steps", "1", "--num_warmup_steps", "1",
    ]  # fmt: skip


def test_trains_selects_and_saves_adapter(tmp_path, encoder_dir):
    out = tmp_path / "run"
    metrics = load_training_script("ma_clip").main(tiny_run(encoder_dir, out))
    for key in ("test/5way_1shot_accuracy", "test/5way_2shot_accuracy", "val/accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["val/best_step"] in (2, 4)
    assert metrics["train/trainable_parameters"] > 0 and metrics["train/peak_memory_mb"] > 0
    assert metrics["adapter_checkpoint_bytes"] <= 0.15 * metrics["full_model_bytes"]
    final = out / "final"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "results.json",
        "ma_clip_config.json",
    ):
        assert (final / name).is_file(), name
    assert not list(final.glob("*.bin"))
    # The adapter loads onto a fresh base built from the baseline CLIP.
    kwargs = json.loads((final / "ma_clip_config.json").read_text())
    model = load_ma_clip_adapter(MACLIPModel.from_clip(ZooCLIPModel.from_pretrained(encoder_dir), **kwargs), final)
    assert MACLIPProcessor.from_pretrained(final).num_frames == 4
    assert type(model.base_model.model) is MACLIPModel


def test_bad_arguments_are_rejected(tmp_path, encoder_dir):
    script = load_training_script("ma_clip")
    with pytest.raises(SystemExit):
        script.main(tiny_run(encoder_dir, tmp_path) + ["--num_frames", "1"])
    with pytest.raises(SystemExit):
        script.main(tiny_run(encoder_dir, tmp_path) + ["--test_shots", "5"])


def test_resume_reaches_the_same_result(tmp_path, encoder_dir):
    script = load_training_script("ma_clip")
    extra = ["--checkpointing_steps", "2", "--checkpoints_total_limit", "5"]
    full = script.main(tiny_run(encoder_dir, tmp_path / "full") + extra)
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = script.main(tiny_run(encoder_dir, resumed_dir) + extra + ["--resume_from_checkpoint", "latest"])
    for key in ("val/accuracy", "val/best_step", "test/5way_1shot_accuracy", "test/5way_2shot_accuracy"):
        assert resumed[key] == full[key], key


def _two_process_run(folder):
    return "ma_clip", tiny_run(save_encoder(folder / "encoder"), folder / "ddp")


@in_shared_launch(_two_process_run)
def test_two_processes(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    results = json.loads((shared_launch.folder / "ddp" / "final" / "results.json").read_text())
    assert 0.0 <= results["test/5way_1shot_accuracy"] <= 1.0
