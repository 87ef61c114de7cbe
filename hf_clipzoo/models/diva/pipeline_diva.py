"""`DivaPipeline`: a frozen latent diffusion model scoring (and training) DIVA's CLIP condition module.

Components: `vae` (`AutoencoderKL`), `unet` (`UNet2DConditionModel`), `scheduler` (a noise scheduler with `add_noise`,
e.g. `DDPMScheduler`; DIVA only uses its ᾱ_t and `num_train_timesteps`) and `condition_model` (`DivaModel`: the CLIP
vision tower, CLIP's visual projection, the `visual_proj` Linear and the fixed prompt embedding as a buffer).

`pipe(images)` returns the diffusion feedback (DIVA's loss) for a batch of images without building a graph;
`pipe.diffusion_loss(...)` keeps the graph for training; `pipe.reconstruct(images)` samples an image from noise
conditioned on the visual recap (a qualitative check of what the condition carries).

This file imports only torch, numpy, PIL and diffusers, so `save_pretrained` can copy it into the folder verbatim:
`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` then works where `hf_clipzoo` is not installed.
With the package installed, `DivaPipeline.from_pretrained(folder)` needs no remote code.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

PIPELINE_FILE = "pipeline_diva.py"
# Where the condition model's class lives when the package is installed.
CONDITION_MODEL_MODULE = "hf_clipzoo.models.diva.modeling_diva"


def drop_local_origins(folder: str | os.PathLike) -> None:
    """Remove `_name_or_path` from every component config of a saved pipeline folder: diffusers writes the local
    path each component was loaded from (`/home/me/runs/...`), which would be published with the folder."""
    for config_file in Path(folder).glob("*/config.json"):
        config = json.loads(config_file.read_text())
        if config.pop("_name_or_path", None) is not None:
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


@dataclass
class DivaPipelineOutput(BaseOutput):
    """loss: the averaged diffusion loss `()`; condition: the UNet context `(batch, tokens, cross_attention_dim)`;
    images: reconstructions in [0, 1] `(batch, 3, H, W)` (only from `reconstruct`)."""

    loss: torch.Tensor | None = None
    condition: torch.Tensor | None = None
    images: torch.Tensor | None = None


def _checked_unit_range(values, name: str):
    """Floats must already be in [0, 1]: the pipeline refuses rather than guesses a scale (a [0, 255] float image
    taken as [0, 1] would be silently wrong)."""
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} has float values in [{low:g}, {high:g}]; expected [0, 1] (divide 8-bit values by 255, or pass "
            "uint8 arrays / PIL images)."
        )
    return values


def images_to_tensor(images) -> torch.Tensor:
    """PIL images / HWC uint8 arrays / a `(B, 3, H, W)` [0, 1] tensor → a float tensor in [0, 1]."""
    if isinstance(images, torch.Tensor):
        tensor = images[None] if images.ndim == 3 else images
        if tensor.ndim != 4 or tensor.shape[0] == 0:
            raise ValueError(f"`images` tensor must have shape (batch, 3, H, W), got {tuple(images.shape)}.")
        return _checked_unit_range(tensor.float(), "The `images` tensor")
    if isinstance(images, (Image.Image, np.ndarray)):
        images = [images]
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError("`images` must be a tensor, a PIL image, an array or a non-empty list of them.")
    arrays = []
    for i, image in enumerate(images):
        if isinstance(image, Image.Image):
            # This file is copied verbatim into saved folders, so it cannot import the zoo's image policy
            # (`hf_clipzoo.data.images.to_rgb_image`); `convert("RGB")` would clip 16-bit / float modes to white.
            if image.mode in ("I", "F") or image.mode.startswith("I;16"):
                raise ValueError(
                    f"Image {i} has mode {image.mode!r} (16-bit or float); convert it to 8-bit RGB first, e.g. with "
                    "`hf_clipzoo.data.images.to_rgb_image(image)`."
                )
            image = np.asarray(image.convert("RGB"))
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"Image {i} must be an RGB PIL image or an (H, W, 3) array.")
        if image.dtype == np.uint8:
            arrays.append(image.astype(np.float32) / 255.0)
        elif np.issubdtype(image.dtype, np.floating):
            arrays.append(_checked_unit_range(image.astype(np.float32), f"Image {i}"))
        else:
            raise ValueError(f"Image {i} has dtype {image.dtype}; expected uint8 or floats in [0, 1].")
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"All images of a batch must have the same size, got {sorted(sizes)}; resize them first.")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class DivaPipeline(DiffusionPipeline):
    r"""
    DIVA's diffusion feedback (arXiv 2407.20171): a frozen text-to-image latent diffusion model denoises the VAE latent
    of an image conditioned on the CLIP tower's "visual dense recap"; the ε-prediction error is the training signal
    of the CLIP tower.

    Args:
        vae (`AutoencoderKL`): frozen image autoencoder (SD 2.1-base's, or the embedded world's).
        unet (`UNet2DConditionModel`): frozen denoiser whose `cross_attention_dim` equals the condition width.
        scheduler (`SchedulerMixin`): the training noise schedule (`add_noise`, `num_train_timesteps`).
        condition_model (`DivaModel`): CLIP vision tower + projections + fixed prompt embedding (the part that learns).
    """

    model_cpu_offload_seq = "condition_model->unet->vae"

    def __init__(self, vae, unet, scheduler, condition_model):
        super().__init__()
        cross = unet.config.cross_attention_dim
        if condition_model.config.cross_attention_dim != cross:
            raise ValueError(
                f"The condition model produces width {condition_model.config.cross_attention_dim} but the UNet's "
                f"`cross_attention_dim` is {cross}; build the DivaConfig with `cross_attention_dim={cross}`."
            )
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, condition_model=condition_model)
        vae.requires_grad_(False)
        unet.requires_grad_(False)

    # --- feedback ------------------------------------------------------------------------------------------------
    def diffusion_loss(self, images, **kwargs) -> DivaPipelineOutput:
        """The DIVA loss with its graph (gradients reach only the condition model). `kwargs`: `num_noise_draws`,
        `timesteps`, `noise`, `generator` (see `DivaModel.diffusion_loss`)."""
        images = images_to_tensor(images).to(self.condition_model.device)
        clip_pixel_values, vae_pixel_values = self.condition_model.prepare_pixel_values(images)
        out = self.condition_model.diffusion_loss(
            clip_pixel_values,
            vae=self.vae,
            unet=self.unet,
            noise_scheduler=self.scheduler,
            vae_pixel_values=vae_pixel_values,
            **kwargs,
        )
        return DivaPipelineOutput(loss=out.loss, condition=out.condition)

    @torch.no_grad()
    def __call__(
        self,
        images,
        num_noise_draws: int | None = None,
        timesteps=None,
        noise=None,
        generator=None,
        return_dict: bool = True,
    ):
        """Diffusion feedback for `images` (PIL / arrays / [0, 1] tensor at the diffusion resolution), no graph."""
        out = self.diffusion_loss(
            images, num_noise_draws=num_noise_draws, timesteps=timesteps, noise=noise, generator=generator
        )
        return out if return_dict else (out.loss, out.condition)

    @torch.no_grad()
    def reconstruct(self, images, num_inference_steps: int = 25, generator: torch.Generator | None = None):
        """Sample images from pure noise conditioned on the visual recap of `images` (same size as `images`)."""
        images = images_to_tensor(images).to(self.condition_model.device)
        clip_pixel_values, _ = self.condition_model.prepare_pixel_values(images)
        condition = self.condition_model(pixel_values=clip_pixel_values, generator=generator).condition
        condition = condition.to(self.unet.dtype)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        shape = (images.shape[0], self.unet.config.in_channels, images.shape[-2] // factor, images.shape[-1] // factor)
        latents = torch.randn(shape, generator=generator, device=images.device, dtype=self.unet.dtype)
        latents = latents * getattr(self.scheduler, "init_noise_sigma", 1.0)
        self.scheduler.set_timesteps(num_inference_steps, device=images.device)
        for t in self.scheduler.timesteps:
            model_input = self.scheduler.scale_model_input(latents, t)
            prediction = self.unet(model_input, t, encoder_hidden_states=condition).sample
            latents = self.scheduler.step(prediction, t, latents, generator=generator).prev_sample
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return DivaPipelineOutput(images=(decoded / 2 + 0.5).clamp(0, 1))

    # --- Hub -----------------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *args, remote_code: bool = True, **kwargs):
        """Save every component; with `remote_code=True` (default) also this file and the condition model's code,
        so that `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` works without `hf_clipzoo`."""
        super().save_pretrained(save_directory, *args, **kwargs)
        drop_local_origins(save_directory)
        if not remote_code:
            return
        save_directory = Path(save_directory)
        source = inspect.getsourcefile(type(self))
        shutil.copyfile(source, save_directory / PIPELINE_FILE)
        index_path = save_directory / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = [PIPELINE_FILE[:-3], type(self).__name__]
        # `DivaModel.save_pretrained` wrote `modeling_diva.py` (and what it imports) next to its weights; diffusers
        # loads a component from `<component>/<module>.py` when the library named in the index is such a file.
        module_file = type(self.condition_model).__module__.rsplit(".", 1)[-1]
        if not (save_directory / "condition_model" / f"{module_file}.py").exists():
            raise ValueError(
                f"The condition model's code `{module_file}.py` was not saved; cannot export remote code."
            )
        index["condition_model"] = [module_file, type(self.condition_model).__name__]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load a saved DIVA pipeline with the classes of the installed packages (no remote code). Components passed
        as keyword arguments replace the saved ones; `torch_dtype` is forwarded to the model components."""
        import diffusers

        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(pretrained_model_name_or_path)))
        index = json.loads((folder / "model_index.json").read_text())
        torch_dtype = kwargs.pop("torch_dtype", None)
        components = {}
        for name in ("vae", "unet", "scheduler", "condition_model"):
            if name in kwargs:
                components[name] = kwargs.pop(name)
                continue
            if name not in index:
                raise ValueError(f"{folder / 'model_index.json'} has no component {name!r}.")
            library, class_name = index[name]
            if name == "condition_model":
                component_class = getattr(importlib.import_module(CONDITION_MODEL_MODULE), class_name)
            else:
                component_class = getattr(diffusers, class_name)
            extra = {"torch_dtype": torch_dtype} if torch_dtype is not None and name != "scheduler" else {}
            components[name] = component_class.from_pretrained(folder / name, **extra)
        if kwargs:
            raise ValueError(f"Unexpected arguments for DivaPipeline.from_pretrained: {sorted(kwargs)}.")
        return cls(**components)


__all__ = ["DivaPipeline", "DivaPipelineOutput", "images_to_tensor"]
