#!/usr/bin/env python
"""Train the baseline CLIP / SigLIP dual encoder that every method of the zoo is compared with.

By default it trains a small model from scratch on the embedded synthetic world, so it runs on a laptop with no
download. Point `--dataset` at real data (a saved dataset, an image folder with metadata.jsonl, WebDataset tars, CSV
files or a Hub id) and `--model_name_or_path` at a transformers CLIP folder to fine-tune real weights.

    # one process (CPU or one GPU)
    python training_scripts/clip.py --output_dir runs/clip

    # several processes (GPUs; on CPU prefix ACCELERATE_USE_CPU=true)
    accelerate launch --multi_gpu --num_processes 2 training_scripts/clip.py --output_dir runs/clip

    # resume a killed run where its last checkpoint left it
    accelerate launch ... training_scripts/clip.py --output_dir runs/clip --resume_from_checkpoint latest

    # SigLIP instead of CLIP, pushed to the Hub at the end
    python training_scripts/clip.py --loss_type sigmoid --push_to_hub --hub_model_id you/clip-world-siglip

The loss is computed inside the model (`return_loss=True`) by `hf_clipzoo.losses`, which gathers embeddings across
processes *with* gradients: N processes train exactly like one process on the concatenated batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.collate import ImageTextCollator
from hf_clipzoo.data.loading import load_image_text_dataset
from hf_clipzoo.eval.retrieval import evaluate_retrieval
from hf_clipzoo.eval.zero_shot import evaluate_zero_shot
from hf_clipzoo.hub.model_card import render_model_card, save_model_card
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel, ZooCLIPProcessor
from hf_clipzoo.training import (
    build_optimizer,
    build_scheduler,
    build_trackers,
    check_finite,
    load_checkpoint,
    push_folder_to_hub,
    resolve_checkpoint,
    save_checkpoint,
)

logger = logging.getLogger("clip")

# CLIP keeps its temperature above 0.01 (open_clip clamps the log scale to ln 100 after every step).
MAX_LOGIT_SCALE = math.log(100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="synthetic", help="'synthetic' (the embedded world) or a dataset path / Hub id.")
    data.add_argument("--dataset_config_name", default=None, help="Config name of a Hub dataset.")
    data.add_argument("--train_split", default="train", help="Split to train on.")
    data.add_argument("--eval_split", default=None, help="Split for retrieval evaluation (default: none for real data).")
    data.add_argument("--image_column", default="image", help="Column holding the images.")
    data.add_argument("--caption_column", default="caption", help="Column holding the training captions.")
    data.add_argument("--eval_caption_column", default=None, help="Caption column for retrieval eval (default: --caption_column).")
    data.add_argument("--max_train_samples", type=int, default=None, help="Truncate the training set (debugging).")
    data.add_argument("--max_eval_samples", type=int, default=512, help="Truncate the evaluation sets.")
    data.add_argument("--synthetic_train_size", type=int, default=4096, help="Images in the synthetic training split.")
    data.add_argument("--synthetic_eval_size", type=int, default=512, help="Images in the synthetic evaluation split.")
    data.add_argument("--synthetic_classes_per_split", type=int, default=10, help="Images per class for zero-shot eval.")
    data.add_argument("--resolution", type=int, default=None, help="Image size (default: the model's).")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", default=None, help="A zoo / transformers CLIP folder or Hub id to start from.")
    model.add_argument("--model_preset", default="world-tiny", help="Tower shapes when training from scratch (CLIP_PRESETS).")
    model.add_argument("--loss_type", choices=("softmax", "sigmoid"), default="softmax", help="CLIP InfoNCE or SigLIP.")
    model.add_argument("--sigmoid_chunk_size", type=int, default=None, help="Chunked sigmoid loss (memory O(b*chunk)).")
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--per_device_train_batch_size", type=int, default=64, help="Batch size per process.")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimiser step.")
    optim.add_argument("--learning_rate", type=float, default=5e-4, help="Peak learning rate.")
    optim.add_argument("--weight_decay", type=float, default=0.2, help="AdamW weight decay (not on norms, biases, scales).")
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1.")
    optim.add_argument("--adam_beta2", type=float, default=0.98, help="AdamW beta2 (CLIP uses 0.98).")
    optim.add_argument("--adam_epsilon", type=float, default=1e-6, help="AdamW epsilon.")
    optim.add_argument("--lr_scheduler", default="cosine", help="cosine | linear | constant_with_warmup.")
    optim.add_argument("--num_warmup_steps", type=int, default=50, help="Linear warm-up steps.")
    optim.add_argument("--max_train_steps", type=int, default=None, help="Total optimiser steps (overrides epochs).")
    optim.add_argument("--num_train_epochs", type=int, default=10, help="Epochs when --max_train_steps is not set.")
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 disables).")
    optim.add_argument("--seed", type=int, default=0, help="Seed for data order, initialisation and the world.")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default="runs/clip", help="Where checkpoints, logs and the final model go.")
    run.add_argument("--logging_steps", type=int, default=10, help="Log the training loss every N steps.")
    run.add_argument("--eval_steps", type=int, default=None, help="Evaluate every N steps (default: at the end only).")
    run.add_argument("--checkpointing_steps", type=int, default=None, help="Save a resumable checkpoint every N steps.")
    run.add_argument("--checkpoints_total_limit", type=int, default=2, help="Keep at most this many checkpoints.")
    run.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder.")
    run.add_argument("--report_to", default="jsonl", help="jsonl (always on), tensorboard, wandb or all.")
    run.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None, help="Overrides accelerate config.")
    run.add_argument("--push_to_hub", action="store_true", help="Upload the final model folder to the Hub.")
    run.add_argument("--hub_model_id", default=None, help="Repository id for --push_to_hub.")
    run.add_argument("--hub_token", default=None, help="Token for --push_to_hub (default: the logged-in one).")
    args = parser.parse_args(argv)

    if args.dataset != "synthetic" and args.eval_split is None:
        logger.info("No --eval_split given: the run reports training loss only.")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id.")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}.")
    return args


# --- data ------------------------------------------------------------------------------------------------------
def load_data(args, accelerator) -> tuple[datasets.Dataset, datasets.Dataset | None, dict | None]:
    """Training set, retrieval eval set and (synthetic world only) a zero-shot classification set."""
    zero_shot = None
    if args.dataset == "synthetic":
        from hf_clipzoo.data.synthetic import CLASSIFICATION_TEMPLATES, WorldConfig, make_classification, make_scenes

        world = WorldConfig(seed=args.seed, image_size=args.resolution)
        # Every process builds the same (deterministic) world; main first so any caching happens once.
        with accelerator.main_process_first():
            train = make_scenes(args.synthetic_train_size, split="train", config=world)
            evaluation = make_scenes(args.synthetic_eval_size, split="test", config=world)
            classification = make_classification(args.synthetic_classes_per_split, split="test", config=world)
        zero_shot = {
            "dataset": classification,
            "class_names": classification.features["label"].names,
            "templates": CLASSIFICATION_TEMPLATES,
        }
    else:
        train = load_image_text_dataset(
            args.dataset, split=args.train_split, name=args.dataset_config_name,
            image_column=args.image_column, caption_column=args.caption_column,
        )
        evaluation = None
        if args.eval_split:
            evaluation = load_image_text_dataset(
                args.dataset, split=args.eval_split, name=args.dataset_config_name,
                image_column=args.image_column, caption_column=args.eval_caption_column or args.caption_column,
            ).cast_column(args.image_column, datasets.Image())
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if evaluation is not None and args.max_eval_samples:
        evaluation = evaluation.select(range(min(args.max_eval_samples, len(evaluation))))
    return train, evaluation, zero_shot


def build_model(args) -> tuple[ZooCLIPModel, ZooCLIPProcessor]:
    if args.model_name_or_path:
        model = ZooCLIPModel.from_pretrained(args.model_name_or_path)
        try:
            processor = ZooCLIPProcessor.from_pretrained(args.model_name_or_path)
        except (OSError, ValueError, TypeError):
            size = model.config.vision_config.image_size
            processor = build_clip_processor(size, model.config.text_config.max_position_embeddings)
    else:
        overrides = {"image_size": args.resolution} if args.resolution else {}
        config = ZooCLIPConfig.from_preset(
            args.model_preset,
            vision_config=overrides,
            loss_type=args.loss_type,
            sigmoid_chunk_size=args.sigmoid_chunk_size,
            # SigLIP §3.1 initialises t' = log 10 (and the bias at -10); CLIP starts at 1/0.07.
            logit_scale_init_value=math.log(10) if args.loss_type == "sigmoid" else 2.6592,
        )
        model = ZooCLIPModel(config)
        processor = build_clip_processor(config.vision_config.image_size, config.text_config.max_position_embeddings)
    if args.resolution is None:
        args.resolution = model.config.vision_config.image_size
    return model, processor


# --- evaluation ------------------------------------------------------------------------------------------------
def evaluate(args, accelerator, model, processor, evaluation, zero_shot) -> dict[str, float]:
    """Retrieval on the held-out captions and, on the synthetic world, zero-shot classification."""
    model.eval()
    metrics: dict[str, float] = {}
    unwrapped = accelerator.unwrap_model(model)
    if evaluation is not None:
        result = evaluate_retrieval(
            unwrapped, processor, evaluation, image_column=args.image_column,
            caption_column=args.eval_caption_column or args.caption_column, accelerator=accelerator,
        )
        metrics.update({f"retrieval/{k}": v for k, v in result.items() if isinstance(v, (int, float))})
    if zero_shot is not None:
        result = evaluate_zero_shot(
            unwrapped, processor, zero_shot["dataset"], class_names=zero_shot["class_names"],
            templates=zero_shot["templates"], accelerator=accelerator,
        )
        metrics.update({f"zero_shot/{k}": v for k, v in result.items() if isinstance(v, (int, float))})
    model.train()
    return metrics


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=build_trackers(output_dir / "logs", args.report_to),
        project_dir=str(output_dir),
        # A seeded sampler makes the data order a function of (seed, epoch): what makes resuming exact.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.ERROR)
        datasets.utils.logging.set_verbosity_error()
    logger.info(accelerator.state)
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    model, processor = build_model(args)
    train, evaluation, zero_shot = load_data(args, accelerator)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    collator = ImageTextCollator(processor, image_column=args.image_column, caption_column=args.caption_column)
    train_dataloader = DataLoader(
        train,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collator,
        num_workers=args.dataloader_num_workers,
    )
    steps_per_epoch = math.ceil(len(train_dataloader) / accelerator.num_processes / args.gradient_accumulation_steps)
    if steps_per_epoch == 0:
        raise ValueError(
            f"The training set ({len(train)} samples) is smaller than one global batch "
            f"({args.per_device_train_batch_size} x {accelerator.num_processes} processes)."
        )
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    optimizer = build_optimizer(
        model, name="adamw", lr=args.learning_rate, weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
    )
    scheduler = build_scheduler(
        optimizer, name=args.lr_scheduler, num_warmup_steps=args.num_warmup_steps, num_training_steps=max_train_steps
    )
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)

    global_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    accelerator.init_trackers("clip", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})
    logger.info("***** Training the baseline %s *****", "SigLIP" if model.config.loss_type == "sigmoid" else "CLIP")
    logger.info("  examples = %d, epochs = %d, optimiser steps = %d", len(train), num_epochs, max_train_steps)
    logger.info(
        "  batch per device = %d, processes = %d, accumulation = %d -> global batch = %d",
        args.per_device_train_batch_size, accelerator.num_processes, args.gradient_accumulation_steps, global_batch,
    )

    # --- resume ---
    global_step, first_epoch, batches_to_skip = 0, 0, 0
    checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        global_step = state["step"]
        first_epoch = global_step // steps_per_epoch
        batches_to_skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        logger.info("Resumed from %s at step %d (epoch %d).", checkpoint, global_step, first_epoch)

    # --- train ---
    progress = tqdm(total=max_train_steps, initial=global_step, desc="clip", disable=not accelerator.is_local_main_process)
    model.train()
    running_loss, running_count, skipped_total = 0.0, 0, 0
    last_loss = float("nan")
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        epoch_dataloader = train_dataloader
        if epoch == first_epoch and batches_to_skip:
            epoch_dataloader = accelerator.skip_first_batches(train_dataloader, batches_to_skip)
        for batch in epoch_dataloader:
            skipped_total += batch.pop("num_skipped")
            with accelerator.accumulate(model):
                loss = model(**batch, return_loss=True).loss
                check_finite(loss, global_step)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()  # a no-op on accumulation micro-batches (accelerate's optimizer wrapper)
                if accelerator.sync_gradients:
                    scheduler.step()  # not passed to `prepare`, so it advances once per optimiser step
                optimizer.zero_grad(set_to_none=True)
            running_loss += loss.detach().item()
            running_count += 1
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            progress.update(1)
            with torch.no_grad():
                accelerator.unwrap_model(model).logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            if global_step % args.logging_steps == 0 or global_step == max_train_steps:
                last_loss = running_loss / running_count
                logs = {"train/loss": last_loss, "train/lr": scheduler.get_last_lr()[0],
                        "train/logit_scale": accelerator.unwrap_model(model).logit_scale.exp().item(),
                        "train/skipped_samples": skipped_total}
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{last_loss:.4f}")
                running_loss, running_count = 0.0, 0
            if args.eval_steps and global_step % args.eval_steps == 0 and global_step < max_train_steps:
                accelerator.log(evaluate(args, accelerator, model, processor, evaluation, zero_shot), step=global_step)
            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                save_checkpoint(
                    accelerator, output_dir, global_step, model=model, optimizer=optimizer, scheduler=scheduler,
                    extra_state={"epoch": epoch}, total_limit=args.checkpoints_total_limit,
                )
            if global_step >= max_train_steps:
                break
        if global_step >= max_train_steps:
            break
    progress.close()

    # --- final evaluation, save, card, push ---
    metrics = evaluate(args, accelerator, model, processor, evaluation, zero_shot)
    metrics["train/loss"] = last_loss
    metrics["train/skipped_samples"] = skipped_total
    accelerator.log(metrics, step=global_step)
    accelerator.wait_for_everyone()
    final_dir = output_dir / "final"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(final_dir)
        processor.save_pretrained(final_dir)
        (final_dir / "results.json").write_text(json.dumps({"step": global_step, **metrics}, indent=2) + "\n")
        card = render_model_card(
            "clip",
            model_id=args.hub_model_id or final_dir.name,
            datasets=["hf-clipzoo/embedded-world"] if args.dataset == "synthetic" else [args.dataset],
            metrics=metrics,
            training_args={k: v for k, v in vars(args).items() if k != "hub_token"},
            pipeline_tag="zero-shot-image-classification",
        )
        save_model_card(final_dir, card)
        if args.push_to_hub:
            push_folder_to_hub(final_dir, args.hub_model_id, token=args.hub_token)
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
