"""Model cards rendered from `model_cards/<method>.md` templates with the metadata of the run that made the weights.

The templates live in the package (`hf_clipzoo/hub/model_cards/`, also reachable as `model_cards/` at the repository
root) and are Jinja2 documents whose front matter is filled from `huggingface_hub.ModelCardData`: `library_name`,
`pipeline_tag`, `tags`, `base_model`, `datasets`, `license` and a `model-index` built from the metrics the training
script measured. Nothing in a card is typed in by hand.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATES_DIR = Path(__file__).resolve().parent / "model_cards"
# Never written into a card, whatever the training script passes.
SECRET_ARGUMENTS = ("hub_token", "token", "wandb_api_key")


def available_templates() -> list[str]:
    return sorted(path.stem for path in TEMPLATES_DIR.glob("*.md"))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def render_model_card(
    method: str,
    *,
    model_id: str,
    datasets: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    training_args: dict | None = None,
    pipeline_tag: str | None = None,
    base_model: str | None = None,
    license: str = "apache-2.0",
    tags: list[str] | None = None,
    dataset_name: str | None = None,
    task_type: str | None = None,
    extra: dict | None = None,
) -> ModelCard:
    """Render `model_cards/<method>.md` for a trained model.

    Args:
        method: the template name (`clip`, `fff`, ...).
        model_id: the repository id (or folder name) the card describes; used in the usage snippets.
        datasets: dataset ids for the metadata (the embedded world is `hf-clipzoo/embedded-world`).
        metrics: `{name: value}` measured by the run; numeric evaluation metrics (not `train/...`) go into the
            `model-index`, all of them into the results table.
        training_args: the run's arguments, shown as a table (secrets such as `hub_token` are dropped).
        pipeline_tag / base_model / license / tags: metadata fields.
        dataset_name / task_type: how the `model-index` names the evaluation (default: the first dataset and the
            pipeline tag).
        extra: more variables for the template.
    """
    template = TEMPLATES_DIR / f"{method}.md"
    if not template.is_file():
        raise ValueError(f"No model card template for {method!r}; available: {available_templates()}.")
    metrics = {k: v for k, v in (metrics or {}).items() if _is_number(v)}
    training_args = {
        k: v for k, v in (training_args or {}).items() if k not in SECRET_ARGUMENTS and v is not None and v != ""
    }
    datasets = list(datasets or [])
    # Counts (e.g. `retrieval/num_images`) describe the evaluation, they are not results.
    eval_metrics = {k: v for k, v in metrics.items() if not k.startswith("train/") and "/num_" not in k}
    eval_results = None
    if eval_metrics and datasets:
        eval_results = [
            EvalResult(
                task_type=task_type or pipeline_tag or "zero-shot-image-classification",
                dataset_type=datasets[0],
                dataset_name=dataset_name or datasets[0],
                metric_type=name,
                metric_value=float(value),
            )
            for name, value in eval_metrics.items()
        ]
    card_data = ModelCardData(
        model_name=model_id.split("/")[-1],
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=sorted({"hf-clipzoo", method, *(tags or [])}),
        base_model=base_model,
        datasets=datasets or None,
        license=license,
        eval_results=eval_results,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_id=model_id,
        metrics=metrics,
        training_args=training_args,
        datasets=datasets,
        base_model=base_model,
        **(extra or {}),
    )


def save_model_card(folder: str | os.PathLike, card: ModelCard) -> Path:
    """Write the card as `folder/README.md` (what the Hub shows)."""
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(path))
    return path


__all__ = ["TEMPLATES_DIR", "available_templates", "render_model_card", "save_model_card"]
