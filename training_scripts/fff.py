#!/usr/bin/env python
"""Train FFF (Bulat et al., CVPR 2024): mined positives + several captions per image + the sigmoid loss.

By default it fine-tunes from a baseline CLIP / SigLIP folder (`--model_name_or_path`, e.g. the output of
`training_scripts/clip.py`) on the embedded synthetic world, whose rows carry a short alt-text `caption` and five
`pseudo_captions` (the stand-in for a captioner; for real data produce them with `hf-clipzoo caption`). Without
`--model_name_or_path` it trains from scratch; then use `--mining_warmup_steps` so mining starts once embeddings mean
something (at random initialisation every pair looks alike).

    # one process
    python training_scripts/fff.py --model_name_or_path runs/clip/final --output_dir runs/fff

    # several processes (GPUs; on CPU prefix ACCELERATE_USE_CPU=true); mined positives cross processes
    accelerate launch --multi_gpu --num_processes 2 training_scripts/fff.py --model_name_or_path runs/clip/final

    # resume a killed run
    accelerate launch ... training_scripts/fff.py --output_dir runs/fff --resume_from_checkpoint latest

    # ablations: mining only, augmentation only, softmax multi-positive loss
    python training_scripts/fff.py --num_pseudo_captions 0 ...
    python training_scripts/fff.py --no_mining ...
    python training_scripts/fff.py --loss_type softmax ...

Every mining choice the paper leaves open is a flag (and a field of `FFFConfig`); the number of mined positives per
step is logged as `train/mined_positives`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.collate import MultiCaptionCollator
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.models.fff import FFFConfig, FFFModel, FFFProcessor
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
from hf_clipzoo.training.image_text import (
    add_image_text_data_arguments,
    build_train_batches,
    check_image_text_data_arguments,
    evaluate_image_text,
    load_image_text_data,
    resume_stream,
    stream_checkpoint_state,
)
from hf_clipzoo.validation import NON_NEGATIVE_INT

logger = logging.getLogger("fff")

MINING_FLAGS = {
    "mining_image_text_threshold": "image_text_threshold",
    "mining_image_image_threshold": "image_image_threshold",
    "mining_text_text_threshold": "text_text_threshold",
    "mining_combination": "mining_combination",
    "mining_text_text_reference": "text_text_reference",
}


def _threshold(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_image_text_data_arguments(parser)
    data.add_argument(
        "--pseudo_caption_column", default="pseudo_captions", help="Column with a list of extra captions per image."
    )
    data.add_argument(
        "--num_pseudo_captions",
        type=int,
        default=5,
        help="K: extra captions per image in the batch (0: no batch text augmentation).",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model_name_or_path", default=None, help="A baseline CLIP / SigLIP / FFF folder or Hub id to start from."
    )
    model.add_argument(
        "--model_preset", default="world-tiny", help="Tower shapes when training from scratch (CLIP_PRESETS)."
    )
    model.add_argument(
        "--loss_type",
        choices=("sigmoid", "softmax"),
        default="sigmoid",
        help="Sigmoid (paper) or multi-positive softmax (ablation).",
    )
    model.add_argument(
        "--sigmoid_chunk_size", type=int, default=None, help="Chunked sigmoid loss (memory O(b*chunk))."
    )
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")

    mining = parser.add_argument_group("mining (unverified details of the paper: see FFFConfig)")
    mining.add_argument("--no_mining", action="store_true", help="Only each image's own captions are positives.")
    mining.add_argument(
        "--image_text_threshold", type=_threshold, default=None, help="Cosine threshold image-text ('none' disables)."
    )
    mining.add_argument(
        "--image_image_threshold", type=_threshold, default=0.9, help="Cosine threshold image-image ('none' disables)."
    )
    mining.add_argument(
        "--text_text_threshold", type=_threshold, default=0.9, help="Cosine threshold text-text ('none' disables)."
    )
    mining.add_argument(
        "--mining_combination", choices=("any", "all"), default="any", help="OR / AND of the enabled conditions."
    )
    mining.add_argument(
        "--text_text_reference",
        choices=("first", "max", "mean"),
        default="first",
        help="Which of an image's captions the text-text rule compares.",
    )
    mining.add_argument(
        "--mining_source",
        choices=("model", "teacher"),
        default="model",
        help="Mine with the trained model or a frozen teacher.",
    )
    mining.add_argument(
        "--teacher_model_name_or_path",
        default=None,
        help="Frozen dual encoder for --mining_source teacher (default: the starting model).",
    )
    mining.add_argument(
        "--mining_warmup_steps",
        type=int,
        default=0,
        help="Optimiser steps before mining starts (from scratch: embeddings are random at first).",
    )

    add_optimization_arguments(parser, learning_rate=1e-4, weight_decay=0.1, num_warmup_steps=20, num_train_epochs=2)
    add_run_arguments(parser, output_dir="runs/fff", compilable=True)
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    check_image_text_data_arguments(parser, args)
    check_flags(parser, args, {"num_pseudo_captions": NON_NEGATIVE_INT})
    if args.dataset != "synthetic" and args.eval_split is None:
        logger.info("No --eval_split given: the run reports training loss only.")
    return args


# --- model -----------------------------------------------------------------------------------------------------
def fff_config_overrides(args) -> dict:
    overrides = {name: getattr(args, flag) for name, flag in MINING_FLAGS.items()}
    overrides.update(
        mining=not args.no_mining,
        mining_source=args.mining_source,
        loss_type=args.loss_type,
        sigmoid_chunk_size=args.sigmoid_chunk_size,
    )
    return overrides


def build_model(args) -> tuple[FFFModel, FFFProcessor]:
    overrides = fff_config_overrides(args)
    if args.model_name_or_path:
        # A baseline CLIP / SigLIP folder becomes an FFF model with the same towers; its missing sigmoid bias (CLIP)
        # starts at FFFConfig's init value.
        base = ZooCLIPConfig.from_pretrained(args.model_name_or_path).to_dict()
        base = {k: v for k, v in base.items() if k in FFFConfig.__dataclass_fields__ or k.endswith("_config")}
        if base.get("loss_type") != "sigmoid":
            base.pop("logit_scale_init_value", None)
        config = FFFConfig(**{**base, **overrides})
        model = FFFModel.from_pretrained(args.model_name_or_path, config=config)
        try:
            base_processor = FFFProcessor.from_pretrained(args.model_name_or_path)
        except (OSError, ValueError, TypeError):
            base_processor = None
        processor = base_processor
    else:
        vision = {"image_size": args.resolution} if args.resolution else {}
        config = FFFConfig.from_preset(args.model_preset, vision_config=vision, **overrides)
        model = FFFModel(config)
        processor = None
    if processor is None:
        clip_processor = build_clip_processor(
            config.vision_config.image_size, config.text_config.max_position_embeddings
        )
        processor = FFFProcessor(image_processor=clip_processor.image_processor, tokenizer=clip_processor.tokenizer)
    if args.resolution is None:
        args.resolution = model.config.vision_config.image_size
    return model, processor


def build_teacher(args, model) -> torch.nn.Module | None:
    if args.mining_source != "teacher":
        return None
    path = args.teacher_model_name_or_path or args.model_name_or_path
    if path is None:
        raise ValueError("--mining_source teacher needs --teacher_model_name_or_path (or --model_name_or_path).")
    teacher = ZooCLIPModel.from_pretrained(path).eval().requires_grad_(False)
    return teacher


@torch.no_grad()
def teacher_embeddings(teacher, batch) -> dict:
    image = teacher.get_image_features(batch["pixel_values"]).pooler_output
    text = teacher.get_text_features(batch["input_ids"], attention_mask=batch.get("attention_mask")).pooler_output
    return {"mining_image_embeds": image, "mining_text_embeds": text}


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = build_accelerator(args)

    model, processor = build_model(args)
    teacher = build_teacher(args, model)
    extra_columns = (args.pseudo_caption_column,) if args.num_pseudo_captions else ()
    data = load_image_text_data(args, accelerator, extra_columns=extra_columns)
    train = data.train
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    collator = MultiCaptionCollator(
        processor, image_column=args.image_column, caption_column=args.caption_column,
        extra_caption_column=args.pseudo_caption_column, num_extra_captions=args.num_pseudo_captions,
    )  # fmt: skip
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
    if teacher is not None:
        teacher.to(accelerator.device)
    config = accelerator.unwrap_model(model).config  # `model` may now be wrapped (DDP), which hides `.config`
    if args.streaming:  # an epoch is one pass over the stream, of unknown length: the step budget ends the run
        steps_per_epoch, num_epochs = None, sys.maxsize
    else:
        steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
        num_epochs = math.ceil(max_train_steps / steps_per_epoch)

    global_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    accelerator.init_trackers("fff", config=loggable_config(args))
    logger.info(
        "***** Training FFF: %s loss, mining %s (%s), %d pseudo-captions per image *****",
        config.loss_type, "on" if config.mining else "off", config.mining_source, args.num_pseudo_captions,
    )  # fmt: skip
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
        total=max_train_steps, initial=global_step, desc="fff", disable=not accelerator.is_local_main_process
    )
    model.train()
    running_loss, running_count, running_mined, running_texts = 0.0, 0, 0.0, 0.0
    skipped = 0
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        epoch_dataloader = train_dataloader
        if epoch == first_epoch and batches_to_skip:
            epoch_dataloader = accelerator.skip_first_batches(train_dataloader, batches_to_skip)
        for batch in epoch_dataloader:
            skipped_total += batch.pop("num_skipped")
            with accelerator.accumulate(model):
                if teacher is not None:
                    batch.update(teacher_embeddings(teacher, batch))
                outputs = model(
                    **batch, return_loss=True, mine=config.mining and global_step >= args.mining_warmup_steps
                )
                loss = outputs.loss
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
            running_mined += outputs.num_mined_positives.item()  # global count: the same on every process
            running_texts += batch["input_ids"].shape[0]
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            progress.update(1)
            if global_step % args.logging_steps == 0 or global_step == max_train_steps:
                # Each process holds its share of the loss (local loss): the global loss is their mean.
                last_loss = across_processes(accelerator, running_loss / running_count, "mean")
                skipped = int(across_processes(accelerator, skipped_total, "sum"))
                logs = {
                    "train/loss": last_loss,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/logit_scale": accelerator.unwrap_model(model).logit_scale.exp().item(),
                    "train/skipped_samples": skipped,
                    "train/mined_positives": running_mined / running_count,
                    "train/texts_per_image": across_processes(accelerator, running_texts, "sum")
                    / (running_count * args.per_device_train_batch_size * accelerator.num_processes),
                }
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{last_loss:.4f}")
                running_loss, running_count, running_mined, running_texts = 0.0, 0, 0.0, 0.0
            if args.eval_steps and global_step % args.eval_steps == 0 and global_step < max_train_steps:
                accelerator.log(evaluate_image_text(args, accelerator, model, processor, data), step=global_step)
            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
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
            if global_step >= max_train_steps:
                break
        if global_step >= max_train_steps:
            break
    progress.close()

    # --- final evaluation, save, card, push ---
    metrics = evaluate_image_text(args, accelerator, model, processor, data)
    metrics["train/loss"] = last_loss
    metrics["train/skipped_samples"] = skipped
    accelerator.log(metrics, step=global_step)
    save_final_model(
        accelerator, model, processor, args, method="fff", metrics=metrics,
        results={"step": global_step, **metrics},
    )  # fmt: skip
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
