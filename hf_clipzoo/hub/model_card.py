"""Model cards rendered from `model_cards/<method>.md` templates with the metadata of the run that made the weights.

The templates live in the package (`hf_clipzoo/hub/model_cards/`, also reachable as `model_cards/` at the repository
root) and are Jinja2 documents whose front matter is filled from `huggingface_hub.ModelCardData`: `library_name`,
`pipeline_tag`, `tags`, `base_model`, `datasets`, `license` and a `model-index` built from the metrics the training
script measured. Nothing in a card is typed in by hand.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .scrub import scrub_secrets

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "model_cards"
# The task each group of the shared evaluators reports (`zero_shot/top1_accuracy` -> zero-shot classification).
METRIC_GROUP_TASKS = {
    "zero_shot": "zero-shot-image-classification",
    "retrieval": "image-text-retrieval",
    "segmentation": "image-segmentation",
}


def available_templates() -> list[str]:
    """Names of the model card templates shipped with the package (`render_model_card(method=...)`)."""
    return sorted(path.stem for path in TEMPLATES_DIR.glob("*.md"))


def _public_arguments(arguments: dict) -> dict:
    """The training arguments fit for a card: `scrub_secrets` (no credentials, no local paths), no unset values;
    nested dicts are cleaned the same way."""
    for name in arguments:
        if not isinstance(name, str):
            raise ValueError(f"training_args keys must be strings, got {name!r}.")
    return _without_unset(scrub_secrets(arguments))


def _without_unset(arguments: dict) -> dict:
    public = {}
    for name, value in arguments.items():
        if value is None or value == "":
            continue
        if isinstance(value, dict):
            value = _without_unset(value)
        if isinstance(value, str) and "|" in value:
            value = value.replace("|", "\\|")  # would end the markdown table cell
        public[name] = value
    return public


def _check_metrics(metrics: dict) -> dict[str, float]:
    checked = {}
    for name, value in metrics.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"Metric {name!r} must be a number, got {value!r} ({type(value).__name__}).")
        checked[str(name)] = float(value) if not isinstance(value, int) else value
    return checked


def _task_of(metric: str, task_type: str | None, pipeline_tag: str | None) -> str | None:
    if task_type is not None:
        return task_type
    group = metric.split("/", 1)[0] if "/" in metric else None
    return METRIC_GROUP_TASKS.get(group) or pipeline_tag


def _is_result(name: str, value: float) -> bool:
    """Evaluation results for the model-index: not training statistics (`train/...`), not sample counts
    (`retrieval/num_images` describes the evaluation), not NaN / inf (shown in the table, never as a result)."""
    leaf = name.rsplit("/", 1)[-1]
    return not name.startswith("train/") and not leaf.startswith("num_") and math.isfinite(value)


def _check_str_list(name: str, values) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{name} must be a list of non-empty strings, got {values!r}.")
    return list(values)


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
        method: the template name (`clip`, `fff`, ...; see `available_templates()`).
        model_id: the repository id (or folder name) the card describes; used in the usage snippets.
        datasets: training dataset ids for the metadata (the embedded world is `hf-clipzoo/embedded-world`).
        metrics: `{name: value}` measured by the run. Every finite evaluation number goes into the `model-index`
            exactly as given; training statistics (`train/...`), sample counts (`.../num_...`) and NaN only into the
            results table. `None` values are skipped.
        training_args: the run's arguments, shown as a table and available to the template, after `scrub_secrets`:
            credentials (by name or by value, also inside URLs and command lines) and unset values are dropped, local
            absolute paths become `<local>/<last component>`.
        pipeline_tag: the Hub task (widget, filters), e.g. `zero-shot-image-classification`.
        base_model: the checkpoint the model was fine-tuned from, if any.
        license: SPDX-style license id of the weights.
        tags: extra tags; `hf-clipzoo` and the method are always added.
        dataset_name: display name of the evaluation dataset in the `model-index` (default: the first dataset).
        task_type: the task every result is reported under (default: from the metric group, e.g.
            `zero_shot/...` -> `zero-shot-image-classification`, else the pipeline tag).
        extra: more variables for the template (must not reuse the names of the arguments above).

    Returns:
        A `huggingface_hub.ModelCard`; `card.data` is its parsed metadata, `save_model_card` writes it.
    """
    templates = available_templates()
    if not isinstance(method, str) or method not in templates:
        raise ValueError(f"No model card template for {method!r}; available: {templates}.")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError(f"model_id must be a non-empty repository id or folder name, got {model_id!r}.")
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict {{name: number}}, got {type(metrics).__name__}.")
    if training_args is not None and not isinstance(training_args, dict):
        raise ValueError(f"training_args must be a dict, got {type(training_args).__name__}.")
    datasets = _check_str_list("datasets", datasets)
    tags = _check_str_list("tags", tags)
    metrics = _check_metrics(metrics or {})
    training_args = _public_arguments(training_args or {})

    eval_results = []
    dataset_type = datasets[0] if datasets else dataset_name
    for name, value in metrics.items():
        if not _is_result(name, value):
            continue
        task = _task_of(name, task_type, pipeline_tag)
        if dataset_type is None or task is None:
            # The Hub's model-index needs a dataset and a task per result; without them the numbers stay in the
            # card's table only rather than being attached to a made-up dataset.
            logger.warning("Metric %r is not added to the model-index: pass datasets= and pipeline_tag=.", name)
            continue
        eval_results.append(
            EvalResult(
                task_type=task,
                dataset_type=dataset_type,
                dataset_name=dataset_name or dataset_type,
                metric_type=name,
                metric_name=name,
                metric_value=value,
            )
        )
    card_data = ModelCardData(
        model_name=model_id.rstrip("/").split("/")[-1],
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=sorted({"hf-clipzoo", method, *tags}),
        base_model=base_model,
        datasets=datasets or None,
        license=license,
        eval_results=eval_results or None,
    )
    variables = dict(
        model_id=model_id,
        metrics=metrics,
        training_args=training_args,
        datasets=datasets,
        base_model=base_model,
        pipeline_tag=pipeline_tag,
        dataset_name=dataset_name or dataset_type,
    )
    clashes = sorted(set(extra or {}) & (set(variables) | {"card_data", "license", "tags", "method"}))
    if clashes:
        raise ValueError(f"extra must not redefine {clashes}: pass them as arguments of render_model_card.")
    return ModelCard.from_template(
        card_data, template_path=str(TEMPLATES_DIR / f"{method}.md"), **variables, **(extra or {})
    )


def save_model_card(folder: str | os.PathLike, card: ModelCard) -> Path:
    """Write the card as `folder/README.md` (what the Hub shows)."""
    if not isinstance(card, ModelCard):
        raise ValueError(
            f"card must be a huggingface_hub.ModelCard (from render_model_card), got {type(card).__name__}."
        )
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(path))
    return path


__all__ = [
    "METRIC_GROUP_TASKS",
    "TEMPLATES_DIR",
    "available_templates",
    "render_model_card",
    "save_model_card",
]
