#!/usr/bin/env python
"""Pre-train the small text-to-image latent diffusion model that gives DIVA its feedback on the embedded world.

DIVA (arXiv 2407.20171) post-trains CLIP through a *frozen* Stable Diffusion 2.1-base; its feedback is only as good as
the diffusion model's knowledge of the images. No SD weights exist offline, so this script trains a tiny one on the
world's images and captions, and writes it in the diffusers layout `training_scripts/diva.py` reads (the same layout as
`stable-diffusion-2-1-base`): `vae/`, `unet/`, `scheduler/`, `text_encoder/`, `tokenizer/` and `model_index.json` (a
`StableDiffusionPipeline` without safety checker, so `DiffusionPipeline.from_pretrained(folder)` loads it), plus
`diva_diffusion.json` (resolution and validation losses) and a model card.

Two phases: (1) the `AutoencoderKL` learns to reconstruct (MSE + a small KL term), then its `scaling_factor` is set
to 1/std of the latents as for SD; (2) the UNet learns ε-prediction on the latents conditioned on the caption's text
hidden states. The text condition comes from a zoo CLIP's text tower (`--clip_model_name_or_path`, frozen, as SD uses
a frozen OpenCLIP text encoder) or from a small `CLIPTextModel` trained with the UNet.

    python training_scripts/diva_pretrain_diffusion.py --clip_model_name_or_path runs/clip/final \\
        --output_dir runs/diva-diffusion --resolution 64 --max_train_steps 2000

Single process (a few minutes on a CPU at the bench's sizes); `accelerate launch` data-parallelises the UNet phase.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from hf_clipzoo.backbones.tokenizer import load_clip_tokenizer
from hf_clipzoo.data.synthetic import WorldConfig, make_scenes
from hf_clipzoo.hub.model_card import count_parameters, render_model_card, save_model_card
from hf_clipzoo.models.clip import ZooCLIPModel
from hf_clipzoo.models.diva.diffusion import (
    DIFFUSION_PRESETS,
    CaptionedImageCollator,
    build_diffusion,
    validation_losses,
)
from hf_clipzoo.training import build_optimizer, build_scheduler, check_finite
from hf_clipzoo.training.arguments import check_flags, check_shared_arguments
from hf_clipzoo.validation import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT

logger = logging.getLogger("diva_pretrain_diffusion")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/diva-diffusion", help="Where the diffusers folder is written.")
    parser.add_argument("--resolution", type=int, default=64, help="Image side of the world and of the model.")
    parser.add_argument("--preset", choices=sorted(DIFFUSION_PRESETS), default="tiny", help="VAE / UNet widths.")
    parser.add_argument(
        "--clip_model_name_or_path",
        default=None,
        help="A zoo CLIP folder whose (frozen) text tower gives the text condition; default: train a small one.",
    )
    parser.add_argument("--text_hidden_size", type=int, default=64, help="Width of the trained text encoder.")
    parser.add_argument("--text_max_length", type=int, default=77, help="Tokens of the trained text encoder.")
    parser.add_argument(
        "--caption_column",
        choices=("caption", "long_caption"),
        default="caption",
        help="The world's text the UNet is conditioned on: the short alt-text or the long description.",
    )
    parser.add_argument(
        "--stop_after_step",
        type=int,
        default=None,
        help="Write the weights after this many UNet steps to checkpoint-<N>/model.safetensors and exit (the schedule "
        "still follows --max_train_steps): the early checkpoint `hf-clipzoo foundations` records.",
    )
    parser.add_argument("--train_size", type=int, default=2048, help="World images to train on.")
    parser.add_argument("--eval_size", type=int, default=64, help="Held-out world images for the validation loss.")
    parser.add_argument("--batch_size", type=int, default=32, help="Batch size of both phases.")
    parser.add_argument("--vae_train_steps", type=int, default=300, help="Phase 1 steps (0: keep a random VAE).")
    parser.add_argument("--vae_learning_rate", type=float, default=1e-3, help="AdamW lr of the VAE.")
    parser.add_argument("--kl_weight", type=float, default=1e-6, help="Weight of the VAE's KL term.")
    parser.add_argument("--max_train_steps", type=int, default=1000, help="Phase 2 (UNet) steps.")
    parser.add_argument("--learning_rate", type=float, default=5e-4, help="AdamW lr of the UNet (and text encoder).")
    parser.add_argument("--num_warmup_steps", type=int, default=50, help="Linear warm-up of phase 2.")
    parser.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 disables).")
    parser.add_argument("--logging_steps", type=int, default=50, help="Log every N steps.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the world, initialisation and noise.")
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    check_flags(
        parser,
        args,
        {
            "text_hidden_size": POSITIVE_INT,
            "text_max_length": POSITIVE_INT,
            "train_size": POSITIVE_INT,
            "eval_size": POSITIVE_INT,
            "vae_train_steps": NON_NEGATIVE_INT,
            "vae_learning_rate": POSITIVE,
            "kl_weight": NON_NEGATIVE,
        },
    )
    return args


def build_text_encoder(args) -> tuple[CLIPTextModel, object, bool]:
    """(text encoder, tokenizer, trainable)."""
    if args.clip_model_name_or_path:
        clip = ZooCLIPModel.from_pretrained(args.clip_model_name_or_path)
        encoder = clip.text_model
        max_length = clip.config.text_config.max_position_embeddings
        return encoder, load_clip_tokenizer(max_length, text_cleaning="none"), False
    # The tokenizer Stable Diffusion ships (transformers' CLIPTokenizer, no OpenAI text cleaning): the folder is a
    # plain StableDiffusionPipeline, whose loader only knows transformers' tokenizer classes.
    tokenizer = load_clip_tokenizer(args.text_max_length, text_cleaning="none")
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=args.text_hidden_size, intermediate_size=4 * args.text_hidden_size,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=args.text_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return CLIPTextModel(config), tokenizer, True


def save_early_weights(folder: Path, accelerator, vae, unet, text_encoder) -> None:
    """VAE, UNet and text encoder weights in one safetensors file (`vae.` / `unet.` / `text_encoder.` prefixes)."""
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for prefix, module in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
            state = accelerator.unwrap_model(module).state_dict()
            tensors.update({f"{prefix}.{k}": v.detach().contiguous().clone() for k, v in state.items()})
        save_file(tensors, str(folder / "model.safetensors"))
    accelerator.wait_for_everyone()


def infinite(loader):
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    accelerator = Accelerator()
    set_seed(args.seed)
    output_dir = Path(args.output_dir)

    text_encoder, tokenizer, train_text = build_text_encoder(args)
    max_length = text_encoder.config.max_position_embeddings
    vae, unet, scheduler = build_diffusion(args.preset, text_encoder.config.hidden_size, args.resolution)
    world = WorldConfig(seed=args.seed, image_size=args.resolution)
    with accelerator.main_process_first():
        train = make_scenes(args.train_size, split="train", config=world)
        evaluation = make_scenes(args.eval_size, split="val", config=world)
    collate = CaptionedImageCollator(tokenizer, max_length, args.caption_column)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True, collate_fn=collate)
    eval_loader = DataLoader(evaluation, batch_size=args.batch_size, collate_fn=collate)
    if len(loader) == 0:
        raise ValueError(f"--train_size {args.train_size} is smaller than one batch ({args.batch_size}).")
    device = accelerator.device
    logger.info(
        "***** DIVA diffusion pre-training: %d px, preset %s, text encoder %s (%s) *****",
        args.resolution, args.preset, "zoo CLIP (frozen)" if not train_text else "small (trained)",
        f"width {text_encoder.config.hidden_size}, {max_length} tokens",
    )  # fmt: skip

    # --- phase 1: the autoencoder ---
    vae.to(device).train()
    if args.vae_train_steps:
        optimizer = build_optimizer(vae, name="adamw", lr=args.vae_learning_rate)
        vae_model, optimizer = accelerator.prepare(vae, optimizer)
        batches = infinite(loader)
        for step in tqdm(range(args.vae_train_steps), desc="vae", disable=not accelerator.is_local_main_process):
            images = next(batches)["images"].to(device) * 2 - 1
            posterior = accelerator.unwrap_model(vae_model).encode(images).latent_dist
            reconstruction = accelerator.unwrap_model(vae_model).decode(posterior.sample()).sample
            loss = F.mse_loss(reconstruction, images) + args.kl_weight * posterior.kl().mean()
            check_finite(loss, step)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        vae = accelerator.unwrap_model(vae_model)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        # SD's rule: scale latents to unit variance (SD: 0.18215), so that the noise schedule fits them.
        latents = torch.cat([vae.encode(b["images"].to(device) * 2 - 1).latent_dist.mean for b in eval_loader])
        vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
        reconstruction = torch.cat(
            [vae.decode(vae.encode(b["images"].to(device) * 2 - 1).latent_dist.mean).sample for b in eval_loader]
        )
        images = torch.cat([b["images"] for b in eval_loader]).to(device) * 2 - 1
        vae_mse = F.mse_loss(reconstruction, images).item()

    # --- phase 2: the text-conditioned UNet ---
    text_encoder.to(device).requires_grad_(train_text).train(train_text)
    trainable = [unet] + ([text_encoder] if train_text else [])
    params = [{"params": [p for m in trainable for p in m.parameters()]}]
    optimizer = build_optimizer(params, name="adamw", lr=args.learning_rate, weight_decay=0.0)
    lr_scheduler = build_scheduler(
        optimizer, name="cosine", num_warmup_steps=args.num_warmup_steps, num_training_steps=args.max_train_steps
    )
    unet, optimizer, loader = accelerator.prepare(unet, optimizer, loader)
    if train_text:
        text_encoder = accelerator.prepare(text_encoder)
    unet.train()
    batches = infinite(loader)
    running, last_loss = [], float("nan")
    for step in tqdm(range(args.max_train_steps), desc="unet", disable=not accelerator.is_local_main_process):
        batch = next(batches)
        with torch.no_grad():
            latents = vae.encode(batch["images"] * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=device)
        noisy = scheduler.add_noise(latents, noise, t)
        text = text_encoder(batch["input_ids"]).last_hidden_state
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=text).sample, noise)
        check_finite(loss, step)
        accelerator.backward(loss)
        if args.max_grad_norm > 0:
            accelerator.clip_grad_norm_([p for g in params for p in g["params"]], args.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(loss.item())
        if step + 1 == args.stop_after_step and step + 1 < args.max_train_steps:
            save_early_weights(output_dir / f"checkpoint-{step + 1}", accelerator, vae, unet, text_encoder)
            logger.info("Stopped after UNet step %d (--stop_after_step).", step + 1)
            return {"step": step + 1, "diffusion/train_loss": loss.item()}
        if (step + 1) % args.logging_steps == 0 or step + 1 == args.max_train_steps:
            last_loss = sum(running) / len(running)
            logger.info("step %d: loss %.4f", step + 1, last_loss)
            running = []

    unet = accelerator.unwrap_model(unet).eval()
    text_encoder = accelerator.unwrap_model(text_encoder).eval()
    metrics = {"diffusion/train_loss": last_loss, "diffusion/vae_reconstruction_mse": vae_mse}
    metrics.update(validation_losses(vae, unet, text_encoder, scheduler, eval_loader, device, args.seed))
    if accelerator.is_main_process:
        from diffusers import StableDiffusionPipeline

        output_dir.mkdir(parents=True, exist_ok=True)
        pipeline = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
        pipeline.save_pretrained(output_dir)
        extras = {"image_size": args.resolution, "preset": args.preset, "text_max_length": max_length, **metrics}
        (output_dir / "diva_diffusion.json").write_text(json.dumps(extras, indent=2) + "\n")
        card = render_model_card(
            "diva", model_id=output_dir.name, datasets=["hf-clipzoo/embedded-world"], training_args=vars(args),
            pipeline_tag="text-to-image", library_name="diffusers",
            num_parameters=count_parameters(vae, unet, text_encoder),
            evaluation_protocol=f"Validation losses on {args.eval_size} held-out images of the embedded world's `val` "
            "split after the last step, with fixed noise and timesteps (seed of the run), with the images' own and "
            "with shuffled captions; the VAE's reconstruction error on the same images.",
            # Training and validation losses describe the run, not an evaluation: the card's table, no model-index.
            extra={"folder_kind": "diffusion", "image_size": args.resolution, "validation": metrics},
        )  # fmt: skip
        save_model_card(output_dir, card)
    accelerator.wait_for_everyone()
    logger.info("Done: %s", json.dumps(metrics))
    if not all(math.isfinite(v) for v in metrics.values()):
        raise ValueError(f"Non-finite metrics: {metrics}")
    return metrics


if __name__ == "__main__":
    main()
