#!/usr/bin/env python
"""Few-shot adaptation of a frozen CLIP with APE (training-free) and APE-T, against Tip-Adapter / Tip-Adapter-F.

One run, for one K (shots per class):
1. K images per class are drawn from the training split; the text classifier is built from prompt ensembles
   (templates, plus CuPL-style per-class prompts with `--cupl_prompts`); the cache from `--augment_epochs`
   augmented passes (random-resized-crop 0.5-1 + flip), raw features averaged then normalised as in the official
   `build_cache_model` (`--cache_key_average normalized` normalises every view first);
2. zero-shot CLIP, Tip-Adapter and APE are evaluated, their β, α (γ) searched on the **val** split only;
3. with `--train`, APE-T is trained with the official APE-T optimiser (AdamW with `--learning_rate`,
   `--adam_epsilon` 1e-3 and `--weight_decay` 0.1, cosine over all steps, best epoch on val), then β, α are searched
   on val; `--train_tip_adapter_f` trains the Tip-Adapter-F baseline with the official Tip-Adapter optimiser
   (AdamW lr 1e-3, eps 1e-4, torch's default weight decay 0.01; the optimiser flags are APE-T's), same schedule,
   epochs and batches;
4. the main model (APE-T with `--train`, else APE) is saved with its processor, `results.json` and a model card.

The encoder is any saved dual encoder (`--model_name_or_path`): a baseline CLIP from `training_scripts/clip.py`, a
zoo model or a transformers CLIP folder. By default the data is the embedded world's 64-class classification task.

    # APE and the baselines, 16 shots
    python training_scripts/ape.py --model_name_or_path runs/clip/final --shots 16 --output_dir runs/ape-16

    # ... and APE-T (several processes: accelerate launch --multi_gpu --num_processes 2 training_scripts/ape.py ...)
    python training_scripts/ape.py --model_name_or_path runs/clip/final --shots 16 --train --output_dir runs/ape-t

    # resume a killed APE-T run
    python training_scripts/ape.py ... --train --checkpointing_steps 50 --resume_from_checkpoint latest
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from pathlib import Path

import datasets
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.synthetic import WorldConfig
from hf_clipzoo.data.synthetic.classification import CLASSIFICATION_TEMPLATES, make_classification
from hf_clipzoo.eval.outcomes import save_outcomes
from hf_clipzoo.models.ape import APEModel, APETModel, TipAdapterFModel, TipAdapterModel
from hf_clipzoo.models.ape.building import (
    accuracy,
    augment_image,
    build_adapter,
    build_cache,
    build_text_weights,
    correct_predictions,
    encode_dataset,
    encoder_image_size,
    sample_few_shot,
    search_hyperparameters,
    zero_shot_correct,
)
from hf_clipzoo.models.ape.configuration_ape import CACHE_KEY_AVERAGES
from hf_clipzoo.training import (
    across_processes,
    build_accelerator,
    build_optimizer,
    build_scheduler,
    check_finite,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    save_final_model,
)
from hf_clipzoo.training.arguments import (
    add_optimization_arguments,
    add_run_arguments,
    check_flags,
    check_shared_arguments,
    loggable_config,
)
from hf_clipzoo.validation import NON_NEGATIVE_INT, POSITIVE_INT

logger = logging.getLogger("ape")

# Tip-Adapter's 7-template ImageNet ensemble (Tip-Adapter / APE `imagenet_templates`).
TIP_IMAGENET_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
# Official Tip-Adapter-F (`main.py::run_tip_adapter_F`): `AdamW(lr=cfg['lr'], eps=1e-4)`, lr 1e-3 in every dataset
# config, torch's default betas and weight decay (0.01). APE-T's own official settings come from the flags.
TIP_ADAPTER_F_OPTIMIZER = {"lr": 1e-3, "weight_decay": 0.01, "betas": (0.9, 0.999), "eps": 1e-4}
TEMPLATE_SETS = {
    "world": CLASSIFICATION_TEMPLATES,
    "tip-imagenet": TIP_IMAGENET_TEMPLATES,
    "single": ("a photo of a {}.",),
    "none": (),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="synthetic",
        help="'synthetic' (the embedded world's 64 classes) or a `save_to_disk` DatasetDict with train/val/test.",
    )
    data.add_argument("--train_split", default="train", help="Split the few-shot images are drawn from.")
    data.add_argument("--val_split", default="val", help="Split for the hyper-parameter search and epoch selection.")
    data.add_argument("--test_split", default="test", help="Split for the reported accuracies (never searched on).")
    data.add_argument("--image_column", default="image", help="Column holding the images.")
    data.add_argument("--label_column", default="label", help="Column holding the ClassLabel labels.")
    data.add_argument("--synthetic_train_per_class", type=int, default=None, help="Train pool per class (>= shots).")
    data.add_argument("--synthetic_val_per_class", type=int, default=4, help="Synthetic val images per class.")
    data.add_argument("--synthetic_test_per_class", type=int, default=8, help="Synthetic test images per class.")
    data.add_argument("--max_eval_samples", type=int, default=None, help="Truncate val and test (debugging).")

    method = parser.add_argument_group("method")
    method.add_argument("--model_name_or_path", required=True, help="The frozen encoder: a saved dual-encoder folder.")
    method.add_argument("--shots", type=int, default=16, help="K few-shot images per class (paper: 1/2/4/8/16).")
    method.add_argument("--augment_epochs", type=int, default=10, help="Augmented passes averaged into the cache.")
    method.add_argument(
        "--cache_key_average",
        choices=CACHE_KEY_AVERAGES,
        default="raw",
        help="raw: average the raw features of the views, then normalise (official); normalized: normalise each view.",
    )
    method.add_argument("--templates", choices=sorted(TEMPLATE_SETS), default="world", help="Prompt templates.")
    method.add_argument("--cupl_prompts", default=None, help="JSON {class name: [prompts]} added to the templates.")
    method.add_argument("--num_refined_channels", type=int, default=None, help="APE's Q (default: half of D).")
    method.add_argument("--criterion_weight", type=float, default=0.7, help="APE's λ (official ImageNet 0.7).")
    method.add_argument("--train_num_refined_channels", type=int, default=None, help="APE-T's Q (default: as APE).")
    method.add_argument("--train_criterion_weight", type=float, default=0.2, help="APE-T's λ (official 0.2).")
    method.add_argument("--channel_mode", choices=("extract", "modify"), default="extract", help="APE-T variant.")
    method.add_argument("--no_renormalize", action="store_true", help="APE-T: do not re-normalise (official code).")
    method.add_argument("--init_alpha", type=float, default=1.0, help="α before the search / during training.")
    method.add_argument("--init_beta", type=float, default=1.0, help="β before the search / during training.")
    method.add_argument("--init_gamma", type=float, default=0.1, help="APE's γ before the search.")
    method.add_argument("--search_scale", type=float, nargs=3, default=(7.0, 7.0, 1.0), help="β α γ grid ends.")
    method.add_argument("--search_steps", type=int, nargs=3, default=(200, 20, 20), help="β α γ grid sizes.")
    method.add_argument("--train", action="store_true", help="Train APE-T (the saved model becomes APE-T).")
    method.add_argument("--train_tip_adapter_f", action="store_true", help="Also train the Tip-Adapter-F baseline.")
    method.add_argument(
        "--save_baselines", action="store_true", help="Also save every built adapter to output_dir/<method>."
    )
    method.add_argument("--encode_batch_size", type=int, default=64, help="Images per encoder forward pass.")
    method.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")

    add_optimization_arguments(
        parser,
        batch_size=256,
        learning_rate=1e-3,
        weight_decay=0.1,
        adam_beta2=0.999,
        num_warmup_steps=0,
        num_train_epochs=20,
    )
    # These flags are APE-T's: the official APE-T uses eps 1e-3, weight decay 0.1 and no gradient clipping.
    # Tip-Adapter-F always gets its own official optimiser (`TIP_ADAPTER_F_OPTIMIZER`).
    parser.set_defaults(adam_epsilon=1e-3, max_grad_norm=0.0, seed=1)
    add_run_arguments(parser, output_dir="runs/ape")
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    check_flags(parser, args, {"shots": POSITIVE_INT, "augment_epochs": NON_NEGATIVE_INT})
    if args.search_scale[0] <= 0.1 or args.search_scale[1] <= 0.1 or args.search_scale[2] <= 0:
        parser.error(f"--search_scale needs β, α > 0.1 and γ > 0, got {args.search_scale}.")
    if min(args.search_steps) < 1:
        parser.error(f"--search_steps must all be >= 1, got {args.search_steps}.")
    return args


# --- data -----------------------------------------------------------------------------------------------------
def load_splits(args) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset, list[str]]:
    if args.dataset == "synthetic":
        world = WorldConfig(seed=args.seed)
        train_per_class = args.synthetic_train_per_class or args.shots
        splits = {
            "train": make_classification(train_per_class, split="train", config=world),
            "val": make_classification(args.synthetic_val_per_class, split="val", config=world),
            "test": make_classification(args.synthetic_test_per_class, split="test", config=world),
        }
        names = (args.train_split, args.val_split, args.test_split)
        if names != ("train", "val", "test"):
            raise ValueError("The embedded world has the splits train / val / test; do not rename them.")
    else:
        splits = datasets.load_from_disk(args.dataset)
        if not isinstance(splits, datasets.DatasetDict):
            raise ValueError(f"{args.dataset} must be a DatasetDict with {args.train_split}/{args.val_split} splits.")
    for role, name in (("train", args.train_split), ("val", args.val_split), ("test", args.test_split)):
        if name not in splits:
            raise ValueError(
                f"The {role} split {name!r} is missing from {args.dataset} (splits: {sorted(splits)}); "
                f"APE searches its hyper-parameters on a validation split and never on test."
            )
    train, val, test = splits[args.train_split], splits[args.val_split], splits[args.test_split]
    if args.max_eval_samples:
        val = val.select(range(min(len(val), args.max_eval_samples)))
        test = test.select(range(min(len(test), args.max_eval_samples)))
    names = getattr(train.features.get(args.label_column), "names", None)
    if not names:
        raise ValueError(f"The column {args.label_column!r} must be a ClassLabel with class names.")
    return train, val, test, list(names)


class AugmentedFewShot(Dataset):
    """The few-shot images with a fresh random-resized-crop + flip per (seed, epoch, index): reproducible on any
    number of processes and after a resume."""

    def __init__(self, images, labels, processor, size: int, seed: int):
        self.images, self.labels, self.processor, self.size, self.seed = images, labels, processor, size, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        view = augment_image(self.images[index], rng, self.size)
        return self.processor(images=[view], return_tensors="pt")["pixel_values"][0], self.labels[index]


def collate(rows):
    return {"pixel_values": torch.stack([r[0] for r in rows]), "labels": torch.tensor([r[1] for r in rows])}


# --- training (APE-T / Tip-Adapter-F) -------------------------------------------------------------------------
def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def optimizer_settings(args, name: str) -> dict:
    """The AdamW hyper-parameters of a trained adapter: Tip-Adapter-F's official ones, or APE-T's from the flags."""
    if name == "tip_adapter_f":
        return dict(TIP_ADAPTER_F_OPTIMIZER)
    return {
        "lr": args.learning_rate,
        "weight_decay": args.weight_decay,
        "betas": (args.adam_beta1, args.adam_beta2),
        "eps": args.adam_epsilon,
    }


def train_adapter(args, accelerator, model, name: str, few_shot, processor, val_embeds, val_labels) -> dict:
    """Train the adapter's parameters on augmented few-shot images; keep the epoch with the best val accuracy."""
    run_dir = Path(args.output_dir) / name
    size = encoder_image_size(model.encoder)
    dataset = AugmentedFewShot(
        list(few_shot[args.image_column]), list(few_shot[args.label_column]), processor, size, args.seed
    )
    loader = DataLoader(
        dataset,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=collate,
        num_workers=args.dataloader_num_workers,
    )
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    optimizer = build_optimizer(model, name="adamw", **optimizer_settings(args, name))
    scheduler = build_scheduler(
        optimizer, name=args.lr_scheduler, num_warmup_steps=args.num_warmup_steps, num_training_steps=max_steps
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    unwrapped = accelerator.unwrap_model(model)
    logger.info("***** Training %s *****", name)
    logger.info(
        "  few-shot images = %d, epochs = %d, steps = %d, trainable parameters = %d",
        len(dataset),
        num_epochs,
        max_steps,
        sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
    )
    logger.info(
        "  batch per device = %d, processes = %d, accumulation = %d -> global batch = %d",
        args.per_device_train_batch_size,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
        args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps,
    )

    global_step, first_epoch, last_saved, best = 0, 0, 0, {"val_accuracy": -1.0, "epoch": -1}
    best_file = run_dir / "best_trainable.safetensors"
    checkpoint = resolve_checkpoint(run_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        global_step = last_saved = state["step"]
        best = state.get("best", best)
        first_epoch = state.get("epoch", -1) + 1
        if accelerator.is_main_process and (checkpoint / best_file.name).is_file():
            # The best epoch so far may be older than the checkpoint: its weights travel with the checkpoint.
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkpoint / best_file.name, best_file)
        logger.info("Resumed %s from %s at step %d.", name, checkpoint, global_step)

    progress = tqdm(total=max_steps, initial=global_step, desc=name, disable=not accelerator.is_local_main_process)
    loss_value = float("nan")
    for epoch in range(first_epoch, num_epochs):
        model.train()
        dataset.epoch = epoch
        loader.set_epoch(epoch)
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                check_finite(loss, global_step)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            progress.update(1)
            if global_step % args.logging_steps == 0 or global_step == max_steps:
                loss_value = across_processes(accelerator, loss.detach().item(), "mean")
                accelerator.log({f"{name}/loss": loss_value, f"{name}/lr": scheduler.get_last_lr()[0]}, global_step)
            if global_step >= max_steps:
                break
        # Epoch selection on val with the initial α, β (official APE-T since 2023-09; v1.0 used test).
        val_accuracy = accuracy(unwrapped, val_embeds, val_labels)
        accelerator.log({f"{name}/val_accuracy": val_accuracy}, step=global_step)
        if val_accuracy > best["val_accuracy"]:
            best = {"val_accuracy": val_accuracy, "epoch": epoch}
            if accelerator.is_main_process:
                run_dir.mkdir(parents=True, exist_ok=True)
                save_file(trainable_state(unwrapped), str(best_file))
        # Checkpoints are written at epoch ends (an epoch is a few steps), so a resume starts a fresh epoch.
        if args.checkpointing_steps and global_step - last_saved >= args.checkpointing_steps:
            save_checkpoint(
                accelerator,
                run_dir,
                global_step,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                extra_state={"best": best, "epoch": epoch},
                extra_files=[best_file] if accelerator.is_main_process else None,
                total_limit=args.checkpoints_total_limit,
            )
            last_saved = global_step
        if global_step >= max_steps:
            break
    progress.close()
    accelerator.wait_for_everyone()
    with torch.no_grad():
        for key, value in load_file(str(best_file)).items():
            unwrapped.get_parameter(key).copy_(value)
    return {"best_epoch": best["epoch"], "train/loss": loss_value, "model": unwrapped}


# --- main -----------------------------------------------------------------------------------------------------
def load_encoder(path: str):
    encoder = AutoModel.from_pretrained(path).eval()
    if not hasattr(encoder, "get_image_features") or not hasattr(encoder, "get_text_features"):
        raise ValueError(f"{path} holds a {type(encoder).__name__}, not a dual encoder with image / text features.")
    try:
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, TypeError):
        config = encoder.config
        processor = build_clip_processor(
            encoder_image_size(encoder), getattr(config.text_config, "max_position_embeddings", 77)
        )
    return encoder, processor


def evaluate(model, search_args, val, test) -> dict:
    """Search α, β (γ) on val, then score test once; `test_correct` holds the per-image hits (for the bench)."""
    search = search_hyperparameters(model, *val, **search_args)
    correct = correct_predictions(model, *test)
    return {**search, "test_accuracy": float(correct.float().mean()), "test_correct": correct.int().tolist()}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = build_accelerator(args)
    accelerator.init_trackers("ape", config=loggable_config(args))

    encoder, processor = load_encoder(args.model_name_or_path)
    encoder.to(accelerator.device)
    train, val, test, class_names = load_splits(args)
    few_shot = sample_few_shot(
        train, args.shots, num_classes=len(class_names), seed=args.seed, label_column=args.label_column
    )
    logger.info(
        "***** APE: %d classes, %d shots, encoder %s *****", len(class_names), args.shots, args.model_name_or_path
    )

    columns = {"image_column": args.image_column, "label_column": args.label_column}
    text_weights = build_text_weights(
        encoder, processor, class_names, TEMPLATE_SETS[args.templates], cupl_prompts=args.cupl_prompts
    ).to(accelerator.device)
    cache_keys, cache_values = build_cache(
        encoder,
        processor,
        few_shot,
        num_classes=len(class_names),
        augment_epochs=args.augment_epochs,
        seed=args.seed,
        batch_size=args.encode_batch_size,
        accelerator=accelerator,
        key_average=args.cache_key_average,
        **columns,
    )
    cache_keys, cache_values = cache_keys.to(accelerator.device), cache_values.to(accelerator.device)
    encode = {"batch_size": args.encode_batch_size, "accelerator": accelerator, **columns}
    val_data = encode_dataset(encoder, processor, val, **encode)
    test_data = encode_dataset(encoder, processor, test, **encode)

    dim = text_weights.shape[1]
    common = dict(
        text_weights=text_weights,
        cache_keys=cache_keys,
        cache_values=cache_values,
        class_names=class_names,
        tokenizer=processor,
        init_alpha=args.init_alpha,
        init_beta=args.init_beta,
        cache_key_average=args.cache_key_average,
    )
    search_tip = {"search_scale": args.search_scale[:2], "search_steps": args.search_steps[:2]}
    search_ape = {"search_scale": args.search_scale, "search_steps": args.search_steps}
    num_channels = args.num_refined_channels or max(1, dim // 2)

    metrics: dict = {"shots": args.shots, "num_classes": len(class_names)}
    zero_shot_hits = zero_shot_correct(text_weights, *test_data)
    metrics["zero_shot/test_accuracy"] = float(zero_shot_hits.float().mean())
    outcomes = {"zero_shot/test_correct": zero_shot_hits.int().tolist()}
    adapters = {}
    adapters["tip_adapter"] = build_adapter(TipAdapterModel, encoder, **common)
    adapters["ape"] = build_adapter(
        APEModel,
        encoder,
        num_refined_channels=num_channels,
        criterion_weight=args.criterion_weight,
        init_gamma=args.init_gamma,
        **common,
    )
    for name in ("tip_adapter", "ape"):
        result = evaluate(adapters[name], search_tip if name == "tip_adapter" else search_ape, val_data, test_data)
        outcomes[f"{name}/test_correct"] = result.pop("test_correct")
        metrics.update({f"{name}/{k}": v for k, v in result.items()})

    trained = []
    if args.train_tip_adapter_f:
        trained.append(("tip_adapter_f", build_adapter(TipAdapterFModel, encoder, **common), search_tip))
    if args.train:
        ape_t = build_adapter(
            APETModel,
            encoder,
            num_refined_channels=args.train_num_refined_channels or num_channels,
            criterion_weight=args.train_criterion_weight,
            channel_mode=args.channel_mode,
            renormalize=not args.no_renormalize,
            **common,
        )
        trained.append(("ape_t", ape_t, search_tip))  # APE-T searches β, α only (γ is replaced by value weights)
    for name, model, search in trained:
        outcome = train_adapter(args, accelerator, model, name, few_shot, processor, *val_data)
        adapters[name] = outcome.pop("model")
        metrics.update({f"{name}/{k}": v for k, v in outcome.items()})
        result = evaluate(adapters[name], search, val_data, test_data)
        outcomes[f"{name}/test_correct"] = result.pop("test_correct")
        metrics.update({f"{name}/{k}": v for k, v in result.items()})
    for name, model in adapters.items():
        metrics[f"{name}/trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    accelerator.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=0)
    if accelerator.is_main_process:
        save_outcomes(output_dir, outcomes)

    main_name = "ape_t" if args.train else "ape"
    save_final_model(
        accelerator, adapters[main_name], processor, args, method="ape",
        metrics={k: v for k, v in metrics.items() if "/" in k}, results={"method": main_name, **metrics},
        tags=["few-shot", "tip-adapter", "ape-t" if args.train else "training-free"],
        task_type="image-classification",
        evaluation_protocol=f"{args.shots} labelled images per class ({len(class_names)} classes) from the "
        f"`{args.train_split}` split build the cache; the hyper-parameters (α, β, γ) and the training epoch are "
        f"searched on the `{args.val_split}` split; the accuracies are measured once on the `{args.test_split}` "
        "split, which is never searched on.",
        extra={"method_name": main_name, "shots": args.shots, "class_names": class_names},
    )  # fmt: skip
    if args.save_baselines and accelerator.is_main_process:
        for folder, model in adapters.items():
            model.save_pretrained(output_dir / folder)
            processor.save_pretrained(output_dir / folder)
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
