"""Configuration of the baseline dual encoder (CLIP / SigLIP) every method of the zoo is compared with."""

from huggingface_hub.errors import StrictDataclassError
from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

from .clipzoo_validation import ACTIVATION, BOOLEAN, DROPOUT, FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, TOKEN_ID, Number, OneOf, check_extra_keys, check_fields, check_sub_config_dicts

LOSS_TYPES = ("softmax", "sigmoid")

# What each field of transformers' CLIP towers must be for the towers to be built and to compute finite numbers.
CLIP_TEXT_FIELDS = {
    "vocab_size": POSITIVE_INT,
    "hidden_size": POSITIVE_INT,
    "intermediate_size": POSITIVE_INT,
    "projection_dim": Number(int, minimum=1, optional=True),
    "num_hidden_layers": POSITIVE_INT,
    "num_attention_heads": POSITIVE_INT,
    "max_position_embeddings": POSITIVE_INT,
    "hidden_act": ACTIVATION,
    "layer_norm_eps": POSITIVE,
    "attention_dropout": DROPOUT,
    "initializer_range": NON_NEGATIVE,
    "initializer_factor": NON_NEGATIVE,
    "pad_token_id": TOKEN_ID,
    "bos_token_id": TOKEN_ID,
    "eos_token_id": TOKEN_ID,
}
CLIP_VISION_FIELDS = {
    "hidden_size": POSITIVE_INT,
    "intermediate_size": POSITIVE_INT,
    "projection_dim": POSITIVE_INT,
    "num_hidden_layers": POSITIVE_INT,
    "num_attention_heads": POSITIVE_INT,
    "num_channels": POSITIVE_INT,
    "image_size": POSITIVE_INT,
    "patch_size": POSITIVE_INT,
    "hidden_act": ACTIVATION,
    "layer_norm_eps": POSITIVE,
    "attention_dropout": DROPOUT,
    "initializer_range": NON_NEGATIVE,
    "initializer_factor": NON_NEGATIVE,
}
ZOO_CLIP_FIELDS = {
    "projection_dim": POSITIVE_INT,
    "logit_scale_init_value": FINITE,
    "initializer_factor": NON_NEGATIVE,
    "loss_type": OneOf(LOSS_TYPES),
    "logit_bias_init_value": FINITE,
    "local_loss": BOOLEAN,
    "sigmoid_chunk_size": Number(int, minimum=1, optional=True),
}
CLIP_SUB_CONFIGS = {
    "text_config": (CLIPTextConfig, CLIP_TEXT_FIELDS),
    "vision_config": (CLIPVisionConfig, CLIP_VISION_FIELDS),
}

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
        check_extra_keys(type(self), kwargs, known=("text_config_dict", "vision_config_dict"))
        check_sub_config_dicts(self, CLIP_SUB_CONFIGS)
        check_fields(self, ZOO_CLIP_FIELDS)
        try:
            super().__post_init__(**kwargs)
        except StrictDataclassError as error:
            # The sub-configs' own checks (e.g. heads dividing the width) surface as plain ValueErrors too.
            raise ValueError(str(error)) from error
        check_clip_towers(self.text_config, self.vision_config)

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "ZooCLIPConfig":
        """A config from one of `CLIP_PRESETS`; keyword arguments override top-level fields (e.g. `loss_type`)."""
        if name not in CLIP_PRESETS:
            raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(CLIP_PRESETS)}.")
        preset = {k: dict(v) if isinstance(v, dict) else v for k, v in CLIP_PRESETS[name].items()}
        for tower in ("text_config", "vision_config"):
            preset[tower].update(kwargs.pop(tower, None) or {})
        return cls(**{**preset, **kwargs})


def check_clip_towers(text_config, vision_config, vision_name: str = "vision_config") -> None:
    """Raise a `ValueError` naming the first field of CLIP towers that cannot work (`text_config` may be None)."""
    if text_config is not None:
        check_fields(text_config, CLIP_TEXT_FIELDS, "text_config.")
    check_fields(vision_config, CLIP_VISION_FIELDS, f"{vision_name}.")
    for name, sub in (("text_config", text_config), (vision_name, vision_config)):
        if sub is not None and sub.hidden_size % sub.num_attention_heads != 0:
            raise ValueError(
                f"`{name}.hidden_size` ({sub.hidden_size}) must be a multiple of `{name}.num_attention_heads` "
                f"({sub.num_attention_heads})."
            )
    if vision_config.image_size % vision_config.patch_size != 0:
        raise ValueError(
            f"`{vision_name}.image_size` ({vision_config.image_size}) must be a multiple of `{vision_name}.patch_size` "
            f"({vision_config.patch_size})."
        )


__all__ = [
    "CLIP_PRESETS",
    "CLIP_SUB_CONFIGS",
    "CLIP_TEXT_FIELDS",
    "CLIP_VISION_FIELDS",
    "LOSS_TYPES",
    "ZOO_CLIP_FIELDS",
    "ZooCLIPConfig",
    "check_clip_towers",
]
