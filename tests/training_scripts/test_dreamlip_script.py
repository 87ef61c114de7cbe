"""`training_scripts/dreamlip.py` on tiny sizes: from a baseline folder, subcaptions, both losses, grounding eval,
resume, 2 processes, DreamLIP's CSV layout."""

import csv
import json

import pytest
import torch

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.subcaptions import DREAMLIP_CSV_COLUMNS
from hf_clipzoo.data.synthetic import WorldConfig, make_scenes
from hf_clipzoo.models.dreamlip import DreamLIPModel
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
    "--num_subcaptions", "2",
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


def test_fine_tunes_a_baseline_with_both_losses(baseline, tmp_path):
    out = tmp_path / "dreamlip"
    metrics = load_training_script("dreamlip").main(
        TINY_RUN + ["--model_name_or_path", str(baseline), "--output_dir", str(out), "--max_train_steps", "3",
                    "--grouping_negatives", "image", "--checkpointing_steps", "3"]
    )  # fmt: skip
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    for name in ("zero_shot/top1_accuracy", "retrieval/image_to_text_R@1", "grounding/pointing_accuracy"):
        assert 0.0 <= metrics[name] <= 1.0, name
    logs = [r for r in read_jsonl_log(out / "logs" / "metrics.jsonl") if "train/grouping_loss" in r]
    assert len(logs) == 3 and all(r["train/grouping_loss"] > 0 and r["train/contrastive_loss"] > 0 for r in logs)
    model = DreamLIPModel.from_pretrained(out / "final")
    assert model.config.grouping_negatives == "image"
    # The towers started from the baseline: the text embedding table moved only by 3 small steps.
    baseline_model = ZooCLIPModel.from_pretrained(baseline)
    delta = (
        model.text_model.embeddings.token_embedding.weight
        - baseline_model.text_model.embeddings.token_embedding.weight
    )
    assert 0 < delta.abs().max() < 0.05
    assert (out / "final" / "README.md").is_file() and (out / "checkpoint-3").is_dir()
    assert "DreamLIP" in (out / "final" / "README.md").read_text()
    check_card_pipeline_tag(out / "final")


def test_circle_loss_flag_trains_with_the_released_multi_positive_term(baseline, tmp_path):
    script = load_training_script("dreamlip")
    assert script.parse_args([]).circle_loss_weight == 0.0  # off by default
    out = tmp_path / "circle"
    script.main(
        TINY_RUN + ["--model_name_or_path", str(baseline), "--output_dir", str(out), "--max_train_steps", "2",
                    "--circle_loss_weight", "0.1", "--circle_loss_gamma", "16", "--circle_loss_margin", "0.3"]
    )  # fmt: skip
    logs = [r for r in read_jsonl_log(out / "logs" / "metrics.jsonl") if "train/circle_loss" in r]
    assert len(logs) == 2 and all(r["train/circle_loss"] > 0 for r in logs)
    config = DreamLIPModel.from_pretrained(out / "final").config
    assert (config.circle_loss_weight, config.circle_loss_gamma, config.circle_loss_margin) == (0.1, 16.0, 0.3)


def test_resume_equals_uninterrupted(baseline, tmp_path):
    script = load_training_script("dreamlip")
    common = TINY_RUN + ["--model_name_or_path", str(baseline), "--max_train_steps", "4", "--checkpointing_steps", "2"]
    full = script.main(common + ["--output_dir", str(tmp_path / "full")])
    # Kill after step 2: only checkpoint-2 survives, the rest is recomputed.
    import shutil

    shutil.copytree(tmp_path / "full" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    resumed = script.main(common + ["--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest"])
    assert resumed["train/loss"] == pytest.approx(full["train/loss"], rel=1e-5)
    a = DreamLIPModel.from_pretrained(tmp_path / "full" / "final").state_dict()
    b = DreamLIPModel.from_pretrained(tmp_path / "resumed" / "final").state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


def test_reads_the_released_csv_layout(baseline, tmp_path):
    """A CSV with DreamLIP's column order (image path, raw caption, short/long captions of three MLLMs)."""
    scenes = make_scenes(16, config=WorldConfig(seed=3, image_size=32))
    rows = []
    for index, row in enumerate(scenes):
        path = tmp_path / f"{index}.png"
        row["image"].save(path)
        long_caption = row["long_caption"]
        rows.append([str(path), row["caption"], *([row["pseudo_captions"][0], long_caption] * 3)])
    csv_path = tmp_path / "long_captions.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "title", *[f"column{i}" for i in range(len(DREAMLIP_CSV_COLUMNS) - 2)]])
        writer.writerows(rows)
    metrics = load_training_script("dreamlip").main(
        ["--dataset", str(csv_path), "--dreamlip_csv_layout", "--image_column", "filepath", "--caption_column",
         "title", "--model_name_or_path", str(baseline), "--output_dir", str(tmp_path / "out"), "--max_train_steps",
         "2", "--per_device_train_batch_size", "8", "--num_subcaptions", "3", "--logging_steps", "1"]
    )  # fmt: skip
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_bad_arguments(baseline, tmp_path):
    script = load_training_script("dreamlip")
    with pytest.raises(SystemExit):
        script.main(["--num_subcaptions", "0"])
    with pytest.raises(SystemExit):
        script.main(["--grouping_negatives", "everything"])
    with pytest.raises(ValueError, match="no subcaption column"):
        script.main(TINY_RUN + ["--model_name_or_path", str(baseline), "--output_dir", str(tmp_path / "x"),
                                "--subcaption_columns", "gpt4_caption"])  # fmt: skip


def _two_process_run(folder):
    baseline = save_baseline(folder / "baseline")
    return "dreamlip", [*TINY_RUN, "--model_name_or_path", baseline, "--max_train_steps", "2",
                        "--per_device_train_batch_size", "4", "--output_dir", folder / "ddp"]  # fmt: skip


@in_shared_launch(_two_process_run)
def test_two_processes(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    assert "processes = 2" in shared_launch.log
    assert json.loads((shared_launch.folder / "ddp" / "final" / "results.json").read_text())["step"] == 2
