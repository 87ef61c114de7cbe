"""Model cards: valid metadata from the run's real numbers, no secrets, every method's template renders."""

import math

import pytest
from huggingface_hub import ModelCard

from hf_clipzoo.hub.model_card import available_templates, render_model_card, save_model_card

METRICS = {"zero_shot/top1_accuracy": 0.4375, "retrieval/image_to_text_R@1": 0.25, "retrieval/num_images": 64,
           "train/loss": 1.5, "zero_shot/broken": math.nan}  # fmt: skip
ARGS = {
    "loss_type": "softmax",
    "learning_rate": 0.001,
    "hub_token": "hf_secret",
    "seed": 0,
    "dataset_config_name": None,
}


@pytest.mark.parametrize("method", available_templates())
def test_every_template_renders_parsable_metadata(method, tmp_path):
    card = render_model_card(
        method, model_id="org/tiny", datasets=["hf-clipzoo/embedded-world"], metrics=METRICS, training_args=ARGS,
        pipeline_tag="zero-shot-image-classification", base_model="org/base",
    )  # fmt: skip
    path = save_model_card(tmp_path, card)
    text = path.read_text()
    data = ModelCard(text).data
    assert data.library_name == "transformers" and data.license == "apache-2.0"
    assert data.pipeline_tag == "zero-shot-image-classification" and data.base_model == "org/base"
    assert {"hf-clipzoo", method} <= set(data.tags) and data.datasets == ["hf-clipzoo/embedded-world"]
    results = {(r.metric_type, r.metric_name): r.metric_value for r in data.eval_results}
    # The model-index holds exactly the finite evaluation numbers passed in: no training loss, no counts, no NaN.
    assert results == {
        ("accuracy", "zero_shot/top1_accuracy"): 0.4375,
        ("recall", "retrieval/image_to_text_R@1"): 0.25,
    }
    assert "hf_secret" not in text and "hub_token" not in text
    assert "None" not in text.split("---", 2)[2]  # absent optional arguments do not render as "None"
    assert "org/tiny" in text and "```bibtex" in text and "\n# tiny\n" in text


def test_without_metrics_or_datasets(tmp_path):
    card = render_model_card("clip", model_id="local-folder")
    data = ModelCard(str(card)).data
    assert data.eval_results is None and "No evaluation was run." in str(card)


def test_unknown_template():
    with pytest.raises(ValueError, match="available: \\["):
        render_model_card("nonexistent", model_id="x")


def _body(card) -> str:
    return str(card).split("---", 2)[2]


def test_model_index_tasks_datasets_and_tables():
    metrics = {"zero_shot/top1_accuracy": 0.5, "retrieval/text_to_image_R@5": 0.75, "mmvp/pair_accuracy": 0.25,
               "train/loss": 2.0, "retrieval/num_texts": 32}  # fmt: skip
    card = render_model_card(
        "clip", model_id="org/m", datasets=["org/eval-set", "org/other"], metrics=metrics,
        pipeline_tag="zero-shot-image-classification", dataset_name="Eval set",
    )  # fmt: skip
    got = {
        (r.task_type, r.dataset_type, r.dataset_name, r.metric_type, r.metric_name): r.metric_value
        for r in card.data.eval_results
    }
    # Written out by hand: the group decides the task, the pipeline tag covers groups without a known task.
    assert got == {
        ("zero-shot-image-classification", "org/eval-set", "Eval set", "accuracy", "zero_shot/top1_accuracy"): 0.5,
        ("image-feature-extraction", "org/eval-set", "Eval set", "recall", "retrieval/text_to_image_R@5"): 0.75,
        ("zero-shot-image-classification", "org/eval-set", "Eval set", "accuracy", "mmvp/pair_accuracy"): 0.25,
    }
    body = _body(card)
    # Every metric, including training statistics and counts, is in the results table with 4 decimals.
    for name, value in metrics.items():
        assert f"| `{name}` | {value:.4f} |" in body
    # task_type covers the groups without a task of their own; the evaluators' groups keep theirs.
    few_shot = {"test/5way_1shot_accuracy": 0.5, "zero_shot/top1_accuracy": 0.25}
    forced = render_model_card(
        "clip", model_id="m", datasets=["org/d"], metrics=few_shot, task_type="video-classification"
    )
    assert {r.metric_name: r.task_type for r in forced.data.eval_results} == {
        "test/5way_1shot_accuracy": "video-classification",
        "zero_shot/top1_accuracy": "zero-shot-image-classification",
    }
    # Without a dataset there is nothing to attach results to: the numbers stay in the table only.
    no_dataset = render_model_card(
        "clip", model_id="m", metrics=metrics, pipeline_tag="zero-shot-image-classification"
    )
    assert no_dataset.data.eval_results is None and "| `zero_shot/top1_accuracy` | 0.5000 |" in str(no_dataset)


def test_secrets_never_reach_the_card():
    args = {
        "hub_token": "hf_abcdefghijklmnop",
        "hf_token": "x1",
        "wandb_api_key": "k2",
        "aws_secret_access_key": "k3",
        "report_to_url": "https://user:hf_ZYXWVUTSRQPONM@host",  # a token inside an innocuous-looking value
        "tracker": {"project": "p", "api_key": "k4"},
        "max_tokens": 77,  # a hyper-parameter, not a credential
        "note": "a|b",
        # Credentials under innocent names, and the user's directory layout.
        "mirror": "https://alice:hunter2@mirror.example/simple",
        "github": "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "extra_args": ["--openai sk-proj-abcdEFGH1234ijklMNOP5678", "AKIAIOSFODNN7EXAMPLE"],
        "output_dir": "/home/alice/secret-project/run",
        "cache": {"dir": "C:\\Users\\alice\\cache"},
    }
    card = render_model_card("clip", model_id="m", training_args=args)
    text = str(card)
    leaks = ("hf_abcdefghijklmnop", "x1", "k2", "k3", "hf_ZYXWVUTSRQPONM", "k4", "hub_token", "api_key", "hunter2",
             "ghp_", "sk-proj", "AKIA", "alice", "/home", "Users")  # fmt: skip
    for secret in leaks:
        assert secret not in text, secret
    assert "<local>/run" in text and "https://***@mirror.example/simple" in text
    assert "| `max_tokens` | `77` |" in text and "a\\|b" in text  # the pipe is escaped inside the table cell


def test_minimal_card_has_no_placeholder_junk():
    card = render_model_card("clip", model_id="local-folder")
    body = _body(card)
    assert "None" not in body and "{{" not in body and "{%" not in body
    assert "Trained from scratch" in body and "Not recorded." in body
    data = card.data
    assert data.base_model is None and data.datasets is None and data.pipeline_tag is None
    assert data.library_name == "transformers" and data.tags == ["clip", "hf-clipzoo"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_id": ""}, "model_id"),
        ({"metrics": {"acc": "high"}}, "Metric 'acc' must be a number"),
        ({"metrics": {"acc": True}}, "Metric 'acc' must be a number"),
        ({"metrics": [0.5]}, "metrics must be a dict"),
        ({"training_args": ["lr"]}, "training_args must be a dict"),
        ({"datasets": "hf-clipzoo/embedded-world"}, "datasets must be a list"),
        ({"tags": [""]}, "tags must be a list"),
        ({"extra": {"model_id": "other"}}, "extra must not redefine"),
        ({"task_type": "image-text-retrieval"}, "task_type must be one of the Hub's tasks"),
        ({"num_parameters": -1}, "num_parameters must be a non-negative int"),
        ({"model_name": "two\nlines"}, "model_name must be a non-empty single-line name"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_model_card("clip", **{"model_id": "org/m", **kwargs})


def test_save_model_card(tmp_path):
    card = render_model_card("clip", model_id="org/m", metrics={"zero_shot/top1_accuracy": 0.5}, datasets=["org/d"])
    path = save_model_card(tmp_path / "new" / "folder", card)
    assert path.name == "README.md" and ModelCard.load(path).data.eval_results[0].metric_value == 0.5
    with pytest.raises(ValueError, match="ModelCard"):
        save_model_card(tmp_path, "# not a card")


def test_templates_ship_inside_the_package():
    from hf_clipzoo.hub.model_card import TEMPLATES_DIR

    assert TEMPLATES_DIR.parent.name == "hub" and "clip" in available_templates()
    for name in available_templates():
        # Front matter comes only from ModelCardData: a template must not type in metadata (or numbers) itself.
        assert (TEMPLATES_DIR / f"{name}.md").read_text().startswith("---\n{{ card_data }}\n---\n"), name
