#!/usr/bin/env python
"""Train GroupViT (Xu et al., CVPR 2022): hierarchical grouping + image-text and multi-label contrastive losses.

By default it trains from scratch on the embedded synthetic world: each row's short `caption` feeds the image-text loss
and its `nouns` column the multi-label loss (3 prompts per image, nouns filled into random ImageNet templates; padded
with the caption). For real data without such a column, `--nouns_column ""` extracts nouns/verbs from the captions
(nltk when installed with its data, else the built-in heuristic of `extract_prompt_words`). Evaluation: retrieval,
zero-shot classification and zero-shot segmentation mIoU on the world's semantic masks (official protocol).

    # one process
    python training_scripts/groupvit.py --output_dir runs/groupvit

    # several processes (GPUs; on CPU prefix ACCELERATE_USE_CPU=true): losses gathered with gradient, SyncBN
    accelerate launch --multi_gpu --num_processes 2 training_scripts/groupvit.py --output_dir runs/groupvit

    # resume a killed run
    accelerate launch ... training_scripts/groupvit.py --output_dir runs/groupvit --resume_from_checkpoint latest

    # ablation: image-text loss only (official RedCaps config)
    python training_scripts/groupvit.py --num_prompts 0
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import zlib
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hf_clipzoo.data.collate import UnreadableSample, clean_caption, decode_image
from hf_clipzoo.eval.outcomes import save_outcomes
from hf_clipzoo.eval.segmentation import evaluate_world_segmentation
from hf_clipzoo.hub.model_card import count_parameters, render_model_card, save_model_card
from hf_clipzoo.losses.contrastive import clamp_logit_scale_
from hf_clipzoo.models.groupvit import ZooGroupViTConfig, ZooGroupViTModel, ZooGroupViTProcessor
from hf_clipzoo.models.groupvit.processing_groupvit import build_groupvit_processor, build_prompts
from hf_clipzoo.training import (
    across_processes,
    build_accelerator,
    build_optimizer,
    build_scheduler,
    check_finite,
    load_checkpoint,
    push_folder_to_hub,
    resolve_checkpoint,
    save_checkpoint,
)
from hf_clipzoo.training.arguments import (
    add_optimization_arguments,
    add_run_arguments,
    check_flags,
    check_shared_arguments,
    loggable_config,
)
from hf_clipzoo.training.hub import card_model_name, image_text_evaluation_protocol
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

logger = logging.getLogger("groupvit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_image_text_data_arguments(parser)
    data.add_argument(
        "--nouns_column", default="nouns", help="Column with each caption's nouns ('' extracts them from the caption)."
    )
    data.add_argument("--num_prompts", type=int, default=3, help="Noun prompts per image for L_ML (0 disables it).")
    data.add_argument(
        "--num_segmentation_eval_images", type=int, default=32, help="World scenes scored for segmentation mIoU."
    )
    data.add_argument(
        "--bg_thresh", type=float, default=0.95, help="Background threshold of the segmentation protocol (VOC 0.95)."
    )

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", default=None, help="A GroupViT folder (zoo or transformers layout).")
    model.add_argument("--model_preset", default="world-tiny", help="Shapes when training from scratch.")
    model.add_argument("--multi_label_loss_weight", type=float, default=1.0, help="w in L_IT + w * L_ML.")
    model.add_argument("--gumbel_tau", type=float, default=1.0, help="Gumbel-softmax temperature of the assignment.")
    model.add_argument(
        "--no_sync_batchnorm", action="store_true", help="Keep per-process BatchNorm statistics in multi-process runs."
    )
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")

    add_optimization_arguments(parser, learning_rate=1e-3, weight_decay=0.05, num_warmup_steps=20, num_train_epochs=2)
    add_run_arguments(parser, output_dir="runs/groupvit", stoppable=True)
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    check_image_text_data_arguments(parser, args)
    check_flags(parser, args, {"num_prompts": NON_NEGATIVE_INT})
    return args


# --- model and data --------------------------------------------------------------------------------------------
def build_model(args) -> tuple[ZooGroupViTModel, ZooGroupViTProcessor]:
    overrides = dict(
        multi_label_loss_weight=args.multi_label_loss_weight if args.num_prompts else 0.0,
        num_prompts=args.num_prompts,
        gumbel_tau=args.gumbel_tau,
    )
    if args.model_name_or_path:
        config = ZooGroupViTConfig.from_pretrained(args.model_name_or_path, **overrides)
        model = ZooGroupViTModel.from_pretrained(args.model_name_or_path, config=config)
    else:
        vision = {"image_size": args.resolution} if args.resolution else {}
        model = ZooGroupViTModel(ZooGroupViTConfig.from_preset(args.model_preset, vision_config=vision, **overrides))
    if args.resolution is None:
        args.resolution = model.config.vision_config.image_size
    processor = build_groupvit_processor(args.resolution, model.config.text_config.max_position_embeddings)
    return model, processor


class PromptCollator:
    """Rows -> `pixel_values` and caption `input_ids`, plus the raw material of the noun prompts (`prompt_sources`).

    The prompts themselves are sampled in the training loop (`add_prompts`) from a generator seeded by the step, so a
    resumed run draws exactly the prompts of an uninterrupted one (a generator in the collator would restart).
    """

    def __init__(self, processor, image_column, caption_column, nouns_column=None, num_prompts=3):
        self.processor, self.image_column, self.caption_column = processor, image_column, caption_column
        self.nouns_column, self.num_prompts = nouns_column, num_prompts

    def __call__(self, rows: list[dict]) -> dict:
        # Real data comes with undecoded image columns (`load_image_text_dataset`); unreadable rows are dropped and
        # counted, as the other image-text collators do.
        kept, images, captions = [], [], []
        for row in rows:
            try:
                images.append(decode_image(row[self.image_column]))
                captions.append(clean_caption(row[self.caption_column]))
            except UnreadableSample:
                del images[len(captions) :]
                continue
            kept.append(row)
        if not kept:
            raise ValueError(
                f"Every sample of a batch of {len(rows)} was unreadable; check --image_column and --caption_column."
            )
        batch = dict(self.processor(images=images, text=captions))
        if self.num_prompts:
            words = [list(row[self.nouns_column]) for row in kept] if self.nouns_column else None
            batch["prompt_sources"] = (captions, words)
        batch["num_skipped"] = len(rows) - len(kept)
        return batch


def add_prompts(batch: dict, processor, num_prompts: int, seed: int, device) -> dict:
    """Replace `prompt_sources` by tokenised prompts (image-major, `num_prompts` per image), sampled with `seed`."""
    sources = batch.pop("prompt_sources", None)
    if sources is None:
        return batch
    prompts = build_prompts(*sources, num_prompts=num_prompts, rng=random.Random(seed))
    tokens = processor.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    batch["prompt_input_ids"] = tokens["input_ids"].to(device)
    batch["prompt_attention_mask"] = tokens["attention_mask"].to(device)
    return batch


@torch.no_grad()
def evaluate_segmentation(args, model, processor, dataset) -> dict:
    """Zero-shot segmentation mIoU of the first `--num_segmentation_eval_images` scenes (`evaluate_world_segmentation`)."""
    if min(args.num_segmentation_eval_images, len(dataset)) == 0:
        return {}
    result = evaluate_world_segmentation(model, processor, dataset, args.num_segmentation_eval_images, args.bg_thresh)
    return {
        "segmentation/mean_iou": result["mean_iou"],
        "segmentation/overall_accuracy": result["overall_accuracy"],
        "segmentation/all_background_mean_iou": result["all_background_mean_iou"],
        "segmentation/confusion": result["confusions"],
    }


def evaluate(args, accelerator, model, processor, data) -> dict[str, float]:
    metrics = evaluate_image_text(args, accelerator, model, processor, data)
    if data.evaluation is not None and "semantic_mask" in data.evaluation.column_names:
        model.eval()
        seg = evaluate_segmentation(args, accelerator.unwrap_model(model), processor, data.evaluation)
        confusions = seg.pop("segmentation/confusion", None)
        if confusions is not None and accelerator.is_main_process:
            save_outcomes(args.output_dir, {"segmentation/confusion": confusions})
        # Every process computes the same numbers on the same scenes (cheap at this scale); no gather needed.
        metrics.update(seg)
        model.train()
    return metrics


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = build_accelerator(args)

    model, processor = build_model(args)
    if accelerator.num_processes > 1 and not args.no_sync_batchnorm:
        model.convert_sync_batchnorm()  # official: SyncBN in both projectors
    extra_columns = (args.nouns_column,) if args.nouns_column and args.num_prompts else ()
    data = load_image_text_data(args, accelerator, extra_columns=extra_columns)
    train = data.train
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    collator = PromptCollator(
        processor, image_column=args.image_column, caption_column=args.caption_column,
        nouns_column=args.nouns_column or None, num_prompts=args.num_prompts,
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
    accelerator.init_trackers("groupvit", config=loggable_config(args))
    logger.info(
        "***** Training GroupViT: L_IT + %.2f * L_ML, %d prompts per image *****",
        config.multi_label_loss_weight, args.num_prompts,
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
        total=max_train_steps, initial=global_step, desc="groupvit", disable=not accelerator.is_local_main_process
    )
    model.train()
    running_loss, running_count, running_ml = 0.0, 0, 0.0
    skipped, stopping = 0, False
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        epoch_dataloader = train_dataloader
        if epoch == first_epoch and batches_to_skip:
            epoch_dataloader = accelerator.skip_first_batches(train_dataloader, batches_to_skip)
        for micro_step, batch in enumerate(epoch_dataloader):
            skipped_total += batch.pop("num_skipped")
            # The step's randomness (prompt templates, Gumbel noise) is a function of (seed, step, micro-batch,
            # process) only: a resumed run draws exactly what the uninterrupted one drew, whatever else consumed the
            # global generators since the checkpoint (e.g. re-creating the data iterator).
            step_seed = zlib.crc32(
                f"{args.seed}-{global_step}-{micro_step % args.gradient_accumulation_steps}-"
                f"{accelerator.process_index}".encode()
            )
            torch.manual_seed(step_seed)
            batch = add_prompts(batch, processor, args.num_prompts, step_seed, accelerator.device)
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
                if accelerator.sync_gradients:
                    # Official: temperature capped at 100 (clamped here, on the parameter, not inside the loss).
                    unwrapped = accelerator.unwrap_model(model)
                    clamp_logit_scale_(unwrapped.logit_scale)
                    if unwrapped.multi_label_logit_scale is not None:
                        clamp_logit_scale_(unwrapped.multi_label_logit_scale)
            running_loss += loss.detach().item()
            running_count += 1
            if outputs.multi_label_loss is not None:
                running_ml += outputs.multi_label_loss.detach().item()
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
                    "train/multi_label_loss": across_processes(accelerator, running_ml / running_count, "mean"),
                }
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{last_loss:.4f}")
                running_loss, running_count, running_ml = 0.0, 0, 0.0
            if args.eval_steps and global_step % args.eval_steps == 0 and global_step < max_train_steps:
                accelerator.log(evaluate(args, accelerator, model, processor, data), step=global_step)
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
    metrics = evaluate(args, accelerator, model, processor, data)
    metrics["train/loss"] = last_loss
    metrics["train/skipped_samples"] = skipped
    accelerator.log(metrics, step=global_step)
    accelerator.wait_for_everyone()
    final_dir = output_dir / "final"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(final_dir)
        processor.save_pretrained(final_dir)
        (final_dir / "results.json").write_text(json.dumps({"step": global_step, **metrics}, indent=2) + "\n")
        card = render_model_card(
            "groupvit",
            model_id=args.hub_model_id or final_dir.name,
            model_name=card_model_name(args, "groupvit"),
            datasets=["hf-clipzoo/embedded-world"] if args.dataset == "synthetic" else [args.dataset],
            metrics=metrics,
            training_args=loggable_config(args),
            pipeline_tag="zero-shot-image-classification",
            base_model=args.model_name_or_path,
            num_parameters=count_parameters(unwrapped),
            evaluation_protocol=image_text_evaluation_protocol(args, metrics),
        )
        save_model_card(final_dir, card)
        if args.push_to_hub:
            push_folder_to_hub(final_dir, args.hub_model_id, token=args.hub_token)
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
