"""DIVA: post-training a CLIP vision tower with the feedback of a frozen text-to-image diffusion model.

Paper: Wang et al., *Diffusion Feedback Helps CLIP See Better* (arXiv 2407.20171).
Official code: https://github.com/baaivision/DIVA (Apache-2.0), read at d53c668.

`DivaModel` is the part that learns: transformers' `CLIPVisionModel` (same parameter names as in `ZooCLIPModel` /
`CLIPModel`: `vision_model.*`, `visual_projection.weight`), plus the new `condition_projection` Linear (the official
`visual_proj`), plus the fixed prompt embedding as a buffer. Its forward builds the "visual dense recap" condition
(class token + selected patch tokens, projected to the UNet's cross-attention width, added to the prompt embedding);
`diffusion_loss` runs the frozen VAE / UNet / noise scheduler on it and returns the ε-prediction loss, whose gradient
reaches only the CLIP tower and the projections.

What differs from the official code (each difference is a config option where the official behaviour can be had):
- K (t, ε) draws per batch are *averaged* (`num_noise_draws`); the official `--train_steps 2` backpropagates the first
  draw inside `forward` and lets the HF Trainer scale only the second by 1/grad_accum, giving unequal weights.
- Images reach the VAE as `2x − 1` of the [0, 1] image (`vae_input_normalization="exact"`); the official code
  un-normalises with ImageNet statistics what was normalised with OpenAI CLIP's (`"imagenet_mismatch"` reproduces it).
- In eval mode the random token draw is seeded (`eval_token_seed`), so evaluation is reproducible; the official code
  is always unseeded (its README warns to try several seeds). Training draws are unseeded as in the official code.
- The VAE latent is the posterior *mean* × `scaling_factor` as in the official code (`latent_dist.mean`), not a
  sample; the UNet target may also be the velocity when the scheduler is configured for v-prediction (SD 2.1-base
  is ε-prediction, as in the official code).
- One implementation for every backbone: the official code patches the `clip` / `open_clip` / `timm` libraries'
  vision forward (`condition/*.py`); here the token selection is a config option on transformers' CLIP tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPPreTrainedModel, CLIPVisionModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...hub.export import RemoteCodeModelMixin

# diffusers loads a pipeline component's remote code with the files its module imports *directly* (transformers
# follows imports recursively): the modules `configuration_diva` and the mixin need are imported here so that they
# are copied too.
from ...hub.folders import check_model_path  # noqa: F401
from ...validation import check_fields  # noqa: F401
from ..clip.configuration_clip import check_clip_towers  # noqa: F401
from .configuration_diva import IMAGENET_MEAN, IMAGENET_STD, DivaConfig


@dataclass
class DivaOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        The diffusion loss (ε-prediction MSE by default) averaged over `num_noise_draws` (t, ε) draws.
    condition (`torch.FloatTensor` of shape `(batch_size, num_condition_tokens, cross_attention_dim)`):
        The UNet's `encoder_hidden_states`: projected visual tokens combined with the prompt embedding.
    visual_tokens (`torch.FloatTensor` of shape `(batch_size, num_condition_tokens, token_width)`):
        Class token + selected patch tokens after `post_layernorm` (and CLIP's visual projection when configured).
    image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        The CLIP image embedding (projected class token, L2-normalised), as `ZooCLIPModel` computes it.
    token_indices (`torch.LongTensor` of shape `(batch_size, num_selected)`, *optional*):
        Patch indices (0-based, class token excluded) drawn by `token_selection="random"`.
    """

    loss: torch.FloatTensor | None = None
    condition: torch.FloatTensor | None = None
    visual_tokens: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    token_indices: torch.LongTensor | None = None


def check_clip_pixel_values(pixel_values: torch.Tensor, config: DivaConfig) -> None:
    vision = config.vision_config
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`pixel_values` must be a torch.Tensor, got {type(pixel_values).__name__}.")
    expected = (vision.num_channels, vision.image_size, vision.image_size)
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected or pixel_values.shape[0] == 0:
        raise ValueError(
            f"`pixel_values` must have shape (batch > 0, {', '.join(map(str, expected))}) for the CLIP tower, got "
            f"{tuple(pixel_values.shape)}. Use `DivaModel.prepare_pixel_values(images)` to resize and normalise."
        )


def vae_downsampling_factor(vae) -> int:
    """Spatial reduction of an `AutoencoderKL`: one halving per encoder block but the last."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def unet_downsampling_factor(unet) -> int:
    return 2 ** (len(unet.config.block_out_channels) - 1)


def check_vae_pixel_values(vae_pixel_values: torch.Tensor, vae, unet) -> None:
    """Images must fit the VAE (multiples of its reduction) and give latents the UNet can down/upsample."""
    if not isinstance(vae_pixel_values, torch.Tensor) or vae_pixel_values.ndim != 4:
        shape = tuple(vae_pixel_values.shape) if isinstance(vae_pixel_values, torch.Tensor) else None
        raise ValueError(f"`vae_pixel_values` must be a (batch, channels, height, width) tensor, got {shape}.")
    channels = vae.config.in_channels
    if vae_pixel_values.shape[1] != channels or vae_pixel_values.shape[0] == 0:
        raise ValueError(
            f"`vae_pixel_values` must have {channels} channels and a non-empty batch, got "
            f"{tuple(vae_pixel_values.shape)}."
        )
    multiple = vae_downsampling_factor(vae) * unet_downsampling_factor(unet)
    height, width = vae_pixel_values.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"Images of {height}x{width} do not fit the VAE + UNet: height and width must be multiples of {multiple} "
            f"(VAE reduction {vae_downsampling_factor(vae)} x UNet reduction {unet_downsampling_factor(unet)}); "
            f"e.g. {max(multiple, height // multiple * multiple)}x{max(multiple, width // multiple * multiple)}."
        )


@torch.no_grad()
def encode_latents(vae, vae_pixel_values: torch.Tensor) -> torch.Tensor:
    """`x0 = E(img).mean × scaling_factor` (official `models/SD_with_*.py`); no graph is built (frozen VAE)."""
    posterior = vae.encode(vae_pixel_values.to(vae.dtype)).latent_dist
    latents = posterior.mean
    shift = getattr(vae.config, "shift_factor", None)
    if shift is not None:
        latents = latents - shift
    return latents * vae.config.scaling_factor


def freeze(*modules: nn.Module | None) -> None:
    """Frozen diffusion components: no gradient for their weights, eval mode (no dropout)."""
    for module in modules:
        if module is not None:
            module.requires_grad_(False)
            module.eval()


class DivaPreTrainedModel(CLIPPreTrainedModel):
    config: DivaConfig
    config_class = DivaConfig
    base_model_prefix = "diva"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, DivaModel):
            factor = self.config.initializer_factor
            if module.visual_projection is not None:
                init.normal_(module.visual_projection.weight, std=self.config.vision_config.hidden_size**-0.5 * factor)
            if module.condition_projection is not None:
                init.normal_(module.condition_projection.weight, std=self.config.initializer_range)
                init.zeros_(module.condition_projection.bias)
            init.zeros_(module.prompt_embeds)
            init.copy_(module.clip_mean, torch.tensor(self.config.clip_image_mean).view(1, -1, 1, 1))
            init.copy_(module.clip_std, torch.tensor(self.config.clip_image_std).view(1, -1, 1, 1))


class DivaModel(RemoteCodeModelMixin, DivaPreTrainedModel):
    """CLIP vision tower + projections + fixed prompt embedding: DIVA's trainable condition module."""

    _remote_auto_classes = ("AutoModel",)

    def __init__(self, config: DivaConfig):
        super().__init__(config)
        vision = config.vision_config
        self.vision_model = CLIPVisionModel._from_config(vision)
        self.visual_projection = (
            nn.Linear(vision.hidden_size, config.projection_dim, bias=False) if config.use_clip_projection else None
        )
        self.condition_projection = (
            nn.Linear(config.token_width, config.cross_attention_dim) if config.condition_projection else None
        )
        # The frozen text encoder's embedding of `config.prompt`: a persistent buffer, so it is saved with the weights
        # and the diffusion model's text encoder is not needed again.
        self.register_buffer("prompt_embeds", torch.zeros(config.prompt_length, config.cross_attention_dim))
        self.register_buffer("clip_mean", torch.zeros(1, vision.num_channels, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.ones(1, vision.num_channels, 1, 1), persistent=False)
        self._diffusion: dict = {}
        self.post_init()

    # --- inputs --------------------------------------------------------------------------------------------------
    def set_prompt_embeds(self, prompt_embeds: torch.Tensor) -> None:
        """Store the frozen prompt embedding `(prompt_length, cross_attention_dim)` (a leading batch of 1 is fine)."""
        if not isinstance(prompt_embeds, torch.Tensor):
            raise ValueError(f"`prompt_embeds` must be a tensor, got {type(prompt_embeds).__name__}.")
        if prompt_embeds.ndim == 3 and prompt_embeds.shape[0] == 1:
            prompt_embeds = prompt_embeds[0]
        expected = tuple(self.prompt_embeds.shape)
        if prompt_embeds.numel() == 0:
            raise ValueError(f"`prompt_embeds` is empty; expected shape {expected} (the encoded prompt).")
        if tuple(prompt_embeds.shape) != expected:
            raise ValueError(
                f"`prompt_embeds` must have shape {expected} (config.prompt_length, config.cross_attention_dim), got "
                f"{tuple(prompt_embeds.shape)}."
            )
        self.prompt_embeds.copy_(prompt_embeds.detach().to(self.prompt_embeds))

    def prepare_pixel_values(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From a batch of [0, 1] images `(B, 3, H, W)` (the diffusion resolution), the CLIP input (resized to the
        tower's size, normalised) and the VAE input in [−1, 1] (spec §4.3 step 1)."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(
                "`images` must be a non-empty (batch, channels, height, width) tensor with values in [0, 1]."
            )
        if images.min() < -1e-3 or images.max() > 1 + 1e-3:
            raise ValueError(
                f"`images` must hold values in [0, 1], got [{images.min().item():.3f}, {images.max().item():.3f}]."
            )
        size = self.config.vision_config.image_size
        normalised = (images - self.clip_mean) / self.clip_std
        # The official code resizes the *normalised* tensor (torchvision `Resize((224, 224))`, bilinear + antialias).
        clip_pixel_values = F.interpolate(normalised, size=(size, size), mode="bilinear", antialias=True)
        if self.config.vae_input_normalization == "imagenet_mismatch":
            mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
            vae_pixel_values = (normalised * std + mean) * 2 - 1
        else:
            vae_pixel_values = images * 2 - 1
        return clip_pixel_values, vae_pixel_values

    def unnormalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP pixel values back to [0, 1] images."""
        return pixel_values * self.clip_std + self.clip_mean

    # --- condition -----------------------------------------------------------------------------------------------
    def select_tokens(
        self, hidden_states: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`[CLS, selected patches]` from the last block's `(B, 1 + P, C)` hidden states (spec §4.2)."""
        cls_token, patches = hidden_states[:, :1], hidden_states[:, 1:]
        mode = self.config.token_selection
        if mode == "all":
            return hidden_states, None
        if mode == "avg_pool":
            k = self.config.pool_kernel_size
            pooled = F.avg_pool1d(patches.transpose(1, 2), kernel_size=k, stride=k).transpose(1, 2)
            return torch.cat([cls_token, pooled], dim=1), None
        if generator is None and not self.training and self.config.eval_token_seed is not None:
            generator = torch.Generator(device=hidden_states.device).manual_seed(self.config.eval_token_seed)
        batch, num_patches = patches.shape[:2]
        # Uniform *with replacement*, per image (official `torch.randint`).
        indices = torch.randint(
            num_patches, (batch, self.config.num_sampled_tokens), device=hidden_states.device, generator=generator
        )
        gathered = torch.gather(patches, 1, indices[..., None].expand(-1, -1, patches.shape[-1]))
        return torch.cat([cls_token, gathered], dim=1), indices

    def combine_with_prompt(self, projected: torch.Tensor) -> torch.Tensor:
        prompt = self.prompt_embeds.to(projected.dtype)
        if self.config.text_combination == "add":
            if projected.shape[1] != prompt.shape[0]:
                raise ValueError(
                    f'`text_combination="add"` needs as many visual tokens as prompt tokens: got {projected.shape[1]} '
                    f"and {prompt.shape[0]}."
                )
            return projected + prompt[None]
        return projected + prompt.mean(dim=0)[None, None]

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        return_loss: bool | None = None,
        vae_pixel_values: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DivaOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`):
                CLIP-normalised images at the tower's resolution (`prepare_pixel_values`).
            return_loss (`bool`, *optional*):
                Also compute the diffusion loss with the components given to `attach_diffusion` (or use
                `diffusion_loss` with explicit components).
            vae_pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, H, W)`, *optional*):
                The VAE input in [−1, 1] at the diffusion resolution; default: `pixel_values` un-normalised.
            timesteps / noise (*optional*): fixed draws for the loss, see `diffusion_loss`.
            generator (`torch.Generator`, *optional*): drives the random token selection.
        """
        if pixel_values is None:
            raise ValueError("DivaModel.forward needs `pixel_values`.")
        if return_loss:
            if not self._diffusion:
                raise ValueError(
                    "`return_loss=True` needs the frozen diffusion model: call `model.attach_diffusion(vae=..., "
                    "unet=..., noise_scheduler=...)` first, or use `model.diffusion_loss(...)` / `DivaPipeline`."
                )
            return self.diffusion_loss(
                pixel_values,
                vae_pixel_values=vae_pixel_values,
                timesteps=timesteps,
                noise=noise,
                generator=generator,
                return_dict=return_dict,
                **self._diffusion,
            )
        check_clip_pixel_values(pixel_values, self.config)
        vision = self.vision_model
        outputs = self.vision_model(pixel_values=pixel_values, return_dict=True, **kwargs)
        tokens, indices = self.select_tokens(outputs.last_hidden_state, generator)
        # `post_layernorm` then CLIP's projection, as `ln_post` and `@ proj` in the patched official forward.
        tokens = vision.post_layernorm(tokens)
        if self.visual_projection is not None:
            tokens = self.visual_projection(tokens)
        projected = self.condition_projection(tokens) if self.condition_projection is not None else tokens
        condition = self.combine_with_prompt(projected)
        pooled = outputs.pooler_output
        image_embeds = self.visual_projection(pooled) if self.visual_projection is not None else pooled
        output = DivaOutput(
            condition=condition,
            visual_tokens=tokens,
            image_embeds=F.normalize(image_embeds, dim=-1),
            token_indices=indices,
        )
        return output if return_dict is not False else output.to_tuple()

    # --- diffusion feedback --------------------------------------------------------------------------------------
    def attach_diffusion(self, vae, unet, noise_scheduler) -> None:
        """Keep references to the frozen diffusion components for `forward(return_loss=True)`. They are not
        registered as submodules: they are not saved, not moved by `.to()` and not handed to the optimiser."""
        freeze(vae, unet)
        self._diffusion = {"vae": vae, "unet": unet, "noise_scheduler": noise_scheduler}

    def diffusion_loss(
        self,
        pixel_values: torch.Tensor,
        vae,
        unet,
        noise_scheduler,
        vae_pixel_values: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        num_noise_draws: int | None = None,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
    ) -> DivaOutput | tuple:
        r"""
        DIVA's objective (spec §4.3): `L = 1/K Σ_k ‖UNet(√ᾱ_t x0 + √(1−ᾱ_t) ε, t, c(img)) − ε‖²` with
        `x0 = E(img).mean × scaling_factor`, `t ~ U{0, …, T−1}` and `ε ~ N(0, I)` drawn per sample and per draw.

        Args:
            pixel_values: CLIP input (see `forward`).
            vae / unet / noise_scheduler: the frozen diffusion model (`AutoencoderKL`, `UNet2DConditionModel`, a
                scheduler with `add_noise`, `alphas_cumprod` and `num_train_timesteps`, e.g. `DDPMScheduler`).
            vae_pixel_values: VAE input in [−1, 1]; default: `pixel_values` un-normalised (same resolution).
            latents: precomputed `x0` (skips the VAE).
            num_noise_draws: `K`; default `config.num_noise_draws`.
            timesteps (`torch.LongTensor` of shape `(K, batch)` or `(batch,)`, *optional*): fixed `t`.
            noise (`torch.FloatTensor` of shape `(K, batch, C, h, w)` or `(batch, C, h, w)`, *optional*): fixed `ε`.
        """
        if latents is None:
            if vae_pixel_values is None:
                vae_pixel_values = self.unnormalize(pixel_values) * 2 - 1
            check_vae_pixel_values(vae_pixel_values, vae, unet)
            latents = encode_latents(vae, vae_pixel_values)
        latents = latents.to(unet.dtype)
        if timesteps is not None and timesteps.ndim == 1:
            timesteps = timesteps[None]
        if noise is not None and noise.ndim == latents.ndim:
            noise = noise[None]
        draws = num_noise_draws or (
            timesteps.shape[0] if timesteps is not None else noise.shape[0] if noise is not None else None
        )
        draws = draws or self.config.num_noise_draws
        for name, fixed in (("timesteps", timesteps), ("noise", noise)):
            if fixed is not None and fixed.shape[0] != draws:
                raise ValueError(f"`{name}` holds {fixed.shape[0]} draws but `num_noise_draws` is {draws}.")

        output = self(pixel_values=pixel_values, generator=generator, return_dict=True)
        condition = output.condition.to(unet.dtype)
        num_train_timesteps = noise_scheduler.config.num_train_timesteps
        prediction_type = noise_scheduler.config.get("prediction_type", "epsilon")
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"Unsupported scheduler prediction_type {prediction_type!r}; expected 'epsilon' or 'v_prediction'."
            )
        batch = latents.shape[0]
        losses = []
        for k in range(draws):
            t = (
                timesteps[k].to(latents.device)
                if timesteps is not None
                else torch.randint(0, num_train_timesteps, (batch,), device=latents.device, generator=generator)
            )
            eps = (
                noise[k].to(latents)
                if noise is not None
                else torch.randn(latents.shape, device=latents.device, dtype=latents.dtype, generator=generator)
            )
            noisy = noise_scheduler.add_noise(latents, eps, t)
            target = eps if prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, eps, t)
            prediction = unet(noisy, t, encoder_hidden_states=condition).sample
            if self.config.diffusion_loss == "mse":
                losses.append(F.mse_loss(prediction.float(), target.float()))
            else:
                losses.append(F.l1_loss(prediction.float(), target.float()))
        output.loss = torch.stack(losses).mean()
        return output if return_dict is not False else output.to_tuple()

    # --- export --------------------------------------------------------------------------------------------------
    def clip_vision_state_dict(self) -> dict[str, torch.Tensor]:
        """The tower (and CLIP's visual projection) under `ZooCLIPModel` / `CLIPModel` parameter names."""
        state = {k: v for k, v in self.state_dict().items() if k.startswith("vision_model.")}
        if self.visual_projection is not None:
            state["visual_projection.weight"] = self.visual_projection.weight
        return state


__all__ = [
    "DivaModel",
    "DivaOutput",
    "DivaPreTrainedModel",
    "check_vae_pixel_values",
    "encode_latents",
    "freeze",
]
