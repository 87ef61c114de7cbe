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
import sys
from pathlib import Path

from tqdm.auto import tqdm

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.collate import ImageTextCollator
from hf_clipzoo.losses import clamp_logit_scale_
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel, ZooCLIPProcessor
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
    check_shared_arguments,
    loggable_config,
)
from hf_clipzoo.training.image_text import (
    add_image_text_data_arguments,
    build_train_batches,
    check_image_text_data_arguments,
    evaluate_image_text,
    load_image_text_data,
    resume_stream,
    stream_checkpoint_state,
)

logger = logging.getLogger("clip")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_text_data_arguments(parser)

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model_name_or_path", default=None, help="A zoo / transformers CLIP folder or Hub id to start from."
    )
    model.add_argument(
        "--model_preset", default="world-tiny", help="Tower shapes when training from scratch (CLIP_PRESETS)."
    )
    model.add_argument(
        "--loss_type", choices=("softmax", "sigmoid"), default="softmax", help="CLIP InfoNCE or SigLIP."
    )
    model.add_argument(
        "--sigmoid_chunk_size", type=int, default=None, help="Chunked sigmoid loss (memory O(b*chunk))."
    )
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")

    add_optimization_arguments(parser)
    add_run_arguments(parser, output_dir="runs/clip", stoppable=True, compilable=True)
    args = parser.parse_args(argv)

    if args.dataset != "synthetic" and args.eval_split is None:
        logger.info("No --eval_split given: the run reports training loss only.")
    check_shared_arguments(parser, args)
    check_image_text_data_arguments(parser, args)
    return args


# --- model -----------------------------------------------------------------------------------------------------
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


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = build_accelerator(args)

    model, processor = build_model(args)
    data = load_image_text_data(args, accelerator)
    train = data.train
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    collator = ImageTextCollator(processor, image_column=args.image_column, caption_column=args.caption_column)
    train_dataloader = build_train_batches(args, accelerator, train, collator)
    if args.streaming:
        max_train_steps = args.max_train_steps
    else:
        steps_per_epoch = math.ceil(
            len(train_dataloader) / accelerator.num_processes / args.gradient_accumulation_steps
        )
        if steps_per_epoch == 0:
            raise ValueError(
                f"The training set ({len(train)} samples) is smaller than one global batch "
                f"({args.per_device_train_batch_size} x {accelerator.num_processes} processes)."
            )
        max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    model.to(accelerator.device)  # before the optimiser, which runs fused when every parameter is on CUDA
    optimizer = build_optimizer(
        model,
        name="adamw",
        lr=args.learning_rate,
        weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    scheduler = build_scheduler(
        optimizer, name=args.lr_scheduler, num_warmup_steps=args.num_warmup_steps, num_training_steps=max_train_steps
    )
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    config = accelerator.unwrap_model(model).config  # `model` may now be wrapped (DDP), which hides `.config`
    if args.streaming:  # an epoch is one pass over the stream, of unknown length: the step budget ends the run
        steps_per_epoch, num_epochs = None, sys.maxsize
    else:
        steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
        num_epochs = math.ceil(max_train_steps / steps_per_epoch)

    global_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    accelerator.init_trackers("clip", config=loggable_config(args))
    logger.info("***** Training the baseline %s *****", "SigLIP" if config.loss_type == "sigmoid" else "CLIP")
    logger.info(
        "  examples = %s, epochs = %s, optimiser steps = %d",
        *(("streamed", "until the step budget") if args.streaming else (len(train), num_epochs)),
        max_train_steps,
    )
    logger.info(
        "  batch per device = %d, processes = %d, accumulation = %d -> global batch = %d",
        args.per_device_train_batch_size,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
        global_batch,
    )

    # --- resume ---
    global_step, first_epoch, batches_to_skip, skipped_total, last_loss = 0, 0, 0, 0, float("nan")
    checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        global_step = state["step"]
        # The count is global; keep it on the main process only so the sum over processes stays right.
        skipped_total = state.get("skipped_samples", 0) if accelerator.is_main_process else 0
        last_loss = state.get("last_loss", float("nan"))
        if args.streaming:
            first_epoch = resume_stream(accelerator, train_dataloader, state, checkpoint)
        else:
            first_epoch = global_step // steps_per_epoch
            batches_to_skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        logger.info("Resumed from %s at step %d (epoch %d).", checkpoint, global_step, first_epoch)

    # --- train ---
    progress = tqdm(
        total=max_train_steps, initial=global_step, desc="clip", disable=not accelerator.is_local_main_process
    )
    model.train()
    running_loss, running_count = 0.0, 0
    skipped, stopping = 0, False
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
            if config.loss_type == "softmax":  # CLIP caps the temperature at 100; SigLIP does not clamp
                clamp_logit_scale_(accelerator.unwrap_model(model).logit_scale)
            if global_step % args.logging_steps == 0 or global_step == max_train_steps:
                # Each process holds its share of the loss (local loss): the global loss is their mean.
                last_loss = across_processes(accelerator, running_loss / running_count, "mean")
                skipped = int(across_processes(accelerator, skipped_total, "sum"))
                logs = {
                    "train/loss": last_loss,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/logit_scale": accelerator.unwrap_model(model).logit_scale.exp().item(),
                    "train/skipped_samples": skipped,
                }
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{last_loss:.4f}")
                running_loss, running_count = 0.0, 0
            if args.eval_steps and global_step % args.eval_steps == 0 and global_step < max_train_steps:
                accelerator.log(evaluate_image_text(args, accelerator, model, processor, data), step=global_step)
            stopping = global_step == args.stop_after_step
            if stopping or (args.checkpointing_steps and global_step % args.checkpointing_steps == 0):
                save_checkpoint(
                    accelerator,
                    output_dir,
                    global_step,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    extra_state={
                        "epoch": epoch,
                        "last_loss": last_loss,
                        "skipped_samples": int(across_processes(accelerator, skipped_total, "sum")),
                        **stream_checkpoint_state(accelerator, train_dataloader),
                    },
                    total_limit=args.checkpoints_total_limit,
                )
            if global_step >= max_train_steps or stopping:
                break
        if global_step >= max_train_steps or stopping:
            break
    progress.close()
    if global_step == args.stop_after_step and global_step < max_train_steps:
        logger.info(
            "Stopped after step %d (--stop_after_step); resume with --resume_from_checkpoint latest.", global_step
        )
        accelerator.end_training()
        return {"step": global_step, "train/loss": last_loss}

    # --- final evaluation, save, card, push ---
    metrics = evaluate_image_text(args, accelerator, model, processor, data)
    metrics["train/loss"] = last_loss
    metrics["train/skipped_samples"] = skipped
    accelerator.log(metrics, step=global_step)
    save_final_model(
        accelerator, model, processor, args, method="clip", metrics=metrics,
        results={"step": global_step, **metrics},
    )  # fmt: skip
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
