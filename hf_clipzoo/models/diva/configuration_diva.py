"""Configuration of DIVA's condition module: a CLIP vision tower whose tokens become the diffusion model's context.

DIVA (Wang et al., *Diffusion Feedback Helps CLIP See Better*, arXiv 2407.20171; code: baaivision/DIVA, Apache-2.0)
post-trains a CLIP vision tower through a frozen text-to-image diffusion model. This config describes the part that
learns — the CLIP vision tower, CLIP's visual projection and the new `visual_proj` Linear — and how its tokens are
turned into the UNet's `encoder_hidden_states` ("visual dense recap", spec §4.2).
"""

from __future__ import annotations

from huggingface_hub.errors import StrictDataclassError
from transformers import CLIPVisionConfig, PreTrainedConfig

from ...validation import (
    BOOLEAN,
    FINITE,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    ListOf,
    Number,
    OneOf,
    Text,
    check_extra_keys,
    check_fields,
    check_sub_config_dicts,
)
from ..clip.configuration_clip import CLIP_VISION_FIELDS, check_clip_towers

TOKEN_SELECTIONS = ("random", "all", "avg_pool")
TEXT_COMBINATIONS = ("add", "mean_broadcast")
VAE_INPUT_NORMALIZATIONS = ("exact", "imagenet_mismatch")
DIFFUSION_LOSSES = ("mse", "l1")

# OpenAI CLIP's normalisation (the official DIVA data pipeline normalises with it) and ImageNet's (which the official
# code wrongly uses to un-normalise before the VAE; see `vae_input_normalization`).
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

DIVA_FIELDS = {
    "projection_dim": POSITIVE_INT,
    "use_clip_projection": BOOLEAN,
    "cross_attention_dim": POSITIVE_INT,
    "condition_projection": BOOLEAN,
    "token_selection": OneOf(TOKEN_SELECTIONS),
    "num_sampled_tokens": POSITIVE_INT,
    "pool_kernel_size": POSITIVE_INT,
    "eval_token_seed": Number(int, minimum=0, optional=True),
    "text_combination": OneOf(TEXT_COMBINATIONS),
    "prompt": Text(),
    "prompt_length": POSITIVE_INT,
    "clip_image_mean": ListOf(FINITE, min_length=1),
    "clip_image_std": ListOf(POSITIVE, min_length=1),
    "vae_input_normalization": OneOf(VAE_INPUT_NORMALIZATIONS),
    "num_noise_draws": POSITIVE_INT,
    "diffusion_loss": OneOf(DIFFUSION_LOSSES),
    "initializer_range": NON_NEGATIVE,
    "initializer_factor": NON_NEGATIVE,
}


class DivaConfig(PreTrainedConfig):
    r"""
    Configuration of [`DivaModel`], the trainable condition module of DIVA (arXiv 2407.20171, spec §4.1-§4.3).

    The condition is built as in the official `models/SD_with_*.py` + `condition/*.py`:
    `tokens = [CLS, selected patch tokens]` of the last vision block → `post_layernorm` → CLIP's `visual_projection`
    (optional) → `condition_projection` (the official `visual_proj`, optional) → combined with the fixed prompt
    embedding `prompt_embeds` (a buffer, the frozen text encoder's embedding of `prompt`).

    Args:
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            The CLIP vision tower being post-trained (transformers' `CLIPVisionConfig`). Default: ViT-B/32 at 224 px.
        projection_dim (`int`, *optional*, defaults to 512):
            Output width of CLIP's `visual_projection` (the CLIP's `projection_dim`). Only used when
            `use_clip_projection=True`.
        use_clip_projection (`bool`, *optional*, defaults to `True`):
            Pass the tokens through CLIP's visual projection before `condition_projection`, as the official code does
            for OpenAI CLIP and MetaCLIP (`[CLS, tokens] @ proj`, spec §4.2). `False`: use the tower's hidden width
            (the official SigLIP path, whose head is the identity).
        cross_attention_dim (`int`, *optional*, defaults to 1024):
            The UNet's `cross_attention_dim` (1024 for Stable Diffusion 2.1-base), i.e. the width of the context.
        condition_projection (`bool`, *optional*, defaults to `True`):
            Add the official `visual_proj` Linear (with bias) from the token width to `cross_attention_dim`
            (768→1024 for OpenAI ViT-L/14, spec §4.1). `False` requires the token width to equal
            `cross_attention_dim`.
        token_selection (`str`, *optional*, defaults to `"random"`):
            Which patch tokens follow the class token (spec §4.2):
            `"random"`: `num_sampled_tokens` patch tokens drawn uniformly *with replacement*, per image
            (`torch.randint`, OpenAI ViT-L/14 and DFN-378 in the official code); `"all"`: every patch token
            (MetaCLIP, DFN-224); `"avg_pool"`: `avg_pool1d` over the patch sequence with kernel = stride =
            `pool_kernel_size` (SigLIP: 256 → 42 tokens with k=6).
        num_sampled_tokens (`int`, *optional*, defaults to 76):
            Patch tokens drawn by `"random"`. The official code uses a fixed 76 (77 tokens with CLS, matching SD's 77
            text positions) at every resolution; the paper's "~15% / ~30% of patches" contradicts it, we follow the
            code (spec §4.2).
        pool_kernel_size (`int`, *optional*, defaults to 6):
            Window (= stride) of `"avg_pool"` (official: 6 at 224 px, 10 at 384 px).
        eval_token_seed (`int`, *optional*, defaults to 0):
            In eval mode, `"random"` draws its tokens from a generator seeded with this value, so conditions (and the
            diffusion loss used for evaluation) are reproducible. `None`: always unseeded, as the official code (whose
            README warns that results depend on the seed). Training mode is always unseeded.
        text_combination (`str`, *optional*, defaults to `"add"`):
            How the visual tokens meet the prompt embedding (spec §4.2): `"add"`: element-wise sum of two sequences of
            the same length (official OpenAI path: 77 + 77); `"mean_broadcast"`: the prompt embedding is averaged over
            its tokens and added to every visual token (official MetaCLIP / DFN / SigLIP path).
        prompt (`str`, *optional*, defaults to `"a photo of a ."`):
            The text whose frozen embedding is `prompt_embeds`. The official code formats `'a photo of a {}.'` with an
            empty class name; the paper describes an empty text ([BOS][EOS]). Recorded here for provenance; the
            embedding itself is computed by the training script / pipeline from the diffusion model's text encoder.
        prompt_length (`int`, *optional*, defaults to 77):
            Number of tokens of `prompt_embeds` (SD's text encoder pads to 77).
        clip_image_mean (`list[float]`, *optional*, defaults to OpenAI CLIP's mean):
        clip_image_std (`list[float]`, *optional*, defaults to OpenAI CLIP's std):
            Normalisation of the CLIP branch (`DivaModel.prepare_pixel_values`).
        vae_input_normalization (`str`, *optional*, defaults to `"exact"`):
            How images reach the VAE. `"exact"`: `2·x − 1` of the [0, 1] image. `"imagenet_mismatch"`: the official
            code's path, which normalises with the OpenAI CLIP statistics and un-normalises with ImageNet's before
            mapping to [−1, 1] (spec §4.3 step 1), slightly shifting the colours the VAE sees.
        num_noise_draws (`int`, *optional*, defaults to 2):
            `K` (t, ε) draws per batch whose losses are averaged (official `--train_steps 2`, whose two draws got
            unequal weights through the HF Trainer; we average, spec §4.3 step 5).
        diffusion_loss (`str`, *optional*, defaults to `"mse"`):
            `"mse"` (official default) or `"l1"` between the UNet's prediction and its target.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of `condition_projection` (a new layer; the official code keeps
            PyTorch's default Linear init).
        initializer_factor (`float`, *optional*, defaults to 1.0):
            Scale of the CLIP tower's initialisation (as in `CLIPConfig`), used only when no weights are loaded.
    """

    model_type = "clipzoo-diva"
    sub_configs = {"vision_config": CLIPVisionConfig}

    vision_config: dict | CLIPVisionConfig | None = None
    projection_dim: int = 512
    use_clip_projection: bool = True
    cross_attention_dim: int = 1024
    condition_projection: bool = True
    token_selection: str = "random"
    num_sampled_tokens: int = 76
    pool_kernel_size: int = 6
    eval_token_seed: int | None = 0
    text_combination: str = "add"
    prompt: str = "a photo of a ."
    prompt_length: int = 77
    clip_image_mean: list[float] | None = None
    clip_image_std: list[float] | None = None
    vae_input_normalization: str = "exact"
    num_noise_draws: int = 2
    diffusion_loss: str = "mse"
    initializer_range: float = 0.02
    initializer_factor: float = 1.0

    def __post_init__(self, **kwargs):
        check_extra_keys(type(self), kwargs)
        check_sub_config_dicts(self, {"vision_config": (CLIPVisionConfig, CLIP_VISION_FIELDS)})
        if self.vision_config is None:
            self.vision_config = CLIPVisionConfig()
        elif isinstance(self.vision_config, dict):
            vision = {k: v for k, v in self.vision_config.items() if k != "model_type"}
            self.vision_config = CLIPVisionConfig(**vision)
        if self.clip_image_mean is None:
            self.clip_image_mean = list(OPENAI_CLIP_MEAN)
        if self.clip_image_std is None:
            self.clip_image_std = list(OPENAI_CLIP_STD)
        try:
            super().__post_init__(**kwargs)
        except StrictDataclassError as error:
            raise ValueError(str(error)) from error
        self.validate_fields()

    # --- derived sizes -------------------------------------------------------------------------------------------
    @property
    def num_patches(self) -> int:
        return (self.vision_config.image_size // self.vision_config.patch_size) ** 2

    @property
    def token_width(self) -> int:
        """Width of the visual tokens before `condition_projection`."""
        return self.projection_dim if self.use_clip_projection else self.vision_config.hidden_size

    @property
    def num_condition_tokens(self) -> int:
        """Length of the context sequence: class token + selected patch tokens."""
        if self.token_selection == "random":
            return 1 + self.num_sampled_tokens
        if self.token_selection == "all":
            return 1 + self.num_patches
        return 1 + (self.num_patches - self.pool_kernel_size) // self.pool_kernel_size + 1

    def validate_fields(self) -> None:
        """Raise a `ValueError` naming the first invalid field."""
        vision = self.vision_config
        check_clip_towers(None, vision)
        check_fields(self, DIVA_FIELDS)
        if self.token_selection == "avg_pool" and not 0 < self.pool_kernel_size <= self.num_patches:
            raise ValueError(
                f"`pool_kernel_size` must lie in [1, {self.num_patches}] (the number of patches), got "
                f"{self.pool_kernel_size}."
            )
        for name in ("clip_image_mean", "clip_image_std"):
            value = getattr(self, name)
            if len(value) != vision.num_channels:
                raise ValueError(f"`{name}` needs {vision.num_channels} values, got {len(value)}.")
        if not self.condition_projection and self.token_width != self.cross_attention_dim:
            source = "`projection_dim`" if self.use_clip_projection else "`vision_config.hidden_size`"
            raise ValueError(
                f"The CLIP token width ({self.token_width}, from {source}) differs from the UNet's "
                f"`cross_attention_dim` ({self.cross_attention_dim}) and no projection is configured: set "
                "`condition_projection=True` (the official `visual_proj` Linear) or match the widths."
            )
        if self.text_combination == "add" and self.num_condition_tokens != self.prompt_length:
            raise ValueError(
                f'`text_combination="add"` sums the visual tokens and the prompt embedding element-wise, so their '
                f"lengths must match: {self.num_condition_tokens} visual tokens (token_selection="
                f"{self.token_selection!r}) vs `prompt_length`={self.prompt_length}. Use "
                '`text_combination="mean_broadcast"` or change `num_sampled_tokens` / `prompt_length`.'
            )


__all__ = [
    "DIFFUSION_LOSSES",
    "DIVA_FIELDS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "TEXT_COMBINATIONS",
    "TOKEN_SELECTIONS",
    "VAE_INPUT_NORMALIZATIONS",
    "DivaConfig",
]
