"""`training_scripts/fff.py` on tiny sizes: from a baseline folder, with mining and pseudo-captions; 2 processes."""

import json

import pytest
import torch

from hf_clipzoo import FFFModel, ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.training import read_jsonl_log
from tests.testing_utils import check_card_pipeline_tag
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch

TINY_RUN = [
    "--synthetic_train_size", "48",
    "--synthetic_eval_size", "16",
    "--synthetic_classes_per_split", "1",
    "--per_device_train_batch_size", "8",
    "--num_warmup_steps", "1",
    "--logging_steps", "1",
    "--num_pseudo_captions", "2",
    "--eval_caption_column", "long_caption",
]  # fmt: skip


def save_baseline(folder):
    torch.manual_seed(0)
    config = ZooCLIPConfig.from_preset("world-micro")
    ZooCLIPModel(config).save_pretrained(folder)
    build_clip_processor(config.vision_config.image_size, config.text_config.max_position_embeddings).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return save_baseline(tmp_path_factory.mktemp("baseline"))


def test_fine_tunes_a_baseline_with_mining_and_pseudo_captions(baseline, tmp_path):
    out = tmp_path / "fff"
    metrics = load_training_script("fff").main(
        TINY_RUN + ["--model_name_or_path", str(baseline), "--output_dir", str(out), "--max_train_steps", "3",
                    "--text_text_threshold", "0.99", "--image_image_threshold", "none", "--checkpointing_steps", "3"]
    )  # fmt: skip
    assert torch.isfinite(torch.tensor(metrics["train/loss"])) and "zero_shot/top1_accuracy" in metrics
    logs = [r for r in read_jsonl_log(out / "logs" / "metrics.jsonl") if "train/mined_positives" in r]
    assert len(logs) == 3
    # The world repeats short captions, so the text-text rule finds false negatives in almost every batch.
    assert sum(r["train/mined_positives"] for r in logs) > 0
    assert all(r["train/texts_per_image"] == pytest.approx(3.0) for r in logs)  # raw + K=2
    model = FFFModel.from_pretrained(out / "final")
    assert model.config.mining_text_text_threshold == 0.99 and model.config.mining_image_image_threshold is None
    assert (out / "final" / "README.md").is_file() and (out / "checkpoint-3").is_dir()
    check_card_pipeline_tag(out / "final")
    assert json.loads((out / "final" / "results.json").read_text())["step"] == 3


def test_ablation_flags(baseline, tmp_path):
    script = load_training_script("fff")
    metrics = script.main(
        TINY_RUN + ["--model_name_or_path", str(baseline), "--output_dir", str(tmp_path / "a"), "--max_train_steps", "1",
                    "--no_mining", "--num_pseudo_captions", "0", "--loss_type", "softmax"]
    )  # fmt: skip
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    config = FFFModel.from_pretrained(tmp_path / "a" / "final").config
    assert config.mining is False and config.loss_type == "softmax"
    with pytest.raises(SystemExit):
        script.main(["--num_pseudo_captions", "-1"])
    with pytest.raises(ValueError, match="at least one of"):
        script.main(TINY_RUN + ["--output_dir", str(tmp_path / "b"), "--model_preset", "world-micro",
                                "--image_image_threshold", "none", "--text_text_threshold", "none"])  # fmt: skip


def _two_process_run(folder):
    baseline = save_baseline(folder / "baseline")
    return "fff", [*TINY_RUN, "--model_name_or_path", baseline, "--max_train_steps", "2",
                   "--per_device_train_batch_size", "4", "--output_dir", folder / "ddp"]  # fmt: skip


@in_shared_launch(_two_process_run)
def test_two_processes(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    assert "processes = 2" in shared_launch.log
    assert json.loads((shared_launch.folder / "ddp" / "final" / "results.json").read_text())["step"] == 2
