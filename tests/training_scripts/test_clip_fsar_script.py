"""`training_scripts/clip_fsar.py` end to end on tiny sizes: train, select on meta-val, test, save, reload, resume."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.data.episodes import EpisodeSampler
from hf_clipzoo.hub.model_card import card_rule_violations
from hf_clipzoo.models.clip_fsar import CLIPFSARConfig, CLIPFSARModel
from tests.testing_utils import check_card_pipeline_tag
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch


def tiny_run(out, steps=4) -> list[str]:
    return [
        "--output_dir", str(out), "--max_train_steps", str(steps), "--tasks_per_step", "2", "--num_frames", "4",
        "--synthetic_train_per_class", "3", "--synthetic_val_per_class", "2", "--synthetic_test_per_class", "6",
        "--train_query", "1", "--val_episodes", "6", "--test_episodes", "8", "--eval_steps", "2",
        "--logging_steps", "1", "--world_image_size", "24",
    ]  # fmt: skip


def test_trains_selects_on_val_tests_and_saves(tmp_path, monkeypatch):
    script = load_training_script("clip_fsar")
    seen = []
    real_evaluate = script.evaluate_split

    def recording(args, accelerator, model, processor, split_data, shot, num_episodes, seed):
        seen.append((tuple(split_data["class_names"]), shot, num_episodes))
        return real_evaluate(args, accelerator, model, processor, split_data, shot, num_episodes, seed)

    monkeypatch.setattr(script, "evaluate_split", recording)
    out = tmp_path / "run"
    metrics = script.main(tiny_run(out) + ["--checkpointing_steps", "2"])
    # Selection saw meta-val only (steps 2 and 4), meta-test was used once per shot count, at the end.
    val_names, test_names = script.ACTION_CLASSES["meta_val"], script.ACTION_CLASSES["meta_test"]
    assert seen == [(val_names, 1, 6), (val_names, 1, 6), (test_names, 1, 8), (test_names, 5, 8)]
    for shot in (1, 5):
        assert 0.0 <= metrics[f"test/5way_{shot}shot_accuracy"] <= 1.0
        assert metrics[f"test/5way_{shot}shot_ci95"] > 0
    assert metrics["val/best_step"] in (2, 4) and np.isfinite(metrics["train/text_loss"])

    final = out / "final"
    for name in ("config.json", "model.safetensors", "processor_config.json", "results.json", "README.md"):
        assert (final / name).is_file(), name
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    card = (final / "README.md").read_text()
    assert "model-index" in card and "CLIP-FSAR" in card and "test/5way_5shot_accuracy" in card
    check_card_pipeline_tag(final)
    assert card_rule_violations(card) == []

    model = AutoModel.from_pretrained(final).eval()
    processor = AutoProcessor.from_pretrained(final)
    assert type(model) is CLIPFSARModel and processor.num_frames == 4
    # The saved model is the best meta-val checkpoint.
    best = load_file(str(out / script.BEST_FILE))
    torch.testing.assert_close(model.state_dict()["video_text_scale"], best["video_text_scale"])

    # The batched evaluator equals the model's own per-episode logits.
    args = script.parse_args(tiny_run(out))
    test = script.render_split(args, "meta_test", 6, processor)
    features = script.frame_features(model, test["pixel_values"], "cpu")
    text = script.text_embeddings(model, processor, test["class_names"], "cpu")
    episodes = list(EpisodeSampler(test["labels"], way=5, shot=2, query=1, seed=3, num_episodes=3))
    batched = script.batched_episode_logits(model, features, text, episodes)
    for e, episode in enumerate(episodes):
        with torch.no_grad():
            logits, _, _ = model.compute_episode_logits(
                features[episode.support_indices], torch.as_tensor(episode.support_labels),
                features[episode.query_indices], text[torch.as_tensor(episode.class_ids)],
            )  # fmt: skip
        torch.testing.assert_close(batched[e], logits, atol=1e-5, rtol=1e-5)


def test_without_text_baseline(tmp_path):
    script = load_training_script("clip_fsar")
    metrics = script.main(tiny_run(tmp_path, steps=2) + ["--no_text", "--test_shots", "1"])
    assert np.isnan(metrics["train/text_loss"]) and "test/5way_5shot_accuracy" not in metrics
    config = CLIPFSARConfig.from_pretrained(tmp_path / "final")
    assert config.use_text is False
    assert "video_text_scale" not in load_file(str(tmp_path / "final" / "model.safetensors"))


def test_killed_run_resumes_to_the_same_result(tmp_path):
    script = load_training_script("clip_fsar")
    run = tiny_run(tmp_path / "full") + ["--checkpointing_steps", "2", "--test_shots", "1"]
    full = script.main(run)
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = script.main(
        [a if a != str(tmp_path / "full") else str(resumed_dir) for a in run] + ["--resume_from_checkpoint", "latest"]
    )
    cost = ("train/step_seconds", "train/peak_memory_mb")  # measurements of this machine, not results
    assert {k: v for k, v in resumed.items() if k not in cost} == {k: v for k, v in full.items() if k not in cost}
    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(resumed_dir / "final" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)


def test_bad_arguments_are_rejected(tmp_path):
    script = load_training_script("clip_fsar")
    for bad in (
        ["--way", "0"],
        ["--test_shots", "0"],
        ["--text_loss_weight", "-1"],
        ["--per_device_train_batch_size", "2"],
    ):
        with pytest.raises(SystemExit):
            script.main(["--output_dir", str(tmp_path), *bad])
    with pytest.raises(ValueError, match="at least shot \\+ query"):
        script.main(tiny_run(tmp_path) + ["--train_query", "5"])


def _two_process_run(folder):
    return "clip_fsar", [*tiny_run(folder / "ddp", steps=2), "--test_shots", "1", "--test_episodes", "9"]


@in_shared_launch(_two_process_run)
def test_two_processes(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    results = json.loads((shared_launch.folder / "ddp" / "final" / "results.json").read_text())
    assert results["step"] == 2 and 0.0 <= results["test/5way_1shot_accuracy"] <= 1.0
    # 9 episodes sharded 5 + 4 over the ranks and summed: every episode counted once (accuracy is a multiple of 1/45).
    assert abs(results["test/5way_1shot_accuracy"] * 45 - round(results["test/5way_1shot_accuracy"] * 45)) < 1e-9
    assert AutoModel.from_pretrained(shared_launch.folder / "ddp" / "final").config.num_frames == 4
