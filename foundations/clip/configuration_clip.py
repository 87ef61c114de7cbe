"""Configuration of the baseline dual encoder (CLIP / SigLIP) every method of the zoo is compared with."""

from huggingface_hub.errors import StrictDataclassError
from transformers import CLIPConfig

LOSS_TYPES = ("softmax", "sigmoid")

# Named tower shapes. "world-*" are sized for the embedded synthetic world on a CPU (64 px images, short captions);
# the "vit-*" ones are OpenAI CLIP's (`openai/clip-vit-base-patch16` etc.), so converted weights fit them.
CLIP_PRESETS: dict[str, dict] = {
    # For tests and smoke runs: seconds on a CPU, learns nothing much.
    "world-micro": dict(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=32,
    ),
    "world-tiny": dict(
        text_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4),
        vision_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=64,
            patch_size=8,
        ),
        projection_dim=128,
    ),
    "world-small": dict(
        text_config=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
        vision_config=dict(
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=6,
            num_attention_heads=4,
            image_size=64,
            patch_size=8,
        ),
        projection_dim=256,
    ),
    "vit-b-32": dict(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision_config=dict(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32
        ),
        projection_dim=512,
    ),
    "vit-b-16": dict(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision_config=dict(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16
        ),
        projection_dim=512,
    ),
    "vit-l-14": dict(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        vision_config=dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14
        ),
        projection_dim=768,
    ),
}


class ZooCLIPConfig(CLIPConfig):
    r"""
    Configuration of [`ZooCLIPModel`]: transformers' `CLIPConfig` (same `text_config` / `vision_config` sub-configs, so
    every `openai/clip-vit-*` checkpoint config loads unchanged) plus the choice of training objective.

    Args:
        text_config (`dict` or `CLIPTextConfig`, *optional*):
            The text tower (transformers' `CLIPTextConfig`). Default: the OpenAI ViT-B text tower (width 512, 12 layers,
            77 positions, vocabulary 49,408).
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            The vision tower (transformers' `CLIPVisionConfig`). Default: ViT-B/32 at 224 px.
        projection_dim (`int`, *optional*, defaults to 512):
            Width of the shared embedding space (CLIP paper §2.4).
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial value of the learnable *log* temperature; `exp(2.6592) = 1/0.07` as in CLIP §2.5. SigLIP starts
            from `log(10) = 2.3026` (SigLIP paper §3.1) — pass it explicitly with `loss_type="sigmoid"`.
        loss_type (`str`, *optional*, defaults to `"softmax"`):
            `"softmax"`: CLIP's symmetric InfoNCE. `"sigmoid"`: SigLIP's pairwise sigmoid loss, which adds a learnable
            `logit_bias`. Both come from `hf_clipzoo.losses`.
        logit_bias_init_value (`float`, *optional*, defaults to -10.0):
            Initial value of the learnable bias of the sigmoid loss (SigLIP §3.1: -10, so that the many negatives do
            not dominate the first steps). Only used with `loss_type="sigmoid"`; the parameter does not exist
            otherwise, so OpenAI CLIP checkpoints load with zero missing keys.
        local_loss (`bool`, *optional*, defaults to `True`):
            In multi-process training, compute the loss only for the local rows against all gathered columns
            (open_clip's `--local-loss`): O(b·N) memory instead of O(N²), same loss and gradients.
        sigmoid_chunk_size (`int`, *optional*):
            When set, the sigmoid loss is evaluated in column chunks of this size with memory O(b·chunk) for forward
            and backward. `None` computes the full logit matrix.

    Example:

    ```python
    >>> from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel
    >>> config = ZooCLIPConfig(loss_type="sigmoid", logit_scale_init_value=2.3026)
    >>> model = ZooCLIPModel(config)
    ```
    """

    model_type = "clipzoo-clip"

    loss_type: str = "softmax"
    logit_bias_init_value: float = -10.0
    local_loss: bool = True
    sigmoid_chunk_size: int | None = None

    def __post_init__(self, **kwargs):
        # Checked before the parent's strict validation so that users get a plain ValueError that names the field.
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"`loss_type` must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if self.sigmoid_chunk_size is not None and self.sigmoid_chunk_size <= 0:
            raise ValueError(
                f"`sigmoid_chunk_size` must be a positive integer or None, got {self.sigmoid_chunk_size}."
            )
        if self.projection_dim is not None and self.projection_dim <= 0:
            raise ValueError(f"`projection_dim` must be positive, got {self.projection_dim}.")
        try:
            super().__post_init__(**kwargs)
        except StrictDataclassError as error:
            # The sub-configs' own checks (e.g. heads dividing the width) surface as plain ValueErrors too.
            raise ValueError(str(error)) from error
        for name in ("text_config", "vision_config"):
            sub = getattr(self, name)
            for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
                if getattr(sub, field) <= 0:
                    raise ValueError(f"`{name}.{field}` must be positive, got {getattr(sub, field)}.")
        vision = self.vision_config
        image_size, patch_size = vision.image_size, vision.patch_size
        if isinstance(image_size, int) and isinstance(patch_size, int) and image_size % patch_size != 0:
            raise ValueError(
                f"`vision_config.image_size` ({image_size}) must be a multiple of `vision_config.patch_size` "
                f"({patch_size})."
            )

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "ZooCLIPConfig":
        """A config from one of `CLIP_PRESETS`; keyword arguments override top-level fields (e.g. `loss_type`)."""
        if name not in CLIP_PRESETS:
            raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(CLIP_PRESETS)}.")
        preset = {k: dict(v) if isinstance(v, dict) else v for k, v in CLIP_PRESETS[name].items()}
        for tower in ("text_config", "vision_config"):
            preset[tower].update(kwargs.pop(tower, None) or {})
        return cls(**{**preset, **kwargs})


__all__ = ["CLIP_PRESETS", "LOSS_TYPES", "ZooCLIPConfig"]
