"""`run_eval`: evaluate a saved model on a dataset, the function behind `hf-clipzoo eval`.

Example (after `training_scripts/clip.py --output_dir out`)::

    from hf_clipzoo.eval.cli import run_eval
    run_eval("out", "path/to/saved_dataset", "zero-shot", output_file="out/eval_zero_shot.json")

or, from a shell, `python -m hf_clipzoo.eval.cli out path/to/dataset zero-shot --output_file results.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..options import TASKS

__all__ = ["TASKS", "run_eval", "load_eval_dataset", "add_eval_arguments", "main"]

_TASK_ALIASES = {"zero_shot": "zero-shot", "zeroshot": "zero-shot", "mmvp-vlm": "mmvp", "mmvp_vlm": "mmvp"}


def _normalise_task(task: str) -> str:
    task = _TASK_ALIASES.get(task.lower(), task.lower())
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; expected one of {list(TASKS)}.")
    return task


def load_eval_dataset(dataset: Any, split: str | None = None, task: str | None = None):
    """Resolves `dataset` into a map-style `datasets.Dataset`.

    Accepts a `datasets.Dataset` / `DatasetDict` object, a folder written by `save_to_disk`, an MMVP-VLM folder
    (with `Questions.csv`, for the `mmvp` task), or anything `datasets.load_dataset` takes (a packaged builder folder
    such as an image folder with `metadata.jsonl`, or a Hub id available offline). For a dataset dict, `split`
    picks the split; without it, `test`, then `validation`, then the only split.
    """
    import datasets

    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if task == "mmvp" and (path / "Questions.csv").is_file():
            from .mmvp import load_mmvp_vlm

            return load_mmvp_vlm(path)
        is_saved = path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json"))
        if is_saved:
            dataset = datasets.load_from_disk(str(path))
        else:
            dataset = datasets.load_dataset(str(dataset), split=split)
    if isinstance(dataset, (datasets.DatasetDict, dict)):
        if split is None:
            split = next((s for s in ("test", "validation") if s in dataset), None)
            if split is None and len(dataset) == 1:
                split = next(iter(dataset))
        if split not in dataset:
            raise ValueError(f"Split {split!r} not found; the dataset has splits {list(dataset)}. Pass `split=`.")
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(f"Expected a map-style datasets.Dataset, got {type(dataset).__name__}.")
    return dataset


def _json_safe(value: Any) -> Any:
    """NaN / inf become null (strict JSON has no NaN), numpy / torch scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_eval(
    model_path: str | os.PathLike,
    dataset: Any,
    task: str,
    *,
    split: str | None = None,
    output_file: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    max_samples: int | None = None,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    image_column: str = "image",
    label_column: str = "label",
    caption_column: str = "caption",
    statement_template: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Loads a saved model and processor, evaluates them on a dataset, and returns (and optionally writes) the results.

    Args:
        model_path: a folder written by `save_pretrained` (or a Hub id available offline), loaded with
            `AutoModel.from_pretrained` / `AutoProcessor.from_pretrained` after `import hf_clipzoo`, so every
            hf-clipzoo model and transformers' `CLIPModel` work without `trust_remote_code`.
        dataset: see :func:`load_eval_dataset`.
        task: `"zero-shot"`, `"retrieval"` or `"mmvp"`.
        split: the split of a dataset dict.
        output_file: where to write the results as JSON (NaN written as null); parent folders are created.
        batch_size: images per forward pass.
        device: e.g. `"cuda"`; defaults to CUDA when available, else CPU.
        max_samples: evaluate only the first `max_samples` rows (quick checks).
        class_names: zero-shot class names in label order (default: the label column's `ClassLabel` names).
        templates: zero-shot prompt templates (default: `"a photo of a {}."`).
        image_column, label_column, caption_column: dataset column names (zero-shot and retrieval).
        statement_template: MMVP statement template (default: the official `"a photo of {}"`).
        trust_remote_code: forwarded to `from_pretrained` for models whose code is not in hf-clipzoo/transformers.

    Returns:
        `{"task", "model", "dataset", "split", "num_samples", "metrics": {...}}`, `metrics` being the evaluator's dict.
    """
    from transformers import AutoModel, AutoProcessor

    import hf_clipzoo  # noqa: F401  (registers hf-clipzoo models with the Auto classes)

    from ..hub.folders import check_model_path
    from .mmvp import evaluate_mmvp
    from .retrieval import evaluate_retrieval
    from .zero_shot import DEFAULT_TEMPLATES, evaluate_zero_shot

    task = _normalise_task(task)
    check_model_path(model_path, argument="model_path")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    data = load_eval_dataset(dataset, split=split, task=task)
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"`max_samples` must be >= 1, got {max_samples}.")
        data = data.select(range(min(max_samples, len(data))))
    if len(data) == 0:
        raise ValueError("The evaluation dataset is empty.")

    device = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    model = AutoModel.from_pretrained(str(model_path), trust_remote_code=trust_remote_code).to(device).eval()
    processor = AutoProcessor.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)

    if task == "zero-shot":
        metrics = evaluate_zero_shot(
            model,
            processor,
            data,
            class_names=class_names,
            templates=templates if templates is not None else DEFAULT_TEMPLATES,
            image_column=image_column,
            label_column=label_column,
            batch_size=batch_size,
            device=device,
        )
    elif task == "retrieval":
        metrics = evaluate_retrieval(
            model,
            processor,
            data,
            image_column=image_column,
            caption_column=caption_column,
            batch_size=batch_size,
            device=device,
        )
    else:
        kwargs = {} if statement_template is None else {"statement_template": statement_template}
        metrics = evaluate_mmvp(model, processor, data, batch_size=batch_size, device=device, **kwargs)

    results = {
        "task": task,
        "model": str(model_path),
        "dataset": str(dataset) if isinstance(dataset, (str, os.PathLike)) else type(dataset).__name__,
        "split": split,
        "num_samples": len(data),
        "metrics": metrics,
    }
    if output_file is not None:
        output_file = Path(output_file)
        output_file.parent.mkdir(parents=True, exist_ok=True)
        output_file.write_text(json.dumps(_json_safe(results), indent=2) + "\n", encoding="utf-8")
    return results


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds `run_eval`'s arguments to a parser (used by `hf-clipzoo eval` and `python -m hf_clipzoo.eval.cli`)."""
    parser.add_argument("model_path", help="Folder written by save_pretrained (or an offline Hub id).")
    parser.add_argument("dataset", help="save_to_disk folder, MMVP-VLM folder, image folder or offline Hub id.")
    parser.add_argument("task", choices=TASKS, help="Which evaluation to run.")
    parser.add_argument(
        "--split", default=None, help="Split of a dataset dict (default: test, validation, or the only one)."
    )
    parser.add_argument("--output_file", default=None, help="Write the results to this JSON file.")
    parser.add_argument("--batch_size", type=int, default=64, help="Images per forward pass.")
    parser.add_argument("--device", default=None, help="Device, e.g. cuda or cpu (default: cuda if available).")
    parser.add_argument("--max_samples", type=int, default=None, help="Only evaluate the first N rows.")
    parser.add_argument("--class_names", nargs="+", default=None, help="Zero-shot class names in label order.")
    parser.add_argument("--templates", nargs="+", default=None, help="Zero-shot prompt templates containing '{}'.")
    parser.add_argument("--image_column", default="image", help="Image column.")
    parser.add_argument("--label_column", default="label", help="Label column (zero-shot).")
    parser.add_argument("--caption_column", default="caption", help="Caption column (retrieval): str or list of str.")
    parser.add_argument(
        "--statement_template", default=None, help="MMVP statement template (default 'a photo of {}')."
    )
    parser.add_argument("--trust_remote_code", action="store_true", help="Allow model code from the model folder.")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses arguments, runs :func:`run_eval` and prints the metrics as JSON."""
    parser = add_eval_arguments(argparse.ArgumentParser(description="Evaluate a saved hf-clipzoo / CLIP model."))
    args = vars(parser.parse_args(argv))
    results = run_eval(args.pop("model_path"), args.pop("dataset"), args.pop("task"), **args)
    print(json.dumps(_json_safe(results["metrics"]), indent=2))
    return results


if __name__ == "__main__":
    main()
