"""Upload a finished model folder to the Hub (or any endpoint that speaks its API, e.g. a local mirror)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from huggingface_hub import HfApi

logger = logging.getLogger(__name__)


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload `folder` (weights, config, processor, bundled code, model card).

    Checkpoint folders and logs are not in `folder` (the scripts push `<output_dir>/final`). Returns the commit URL.
    """
    folder = Path(folder)
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a Hub repository id such as 'you/clip-world', got {repo_id!r}.")
    # transformers models, PEFT adapters and diffusers pipelines.
    if not any((folder / name).is_file() for name in ("config.json", "adapter_config.json", "model_index.json")):
        raise ValueError(
            f"{folder} has no config.json, adapter_config.json or model_index.json; expected a folder written by "
            "save_pretrained."
        )
    api = HfApi(token=token, endpoint=endpoint)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message or f"Upload {folder.name} with hf-clipzoo",
        # Weights go up as safetensors only: pickles (optimizer states, stray .bin/.pt files) and checkpoints stay local.
        ignore_patterns=["*.pt", "*.pth", "*.bin", "*.pkl", "*.pickle", "*.ckpt", "checkpoint-*/**"],
    )
    logger.info("Pushed %s to %s", folder, commit.commit_url)
    return commit.commit_url


def _is_hub_id(name: str | None) -> bool:
    """`org/name` that is not a local path (the card's `base_model` and `datasets` must not name the user's files)."""
    if not name or "/" not in name or "\\" in name or name.startswith(("/", "~", ".")):
        return False
    return not Path(name).exists()


def save_final_model(
    accelerator,
    model,
    processor,
    args,
    *,
    method: str,
    metrics: dict,
    results: dict | None = None,
    **card_kwargs,
) -> Path:
    """The end of every training script: `<output_dir>/final` with the model, its processor, `results.json` and the
    rendered model card, pushed with `--push_to_hub`. Every process must call it; only the main process writes.

    Args:
        model: the (possibly wrapped) trained model; saved with `save_pretrained`.
        processor: saved next to it, so `AutoProcessor.from_pretrained(final)` works.
        args: the script's arguments (`output_dir`, `dataset`, `hub_model_id`, `push_to_hub`, `hub_token`, and the
            rest for the card's training table).
        method: the card template (`model_cards/<method>.md`).
        metrics: the run's evaluation, for `results.json` and the card.
        results: what `results.json` holds (default: `metrics`).
        card_kwargs: more arguments of `render_model_card` (`pipeline_tag` defaults to zero-shot classification;
            `base_model` to `args.model_name_or_path` when that is a Hub id rather than a local folder).
    """
    final_dir = Path(args.output_dir) / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_model_folder(
            final_dir, accelerator.unwrap_model(model, keep_torch_compile=False), processor, args, method=method, metrics=metrics,
            results=results, **card_kwargs,
        )  # fmt: skip
        if args.push_to_hub:
            push_folder_to_hub(final_dir, args.hub_model_id, token=args.hub_token)
    accelerator.wait_for_everyone()
    return final_dir


def write_model_folder(
    folder: str | os.PathLike,
    model,
    processor,
    args,
    *,
    method: str,
    metrics: dict,
    results: dict | None = None,
    **card_kwargs,
) -> Path:
    """What `save_final_model` writes into `folder` (one process): the model, its processor, `results.json` and the
    model card. Also how `hf-clipzoo foundations --refresh` re-writes a shipped folder with the current code."""
    from ..hub.model_card import render_model_card, save_model_card
    from .arguments import loggable_config

    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "results.json").write_text(json.dumps(results if results is not None else metrics, indent=2) + "\n")
    start = getattr(args, "model_name_or_path", None)
    card_kwargs.setdefault("pipeline_tag", "zero-shot-image-classification")
    card_kwargs.setdefault("base_model", start if _is_hub_id(start) else None)
    dataset = "hf-clipzoo/embedded-world" if args.dataset == "synthetic" else args.dataset
    card = render_model_card(
        method,
        model_id=args.hub_model_id or folder.name,
        # The metadata names Hub datasets only: a local folder would publish the user's directory layout.
        datasets=[dataset] if _is_hub_id(dataset) else None,
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        training_args=loggable_config(args),
        **card_kwargs,
    )
    save_model_card(folder, card)
    return folder


__all__ = ["push_folder_to_hub", "save_final_model", "write_model_folder"]
