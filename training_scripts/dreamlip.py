#!/usr/bin/env python
"""Train DreamLIP (Zheng et al., ECCV 2024): each image with its raw caption and K subcaptions sampled from long
captions, the multi-positive contrastive loss and the subcaption-specific grouping loss.

By default it fine-tunes a baseline CLIP folder (`--model_name_or_path`, e.g. the output of
`training_scripts/clip.py`) on the embedded synthetic world, whose rows carry a short alt-text `caption`, a
multi-sentence `long_caption` and paraphrased `pseudo_captions` (the stand-ins for the MLLM captions of DreamLIP's
released sets). Without `--model_name_or_path` it trains from scratch.

    # one process
    python training_scripts/dreamlip.py --model_name_or_path runs/clip/final --output_dir runs/dreamlip

    # several processes (GPUs; on CPU prefix ACCELERATE_USE_CPU=true)
    accelerate launch --multi_gpu --num_processes 2 training_scripts/dreamlip.py --model_name_or_path runs/clip/final

    # one of DreamLIP's released long-caption CSVs (columns by position: image path, raw caption, then short / long
    # captions of InstructBLIP, ShareGPT4V, LLaVA-1.5), with its header's names for the first two columns
    python training_scripts/dreamlip.py --dataset cc3m_long.csv --dreamlip_csv_layout \
        --image_column filepath --caption_column title

    # resume a killed run
    python training_scripts/dreamlip.py --output_dir runs/dreamlip --resume_from_checkpoint latest

Besides retrieval (against the world's long descriptions) and zero-shot classification, the evaluation measures
patch-level grounding: pointing game and mIoU of text-patch similarity on the world's semantic masks.
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
from hf_clipzoo.data.subcaptions import (
    DREAMLIP_CAPTION_COLUMNS,
    REPLACEMENT_MODES,
    SubcaptionCollator,
    SubcaptionSampler,
    rename_dreamlip_csv_columns,
)
from hf_clipzoo.data.synthetic.vocab import SEGMENTATION_CLASSES
from hf_clipzoo.eval.grounding import evaluate_patch_grounding
from hf_clipzoo.losses.grouping import CONTRASTIVE_MODES, GROUPING_NEGATIVES, GROUPING_NORMS
from hf_clipzoo.models.clip import ZooCLIPConfig
from hf_clipzoo.models.dreamlip import DreamLIPConfig, DreamLIPModel, DreamLIPProcessor
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
from hf_clipzoo.validation import POSITIVE_INT

logger = logging.getLogger("dreamlip")

# Script flag -> DreamLIPConfig field.
LOSS_FLAGS = (
    "contrastive_mode",
    "contrastive_loss_weight",
    "grouping_loss_weight",
    "circle_loss_weight",
    "circle_loss_gamma",
    "circle_loss_margin",
    "grouping_norm",
    "grouping_threshold",
    "grouping_negatives",
    "patch_tokens",
    "local_logit_scale",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_image_text_data_arguments(parser)
    data.add_argument(
        "--subcaption_columns",
        nargs="+",
        default=None,
        help="Columns whose captions form the sentence pool (default: the world's long_caption and pseudo_captions; "
        "with --dreamlip_csv_layout the six MLLM columns).",
    )
    data.add_argument(
        "--dreamlip_csv_layout",
        action="store_true",
        help="The data is one of DreamLIP's released CSVs: rename its columns by position.",
    )
    data.add_argument("--num_subcaptions", type=int, default=6, help="K subcaptions per image and step (code: 6).")
    data.add_argument("--merge", type=int, default=1, help="Consecutive sentences joined into one subcaption.")
    data.add_argument("--replacement", choices=REPLACEMENT_MODES, default="auto", help="Sampling with replacement.")
    data.add_argument(
        "--no_raw_caption", action="store_true", help="Fill every slot with subcaptions (no raw caption)."
    )

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", default=None, help="A baseline CLIP / DreamLIP folder or Hub id.")
    model.add_argument("--model_preset", default="world-tiny", help="Tower shapes when training from scratch.")
    model.add_argument("--contrastive_mode", choices=CONTRASTIVE_MODES, default="per_slot", help="See DreamLIPConfig.")
    model.add_argument("--contrastive_loss_weight", type=float, default=1.0, help="λ of the contrastive loss.")
    model.add_argument("--grouping_loss_weight", type=float, default=1.0, help="λ of the grouping loss (0: off).")
    model.add_argument(
        "--circle_loss_weight",
        type=float,
        default=0.0,
        help="λ of the released --use_multipos_loss circle loss (0: off; 0.1 reproduces the released code).",
    )
    model.add_argument("--circle_loss_gamma", type=float, default=32.0, help="Circle loss γ (released --gamma).")
    model.add_argument("--circle_loss_margin", type=float, default=0.25, help="Circle loss m (released --margin).")
    model.add_argument("--grouping_norm", choices=GROUPING_NORMS, default="minmax", help="See DreamLIPConfig.")
    model.add_argument("--grouping_threshold", type=float, default=0.0, help="σ (negative: 1/num_patches).")
    model.add_argument("--grouping_negatives", choices=GROUPING_NEGATIVES, default="batch", help="See DreamLIPConfig.")
    model.add_argument(
        "--patch_tokens", choices=("projected", "unprojected"), default="projected", help="Patch space."
    )
    model.add_argument("--local_logit_scale", choices=("learned", "shared"), default="learned", help="Local temp.")
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")
    model.add_argument(
        "--grounding_threshold", type=float, default=0.5, help="Background threshold of the grounding evaluation."
    )

    add_optimization_arguments(parser, learning_rate=1e-4, weight_decay=0.5, num_warmup_steps=20, num_train_epochs=2)
    add_run_arguments(parser, output_dir="runs/dreamlip", compilable=True)
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    check_image_text_data_arguments(parser, args)
    check_flags(parser, args, {"num_subcaptions": POSITIVE_INT, "merge": POSITIVE_INT})
    if args.subcaption_columns is None:
        args.subcaption_columns = (
            list(DREAMLIP_CAPTION_COLUMNS) if args.dreamlip_csv_layout else ["long_caption", "pseudo_captions"]
        )
    return args


# --- model -----------------------------------------------------------------------------------------------------
def build_model(args) -> tuple[DreamLIPModel, DreamLIPProcessor]:
    overrides = {flag: getattr(args, flag) for flag in LOSS_FLAGS}
    processor = None
    if args.model_name_or_path:
        # A baseline CLIP folder becomes a DreamLIP model with the same towers; the local temperature is new.
        base = ZooCLIPConfig.from_pretrained(args.model_name_or_path).to_dict()
        base = {k: v for k, v in base.items() if k in DreamLIPConfig.__dataclass_fields__ or k.endswith("_config")}
        base["loss_type"] = "softmax"
        config = DreamLIPConfig(**{**base, **overrides})
        model = DreamLIPModel.from_pretrained(args.model_name_or_path, config=config)
        try:
            processor = DreamLIPProcessor.from_pretrained(args.model_name_or_path)
        except (OSError, ValueError, TypeError):
            processor = None
    else:
        vision = {"image_size": args.resolution} if args.resolution else {}
        config = DreamLIPConfig.from_preset(args.model_preset, vision_config=vision, **overrides)
        model = DreamLIPModel(config)
    if processor is None:
        clip_processor = build_clip_processor(
            config.vision_config.image_size, config.text_config.max_position_embeddings
        )
        processor = DreamLIPProcessor(
            image_processor=clip_processor.image_processor, tokenizer=clip_processor.tokenizer
        )
    if args.resolution is None:
        args.resolution = model.config.vision_config.image_size
    return model, processor


def evaluate(args, accelerator, model, processor, data) -> dict:
    metrics = evaluate_image_text(args, accelerator, model, processor, data)
    evaluation = data.evaluation
    if evaluation is not None and "semantic_mask" in evaluation.column_names and accelerator.is_main_process:
        # Small (max_eval_samples rows) and only on the main process: the numbers are identical everywhere.
        result = evaluate_patch_grounding(
            accelerator.unwrap_model(model), processor, evaluation, class_names=SEGMENTATION_CLASSES[1:],
            image_column=args.image_column, background_threshold=args.grounding_threshold,
        )  # fmt: skip
        metrics.update(
            {
                f"grounding/{k}": v
                for k, v in result.items()
                if k in ("pointing_accuracy", "pointing_chance", "mean_iou")
            }
        )
    model.train()
    return metrics


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = build_accelerator(args)

    model, processor = build_model(args)
    data = load_image_text_data(args, accelerator)
    if args.dreamlip_csv_layout:
        data.train = rename_dreamlip_csv_columns(data.train, image_column=args.image_column)
        args.image_column, args.caption_column = "image", "caption"
    missing = [c for c in args.subcaption_columns if c not in data.train.column_names]
    if missing:
        raise ValueError(f"The training data has no subcaption column(s) {missing}; it has {data.train.column_names}.")
    train = data.train
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    sampler = SubcaptionSampler(
        caption_columns=tuple(args.subcaption_columns),
        raw_caption_column=None if args.no_raw_caption else args.caption_column,
        num_subcaptions=args.num_subcaptions, merge=args.merge, replacement=args.replacement, seed=args.seed,
    )  # fmt: skip
    collator = SubcaptionCollator(processor, sampler, image_column=args.image_column)
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
    accelerator.init_trackers("dreamlip", config=loggable_config(args))
    logger.info(
        "***** Training DreamLIP: %d texts per image, contrastive %s x %s, grouping x %s (%s negatives) *****",
        sampler.num_texts, config.contrastive_mode, config.contrastive_loss_weight, config.grouping_loss_weight,
        config.grouping_negatives,
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
        total=max_train_steps, initial=global_step, desc="dreamlip", disable=not accelerator.is_local_main_process
    )
    model.train()
    running = {"loss": 0.0, "contrastive_loss": 0.0, "grouping_loss": 0.0}
    if config.circle_loss_weight > 0:  # logged only when on, so default runs log what they always did
        running["circle_loss"] = 0.0
    running_count, skipped = 0, 0
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        collator.set_epoch(epoch)  # new subcaptions every epoch, a function of (seed, epoch, row)
        epoch_dataloader = train_dataloader
        if epoch == first_epoch and batches_to_skip:
            epoch_dataloader = accelerator.skip_first_batches(train_dataloader, batches_to_skip)
        for batch in epoch_dataloader:
            skipped_total += batch.pop("num_skipped")
            with accelerator.accumulate(model):
                outputs = model(**batch, return_loss=True)
                loss = outputs.loss
                check_finite(loss, global_step)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()  # a no-op on accumulation micro-batches (accelerate's optimizer wrapper)
                if accelerator.sync_gradients:
                    scheduler.step()  # not passed to `prepare`, so it advances once per optimiser step
                optimizer.zero_grad(set_to_none=True)
            for key in running:
                value = getattr(outputs, key, None)
                running[key] += value.detach().item() if value is not None else float("nan")
            running_count += 1
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            progress.update(1)
            if global_step % args.logging_steps == 0 or global_step == max_train_steps:
                # Each process holds its share of the loss (local loss): the global loss is their mean.
                means = {k: across_processes(accelerator, v / running_count, "mean") for k, v in running.items()}
                last_loss = means["loss"]
                skipped = int(across_processes(accelerator, skipped_total, "sum"))
                unwrapped = accelerator.unwrap_model(model)
                logs = {f"train/{k}": v for k, v in means.items()}
                logs.update({
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/logit_scale": unwrapped.logit_scale.exp().item(),
                    "train/logit_scale_local": unwrapped._local_logit_scale().exp().item(),
                    "train/skipped_samples": skipped,
                })  # fmt: skip
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{last_loss:.4f}")
                running, running_count = dict.fromkeys(running, 0.0), 0
            if args.eval_steps and global_step % args.eval_steps == 0 and global_step < max_train_steps:
                accelerator.log(evaluate(args, accelerator, model, processor, data), step=global_step)
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
    metrics = evaluate(args, accelerator, model, processor, data)
    metrics["train/loss"] = last_loss
    metrics["train/skipped_samples"] = skipped
    accelerator.log(metrics, step=global_step)
    save_final_model(
        accelerator, model, processor, args, method="dreamlip", metrics=metrics,
        results={"step": global_step, **metrics},
    )  # fmt: skip
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
