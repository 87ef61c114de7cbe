"""Small latent diffusion models for the embedded world and for tests, and loading of a diffusion model folder.

DIVA's feedback is only as good as the frozen diffusion model's knowledge of the images (spec §4.1 uses Stable
Diffusion 2.1-base). Offline, no such weights exist, so `training_scripts/diva_pretrain_diffusion.py` trains one of
the models below on the embedded world; `load_diffusion_folder` reads either that folder or a real SD 2.1-base
folder (`vae/`, `unet/`, `scheduler/`, `text_encoder/`, `tokenizer/` subfolders, diffusers layout).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from ...data.images import to_rgb_image
from .pipeline_diva import drop_local_origins

# Sizes of the models trained on the embedded world. "micro" is for tests (seconds), "tiny" for the bench.
DIFFUSION_PRESETS: dict[str, dict] = {
    "micro": dict(vae_channels=(32, 32), unet_channels=(32, 64), layers_per_block=1, attention_head_dim=8),
    "tiny": dict(vae_channels=(32, 64), unet_channels=(64, 128), layers_per_block=1, attention_head_dim=16),
}


def build_vae(block_out_channels=(32, 32), image_size: int = 32, layers_per_block: int = 1) -> AutoencoderKL:
    """An `AutoencoderKL` reducing images by `2 ** (len(block_out_channels) - 1)`."""
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=tuple(block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=layers_per_block,
        norm_num_groups=min(32, min(block_out_channels)),
        sample_size=image_size,
    )


def build_unet(
    cross_attention_dim: int,
    sample_size: int = 16,
    block_out_channels=(32, 64),
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
) -> UNet2DConditionModel:
    """A two-level text-conditioned UNet (cross-attention in both resolutions' outer blocks)."""
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=layers_per_block,
        block_out_channels=tuple(block_out_channels),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=min(32, min(block_out_channels)),
    )


def build_scheduler(num_train_timesteps: int = 1000) -> DDPMScheduler:
    """SD 2.1-base's training schedule: scaled-linear β from 0.00085 to 0.012, ε-prediction (spec §4.3)."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
    )


def build_diffusion(preset: str, cross_attention_dim: int, image_size: int):
    """`(vae, unet, scheduler)` of a named preset for images of `image_size` pixels."""
    if preset not in DIFFUSION_PRESETS:
        raise ValueError(f"Unknown diffusion preset {preset!r}; expected one of {sorted(DIFFUSION_PRESETS)}.")
    sizes = DIFFUSION_PRESETS[preset]
    factor = 2 ** (len(sizes["vae_channels"]) - 1)
    if image_size % (factor * 2):
        raise ValueError(
            f"`image_size` must be a multiple of {factor * 2} for the {preset!r} preset, got {image_size}."
        )
    vae = build_vae(sizes["vae_channels"], image_size, sizes["layers_per_block"])
    unet = build_unet(
        cross_attention_dim,
        sample_size=image_size // factor,
        block_out_channels=sizes["unet_channels"],
        layers_per_block=sizes["layers_per_block"],
        attention_head_dim=sizes["attention_head_dim"],
    )
    return vae, unet, build_scheduler()


def load_diffusion_folder(path: str | Path, torch_dtype: torch.dtype | None = None):
    """`(vae, unet, scheduler, extras)` from a diffusers folder (SD 2.1-base layout or the world model's).

    `extras` is the parsed `diva_diffusion.json` written by the world pre-training script (image size, the text
    condition it was trained with), or `{}` for other folders. The scheduler is rebuilt as a `DDPMScheduler` from the
    saved scheduler config: DIVA only uses ᾱ_t and `num_train_timesteps` (SD ships an Euler / PNDM scheduler whose
    training betas are the same).
    """
    path = Path(path)
    missing = [name for name in ("vae", "unet", "scheduler") if not (path / name).is_dir()]
    if missing:
        raise ValueError(
            f"{path} is not a diffusion model folder: missing {missing} (expected diffusers' layout with vae/, unet/ "
            "and scheduler/ subfolders, e.g. stable-diffusion-2-1-base)."
        )
    extra = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    vae = AutoencoderKL.from_pretrained(path / "vae", **extra)
    unet = UNet2DConditionModel.from_pretrained(path / "unet", **extra)
    scheduler = DDPMScheduler.from_config(DDPMScheduler.load_config(path / "scheduler"))
    extras_file = path / "diva_diffusion.json"
    extras = json.loads(extras_file.read_text()) if extras_file.exists() else {}
    return vae, unet, scheduler, extras


def encode_prompt_with_text_encoder(folder: str | Path, prompt: str, allow_empty: bool = False) -> torch.Tensor:
    """`(77, width)` embedding of `prompt` by a diffusers folder's `text_encoder/` + `tokenizer/` (SD 2.1-base:
    OpenCLIP ViT-H text, last hidden state, padded to the tokenizer's `model_max_length` as `encode_prompt` does)."""
    from transformers import AutoTokenizer, CLIPTextModel

    check_prompt(prompt, allow_empty)
    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").eval()
    ids = tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return text_encoder(ids).last_hidden_state[0]


def check_prompt(prompt, allow_empty: bool = False) -> str:
    """The prompt of the fixed text condition: a non-empty string unless the empty-text variant is asked for."""
    if not isinstance(prompt, str):
        raise ValueError(f"The DIVA prompt must be a string, got {type(prompt).__name__}.")
    if not prompt.strip() and not allow_empty:
        raise ValueError(
            "The DIVA prompt is empty. The official code uses 'a photo of a .'; the paper's empty-text ([BOS][EOS]) "
            "variant must be asked for explicitly (`allow_empty_prompt=True` / `--allow_empty_prompt`)."
        )
    return prompt


class CaptionedImageCollator:
    """World rows -> `{"images": (B, 3, H, W) in [0, 1], "input_ids": (B, max_length)}` for the diffusion model."""

    def __init__(self, tokenizer, max_length: int, caption_column: str = "caption"):
        self.tokenizer, self.max_length, self.caption_column = tokenizer, max_length, caption_column

    def __call__(self, rows: list[dict]) -> dict:
        ids = self.tokenizer(
            [row[self.caption_column] for row in rows], padding="max_length", max_length=self.max_length,
            truncation=True, return_tensors="pt",
        ).input_ids  # fmt: skip
        images = [np.asarray(to_rgb_image(row["image"]), dtype=np.float32) / 255.0 for row in rows]
        return {"images": torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]), "input_ids": ids}


@torch.no_grad()
def validation_losses(vae, unet, text_encoder, scheduler, loader, device, seed: int) -> dict[str, float]:
    """ε-MSE on held-out images with their own captions and with captions of other images (shuffled): the gap
    measures how much the UNet uses its text condition, i.e. what it learnt about the world."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    own, shuffled, count = 0.0, 0.0, 0
    for batch in loader:
        images, ids = batch["images"].to(device), batch["input_ids"].to(device)
        latents = vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(images),), generator=generator).to(device)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        noisy = scheduler.add_noise(latents, noise, t)
        text = text_encoder(ids).last_hidden_state
        own += torch.nn.functional.mse_loss(unet(noisy, t, encoder_hidden_states=text).sample, noise).item() * len(
            images
        )
        other = text.roll(1, dims=0)
        shuffled += torch.nn.functional.mse_loss(
            unet(noisy, t, encoder_hidden_states=other).sample, noise
        ).item() * len(images)
        count += len(images)
    return {"diffusion/val_loss": own / count, "diffusion/val_loss_shuffled_text": shuffled / count}


def save_world_diffusion_folder(
    output_dir: str | Path,
    *,
    vae,
    unet,
    text_encoder,
    tokenizer,
    scheduler,
    image_size: int,
    preset: str,
    metrics: dict[str, float],
    training_args: dict,
) -> Path:
    """Write a world diffusion model as a `StableDiffusionPipeline` folder (no safety checker, so
    `DiffusionPipeline.from_pretrained(folder)` loads it), its `diva_diffusion.json` (resolution, preset, the text
    length and `metrics`) and a model card. Used by `diva_pretrain_diffusion.py` and by `hf-clipzoo foundations
    --refresh`, so a refreshed foundation has exactly the layout a new run writes."""
    from diffusers import StableDiffusionPipeline

    from ...hub.model_card import count_parameters, render_model_card, save_model_card

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipeline.save_pretrained(output_dir)
    drop_local_origins(output_dir)
    max_length = text_encoder.config.max_position_embeddings
    extras = {"image_size": image_size, "preset": preset, "text_max_length": max_length, **metrics}
    (output_dir / "diva_diffusion.json").write_text(json.dumps(extras, indent=2) + "\n")
    eval_size = (training_args or {}).get("eval_size")
    card = render_model_card(
        "diva", model_id=output_dir.name, datasets=["hf-clipzoo/embedded-world"], training_args=training_args,
        pipeline_tag="text-to-image", library_name="diffusers",
        num_parameters=count_parameters(vae, unet, text_encoder),
        evaluation_protocol=f"Validation losses on {eval_size or 'the'} held-out images of the embedded world's `val` "
        "split after the last step, with fixed noise and timesteps (seed of the run), with the images' own and with "
        "shuffled captions; the VAE's reconstruction error on the same images.",
        # Training and validation losses describe the run, not an evaluation: the card's table, no model-index.
        extra={"folder_kind": "diffusion", "image_size": image_size, "validation": metrics},
    )  # fmt: skip
    save_model_card(output_dir, card)
    return output_dir


def validate_diffusion_folder(
    path: str | Path, *, seed: int = 0, caption_column: str = "caption", eval_size: int = 256, batch_size: int = 32
) -> dict[str, float]:
    """`validation_losses` of a saved world diffusion folder on the world's val scenes (image size from its
    `diva_diffusion.json`), in float32 whatever the stored dtype."""
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer, CLIPTextModel

    from ...data.synthetic import WorldConfig, make_scenes

    path = Path(path)
    vae, unet, scheduler, extras = load_diffusion_folder(path, torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    size = extras.get("image_size", unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1))
    scenes = make_scenes(eval_size, split="val", config=WorldConfig(seed=seed, image_size=size))
    collate = CaptionedImageCollator(tokenizer, text_encoder.config.max_position_embeddings, caption_column)
    loader = DataLoader(scenes, batch_size=batch_size, collate_fn=collate)
    return validation_losses(vae.eval(), unet.eval(), text_encoder, scheduler, loader, torch.device("cpu"), seed)


__all__ = [
    "DIFFUSION_PRESETS",
    "CaptionedImageCollator",
    "validate_diffusion_folder",
    "validation_losses",
    "build_diffusion",
    "build_scheduler",
    "build_unet",
    "build_vae",
    "check_prompt",
    "encode_prompt_with_text_encoder",
    "load_diffusion_folder",
    "save_world_diffusion_folder",
]
