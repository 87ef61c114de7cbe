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


def card_model_name(args, method: str, suffix: str | None = None) -> str:
    """The model card's title and model-index name: `--model_name`, else the repository name of `--hub_model_id`,
    else `<method>-<output_dir name>` (never `final`, the folder name every script writes). `suffix` names a
    sibling folder of the same run (`adapter`, `base`, `clip_vision`)."""
    name = getattr(args, "model_name", None) or (args.hub_model_id or "").rstrip("/").split("/")[-1]
    if not name:
        name = f"{method.replace('_', '-')}-{Path(args.output_dir).resolve().name}"
    return f"{name}-{suffix}" if suffix else name


def image_text_evaluation_protocol(args, metrics: dict) -> str | None:
    """What the image-text scripts' final evaluation measured (split, number of items, when), from their arguments
    and the counts the evaluators report."""
    counts = []
    if "retrieval/num_images" in metrics:
        counts.append(f"retrieval over {metrics['retrieval/num_images']} images and {metrics['retrieval/num_texts']} "
                      "captions (R@K in both directions)")  # fmt: skip
    if "zero_shot/num_samples" in metrics:
        counts.append(f"zero-shot classification of {metrics['zero_shot/num_samples']} images (top-1 / top-5 and "
                      "mean per-class accuracy, one prompt per class name)")  # fmt: skip
    if "grounding/pointing_accuracy" in metrics:
        counts.append("patch-level grounding (pointing game and mean IoU of the phrase-to-patch similarity maps)")
    if "segmentation/mean_iou" in metrics:
        images = getattr(args, "num_segmentation_eval_images", None)
        counts.append(f"zero-shot segmentation{f' of the first {images} images' if images else ''} (mean IoU over "
                      "the classes, background included; `all_background_mean_iou` is the all-background baseline)")  # fmt: skip
    if not counts:
        return None
    if args.dataset == "synthetic":
        split = f"the embedded world's held-out `{getattr(args, 'synthetic_eval_split', 'test')}` split"
    else:
        split = f"the `{args.eval_split}` split of `{args.dataset}`"
    when = f"every {args.eval_steps} steps and " if getattr(args, "eval_steps", None) else ""
    return (f"Measured by the training script on {split}, {when}once after the last step (the numbers above): "
            f"{'; '.join(counts)}.")  # fmt: skip


def episodic_evaluation_protocol(
    way: int, val_episodes: int, test_shots, test_episodes: int, queries_per_class: int, eval_steps: int | None
) -> str:
    """What the few-shot video scripts (CLIP-FSAR, MA-CLIP) measured: model selection on fixed meta-val episodes,
    the reported accuracies on meta-test episodes of classes never trained on."""
    when = f"every {eval_steps} steps and after the last" if eval_steps else "after the last step"
    shots = ", ".join(str(shot) for shot in test_shots)
    return (f"{way}-way episodes of the meta-test classes, unseen in training: {test_episodes} episodes per shot count "
            f"({shots}-shot), {queries_per_class} query video(s) per class, mean accuracy with its 95% confidence "
            f"interval over the episodes. The checkpoint was selected on {val_episodes} fixed meta-val episodes, "
            f"evaluated {when}; the meta-test episodes are drawn with their own seeds.")  # fmt: skip


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
        card_kwargs: more arguments of `render_model_card` (`pipeline_tag` defaults to zero-shot classification,
            `base_model` to `args.model_name_or_path`, `evaluation_protocol` to the image-text evaluation's).
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
    from ..hub.model_card import count_parameters, render_model_card, save_model_card
    from .arguments import loggable_config

    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "results.json").write_text(json.dumps(results if results is not None else metrics, indent=2) + "\n")
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    card_kwargs.setdefault("pipeline_tag", "zero-shot-image-classification")
    # render_model_card keeps local paths out of the metadata (the text names them as `<local>/name`).
    card_kwargs.setdefault("base_model", getattr(args, "model_name_or_path", None))
    card_kwargs.setdefault("evaluation_protocol", image_text_evaluation_protocol(args, numbers))
    card = render_model_card(
        method,
        # The snippets load what works: the Hub id, or the folder by its name.
        model_id=args.hub_model_id or folder.name,
        model_name=card_model_name(args, method),
        datasets=["hf-clipzoo/embedded-world" if args.dataset == "synthetic" else args.dataset],
        metrics=numbers,
        training_args=loggable_config(args),
        num_parameters=count_parameters(model),
        **card_kwargs,
    )
    save_model_card(folder, card)
    return folder


__all__ = [
    "card_model_name",
    "episodic_evaluation_protocol",
    "image_text_evaluation_protocol",
    "push_folder_to_hub",
    "save_final_model",
    "write_model_folder",
]
