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
    results = {r.metric_type: r.metric_value for r in data.eval_results}
    # The model-index holds exactly the finite evaluation numbers passed in: no training loss, no counts, no NaN.
    assert results == {"zero_shot/top1_accuracy": 0.4375, "retrieval/image_to_text_R@1": 0.25}
    assert "hf_secret" not in text and "hub_token" not in text
    assert "None" not in text.split("---", 2)[2]  # absent optional arguments do not render as "None"
    assert "org/tiny" in text and "```bibtex" in text


def test_without_metrics_or_datasets(tmp_path):
    card = render_model_card("clip", model_id="local-folder")
    data = ModelCard(str(card)).data
    assert data.eval_results is None and "No evaluation was run." in str(card)


def test_unknown_template():
    with pytest.raises(ValueError, match="available: \\["):
        render_model_card("nonexistent", model_id="x")
