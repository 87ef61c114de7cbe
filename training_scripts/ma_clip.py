#!/usr/bin/env python
"""Episodic few-shot action recognition with MA-CLIP adapters on a frozen zoo CLIP, trained and saved through PEFT.

Recipe (CLIP-FSAR's): 5-way 1-shot training episodes on the meta-train classes; every `--eval_steps` the model is
scored on fixed meta-val episodes and the best adapter state is kept (model selection on val only); at the end the
best state is evaluated on meta-test episodes with 1 and 5 shots (mean accuracy ± 95% CI). Data: the embedded world's
action videos. Three folders, each with the processor and a model card:

- `final/`: the trained model (LoRA merged), `AutoModel.from_pretrained(final, trust_remote_code=True)`, and
  `results.json`;
- `adapter/`: the PEFT adapter alone (`adapter_model.safetensors` + `adapter_config.json`, a few % of the model);
- `base/`: what the adapter goes on, the frozen CLIP with fresh adapters (PEFT cannot add MA-CLIP's modules to a
  plain CLIP), so `PeftModel.from_pretrained(AutoModel.from_pretrained(base, trust_remote_code=True), adapter)`.
  `adapter_config.json` names it: `<hub_model_id>-base` with `--hub_model_id`, else the local `base/` folder.

`--push_to_hub` uploads them to `<hub_model_id>`, `<hub_model_id>-adapter` and `<hub_model_id>-base`.

    python training_scripts/ma_clip.py --model_name_or_path runs/clip/final --output_dir runs/ma_clip
    accelerate launch --multi_gpu --num_processes 2 training_scripts/ma_clip.py --model_name_or_path ... (CPU: ACCELERATE_USE_CPU=true)
    python training_scripts/ma_clip.py ... --checkpointing_steps 50 --resume_from_checkpoint latest

Cost columns (`hf_clipzoo.training.StepMeter`, training steps only, evaluations excluded): `train/step_seconds` and
`train/peak_memory_mb`, the rise of memory during a step above what is in use before it (CUDA allocator peak; on
Linux CPUs the resident-set high-water mark).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoProcessor

from hf_clipzoo.data.episodes import EpisodeSampler
from hf_clipzoo.data.synthetic.videos import ACTION_CLASSES, make_action_videos
from hf_clipzoo.eval.few_shot import evaluate_episodes
from hf_clipzoo.eval.outcomes import save_outcomes
from hf_clipzoo.hub.model_card import count_parameters, render_model_card, save_model_card
from hf_clipzoo.models.clip import ZooCLIPModel
from hf_clipzoo.models.ma_clip import MACLIPModel, MACLIPProcessor
from hf_clipzoo.models.ma_clip.peft_ma_clip import get_ma_clip_peft_model, save_ma_clip_adapter
from hf_clipzoo.training import (
    StepMeter,
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
from hf_clipzoo.training.hub import card_model_name, episodic_evaluation_protocol
from hf_clipzoo.validation import POSITIVE_INT, ListOf, Number

logger = logging.getLogger("ma_clip")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True, help="A saved zoo CLIP (training_scripts/clip.py).")
    data = parser.add_argument_group("episodes")
    data.add_argument("--num_frames", type=int, default=8, help="Frames per video (paper: 8).")
    data.add_argument("--way", type=int, default=5, help="N classes per episode.")
    data.add_argument("--train_shot", type=int, default=1, help="K supports per class in training episodes.")
    data.add_argument("--query_per_class", type=int, default=1, help="Queries per class in every episode.")
    data.add_argument("--test_shots", type=int, nargs="+", default=[1, 5], help="Shots evaluated on meta-test.")
    data.add_argument("--val_episodes", type=int, default=20, help="Fixed meta-val episodes for model selection.")
    data.add_argument("--test_episodes", type=int, default=50, help="Meta-test episodes per shot.")
    data.add_argument("--videos_per_class", type=int, default=8, help="World videos per class and split.")
    model = parser.add_argument_group("MA-CLIP")
    model.add_argument("--peft_method", choices=("adapters", "lora"), default="adapters", help="MA-CLIP or LoRA.")
    model.add_argument("--adapter_ratio", type=float, default=0.25, help="Bottleneck ratio.")
    model.add_argument("--loss_alpha", type=float, default=0.5, help="α of the loss and the fusion.")
    model.add_argument("--lora_rank", type=int, default=8, help="Rank of the LoRA baseline.")
    add_optimization_arguments(
        parser, batch_size=1, learning_rate=1e-3, weight_decay=0.01, num_warmup_steps=10, num_train_epochs=1
    )
    parser.set_defaults(max_train_steps=100, adam_beta2=0.999)
    add_run_arguments(parser, output_dir="runs/ma_clip")
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    # At least 2 frames for temporal modelling, 2 classes for an episode.
    check_flags(
        parser,
        args,
        {
            "num_frames": Number(int, minimum=2),
            "way": Number(int, minimum=2),
            "train_shot": POSITIVE_INT,
            "query_per_class": POSITIVE_INT,
            "test_shots": ListOf(POSITIVE_INT, min_length=1),
        },
    )
    needed = max([args.train_shot, *args.test_shots]) + args.query_per_class
    if args.videos_per_class < needed:
        parser.error(f"--videos_per_class must be >= max shot + queries = {needed}, got {args.videos_per_class}.")
    return args


def ma_clip_kwargs(args) -> dict:
    kwargs = dict(num_frames=args.num_frames, adapter_ratio=args.adapter_ratio, loss_alpha=args.loss_alpha)
    if args.peft_method == "lora":
        kwargs.update(
            peft_method="lora", lora_rank=args.lora_rank, use_temporal_adapter=False, use_multimodal_adapter=False,
            use_joint_adapter=False, use_temporal_embedding=False,
        )  # fmt: skip
    return kwargs


def load_split(split, args, processor):
    rows = make_action_videos(args.videos_per_class, split=split, num_frames=args.num_frames)
    pixel_values = processor(videos=[row["frames"] for row in rows])["pixel_values"]
    text = processor(class_names=ACTION_CLASSES[split])
    return {"pixel_values": pixel_values, "labels": np.asarray(rows["label"]), **text}


def episode_inputs(split, episode, device):
    ids = torch.as_tensor(episode.class_ids)
    return dict(
        support_pixel_values=split["pixel_values"][episode.support_indices].to(device),
        support_labels=torch.as_tensor(episode.support_labels).to(device),
        query_pixel_values=split["pixel_values"][episode.query_indices].to(device),
        input_ids=split["input_ids"][ids].to(device),
        attention_mask=split["attention_mask"][ids].to(device),
        query_labels=torch.as_tensor(episode.query_labels).to(device),
    )


@torch.no_grad()
def encode_split(model, split, device, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Every video of `split` encoded once as a support (with its class text) and once as a query: MA-CLIP's
    per-video features do not depend on the rest of an episode, so thousands of episodes reuse them."""
    text = model.get_text_features(split["input_ids"].to(device), split["attention_mask"].to(device))
    labels = torch.as_tensor(split["labels"], device=device)
    use_text = model.config.use_text_in_support
    encoded = {name: [] for name in ("support_frames", "support_tpcm", "query_frames", "query_tpcm")}
    for start in range(0, len(labels), batch_size):
        pixel_values = split["pixel_values"][start : start + batch_size].to(device)
        for role, own_text in (("support", text[labels[start : start + batch_size]] if use_text else None),
                               ("query", None)):  # fmt: skip
            frames, tpcm = model.encode_videos(pixel_values, own_text)
            encoded[f"{role}_frames"].append(frames)
            encoded[f"{role}_tpcm"].append(tpcm)
    return {"text_features": text, **{name: torch.cat(parts) for name, parts in encoded.items()}}


@torch.no_grad()
def evaluate(model, split, args, shot, num_episodes, seed, device) -> dict:
    """Mean accuracy (95% CI) over `num_episodes` episodes, each scored from the split's cached video features;
    equals `model(**episode_inputs(...))` per episode (tested)."""
    model.eval()
    features = encode_split(model, split, device)
    sampler = EpisodeSampler(
        split["labels"], args.way, shot, args.query_per_class, seed=seed, num_episodes=num_episodes
    )

    def predict(episode):
        support, query = torch.as_tensor(episode.support_indices), torch.as_tensor(episode.query_indices)
        return model.score_episode(
            features["support_frames"][support], features["support_tpcm"][support],
            torch.as_tensor(episode.support_labels, device=device),
            features["query_frames"][query], features["query_tpcm"][query],
            features["text_features"][torch.as_tensor(episode.class_ids)],
        ).probs.cpu()  # fmt: skip

    result = evaluate_episodes(predict, sampler)
    model.train()
    return result


def hub_ids(args) -> dict[str, str] | None:
    """Repository ids of the three folders, from `--hub_model_id` (None without it)."""
    if not args.hub_model_id:
        return None
    return {"final": args.hub_model_id, "adapter": f"{args.hub_model_id}-adapter", "base": f"{args.hub_model_id}-base"}


def save_folders(args, peft_model, processor, metrics: dict, output_dir: Path) -> None:
    """Write (and push) `adapter/`, `final/` (the merged model) and the cards of these and of `base/`."""
    ids = hub_ids(args)
    folders = {name: output_dir / name for name in ("final", "adapter", "base")}
    base_reference = ids["base"] if ids else str(folders["base"])
    save_ma_clip_adapter(peft_model, folders["adapter"], base_reference)
    processor.save_pretrained(folders["adapter"])
    metrics["adapter_checkpoint_bytes"] = (folders["adapter"] / "adapter_model.safetensors").stat().st_size
    metrics["full_model_bytes"] = sum(
        v.numel() * v.element_size() for v in peft_model.base_model.model.state_dict().values()
    )
    # Merging folds the LoRA baseline into the frozen weights (the anchor's zero B leaves them as they are) and
    # swaps PEFT's `modules_to_save` wrappers for the trained modules: a plain MACLIPModel.
    # What adapter_model.safetensors holds: the trainable modules (before merging folds them away).
    adapter_parameters = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(folders["final"])
    processor.save_pretrained(folders["final"])
    (folders["final"] / "results.json").write_text(json.dumps(metrics, indent=2))
    full_parameters = count_parameters(merged)  # the base has the same modules, untrained
    protocol = episodic_evaluation_protocol(
        args.way, args.val_episodes, args.test_shots, args.test_episodes, args.query_per_class, args.eval_steps
    )
    for kind, folder in folders.items():
        card = render_model_card(
            "ma_clip", model_id=ids[kind] if ids else folder.name,
            model_name=card_model_name(args, "ma_clip", None if kind == "final" else kind),
            datasets=["hf-clipzoo/embedded-world"],
            metrics=metrics if kind != "base" else None, training_args=loggable_config(args),
            # The adapter's base is the `base` folder: a Hub id with --hub_model_id, else a local folder that
            # render_model_card keeps out of the metadata.
            base_model=(ids["base"] if ids else str(folders["base"])) if kind == "adapter" else args.model_name_or_path,
            library_name="peft" if kind == "adapter" else "transformers",
            tags=["few-shot", "video", "peft"], task_type="video-classification",
            num_parameters=adapter_parameters if kind == "adapter" else full_parameters,
            evaluation_protocol=protocol if kind != "base" else None,
            extra={"peft_method": args.peft_method, "test_shots": args.test_shots, "folder_kind": kind,
                   # Locally the cards name the sibling folders, as a user who `cd`s into the output directory sees them.
                   "base_reference": ids["base"] if ids else "base", "ids": ids or {n: n for n in folders}},
        )  # fmt: skip
        save_model_card(folder, card)
    if args.push_to_hub:
        for kind in ("base", "adapter", "final"):
            push_folder_to_hub(folders[kind], ids[kind], token=args.hub_token)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Episodes are indexed, not drawn from a prepared DataLoader, so the seedable sampler has nothing to order.
    accelerator = build_accelerator(args, seedable_sampler=False)
    output_dir = Path(args.output_dir)
    device = accelerator.device

    clip = ZooCLIPModel.from_pretrained(args.model_name_or_path)
    clip_processor = AutoProcessor.from_pretrained(args.model_name_or_path)
    processor = MACLIPProcessor(clip_processor.image_processor, clip_processor.tokenizer, num_frames=args.num_frames)
    splits = {name: load_split(name, args, processor) for name in ("meta_train", "meta_val", "meta_test")}

    model = MACLIPModel.from_clip(clip, seed=args.seed, **ma_clip_kwargs(args))
    if accelerator.is_main_process:
        # The adapter's base, written before PEFT wraps (and so changes) the model.
        model.save_pretrained(output_dir / "base")
        processor.save_pretrained(output_dir / "base")
    model = get_ma_clip_peft_model(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = build_optimizer(model, lr=args.learning_rate, weight_decay=args.weight_decay,
                                betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)  # fmt: skip
    scheduler = build_scheduler(optimizer, name=args.lr_scheduler, num_warmup_steps=args.num_warmup_steps,
                                num_training_steps=args.max_train_steps)  # fmt: skip
    # The scheduler is not prepared: accelerate would step it once per process per optimiser step.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.init_trackers("ma_clip", config=loggable_config(args))

    start_step, best = 0, {"val_accuracy": -1.0, "step": 0}
    best_path = output_dir / "best_adapter.safetensors"
    checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        start_step, best = state["step"], state.get("best", best)
        if (checkpoint / best_path.name).exists() and accelerator.is_main_process:
            shutil.copy2(checkpoint / best_path.name, best_path)
        accelerator.wait_for_everyone()

    sampler = EpisodeSampler(
        splits["meta_train"]["labels"], args.way, args.train_shot, args.query_per_class, seed=args.seed
    )
    logger.info("***** MA-CLIP: %d trainable parameters, %d steps, %d episode(s) per step (global) *****",
                trainable, args.max_train_steps, accelerator.num_processes * args.gradient_accumulation_steps)  # fmt: skip
    eval_steps = args.eval_steps or args.max_train_steps
    model.train()
    meter = StepMeter(device)  # time and peak memory of the training steps only (not the evaluations)
    for step in tqdm(range(start_step, args.max_train_steps), disable=not accelerator.is_main_process):
        for micro in range(args.gradient_accumulation_steps):
            index = (
                step * args.gradient_accumulation_steps + micro
            ) * accelerator.num_processes + accelerator.process_index
            inputs = episode_inputs(splits["meta_train"], sampler[index], device)
            with meter.measure(), accelerator.accumulate(model):
                loss = model(**inputs, return_loss=True).loss
                check_finite(loss, step)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()  # not passed to `prepare`, so it advances once per optimiser step
                optimizer.zero_grad()
        done = step + 1
        if done % args.logging_steps == 0:
            accelerator.log({"train/loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, step=done)
        if done % eval_steps == 0 or done == args.max_train_steps:
            val = evaluate(
                accelerator.unwrap_model(model), splits["meta_val"], args, args.train_shot, args.val_episodes,
                args.seed + 1, device,
            )  # fmt: skip
            if val["accuracy"] > best["val_accuracy"]:
                best = {"val_accuracy": val["accuracy"], "step": done}
                if accelerator.is_main_process:
                    from safetensors.torch import save_file

                    unwrapped = accelerator.unwrap_model(model)
                    save_file(
                        {k: v.detach().cpu().contiguous() for k, v in unwrapped.named_parameters() if v.requires_grad},
                        str(best_path),
                    )
                accelerator.wait_for_everyone()
        if args.checkpointing_steps and done % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, output_dir, done, model=model, optimizer=optimizer, scheduler=scheduler,
                            extra_state={"best": best}, extra_files=[best_path] if best_path.exists() else None,
                            total_limit=args.checkpoints_total_limit)  # fmt: skip

    # Model selection: reload the best val state before testing.
    from safetensors.torch import load_file

    unwrapped = accelerator.unwrap_model(model)
    if best_path.exists():
        unwrapped.load_state_dict(load_file(str(best_path)), strict=False)
    metrics = {
        "train/trainable_parameters": trainable,
        "train/peak_memory_mb": across_processes(accelerator, meter.peak_mib, "max"),
        "train/step_seconds": meter.step_seconds * args.gradient_accumulation_steps,
        "val/accuracy": best["val_accuracy"],
        "val/best_step": best["step"],
    }
    outcomes = {}
    for shot in args.test_shots:
        # The test episodes of clip_fsar.py (same seed rule), so the two methods are compared on the same episodes.
        result = evaluate(
            unwrapped, splits["meta_test"], args, shot, args.test_episodes, args.seed + 100 + shot, device
        )
        metrics[f"test/{args.way}way_{shot}shot_accuracy"] = result["accuracy"]
        metrics[f"test/{args.way}way_{shot}shot_ci95"] = result["ci95"]
        outcomes[f"test/{args.way}way_{shot}shot_episode_accuracy"] = result["per_episode"]
    if accelerator.is_main_process:
        save_outcomes(output_dir, outcomes)

    if accelerator.is_main_process:
        save_folders(args, unwrapped, processor, metrics, output_dir)
    accelerator.log(metrics, step=args.max_train_steps)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
