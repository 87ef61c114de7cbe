#!/usr/bin/env python
"""Train CLIP-FSAR (Wang et al., IJCV 2023, arXiv 2303.02982) episodically on the embedded world's action videos.

Training follows the released configs (spec `methods/clip_fsar.md` §1.3): 5-way **1-shot** episodes from the
meta-train classes with Q queries per class, Adam, gradient accumulation over `--tasks_per_step` episodes per
optimiser step, the loss `CE(−OTAM) + w · CE(video-text)`. Every `--eval_steps` steps the model is evaluated on
`--val_episodes` **meta-val** episodes and the best one is kept (the official code selects on test episodes; this
script never looks at meta-test before the end). The best model is then evaluated on `--test_episodes` meta-test
episodes (1 query per class) for each of `--test_shots`, with a 95% confidence interval.

    # one process, from a baseline CLIP trained by training_scripts/clip.py (or random world-micro towers)
    python training_scripts/clip_fsar.py --model_name_or_path runs/clip/final --output_dir runs/clip_fsar

    # the "OTAM without text" baseline
    python training_scripts/clip_fsar.py --no_text --output_dir runs/otam

    # several processes (GPUs; on CPU prefix ACCELERATE_USE_CPU=true)
    accelerate launch --multi_gpu --num_processes 2 training_scripts/clip_fsar.py --tasks_per_step 4

    # resume a killed run
    python training_scripts/clip_fsar.py --output_dir runs/clip_fsar --resume_from_checkpoint latest

Multi-process semantics: `--tasks_per_step` is the *global* number of episodes per optimiser step. Episode
`step * tasks_per_step + micro_step * processes + rank` goes to process `rank` (`tasks_per_step / processes`
micro-steps each), so any number of processes trains on the same episodes with the same effective batch.
Evaluation episodes are sharded the same way (episode `i` on rank `i % processes`) and the per-episode accuracies
are summed across processes, so the reported numbers do not depend on the process count.

What differs from the official recipe: the learning rate follows the shared schedules (`--lr_scheduler`, default
constant after a linear warm-up) instead of the official step schedule with its epoch-counting quirk; there is no
augmentation (the world's videos are rendered with exactly T frames, so no frame sampling either); checkpoints are
selected on meta-val, not meta-test.

The world's videos are rendered and preprocessed once into `[videos, T, 3, H, W]` tensors (the world is small).
Evaluation computes each video's frame features once (the towers are fixed at evaluation time) and runs the temporal
transformer and OTAM over batches of episodes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoConfig

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.episodes import EpisodeSampler
from hf_clipzoo.data.synthetic import WorldConfig
from hf_clipzoo.data.synthetic.videos import ACTION_CLASSES, make_action_videos
from hf_clipzoo.data.video import preprocess_videos
from hf_clipzoo.eval.few_shot import otam_distance
from hf_clipzoo.eval.metrics import episode_accuracy_with_ci
from hf_clipzoo.eval.outcomes import save_outcomes
from hf_clipzoo.hub.model_card import count_parameters, render_model_card, save_model_card
from hf_clipzoo.models.clip_fsar import CLIPFSARConfig, CLIPFSARModel, CLIPFSARProcessor
from hf_clipzoo.training import (
    StepMeter,
    across_processes,
    build_accelerator,
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
from hf_clipzoo.training.hub import card_model_name, episodic_evaluation_protocol
from hf_clipzoo.validation import NON_NEGATIVE, POSITIVE_INT, ListOf

logger = logging.getLogger("clip_fsar")
BEST_FILE = "best_model.safetensors"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data (the embedded world's action videos)")
    data.add_argument("--num_frames", type=int, default=8, help="T, frames per video (paper: 8).")
    data.add_argument("--synthetic_train_per_class", type=int, default=30, help="Meta-train videos per class.")
    data.add_argument("--synthetic_val_per_class", type=int, default=10, help="Meta-val videos per class.")
    data.add_argument("--synthetic_test_per_class", type=int, default=20, help="Meta-test videos per class.")
    data.add_argument(
        "--world_image_size", type=int, default=None, help="Rendered frame size (default: the model's resolution)."
    )

    episodes = parser.add_argument_group("episodes")
    episodes.add_argument("--way", type=int, default=5, help="N classes per episode (paper: 5).")
    episodes.add_argument("--train_shot", type=int, default=1, help="K at training (paper: always 1).")
    episodes.add_argument("--train_query", type=int, default=5, help="Queries per class at training (paper: 5).")
    episodes.add_argument("--tasks_per_step", type=int, default=4, help="Episodes per optimiser step, all processes.")
    episodes.add_argument("--val_shot", type=int, default=1, help="K of the meta-val episodes.")
    episodes.add_argument("--val_episodes", type=int, default=200, help="Meta-val episodes per evaluation.")
    episodes.add_argument("--test_shots", type=int, nargs="+", default=[1, 5], help="K of the meta-test evaluations.")
    episodes.add_argument("--test_episodes", type=int, default=10000, help="Meta-test episodes per K (paper: 10,000).")
    episodes.add_argument("--eval_query", type=int, default=1, help="Queries per class at val / test (paper: 1).")
    episodes.add_argument("--eval_batch_episodes", type=int, default=200, help="Episodes scored per batch at eval.")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", default=None, help="A zoo CLIP / CLIP-FSAR folder to start from.")
    model.add_argument("--model_preset", default="world-micro", help="Tower shapes without --model_name_or_path.")
    model.add_argument("--no_text", action="store_true", help="'OTAM without text' baseline (use_text=False).")
    model.add_argument("--text_loss_weight", type=float, default=3.0, help="w of the video-text loss (SSv2: 3.0).")
    model.add_argument("--no_merge_before", action="store_true", help="Average K shots after the transformer.")
    model.add_argument("--text_prompt", default="a photo of {}", help="Prompt for the class names (official).")
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")

    add_optimization_arguments(
        parser, batch_size=1, learning_rate=5e-5, weight_decay=5e-5, adam_beta2=0.999, num_warmup_steps=10
    )
    add_run_arguments(parser, output_dir="runs/clip_fsar")
    parser.set_defaults(lr_scheduler="constant_with_warmup", max_train_steps=100)
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    episode_sizes = ("num_frames", "way", "train_shot", "train_query", "tasks_per_step", "val_shot", "val_episodes",
                     "test_episodes", "eval_query", "eval_batch_episodes", "synthetic_train_per_class",
                     "synthetic_val_per_class", "synthetic_test_per_class")  # fmt: skip
    check_flags(
        parser,
        args,
        {
            **dict.fromkeys(episode_sizes, POSITIVE_INT),
            "test_shots": ListOf(POSITIVE_INT, min_length=1),
            "text_loss_weight": NON_NEGATIVE,
        },
    )
    if args.per_device_train_batch_size != 1 or args.gradient_accumulation_steps != 1:
        parser.error("Episodes are the batch here: use --tasks_per_step instead of the batch / accumulation flags.")
    return args


# --- model and data -------------------------------------------------------------------------------------------
def build_model(args) -> tuple[CLIPFSARModel, CLIPFSARProcessor]:
    overrides = dict(
        num_frames=args.num_frames,
        use_text=not args.no_text,
        text_loss_weight=args.text_loss_weight,
        merge_before=not args.no_merge_before,
    )
    processor = None
    if args.model_name_or_path:
        base = AutoConfig.from_pretrained(args.model_name_or_path).to_dict()
        if base.get("model_type") != CLIPFSARConfig.model_type:
            # A baseline CLIP: keep its towers; the temporal transformer and the scale start fresh. Small towers get
            # the FFN width of the tiny presets (4 * D) instead of the paper's 2048.
            base = {k: v for k, v in base.items() if k in CLIPFSARConfig.__dataclass_fields__ or k.endswith("_config")}
            if base["projection_dim"] <= 256:
                base["temporal_mlp_dim"] = 4 * base["projection_dim"]
        base.pop("model_type", None)
        config = CLIPFSARConfig(**{**base, **overrides})
        model = CLIPFSARModel.from_pretrained(args.model_name_or_path, config=config)
        try:
            processor = CLIPFSARProcessor.from_pretrained(args.model_name_or_path)
        except (OSError, ValueError, TypeError):
            processor = None
    else:
        config = CLIPFSARConfig.from_preset(args.model_preset, **overrides)
        model = CLIPFSARModel(config)
    config = model.config
    if processor is None or not isinstance(processor, CLIPFSARProcessor):
        clip = build_clip_processor(config.vision_config.image_size, config.text_config.max_position_embeddings)
        processor = CLIPFSARProcessor(clip.image_processor, clip.tokenizer)
    processor.num_frames = config.num_frames
    processor.text_prompt = args.text_prompt
    return model, processor


def render_split(args, split: str, per_class: int, processor) -> dict:
    """The split's videos as `pixel_values [V, T, 3, H, W]`, their labels and class names (rendered once)."""
    image_size = args.world_image_size or processor.image_processor.crop_size["height"]
    world = WorldConfig(seed=args.seed, image_size=max(24, image_size))
    rows = make_action_videos(per_class, split=split, num_frames=args.num_frames, config=world)
    pixel_values = preprocess_videos(list(rows["frames"]), processor.image_processor, num_frames=args.num_frames)
    return {
        "pixel_values": pixel_values,
        "labels": np.asarray(rows["label"]),
        "class_names": list(ACTION_CLASSES[split]),
    }


@torch.no_grad()
def text_embeddings(model, processor, class_names, device) -> torch.Tensor:
    batch = processor(class_names=class_names, return_tensors="pt")
    return model.get_text_features(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float()


# --- evaluation -----------------------------------------------------------------------------------------------
@torch.no_grad()
def frame_features(model, pixel_values: torch.Tensor, device, batch_size: int = 32) -> torch.Tensor:
    chunks = [
        model.get_frame_features(pixel_values[i : i + batch_size].to(device)).float()
        for i in range(0, pixel_values.shape[0], batch_size)
    ]
    return torch.cat(chunks)


@torch.no_grad()
def batched_episode_logits(model, features, text, episodes) -> torch.Tensor:
    """`[E, N·Q, N]` logits of E same-shape episodes at once; equals `model.compute_episode_logits` per episode."""
    config = model.config
    way, shot = episodes[0].way, episodes[0].shot
    num_frames, dim = features.shape[1], features.shape[2]
    # Episodes are class-major (`Episode` layout); sort by label anyway, as the model does.
    support_rows = np.stack([e.support_indices[np.argsort(e.support_labels, kind="stable")] for e in episodes])
    support = features[torch.as_tensor(support_rows)].reshape(len(episodes), way, shot, num_frames, dim)
    if config.use_text:
        tokens = text[torch.as_tensor(np.stack([e.class_ids for e in episodes]))]  # [E, N, D]
        support = torch.cat([support, tokens[:, :, None, None, :].expand(-1, -1, shot, 1, -1)], dim=3)
    if config.merge_before:
        protos = model.temporal_transformer(support.mean(dim=2).flatten(0, 1))
    else:
        protos = model.temporal_transformer(support.flatten(0, 2)).reshape(-1, shot, support.shape[3], dim).mean(1)
    protos = protos[:, :num_frames].reshape(len(episodes), way, num_frames, dim)
    queries = features[torch.as_tensor(np.stack([e.query_indices for e in episodes]))]  # [E, NQ, T, D]
    queries = model.temporal_transformer(queries.flatten(0, 1)).reshape(*queries.shape)
    eps = config.cos_eps
    dots = torch.einsum("eqld,epmd->eqplm", queries, protos)
    norms = torch.einsum("eql,epm->eqplm", queries.norm(dim=-1), protos.norm(dim=-1))
    return -otam_distance(1 - dots / (norms + eps), lam=config.otam_lambda, bidirectional=config.bidirectional_otam)


def evaluate_split(args, accelerator, model, processor, split_data, shot: int, num_episodes: int, seed: int) -> dict:
    """Mean accuracy and 95% CI over `num_episodes` episodes, sharded across processes."""
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    device = accelerator.device
    features = frame_features(unwrapped, split_data["pixel_values"], device)
    text = (
        text_embeddings(unwrapped, processor, split_data["class_names"], device) if unwrapped.config.use_text else None
    )
    sampler = EpisodeSampler(
        split_data["labels"], way=args.way, shot=shot, query=args.eval_query, seed=seed, num_episodes=num_episodes
    )
    mine = list(range(accelerator.process_index, num_episodes, accelerator.num_processes))
    accuracies = torch.zeros(num_episodes, dtype=torch.float64, device=device)
    for start in range(0, len(mine), args.eval_batch_episodes):
        episodes = [sampler.episode(i) for i in mine[start : start + args.eval_batch_episodes]]
        logits = batched_episode_logits(unwrapped, features, text, episodes)
        labels = torch.as_tensor(np.stack([e.query_labels for e in episodes]), device=device)
        correct = (logits.argmax(-1) == labels).double().mean(-1)
        accuracies[torch.as_tensor(mine[start : start + args.eval_batch_episodes], device=device)] = correct
    accuracies = accelerator.reduce(accuracies, "sum")  # every episode was scored by exactly one process
    unwrapped.train(was_training)
    summary = episode_accuracy_with_ci(accuracies.cpu().numpy(), z=1.96, ddof=1)
    return {
        "accuracy": summary["accuracy"],
        "ci95": summary["confidence_interval"],
        "per_episode": accuracies.cpu().tolist(),
    }


# --- main -----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    # The process count decides the accumulation, so it is known before the Accelerator. `PartialState` alone does
    # not read ACCELERATE_USE_CPU (the Accelerator does): without it a CPU launch set every process up as the only one.
    num_processes = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).num_processes
    if args.tasks_per_step % num_processes:
        raise ValueError(
            f"--tasks_per_step ({args.tasks_per_step}) must be a multiple of the number of processes ({num_processes})."
        )
    accumulation = args.tasks_per_step // num_processes
    accelerator = build_accelerator(args, gradient_accumulation_steps=accumulation, seedable_sampler=False)

    model, processor = build_model(args)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    train = render_split(args, "meta_train", args.synthetic_train_per_class, processor)
    val = render_split(args, "meta_val", args.synthetic_val_per_class, processor)
    test = render_split(args, "meta_test", args.synthetic_test_per_class, processor)
    train_sampler = EpisodeSampler(
        train["labels"], way=args.way, shot=args.train_shot, query=args.train_query, seed=args.seed
    )

    trainable = [p for p in model.parameters() if p.requires_grad]
    # Adam with L2 weight decay, as the official `OPTIM_METHOD: adam`.
    optimizer = torch.optim.Adam(
        trainable, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
    )  # fmt: skip
    max_train_steps = args.max_train_steps
    scheduler = build_scheduler(
        optimizer, name=args.lr_scheduler, num_warmup_steps=args.num_warmup_steps, num_training_steps=max_train_steps
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    device = accelerator.device
    train_pixels = train["pixel_values"]
    train_text = (
        text_embeddings(unwrapped, processor, train["class_names"], device) if unwrapped.config.use_text else None
    )

    accelerator.init_trackers("clip_fsar", config=loggable_config(args))
    logger.info(
        "***** CLIP-FSAR (%s): %d-way %d-shot, %d queries/class, %d episodes per step (%d processes x %d) *****",
        "with text" if unwrapped.config.use_text else "OTAM only", args.way, args.train_shot, args.train_query,
        args.tasks_per_step, num_processes, accumulation,
    )  # fmt: skip

    # --- resume ---
    best_file = output_dir / BEST_FILE
    global_step, best = 0, {"accuracy": -1.0, "step": -1}
    last = {"train/loss": float("nan"), "train/otam_loss": float("nan"), "train/text_loss": float("nan")}
    checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        global_step, best, last = state["step"], state.get("best", best), state.get("last", last)
        if accelerator.is_main_process and (checkpoint / BEST_FILE).is_file() and checkpoint / BEST_FILE != best_file:
            shutil.copy2(checkpoint / BEST_FILE, best_file)
        accelerator.wait_for_everyone()
        logger.info("Resumed from %s at step %d (best val %.4f at step %d).", checkpoint, global_step, *best.values())

    # --- train ---
    progress = tqdm(
        total=max_train_steps, initial=global_step, desc="clip_fsar", disable=not accelerator.is_local_main_process
    )
    model.train()
    running = {"loss": 0.0, "otam_loss": 0.0, "text_loss": 0.0, "count": 0}
    meter = StepMeter(device)  # time and peak memory of the training steps only (not the evaluations)
    while global_step < max_train_steps:
        for micro in range(accumulation):
            index = global_step * args.tasks_per_step + micro * num_processes + accelerator.process_index
            episode = train_sampler.episode(index)
            inputs = {
                "support_pixel_values": train_pixels[torch.as_tensor(episode.support_indices)].to(device),
                "support_labels": torch.as_tensor(episode.support_labels, device=device),
                "query_pixel_values": train_pixels[torch.as_tensor(episode.query_indices)].to(device),
                "query_labels": torch.as_tensor(episode.query_labels, device=device),
            }
            if train_text is not None:
                inputs.update(
                    class_text_embeds=train_text[torch.as_tensor(episode.class_ids, device=device)],
                    train_text_embeds=train_text,
                    support_class_ids=torch.as_tensor(episode.support_class_ids, device=device),
                    query_class_ids=torch.as_tensor(episode.query_class_ids, device=device),
                )
            with meter.measure(), accelerator.accumulate(model):
                outputs = model(**inputs, return_loss=True)
                check_finite(outputs.loss, global_step)
                accelerator.backward(outputs.loss)  # divided by the accumulation steps: a mean over tasks
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running["loss"] += outputs.loss.item()
            running["otam_loss"] += outputs.otam_loss.item()
            running["text_loss"] += outputs.text_loss.item() if outputs.text_loss is not None else float("nan")
            running["count"] += 1
        global_step += 1
        progress.update(1)
        if global_step % args.logging_steps == 0 or global_step == max_train_steps:
            last = {f"train/{k}": across_processes(accelerator, running[k] / running["count"], "mean")
                    for k in ("loss", "otam_loss", "text_loss")}  # fmt: skip
            logs = {**last, "train/lr": scheduler.get_last_lr()[0]}
            if unwrapped.video_text_scale is not None:
                logs["train/video_text_scale"] = unwrapped.video_text_scale.item()
            accelerator.log(logs, step=global_step)
            progress.set_postfix(loss=f"{last['train/loss']:.4f}")
            running = {"loss": 0.0, "otam_loss": 0.0, "text_loss": 0.0, "count": 0}
        eval_every = args.eval_steps or max_train_steps
        if global_step % eval_every == 0 or global_step == max_train_steps:
            # Model selection on meta-val episodes only (the official code selects on test episodes).
            result = evaluate_split(
                args, accelerator, model, processor, val, args.val_shot, args.val_episodes, args.seed + 1
            )
            accelerator.log({"val/accuracy": result["accuracy"], "val/ci95": result["ci95"]}, step=global_step)
            if result["accuracy"] > best["accuracy"]:
                best = {"accuracy": result["accuracy"], "step": global_step}
                if accelerator.is_main_process:
                    save_file(
                        {k: v.detach().cpu().contiguous() for k, v in unwrapped.state_dict().items()}, str(best_file)
                    )
            accelerator.wait_for_everyone()
        if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
            save_checkpoint(
                accelerator, output_dir, global_step, model=model, optimizer=optimizer, scheduler=scheduler,
                extra_state={"best": best, "last": last},
                extra_files=[best_file] if accelerator.is_main_process and best_file.is_file() else None,
                total_limit=args.checkpoints_total_limit,
            )  # fmt: skip
    progress.close()

    # --- the best model on meta-test ---
    if best_file.is_file():
        # Read on the CPU: `load_state_dict` copies onto each parameter's device (safetensors refuses "cpu:0").
        unwrapped.load_state_dict(load_file(str(best_file)))
    metrics = {"val/best_accuracy": best["accuracy"], "val/best_step": best["step"], **last}
    metrics["train/trainable_parameters"] = sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)
    if meter.steps:  # a run resumed at its last step trains nothing
        metrics["train/step_seconds"] = meter.step_seconds * accumulation
        metrics["train/peak_memory_mb"] = across_processes(accelerator, meter.peak_mib, "max")
    outcomes = {}
    for shot in args.test_shots:
        # A different seed per shot count, and never one used for val.
        result = evaluate_split(
            args, accelerator, model, processor, test, shot, args.test_episodes, args.seed + 100 + shot
        )
        metrics[f"test/{args.way}way_{shot}shot_accuracy"] = result["accuracy"]
        metrics[f"test/{args.way}way_{shot}shot_ci95"] = result["ci95"]
        outcomes[f"test/{args.way}way_{shot}shot_episode_accuracy"] = result["per_episode"]
    if accelerator.is_main_process:
        save_outcomes(output_dir, outcomes)
    accelerator.log(metrics, step=global_step)
    accelerator.wait_for_everyone()
    final_dir = output_dir / "final"
    if accelerator.is_main_process:
        unwrapped.save_pretrained(final_dir)
        processor.save_pretrained(final_dir)
        (final_dir / "results.json").write_text(json.dumps({"step": global_step, **metrics}, indent=2) + "\n")
        card = render_model_card(
            "clip_fsar",
            model_id=args.hub_model_id or final_dir.name,
            model_name=card_model_name(args, "clip_fsar"),
            datasets=["hf-clipzoo/embedded-world"],
            metrics={k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)},
            training_args=loggable_config(args),
            # No Hub task takes a support set (`video-classification` refuses the folder): the card names the
            # folder's custom `few-shot-video-classification` pipeline instead.
            task_type="video-classification",
            base_model=args.model_name_or_path,
            num_parameters=count_parameters(unwrapped),
            evaluation_protocol=episodic_evaluation_protocol(
                args.way, args.val_episodes, args.test_shots, args.test_episodes, args.eval_query, args.eval_steps
            ),
            extra={"use_text": unwrapped.config.use_text, "test_shots": args.test_shots, "way": args.way},
        )
        save_model_card(final_dir, card)
        if args.push_to_hub:
            push_folder_to_hub(final_dir, args.hub_model_id, token=args.hub_token)
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
