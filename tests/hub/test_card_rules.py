"""The cards every script writes follow the Hub's rules: Hub ids only in the metadata, evaluation results only in the
model-index (standard metric types, Hub tasks), a real name, parameter count, uses and evaluation protocol."""

import argparse

import pytest
from huggingface_hub import ModelCard

from hf_clipzoo.hub.model_card import (
    HUB_METRIC_TYPES,
    HUB_TASKS,
    available_templates,
    card_rule_violations,
    hub_metric_type,
    render_model_card,
)
from hf_clipzoo.training.hub import card_model_name

IMAGE_TEXT = {"retrieval/image_to_text_R@1": 0.47, "retrieval/image_to_text_R@5": 0.97,
              "retrieval/text_to_image_R@10": 0.86, "retrieval/num_images": 64, "retrieval/num_texts": 64,
              "zero_shot/top1_accuracy": 0.11, "zero_shot/top5_accuracy": 0.62,
              "zero_shot/mean_per_class_accuracy": 0.11, "zero_shot/num_samples": 128, "train/loss": 4.4,
              "train/skipped_samples": 0}  # fmt: skip
FEW_SHOT_VIDEO = {"val/best_accuracy": 0.24, "val/accuracy": 0.26, "val/best_step": 1, "train/otam_loss": 2.9,
                  "train/trainable_parameters": 7787905, "train/peak_memory_mb": 781.5,
                  "test/5way_1shot_accuracy": 0.25, "test/5way_1shot_ci95": 0.085, "test/5way_5shot_accuracy": 0.24,
                  "test/5way_5shot_ci95": 0.093, "adapter_checkpoint_bytes": 1176512}  # fmt: skip
# The metric keys each script reports (from the smoke bench's results.json files), with the Hub task they go under.
SCRIPT_METRICS = {
    "clip": (IMAGE_TEXT, None),
    "fff": (IMAGE_TEXT, None),
    "dreamlip": (
        {
            **IMAGE_TEXT,
            "grounding/pointing_accuracy": 0.16,
            "grounding/pointing_chance": 0.03,
            "grounding/mean_iou": 0.12,
        },
        None,
    ),  # fmt: skip
    "groupvit": (
        {
            **IMAGE_TEXT,
            "segmentation/mean_iou": 0.2,
            "segmentation/overall_accuracy": 0.5,
            "segmentation/all_background_mean_iou": 0.1,
        },
        None,
    ),  # fmt: skip
    "diva": (
        {
            "mmvp/after/pair_accuracy": 0.3,
            "mmvp/after/average_accuracy": 0.3,
            "diva/after/feedback_loss": 0.17,
            "zero_shot/after/top1_accuracy": 0.1,
            "retrieval/after/image_to_text_R@1": 0.2,
            "retrieval/after/num_images": 64,
            "train/loss": 0.09,
        },
        None,
    ),  # fmt: skip
    "clip_fsar": (FEW_SHOT_VIDEO, "video-classification"),
    "ma_clip": (FEW_SHOT_VIDEO, "video-classification"),
    "ape": (
        {
            "zero_shot/test_accuracy": 0.1,
            "ape/val_accuracy": 0.12,
            "ape/test_accuracy": 0.11,
            "ape/alpha": 4.7,
            "ape/gamma": 0.33,
            "ape_t/best_epoch": 0,
            "ape_t/train/loss": 15.7,
            "ape_t/test_accuracy": 0.09,
            "ape_t/trainable_parameters": 4160,
        },
        "image-classification",
    ),  # fmt: skip
}
# What must reach the model-index, by metric name.
EXPECTED_RESULTS = {
    "clip": {"retrieval/image_to_text_R@1", "retrieval/image_to_text_R@5", "retrieval/text_to_image_R@10",
             "zero_shot/top1_accuracy", "zero_shot/top5_accuracy", "zero_shot/mean_per_class_accuracy"},
    "dreamlip_extra": {"grounding/pointing_accuracy", "grounding/mean_iou"},
    "groupvit_extra": {"segmentation/mean_iou", "segmentation/overall_accuracy"},
    "diva": {"mmvp/after/pair_accuracy", "mmvp/after/average_accuracy", "zero_shot/after/top1_accuracy",
             "retrieval/after/image_to_text_R@1"},
    "clip_fsar": {"test/5way_1shot_accuracy", "test/5way_5shot_accuracy"},
    "ape": {"zero_shot/test_accuracy", "ape/test_accuracy", "ape_t/test_accuracy"},
}  # fmt: skip
EXPECTED_RESULTS["fff"] = EXPECTED_RESULTS["clip"]
EXPECTED_RESULTS["dreamlip"] = EXPECTED_RESULTS["clip"] | EXPECTED_RESULTS.pop("dreamlip_extra")
EXPECTED_RESULTS["groupvit"] = EXPECTED_RESULTS["clip"] | EXPECTED_RESULTS.pop("groupvit_extra")
EXPECTED_RESULTS["ma_clip"] = EXPECTED_RESULTS["clip_fsar"]


def _run_args(tmp_path, **overrides):
    values = {"output_dir": str(tmp_path / "bench_out" / "clip"), "hub_model_id": None, "model_name": None}
    return argparse.Namespace(**{**values, **overrides})


def test_every_script_card_follows_the_hub_rules(tmp_path):
    """Render each template as its script does without --hub_model_id, from a local base model and dataset."""
    assert sorted(SCRIPT_METRICS) == available_templates()
    local_base, local_data = tmp_path / "bench_out" / "clip" / "final", tmp_path / "some" / "folder"
    local_base.mkdir(parents=True), local_data.mkdir(parents=True)
    for method, (metrics, task_type) in SCRIPT_METRICS.items():
        card = render_model_card(
            method, model_id="final", model_name=card_model_name(_run_args(tmp_path), method),
            datasets=["hf-clipzoo/embedded-world", str(local_data)], metrics=metrics,
            training_args={"output_dir": str(tmp_path / "out"), "model_name_or_path": str(local_base)},
            pipeline_tag="zero-shot-image-classification", task_type=task_type, base_model=str(local_base),
            num_parameters=1_234_567, evaluation_protocol=f"64 held-out scenes of {local_data}.",
        )  # fmt: skip
        text = str(card)
        assert card_rule_violations(text) == [], method
        data = ModelCard(text).data
        front = text.split("---", 2)[1]
        # Written out by hand: no local path anywhere in the metadata; the text names them without their layout.
        assert str(tmp_path) not in text and "/some/folder" not in front and "bench_out" not in front, method
        assert data.base_model is None and data.datasets == ["hf-clipzoo/embedded-world"], method
        assert "<local>/final" in card.text and "<local>/folder" in card.text, method
        got = {r.metric_name: (r.metric_type, r.task_type) for r in data.eval_results}
        assert set(got) == EXPECTED_RESULTS[method], method
        assert {metric_type for metric_type, _ in got.values()} <= HUB_METRIC_TYPES, method
        assert {task for _, task in got.values()} <= HUB_TASKS, method
        assert data.model_name == f"{method.replace('_', '-')}-clip", method
        assert f"\n# {data.model_name}\n" in text and "\n# final\n" not in text, method
        assert "1,234,567 parameters" in text and "for testing" in card.text, method
        assert data.widget[0]["candidate_labels"], method
        # Non-metrics stay in the table.
        for name in ("train/loss", "val/best_step", "test/5way_1shot_ci95", "diva/after/feedback_loss"):
            if name in metrics:
                assert name not in got and name in card.text, (method, name)


def test_metric_types_and_tasks():
    assert hub_metric_type("retrieval/text_to_image_R@5") == "recall"
    assert hub_metric_type("zero_shot/top1_accuracy") == "accuracy"
    assert hub_metric_type("segmentation/mean_iou") == "mean_iou"
    for not_a_result in ("val/best_step", "val/best_accuracy", "ape/val_accuracy", "train/loss", "retrieval/num_images",
                         "diva/after/feedback_loss", "zero_shot/before/top1_accuracy", "mmvp/delta/pair_accuracy",
                         "test/5way_1shot_ci95", "grounding/pointing_chance", "segmentation/all_background_mean_iou",
                         "full_model_bytes", "tip_adapter_f/best_epoch"):  # fmt: skip
        assert hub_metric_type(not_a_result) is None, not_a_result
    card = render_model_card(
        "clip", model_id="org/m", datasets=["org/d"], metrics={"retrieval/image_to_text_R@1": 0.5}
    )
    # The Hub has no image-text retrieval task.
    assert card.data.eval_results[0].task_type == "image-feature-extraction"


def test_card_model_name(tmp_path):
    args = _run_args(tmp_path)
    assert card_model_name(args, "ma_clip") == "ma-clip-clip"
    assert card_model_name(args, "ma_clip", "adapter") == "ma-clip-clip-adapter"
    assert card_model_name(_run_args(tmp_path, hub_model_id="org/world-clip"), "clip") == "world-clip"
    assert card_model_name(_run_args(tmp_path, hub_model_id="org/x", model_name="mine"), "clip") == "mine"


def test_adapter_card_uses_peft_and_a_hub_base():
    card = render_model_card(
        "ma_clip", model_id="org/m-adapter", base_model="org/m-base", library_name="peft", num_parameters=10,
        datasets=["hf-clipzoo/embedded-world"], extra={"folder_kind": "adapter", "base_reference": "org/m-base"},
    )  # fmt: skip
    assert card.data.library_name == "peft" and card.data.base_model == "org/m-base"
    assert "10 parameters in the adapter" in card.text


def test_rule_violations_name_what_is_wrong():
    old_style = """---
base_model: /path/to/bench_out/clip/final
datasets:
- /some/folder
library_name: transformers
pipeline_tag: zero-shot-image-classification
model-index:
- name: final
  results:
  - task:
      type: image-text-retrieval
    dataset:
      name: hf-clipzoo/embedded-world
      type: hf-clipzoo/embedded-world
    metrics:
    - type: val/best_step
      value: 3
      name: val/best_step
---

# final
"""
    problems = "\n".join(card_rule_violations(old_style))
    for expected in ("local path", "base_model", "datasets entry", "val/best_step", "image-text-retrieval",
                     "title is 'final'", "model-index name is 'final'", "no parameter count", "Intended uses",
                     "Out-of-scope uses", "Evaluation protocol", "no widget"):  # fmt: skip
        assert expected in problems, expected


def test_unknown_pipeline_tag_task_keeps_results_out_of_the_model_index():
    card = render_model_card(
        "clip_fsar", model_id="org/m", datasets=["org/d"], metrics={"test/5way_1shot_accuracy": 0.5},
        pipeline_tag="few-shot-video-classification",
    )  # fmt: skip
    assert card.data.eval_results is None and "test/5way_1shot_accuracy" in card.text


@pytest.mark.parametrize("name", ["bench_out/clip/final", "/abs/x", "~/x", "./org/x", "org/../x", "plain"])
def test_local_or_bare_names_never_reach_the_metadata(name):
    card = render_model_card("clip", model_id="m", base_model=name, datasets=[name])
    assert card.data.base_model is None and card.data.datasets is None


def test_blank_model_name_flag_is_refused(capsys):
    from hf_clipzoo.training.arguments import add_run_arguments, check_shared_arguments

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, output_dir="runs/x")
    args = parser.parse_args(["--model_name", " "])
    with pytest.raises(SystemExit):
        check_shared_arguments(parser, args)
    assert "--model_name must be a non-empty single-line name" in capsys.readouterr().err
