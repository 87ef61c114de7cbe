"""Model cards rendered from `model_cards/<method>.md` templates with the metadata of the run that made the weights.

The templates live in the package (`hf_clipzoo/hub/model_cards/`, also reachable as `model_cards/` at the repository
root) and are Jinja2 documents whose front matter is filled from `huggingface_hub.ModelCardData`: `library_name`,
`pipeline_tag`, `tags`, `base_model`, `datasets`, `license`, a `widget` and a `model-index` built from the metrics the
training script measured. Nothing in a card is typed in by hand.

The metadata follows what the Hub (and a maintainer reviewing a card) expects, whoever calls `render_model_card`:

- `base_model` and `datasets` name Hub repositories only (`org/name`); a local path would publish the user's directory
  layout and link to nothing, so it is dropped from the metadata and the text mentions it as `<local>/<name>`.
- The `model-index` holds evaluation results only: a metric whose name says what it measures (`..._accuracy`,
  `..._R@5`, `mean_iou`), with a standard `metric.type` from `HUB_METRIC_TYPES` and the project's full key as the
  metric `name`. Training statistics, losses, confidence intervals, chance levels, counts, selection steps,
  validation numbers (the model was selected on them) and before / delta rows stay in the card's table.
- Every result's task is one of the Hub's tasks (`HUB_TASKS`).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .scrub import LOCAL_PREFIX, scrub_secrets, scrub_string

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "model_cards"
EMBEDDED_WORLD = "hf-clipzoo/embedded-world"
# The Hub's task ids (huggingface.js `packages/tasks/src/pipelines.ts`; huggingface_hub ships no offline copy): the
# only values a model-index `task.type` may take, or the Hub shows no task for the result.
HUB_TASKS = frozenset(
    """text-classification token-classification table-question-answering question-answering zero-shot-classification
    translation summarization feature-extraction text-generation fill-mask sentence-similarity text-to-speech
    text-to-audio automatic-speech-recognition audio-to-audio audio-classification voice-activity-detection
    depth-estimation image-classification object-detection image-segmentation text-to-image image-to-text
    image-to-image image-to-video unconditional-image-generation video-classification reinforcement-learning robotics
    tabular-classification tabular-regression table-to-text multiple-choice text-ranking text-retrieval
    time-series-forecasting text-to-video image-text-to-text visual-question-answering document-question-answering
    zero-shot-image-classification graph-ml mask-generation zero-shot-object-detection text-to-3d image-to-3d
    image-feature-extraction video-text-to-text keypoint-detection visual-document-retrieval any-to-any
    video-to-video other""".split()
)
# Standard `metric.type` ids (the `evaluate` library's metric names, which the Hub links to) and the metric leaves
# they stand for; a metric matching none of them is not an evaluation result and stays out of the model-index.
HUB_METRIC_TYPES = frozenset({"accuracy", "recall", "precision", "f1", "mean_iou"})
_METRIC_LEAF_TYPES = (
    (re.compile(r"(^|_)R@\d+$"), "recall"),  # retrieval recall at K
    (re.compile(r"(^|_)mean_iou$"), "mean_iou"),
    (re.compile(r"(^|_)accuracy$"), "accuracy"),  # top-k, mean per class, pair, N-way K-shot, pointing
)
# Keys that describe a run or a reference point rather than the model's result: training statistics, validation
# numbers the model (or its hyper-parameters) was selected on, the starting model and the change (DIVA's
# `before` / `delta`), chance levels and trivial baselines.
_NOT_A_RESULT = re.compile(r"(^|/)(train|before|delta)(/|$)|(^|/)val(/|_)|chance|all_background|best_")
# The task each group of the shared evaluators reports (`zero_shot/top1_accuracy` -> zero-shot classification). The
# Hub has no image-text retrieval task: retrieval ranks the model's image embeddings against its text embeddings,
# so it is reported under `image-feature-extraction`. Grounding scores text-conditioned masks (mIoU, pointing game);
# MMVP asks which of two statements an image matches, a zero-shot classification.
METRIC_GROUP_TASKS = {
    "zero_shot": "zero-shot-image-classification",
    "retrieval": "image-feature-extraction",
    "segmentation": "image-segmentation",
    "grounding": "image-segmentation",
    "mmvp": "zero-shot-image-classification",
}
# Hub widgets (what the model page lets a visitor try) for the pipeline tags whose widget needs an example. The
# image is the Hub documentation's example (the one openai/clip-vit-base-patch32's card uses).
EXAMPLE_IMAGE = "https://huggingface.co/datasets/mishig/sample_images/resolve/main/cat-dog-music.png"
WIDGETS = {
    "zero-shot-image-classification": [
        {"src": EXAMPLE_IMAGE, "candidate_labels": "playing music, playing sports", "example_title": "Cat & Dog"}
    ],
    "image-classification": [{"src": EXAMPLE_IMAGE, "example_title": "Cat & Dog"}],
    "image-segmentation": [{"src": EXAMPLE_IMAGE, "example_title": "Cat & Dog"}],
    "text-to-image": [{"text": "a red circle next to a blue square", "example_title": "Two shapes"}],
}
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def is_hub_id(name) -> bool:
    """`org/name` that is not a local path: what the card's `base_model` and `datasets` may hold. Namespace-less
    legacy ids (`mnist`) are not accepted: the Hub moved them under organisations, and a bare name is as likely a
    local folder."""
    if not isinstance(name, str) or not _HUB_ID.fullmatch(name) or ".." in name or "--" in name:
        return False
    return not Path(name).exists()


def local_reference(name: str) -> str:
    """How the card's text names a local path: `<local>/<last component>`, never the directory layout."""
    parts = [part for part in re.split(r"[\\/]+", name) if part and part not in (".", "..", "~")]
    return f"{LOCAL_PREFIX}/{parts[-1]}" if parts else LOCAL_PREFIX


def hub_metric_type(name: str) -> str | None:
    """The standard `metric.type` of an evaluation result (`zero_shot/top1_accuracy` -> `accuracy`,
    `retrieval/text_to_image_R@5` -> `recall`), None for what is not one (`val/best_step`, `train/loss`,
    `diva/after/feedback_loss`, `test/5way_1shot_ci95`, `retrieval/num_images`)."""
    if _NOT_A_RESULT.search(name):
        return None
    leaf = name.rsplit("/", 1)[-1]
    return next((metric_type for pattern, metric_type in _METRIC_LEAF_TYPES if pattern.search(leaf)), None)


def count_parameters(*modules) -> int:
    """Parameters of the modules together, each tensor once (tied embeddings, a tower shared by two modules)."""
    seen, total = set(), 0
    for module in modules:
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel()
    return total


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
    group = metric.split("/", 1)[0] if "/" in metric else None
    task = METRIC_GROUP_TASKS.get(group) or task_type or pipeline_tag
    return task if task in HUB_TASKS else None


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
    model_name: str | None = None,
    datasets: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    training_args: dict | None = None,
    pipeline_tag: str | None = None,
    base_model: str | None = None,
    library_name: str = "transformers",
    license: str = "apache-2.0",
    tags: list[str] | None = None,
    dataset_name: str | None = None,
    task_type: str | None = None,
    num_parameters: int | None = None,
    evaluation_protocol: str | None = None,
    extra: dict | None = None,
) -> ModelCard:
    """Render `model_cards/<method>.md` for a trained model.

    Args:
        method: the template name (`clip`, `fff`, ...; see `available_templates()`).
        model_id: what the usage snippets load: the Hub repository id, or the folder name the card sits in.
        model_name: the card's title and the `model-index` name (default: the last part of `model_id`).
        datasets: training datasets (the embedded world is `hf-clipzoo/embedded-world`). Hub ids go into the
            metadata; local paths only into the text, as `<local>/<name>`.
        metrics: `{name: value}` measured by the run, all shown in the card's table. The `model-index` gets the
            finite evaluation results among them (`hub_metric_type`), each with its standard metric type and the
            full key as its name; it needs a Hub dataset and a Hub task. `None` values are skipped.
        training_args: the run's arguments, shown as a table and available to the template, after `scrub_secrets`:
            credentials (by name or by value, also inside URLs and command lines) and unset values are dropped, local
            absolute paths become `<local>/<last component>`.
        pipeline_tag: the Hub task (widget, filters), e.g. `zero-shot-image-classification`.
        base_model: the checkpoint the model was fine-tuned from, if any; in the metadata only if it is a Hub id.
        library_name: `transformers`, `peft` (adapter folders) or `diffusers` (pipeline folders).
        license: SPDX-style license id of the weights.
        tags: extra tags; `hf-clipzoo` and the method are always added.
        dataset_name: display name of the evaluation dataset in the `model-index` (default: the first dataset).
        task_type: the Hub task of results whose metric group has none of its own (`METRIC_GROUP_TASKS`; e.g.
            few-shot `test/...` accuracies); default: the pipeline tag. Must be one of `HUB_TASKS`.
        num_parameters: the model's parameter count (`count_parameters`), shown in the text.
        evaluation_protocol: what the results were measured on (split, number of items, when), shown in the text.
        extra: more variables for the template (must not reuse the names of the arguments above).

    Returns:
        A `huggingface_hub.ModelCard`; `card.data` is its parsed metadata, `save_model_card` writes it.
    """
    templates = available_templates()
    if not isinstance(method, str) or method not in templates:
        raise ValueError(f"No model card template for {method!r}; available: {templates}.")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError(f"model_id must be a non-empty repository id or folder name, got {model_id!r}.")
    if model_name is not None and (not isinstance(model_name, str) or not model_name.strip() or "\n" in model_name):
        raise ValueError(f"model_name must be a non-empty single-line name, got {model_name!r}.")
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict {{name: number}}, got {type(metrics).__name__}.")
    if training_args is not None and not isinstance(training_args, dict):
        raise ValueError(f"training_args must be a dict, got {type(training_args).__name__}.")
    if task_type is not None and task_type not in HUB_TASKS:
        raise ValueError(f"task_type must be one of the Hub's tasks (HUB_TASKS), got {task_type!r}.")
    if num_parameters is not None and (isinstance(num_parameters, bool) or not isinstance(num_parameters, int)
                                       or num_parameters < 0):  # fmt: skip
        raise ValueError(f"num_parameters must be a non-negative int, got {num_parameters!r}.")
    if base_model is not None and (not isinstance(base_model, str) or not base_model):
        raise ValueError(f"base_model must be a non-empty string, got {base_model!r}.")
    datasets = _check_str_list("datasets", datasets)
    tags = _check_str_list("tags", tags)
    metrics = _check_metrics(metrics or {})
    training_args = _public_arguments(training_args or {})
    model_name = (model_name or model_id.rstrip("/").split("/")[-1]).strip()
    # Metadata names Hub repositories only; the text still says where the model came from.
    hub_datasets = [name for name in datasets if is_hub_id(name)]
    hub_base_model = base_model if is_hub_id(base_model) else None
    base_reference = None if base_model is None else hub_base_model or local_reference(base_model)

    eval_results = []
    dataset_type = hub_datasets[0] if hub_datasets else None
    for name, value in metrics.items():
        metric_type = hub_metric_type(name)
        if metric_type is None or not math.isfinite(value):
            continue
        task = _task_of(name, task_type, pipeline_tag)
        if dataset_type is None or task is None:
            # The Hub's model-index needs a Hub dataset and a Hub task per result; without them the numbers stay in
            # the card's table only rather than being attached to a made-up dataset or task.
            logger.warning("Metric %r is not added to the model-index: pass a Hub dataset and a Hub task.", name)
            continue
        eval_results.append(
            EvalResult(
                task_type=task,
                dataset_type=dataset_type,
                dataset_name=dataset_name or dataset_type,
                metric_type=metric_type,
                metric_name=name,
                metric_value=value,
            )
        )
    card_data = ModelCardData(
        model_name=model_name,
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        tags=sorted({"hf-clipzoo", method, *tags}),
        base_model=hub_base_model,
        datasets=hub_datasets or None,
        license=license,
        eval_results=eval_results or None,
        widget=WIDGETS.get(pipeline_tag),
    )
    variables = dict(
        model_id=model_id,
        model_name=model_name,
        metrics=metrics,
        training_args=training_args,
        datasets=[name if name in hub_datasets else local_reference(name) for name in datasets],
        base_model=base_reference,
        pipeline_tag=pipeline_tag,
        dataset_name=dataset_name or dataset_type,
        num_parameters=num_parameters,
        evaluation_protocol=scrub_string(evaluation_protocol) if evaluation_protocol else None,
        # Models trained on the procedural world are for tests and pipelines; the cards' "Intended uses" say so.
        trained_on_world=EMBEDDED_WORLD in datasets,
    )
    clashes = sorted(set(extra or {}) & (set(variables) | {"card_data", "license", "tags", "method", "library_name"}))
    if clashes:
        raise ValueError(f"extra must not redefine {clashes}: pass them as arguments of render_model_card.")
    return ModelCard.from_template(
        card_data, template_path=str(TEMPLATES_DIR / f"{method}.md"), **variables, **(extra or {})
    )


def card_rule_violations(card: ModelCard | str) -> list[str]:
    """What keeps a card from the Hub's (and a reviewer's) expectations, empty when it has none: metadata naming
    local paths, model-index entries that are not evaluation results with a standard metric type and a Hub task, a
    title or model-index name that is the `final` folder's name, missing parameter count, intended / out-of-scope
    uses or evaluation protocol, no widget where the pipeline tag has one. Checks cards written by any version."""
    card = card if isinstance(card, ModelCard) else ModelCard(card)
    data, problems = card.data, []
    front = str(card).split("---", 2)[1]
    if LOCAL_PREFIX in front or scrub_string(front) != front:
        problems.append("the metadata names a local path or a credential")
    bases = data.base_model if isinstance(data.base_model, list) else [data.base_model] * (data.base_model is not None)
    problems += [f"base_model {name!r} is not a Hub id" for name in bases if not is_hub_id(name)]
    problems += [f"datasets entry {name!r} is not a Hub id" for name in data.datasets or [] if not is_hub_id(name)]
    for result in data.eval_results or []:
        if (
            result.metric_type not in HUB_METRIC_TYPES
            or hub_metric_type(result.metric_name or "") != result.metric_type
        ):
            problems.append(f"model-index metric {result.metric_name!r} ({result.metric_type!r}) is not an evaluation "
                            "result with a standard metric type")  # fmt: skip
        if result.task_type not in HUB_TASKS:
            problems.append(f"model-index task {result.task_type!r} is not a Hub task")
        if not is_hub_id(result.dataset_type):
            problems.append(f"model-index dataset {result.dataset_type!r} is not a Hub id")
    body = card.text
    title = next((line[2:].strip() for line in body.splitlines() if line.startswith("# ")), None)
    for name, what in ((title, "title"), (data.model_name if data.eval_results else title, "model-index name")):
        if not name or name == "final":
            problems.append(f"the {what} is {name!r}: pass --hub_model_id or --model_name")
    if not re.search(r"## Model size\s+[\d,]+ parameters", body):
        problems.append("no parameter count")
    for section in ("Intended uses", "Out-of-scope uses", "Evaluation protocol"):
        if f"\n## {section}\n" not in body:
            problems.append(f"no '{section}' section")
    if data.pipeline_tag in WIDGETS and not getattr(data, "widget", None):
        problems.append(f"no widget for pipeline_tag {data.pipeline_tag!r}")
    return problems


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
    "EMBEDDED_WORLD",
    "HUB_METRIC_TYPES",
    "HUB_TASKS",
    "METRIC_GROUP_TASKS",
    "TEMPLATES_DIR",
    "WIDGETS",
    "available_templates",
    "card_rule_violations",
    "count_parameters",
    "hub_metric_type",
    "is_hub_id",
    "local_reference",
    "render_model_card",
    "save_model_card",
]
