#!/usr/bin/env python
"""DIVA (Wang et al., arXiv 2407.20171): post-train a CLIP vision tower with the feedback of a frozen diffusion model.

The CLIP (`--model_name_or_path`: a zoo `ZooCLIPModel` folder or a transformers `CLIPModel` folder) gives its vision
tower and visual projection to a `DivaModel`, which adds the `visual_proj` Linear and the fixed prompt embedding. A
frozen latent diffusion model (`--diffusion_model_name_or_path`: a local Stable Diffusion 2.1-base folder, or the small
world model of `training_scripts/diva_pretrain_diffusion.py`) denoises each image's VAE latent conditioned on the CLIP
tokens; the ε-prediction error trains the tower (SGD with momentum, cosine schedule with warm-up, gradient clipping:
the official recipe, spec §4.4). MMVP pair accuracy and zero-shot accuracy are measured before and after.

`<output_dir>/final/` is a `DivaPipeline` folder (`model_index.json`, `vae/`, `unet/`, `scheduler/`,
`condition_model/` = the tuned `DivaModel`: tower + projections + prompt embedding, and the pipeline's code), so
`DiffusionPipeline.from_pretrained(final, trust_remote_code=True)` loads it without hf_clipzoo; next to the components:
`clip/` (the full CLIP with the tuned tower, same class as the input, + processor; what `--push_to_hub` uploads),
`clip_vision/` (a plain transformers `CLIPVisionModel` + its image processor, e.g. for LLaVA) and `results.json`.
Every folder has a model card.

    # the embedded world: pre-train the diffusion model once, then post-train a baseline CLIP
    python training_scripts/diva_pretrain_diffusion.py --clip_model_name_or_path runs/clip/final --output_dir runs/diva-sd
    python training_scripts/diva.py --model_name_or_path runs/clip/final --diffusion_model_name_or_path runs/diva-sd

    # the paper's setting (GPUs): OpenAI ViT-L/14 + SD 2.1-base at 512 px on an image folder / webdataset
    accelerate launch --multi_gpu --num_processes 8 training_scripts/diva.py --model_name_or_path clip-vit-large-patch14 \\
        --diffusion_model_name_or_path stable-diffusion-2-1-base --diffusion_resolution 512 --dataset cc3m \\
        --per_device_train_batch_size 16 --gradient_accumulation_steps 5 --max_train_steps 4600 --learning_rate 1e-4

    # resume a killed run
    python training_scripts/diva.py ... --output_dir runs/diva --resume_from_checkpoint latest
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.images import to_rgb_image
from hf_clipzoo.eval.mmvp import evaluate_mmvp
from hf_clipzoo.eval.outcomes import save_outcomes
from hf_clipzoo.hub.model_card import count_parameters, local_reference, render_model_card, save_model_card
from hf_clipzoo.models.clip import ZooCLIPModel, ZooCLIPProcessor
from hf_clipzoo.models.diva import DivaConfig, DivaModel, DivaPipeline
from hf_clipzoo.models.diva.configuration_diva import (
    DIFFUSION_LOSSES,
    TEXT_COMBINATIONS,
    TOKEN_SELECTIONS,
    VAE_INPUT_NORMALIZATIONS,
)
from hf_clipzoo.models.diva.diffusion import check_prompt, encode_prompt_with_text_encoder, load_diffusion_folder
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
from hf_clipzoo.training.image_text import add_image_text_data_arguments, evaluate_image_text, load_image_text_data
from hf_clipzoo.validation import NON_NEGATIVE_INT, POSITIVE_INT

logger = logging.getLogger("diva")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_image_text_data_arguments(parser)
    data.add_argument(
        "--mmvp_pairs", type=int, default=60, help="World MMVP pairs for the before/after evaluation (0: skip)."
    )
    data.add_argument(
        "--mmvp_image_feature",
        choices=("pooled", "cls_plus_tokens"),
        default="pooled",
        help="MMVP image feature: the CLIP embedding, or the official OpenAI-CLIP one (class token + mean of the "
        "sampled tokens, after ln_post and the projection; seeded draws).",
    )
    data.add_argument(
        "--mmvp_benchmark_dir",
        default=None,
        help="A local MMVP_VLM folder (Questions.csv + images) evaluated instead of the world's pairs.",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", required=True, help="The CLIP to post-train (zoo or transformers).")
    model.add_argument(
        "--diffusion_model_name_or_path",
        required=True,
        help="Frozen diffusion model folder (diffusers layout: vae/, unet/, scheduler/, text_encoder/, tokenizer/).",
    )
    model.add_argument(
        "--diffusion_resolution",
        type=int,
        default=None,
        help="Image side the VAE sees (paper: 512; default: the world model's, else 512).",
    )
    model.add_argument("--prompt", default="a photo of a .", help="Text of the fixed condition (official default).")
    model.add_argument(
        "--allow_empty_prompt", action="store_true", help="Allow --prompt '' (the paper's empty-text variant)."
    )
    model.add_argument("--token_selection", choices=TOKEN_SELECTIONS, default="random", help="See DivaConfig.")
    model.add_argument("--num_sampled_tokens", type=int, default=None, help="Random tokens (default: prompt len - 1).")
    model.add_argument("--pool_kernel_size", type=int, default=6, help="Window of --token_selection avg_pool.")
    model.add_argument(
        "--text_combination", choices=TEXT_COMBINATIONS, default=None, help="Default: add if lengths match."
    )
    model.add_argument("--no_clip_projection", action="store_true", help="Use the tower width, not CLIP's projection.")
    model.add_argument(
        "--vae_input_normalization", choices=VAE_INPUT_NORMALIZATIONS, default="exact", help="See DivaConfig."
    )
    model.add_argument("--num_noise_draws", type=int, default=2, help="(t, eps) draws per batch (official: 2).")
    model.add_argument("--diffusion_loss", choices=DIFFUSION_LOSSES, default="mse", help="Official default: mse.")
    model.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (official: 0.9).")
    model.add_argument("--gradient_checkpointing", action="store_true", help="Checkpoint the CLIP tower's blocks.")

    add_optimization_arguments(
        parser, batch_size=16, learning_rate=1e-4, weight_decay=0.0, num_warmup_steps=0, num_train_epochs=1
    )
    parser.add_argument(
        "--warmup_ratio", type=float, default=0.005, help="Warm-up fraction when --num_warmup_steps is 0 (official)."
    )
    add_run_arguments(parser, output_dir="runs/diva")
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    try:
        check_prompt(args.prompt, args.allow_empty_prompt)
    except ValueError as error:
        parser.error(str(error))
    check_flags(parser, args, {"num_noise_draws": POSITIVE_INT, "mmvp_pairs": NON_NEGATIVE_INT})
    return args


# --- models ----------------------------------------------------------------------------------------------------
def load_clip(path: str):
    """The CLIP to post-train and its processor: a zoo `ZooCLIPModel` or a transformers `CLIPModel` folder."""
    model_type = (
        json.loads((Path(path) / "config.json").read_text()).get("model_type") if Path(path).is_dir() else None
    )
    if model_type == CLIPConfig.model_type:
        clip = CLIPModel.from_pretrained(path)
    else:
        clip = ZooCLIPModel.from_pretrained(path)
    try:
        processor = ZooCLIPProcessor.from_pretrained(path)
    except (OSError, ValueError, TypeError):
        processor = build_clip_processor(
            clip.config.vision_config.image_size, clip.config.text_config.max_position_embeddings
        )
    return clip.eval(), processor


def build_condition_model(
    args, clip, prompt_embeds: torch.Tensor, cross_attention_dim: int, image_mean, image_std
) -> DivaModel:
    """A `DivaModel` carrying the CLIP's tower + visual projection, sized for the UNet, with the fixed prompt."""
    prompt_length = prompt_embeds.shape[0]
    num_sampled = args.num_sampled_tokens or prompt_length - 1
    kwargs = dict(
        vision_config=clip.config.vision_config.to_dict(),
        projection_dim=clip.config.projection_dim,
        use_clip_projection=not args.no_clip_projection,
        cross_attention_dim=cross_attention_dim,
        token_selection=args.token_selection,
        num_sampled_tokens=num_sampled,
        pool_kernel_size=args.pool_kernel_size,
        prompt=args.prompt,
        prompt_length=prompt_length,
        vae_input_normalization=args.vae_input_normalization,
        num_noise_draws=args.num_noise_draws,
        diffusion_loss=args.diffusion_loss,
        # The CLIP branch is normalised with the CLIP's own statistics (its processor's).
        clip_image_mean=list(image_mean),
        clip_image_std=list(image_std),
    )
    if args.text_combination is None:
        # The official pairing: element-wise add when the lengths match (OpenAI: 77 + 77), else mean-broadcast.
        probe = DivaConfig(**{**kwargs, "text_combination": "mean_broadcast"})
        kwargs["text_combination"] = "add" if probe.num_condition_tokens == prompt_length else "mean_broadcast"
    else:
        kwargs["text_combination"] = args.text_combination
    model = DivaModel(DivaConfig(**kwargs))
    state = {k: v for k, v in clip.state_dict().items() if k.startswith(("vision_model.", "visual_projection."))}
    if args.no_clip_projection:
        state.pop("visual_projection.weight", None)  # the tokens keep the tower's width
    result = model.load_state_dict(state, strict=False)
    # Only the new layer and the prompt buffer may be missing: the whole tower must come from the CLIP.
    expected_missing = {"prompt_embeds"} | {k for k in model.state_dict() if k.startswith("condition_projection.")}
    if set(result.missing_keys) - expected_missing or result.unexpected_keys:
        raise ValueError(
            f"CLIP weights do not fit the DIVA tower: missing {result.missing_keys}, unexpected "
            f"{result.unexpected_keys}."
        )
    model.set_prompt_embeds(prompt_embeds)
    return model


def copy_back(clip, condition_model: DivaModel) -> None:
    """Write the tuned tower (and CLIP's visual projection) back into the full CLIP."""
    result = clip.load_state_dict(condition_model.clip_vision_state_dict(), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"Unexpected keys when copying the tuned tower back: {result.unexpected_keys}")


# --- data ------------------------------------------------------------------------------------------------------
class ImageCollator:
    """Rows → `[0, 1]` image tensors at the diffusion resolution (bicubic resize; DIVA ignores the captions)."""

    def __init__(self, image_column: str, resolution: int):
        self.image_column, self.resolution = image_column, resolution

    def __call__(self, rows: list[dict]) -> dict:
        images, skipped = [], 0
        for row in rows:
            try:
                image = row[self.image_column]
                if not isinstance(image, Image.Image):
                    image = Image.open(image)
                image = to_rgb_image(image).resize((self.resolution, self.resolution), Image.BICUBIC)
            except (OSError, ValueError) as error:  # a corrupt sample is skipped and counted, never fatal
                logger.warning("Skipping an unreadable image: %s", error)
                skipped += 1
                continue
            images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1))
        if not images:
            raise ValueError("Every image of a batch was unreadable.")
        return {"images": torch.stack(images), "num_skipped": skipped}


def mmvp_pairs(args):
    if args.mmvp_benchmark_dir:
        from hf_clipzoo.eval.mmvp import load_mmvp_vlm

        return load_mmvp_vlm(args.mmvp_benchmark_dir), "a photo of {}"
    if not args.mmvp_pairs:
        return None, None
    from hf_clipzoo.data.synthetic import WorldConfig
    from hf_clipzoo.data.synthetic.mmvp import make_mmvp_pairs

    # The world's statements are full phrases ("a red square pointing up"): encoded as they are.
    return make_mmvp_pairs(args.mmvp_pairs, config=WorldConfig(seed=args.seed, image_size=args.resolution)), "{}"


class OfficialMMVPFeatures(torch.nn.Module):
    """The image feature of the official OpenAI-CLIP MMVP evaluation (spec §4.5): `x[:, 0] + mean(x[:, 1:])` of the
    condition tokens `x` (class token + sampled patch tokens after `ln_post` and CLIP's projection); text features
    from the CLIP itself."""

    def __init__(self, clip, condition_model: DivaModel):
        super().__init__()
        if not condition_model.config.use_clip_projection:
            raise ValueError(
                "--mmvp_image_feature cls_plus_tokens needs CLIP's projection (drop --no_clip_projection)."
            )
        self.clip, self.condition_model = clip, condition_model

    def get_text_features(self, **kwargs):
        return self.clip.get_text_features(**kwargs)

    def get_image_features(self, pixel_values):
        tokens = self.condition_model(pixel_values=pixel_values).visual_tokens
        return tokens[:, 0] + tokens[:, 1:].mean(dim=1)


def diva_evaluation_protocol(args, metrics: dict) -> str:
    """The cards' evaluation protocol: the same MMVP pairs and image-text sets, before and after post-training."""
    if args.mmvp_benchmark_dir:
        mmvp = f"MMVP-VLM (`{local_reference(args.mmvp_benchmark_dir)}`, {args.mmvp_image_feature} image features)"
    elif args.mmvp_pairs:
        mmvp = f"{args.mmvp_pairs} MMVP-style image pairs of the embedded world"
    else:
        mmvp = None
    after = {key.replace("/after/", "/"): value for key, value in metrics.items() if "/after/" in key}
    parts = [f"MMVP pair accuracy on {mmvp}." if mmvp else "No MMVP evaluation.",
             image_text_evaluation_protocol(args, after) or "",
             "The starting CLIP is measured on the same data with the same seeds (`before`; `delta` = after − before)."]  # fmt: skip
    return " ".join(part for part in parts if part)


def evaluate_clip(
    args, accelerator, clip, processor, data, pairs, template, prefix: str, condition_model: DivaModel
) -> dict[str, float]:
    metrics = {}
    if pairs is not None:
        mmvp_model = clip if args.mmvp_image_feature == "pooled" else OfficialMMVPFeatures(clip, condition_model)
        result = evaluate_mmvp(mmvp_model, processor, pairs, statement_template=template, accelerator=accelerator)
        metrics[f"mmvp/{prefix}/average_accuracy"] = result["average_accuracy"]
        metrics[f"mmvp/{prefix}/pair_accuracy"] = result["pair_accuracy"]
        if accelerator.is_main_process:
            save_outcomes(args.output_dir, {f"mmvp/{prefix}/pair_correct": result["pair_correct"]})
    for key, value in evaluate_image_text(args, accelerator, clip, processor, data, outcomes_prefix=prefix).items():
        metrics[key.replace("/", f"/{prefix}/", 1)] = value
    clip.eval()
    return metrics


@torch.no_grad()
def feedback_loss(model: DivaModel, images: torch.Tensor, seed: int) -> float:
    """DIVA's loss on fixed images, timesteps and noise: the before/after comparison of the objective itself."""
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    clip_pv, vae_pv = model.prepare_pixel_values(images)
    vae, unet = model._diffusion["vae"], model._diffusion["unet"]
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (4, images.shape[0], unet.config.in_channels, images.shape[-2] // factor, images.shape[-1] // factor)
    num_train_timesteps = model._diffusion["noise_scheduler"].config.num_train_timesteps
    timesteps = torch.randint(0, num_train_timesteps, shape[:2], generator=generator).to(images.device)
    noise = torch.randn(shape, generator=generator).to(images.device)
    loss = model(pixel_values=clip_pv, vae_pixel_values=vae_pv, timesteps=timesteps, noise=noise, return_loss=True)
    model.train()
    return loss.loss.item()


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = build_accelerator(args)

    # --- frozen diffusion model, fixed prompt, CLIP ---
    vae, unet, noise_scheduler, extras = load_diffusion_folder(args.diffusion_model_name_or_path)
    if args.diffusion_resolution is None:
        args.diffusion_resolution = extras.get("image_size", 512)
    prompt_embeds = encode_prompt_with_text_encoder(
        args.diffusion_model_name_or_path, args.prompt, allow_empty=args.allow_empty_prompt
    )
    clip, processor = load_clip(args.model_name_or_path)
    image_processor = processor.image_processor
    model = build_condition_model(
        args,
        clip,
        prompt_embeds,
        unet.config.cross_attention_dim,
        image_processor.image_mean,
        image_processor.image_std,
    )
    vae.to(accelerator.device)
    unet.to(accelerator.device)
    model.attach_diffusion(vae, unet, noise_scheduler)  # frozen: requires_grad False, eval mode
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # --- data: the world is rendered at the CLIP's resolution (what its evaluation sees); the training collator
    # resizes images to the diffusion resolution, and the CLIP branch is resized from those (as in the official code).
    if args.resolution is None:
        args.resolution = clip.config.vision_config.image_size
    data = load_image_text_data(args, accelerator)
    pairs, template = mmvp_pairs(args)
    train_dataloader = DataLoader(
        data.train,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=ImageCollator(args.image_column, args.diffusion_resolution),
        num_workers=args.dataloader_num_workers,
    )
    steps_per_epoch = math.ceil(len(train_dataloader) / accelerator.num_processes / args.gradient_accumulation_steps)
    if steps_per_epoch == 0:
        raise ValueError(
            f"The training set ({len(data.train)} samples) is smaller than one global batch "
            f"({args.per_device_train_batch_size} x {accelerator.num_processes} processes)."
        )
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    num_warmup_steps = args.num_warmup_steps or math.ceil(args.warmup_ratio * max_train_steps)
    # Only the CLIP tower and the projections learn; the prompt embedding is a buffer and the diffusion model is not
    # part of `model`, so it can never reach the optimiser.
    optimizer = build_optimizer(
        model, name="sgd", lr=args.learning_rate, weight_decay=args.weight_decay, momentum=args.momentum
    )
    scheduler = build_scheduler(
        optimizer, name=args.lr_scheduler, num_warmup_steps=num_warmup_steps, num_training_steps=max_train_steps
    )
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    unwrapped = accelerator.unwrap_model(model)
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    global_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    accelerator.init_trackers("diva", config=loggable_config(args))
    config = unwrapped.config
    logger.info(
        "***** DIVA: %d condition tokens (%s, %s with the prompt %r), %d px diffusion, %d px CLIP *****",
        config.num_condition_tokens, config.token_selection, config.text_combination, config.prompt,
        args.diffusion_resolution, config.vision_config.image_size,
    )  # fmt: skip
    logger.info("  examples = %d, epochs = %d, optimiser steps = %d", len(data.train), num_epochs, max_train_steps)
    logger.info(
        "  batch per device = %d, processes = %d, accumulation = %d -> global batch = %d",
        args.per_device_train_batch_size, accelerator.num_processes, args.gradient_accumulation_steps, global_batch,
    )  # fmt: skip

    # Fixed images for the before/after value of DIVA's own objective.
    probe = ImageCollator(args.image_column, args.diffusion_resolution)(
        [data.train[i] for i in range(min(8, len(data.train)))]
    )["images"].to(accelerator.device)

    # --- resume, or evaluate the starting point ---
    global_step, first_epoch, batches_to_skip, skipped_total, last_loss = 0, 0, 0, 0, float("nan")
    checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        global_step = state["step"]
        before = state["before"]
        skipped_total = state.get("skipped_samples", 0) if accelerator.is_main_process else 0
        last_loss = state.get("last_loss", float("nan"))
        first_epoch = global_step // steps_per_epoch
        batches_to_skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        logger.info("Resumed from %s at step %d (epoch %d).", checkpoint, global_step, first_epoch)
    else:
        before = evaluate_clip(args, accelerator, clip, processor, data, pairs, template, "before", unwrapped)
        before["diva/before/feedback_loss"] = feedback_loss(unwrapped, probe, args.seed)
        logger.info("Before DIVA: %s", json.dumps(before))
        accelerator.log(before, step=0)

    # --- train ---
    progress = tqdm(
        total=max_train_steps, initial=global_step, desc="diva", disable=not accelerator.is_local_main_process
    )
    model.train()
    running_loss, running_count, skipped = 0.0, 0, 0
    # DIVA's random draws (patch tokens, t, eps) come from a generator seeded per micro-batch and process, not from the
    # global RNG (which the data loader also consumes when it starts an epoch): a resumed run makes the same draws.
    micro_step = global_step * args.gradient_accumulation_steps
    generator = torch.Generator(device=accelerator.device)
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        epoch_dataloader = train_dataloader
        if epoch == first_epoch and batches_to_skip:
            epoch_dataloader = accelerator.skip_first_batches(train_dataloader, batches_to_skip)
        for batch in epoch_dataloader:
            skipped_total += batch.pop("num_skipped")
            with accelerator.accumulate(model):
                clip_pixel_values, vae_pixel_values = unwrapped.prepare_pixel_values(batch["images"])
                # Through the (DDP-)wrapped model so that gradients are synchronised; the frozen VAE / UNet attached
                # to it run without a graph for their weights.
                generator.manual_seed(args.seed * 1_000_003 + micro_step * 7919 + accelerator.process_index)
                micro_step += 1
                loss = model(
                    pixel_values=clip_pixel_values,
                    vae_pixel_values=vae_pixel_values,
                    return_loss=True,
                    generator=generator,
                ).loss
                check_finite(loss, global_step)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running_loss += loss.detach().item()
            running_count += 1
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            progress.update(1)
            if global_step % args.logging_steps == 0 or global_step == max_train_steps:
                last_loss = across_processes(accelerator, running_loss / running_count, "mean")
                skipped = int(across_processes(accelerator, skipped_total, "sum"))
                logs = {
                    "train/loss": last_loss,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/skipped_samples": skipped,
                }
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{last_loss:.4f}")
                running_loss, running_count = 0.0, 0
            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                save_checkpoint(
                    accelerator, output_dir, global_step, model=model, optimizer=optimizer, scheduler=scheduler,
                    extra_state={
                        "epoch": epoch, "last_loss": last_loss, "before": before,
                        "skipped_samples": int(across_processes(accelerator, skipped_total, "sum")),
                    },
                    total_limit=args.checkpoints_total_limit,
                )  # fmt: skip
            if global_step >= max_train_steps:
                break
        if global_step >= max_train_steps:
            break
    progress.close()

    # --- after: copy the tower back into the CLIP, evaluate, save ---
    copy_back(clip, unwrapped)
    after = evaluate_clip(args, accelerator, clip, processor, data, pairs, template, "after", unwrapped)
    after["diva/after/feedback_loss"] = feedback_loss(unwrapped, probe, args.seed)
    metrics = {**before, **after, "train/loss": last_loss, "train/skipped_samples": skipped}
    for key in [k for k in after if "/after/" in k and "/num_" not in k]:
        base = key.replace("/after/", "/before/")
        if base in before:
            metrics[key.replace("/after/", "/delta/")] = after[key] - before[base]
    accelerator.log(metrics, step=global_step)
    accelerator.wait_for_everyone()
    final_dir = output_dir / "final"
    if accelerator.is_main_process:
        # The frozen diffusion model and the tuned condition model: what scores (or continues) the post-training.
        DivaPipeline(vae=vae, unet=unet, scheduler=noise_scheduler, condition_model=unwrapped).save_pretrained(
            final_dir
        )
        clip.save_pretrained(final_dir / "clip")
        processor.save_pretrained(final_dir / "clip")
        # A plain transformers CLIPVisionModel: what LLaVA-style users load (no hf_clipzoo needed).
        unwrapped.vision_model.save_pretrained(final_dir / "clip_vision")
        for folder in ("clip_vision", "condition_model"):  # vision-only: the image processor, not the tokenizer
            image_processor.save_pretrained(final_dir / folder)
        (final_dir / "results.json").write_text(json.dumps({"step": global_step, **metrics}, indent=2) + "\n")
        parameters = {
            "clip": count_parameters(clip),
            "pipeline": count_parameters(vae, unet, unwrapped),
            "condition_model": count_parameters(unwrapped),
            "clip_vision": count_parameters(unwrapped.vision_model),
        }
        for kind, folder in (("clip", "clip"), ("pipeline", "."), ("condition_model", "condition_model"),
                             ("clip_vision", "clip_vision")):  # fmt: skip
            card = render_model_card(
                "diva",
                # Only final/clip is pushed; locally each card's snippets load the folder it sits in, by its name.
                model_id=args.hub_model_id or (final_dir.name if folder == "." else folder),
                model_name=card_model_name(args, "diva", None if kind == "clip" else kind),
                library_name="diffusers" if kind == "pipeline" else "transformers",
                num_parameters=parameters[kind],
                evaluation_protocol=diva_evaluation_protocol(args, metrics),
                datasets=["hf-clipzoo/embedded-world"] if args.dataset == "synthetic" else [args.dataset],
                # The model-index describes this model: its own (after) numbers; the baseline and deltas get a table.
                metrics={k: v for k, v in metrics.items() if "/before/" not in k and "/delta/" not in k},
                extra={
                    "baseline_metrics": {k: v for k, v in metrics.items() if "/before/" in k or "/delta/" in k},
                    "folder_kind": kind,
                    "image_size": args.diffusion_resolution,
                },
                training_args=loggable_config(args),
                pipeline_tag="zero-shot-image-classification" if kind == "clip" else None,
                base_model=args.model_name_or_path,
            )
            save_model_card(final_dir / folder, card)
        if args.push_to_hub:
            push_folder_to_hub(final_dir / "clip", args.hub_model_id, token=args.hub_token)
    accelerator.end_training()
    logger.info("Done: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
