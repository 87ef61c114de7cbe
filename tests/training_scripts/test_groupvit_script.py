"""`training_scripts/groupvit.py` on tiny sizes: files written, segmentation eval, resume, 2 processes."""

import json
import os

import pytest
import torch

from hf_clipzoo.hub.model_card import card_rule_violations
from hf_clipzoo.models.groupvit import ZooGroupViTModel
from hf_clipzoo.training import read_jsonl_log
from tests.testing_utils import check_card_pipeline_tag
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch

TINY_RUN = [
    "--model_preset", "world-micro",
    "--synthetic_train_size", "32",
    "--synthetic_eval_size", "8",
    "--synthetic_classes_per_split", "1",
    "--per_device_train_batch_size", "8",
    "--num_warmup_steps", "1",
    "--logging_steps", "1",
    "--num_segmentation_eval_images", "2",
]  # fmt: skip


def test_trains_evaluates_and_resumes(tmp_path):
    script = load_training_script("groupvit")
    out = tmp_path / "run"
    metrics = script.main(
        TINY_RUN + ["--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "1"]
    )
    for name in ("train/loss", "segmentation/mean_iou", "zero_shot/top1_accuracy", "retrieval/image_to_text_R@1"):
        assert name in metrics and metrics[name] == metrics[name], name
    final = out / "final"
    assert (final / "model.safetensors").is_file() and (final / "README.md").is_file()
    assert "GroupViT" in (final / "README.md").read_text()
    check_card_pipeline_tag(final)
    assert card_rule_violations((final / "README.md").read_text()) == []
    model = ZooGroupViTModel.from_pretrained(final)
    assert model.config.num_prompts == 3
    assert json.loads((final / "results.json").read_text())["step"] == 2
    # Resume from step 1 in a fresh output folder: it continues from the checkpoint, trains only step 2 and ends
    # with the uninterrupted run's weights (Gumbel noise and prompts are functions of the step).
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    os.symlink(out / "checkpoint-1", resumed / "checkpoint-1")
    resumed_metrics = script.main(
        TINY_RUN + ["--output_dir", str(resumed), "--max_train_steps", "2", "--resume_from_checkpoint", "latest"]
    )
    steps = [r["step"] for r in read_jsonl_log(resumed / "logs" / "metrics.jsonl") if "train/loss" in r]
    assert steps and min(steps) == 2, steps
    assert resumed_metrics["train/loss"] == pytest.approx(metrics["train/loss"], rel=1e-5)
    reference = model.state_dict()
    for key, value in ZooGroupViTModel.from_pretrained(resumed / "final").state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=1e-5, atol=1e-6, msg=key)


def _two_process_run(folder):
    return "groupvit", [*TINY_RUN, "--max_train_steps", "2", "--per_device_train_batch_size", "4",
                        "--output_dir", folder / "ddp"]  # fmt: skip


@in_shared_launch(_two_process_run)
def test_two_processes(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    assert "processes = 2" in shared_launch.log
    assert json.loads((shared_launch.folder / "ddp" / "final" / "results.json").read_text())["step"] == 2
    # SyncBN was active (ProcessGroupBatchNorm1d) and the saved folder is a plain GroupViT checkpoint again.
    model = ZooGroupViTModel.from_pretrained(shared_launch.folder / "ddp" / "final")
    assert type(model.visual_projection[1]).__name__ == "BatchNorm1d"
