"""Configurations of the few-shot cache adapters: Tip-Adapter, Tip-Adapter-F, APE and APE-T.

All four wrap a frozen image-text encoder (a zoo CLIP such as `ZooCLIPModel`, or transformers' `CLIPModel`), stored as
the sub-config `encoder_config`, and add a small state computed from a few-shot training split: the text classifier,
the cache of few-shot image features and, for APE, the refined channels. Each variant has its own `model_type`, so
`AutoModel.from_pretrained(folder)` rebuilds the right class.
"""

from __future__ import annotations

from huggingface_hub.errors import StrictDataclassError
from transformers import CLIPConfig, PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ...validation import (
    BOOLEAN,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    ListOf,
    OneOf,
    check_extra_keys,
    check_fields,
)
from ..clip.configuration_clip import ZooCLIPConfig

# Encoders whose config class is resolved here rather than through `AutoConfig`: a folder saved with remote code must
# load where `hf_clipzoo` is not installed, and then the zoo's `model_type`s are unknown to transformers.
KNOWN_ENCODER_CONFIGS: dict[str, type[PreTrainedConfig]] = {
    ZooCLIPConfig.model_type: ZooCLIPConfig,
    CLIPConfig.model_type: CLIPConfig,
}
APE_T_CHANNEL_MODES = ("extract", "modify")
CACHE_KEY_AVERAGES = ("raw", "normalized")
TIP_ADAPTER_FIELDS = {
    "class_token_ids": ListOf(ListOf(NON_NEGATIVE_INT, min_length=1), optional=True),
    "shots_per_class": POSITIVE_INT,
    "embed_dim": POSITIVE_INT,
    "zero_shot_scale": POSITIVE,
    # α weighs the cache term, β sharpens the affinity.
    "init_alpha": NON_NEGATIVE,
    "init_beta": POSITIVE,
    "cache_key_average": OneOf(CACHE_KEY_AVERAGES),
}
APE_FIELDS = {"num_refined_channels": POSITIVE_INT, "criterion_weight": PROBABILITY, "init_gamma": NON_NEGATIVE}
APE_T_FIELDS = {"channel_mode": OneOf(APE_T_CHANNEL_MODES), "renormalize": BOOLEAN}


def resolve_encoder_config(encoder_config) -> PreTrainedConfig:
    """A config instance from a config or a dict with `model_type` (zoo CLIP, transformers CLIP, or any registered)."""
    if encoder_config is None:
        return ZooCLIPConfig()
    if isinstance(encoder_config, PreTrainedConfig):
        return encoder_config
    if not isinstance(encoder_config, dict):
        raise ValueError(
            f"`encoder_config` must be a config or a dict with a `model_type`, got {type(encoder_config).__name__}."
        )
    encoder_config = dict(encoder_config)
    model_type = encoder_config.pop("model_type", None)
    if model_type is None:
        raise ValueError("`encoder_config` needs a `model_type` (e.g. 'clipzoo-clip' or 'clip').")
    if model_type in KNOWN_ENCODER_CONFIGS:
        return KNOWN_ENCODER_CONFIGS[model_type](**encoder_config)
    if model_type in CONFIG_MAPPING:
        return CONFIG_MAPPING[model_type](**encoder_config)
    raise ValueError(
        f"Unknown encoder model_type {model_type!r}: install/import the package that defines it (`import hf_clipzoo` "
        f"for the zoo's models); known here: {sorted(KNOWN_ENCODER_CONFIGS)}."
    )


class TipAdapterConfig(PreTrainedConfig):
    r"""
    Configuration of [`TipAdapterModel`] (Zhang et al., *Tip-Adapter*, ECCV 2022, arXiv 2111.03930): a frozen CLIP
    plus a key-value cache of few-shot image features.

    `logits = zero_shot_scale · f Wᵀ + α · exp(−β (1 − f Fᵀ)) L` (paper Eq. 6), with `f` the L2-normalised image
    embedding, `W` the `(C, D)` text classifier, `F` the `(C·K, D)` cache keys and `L` the one-hot cache values.

    Args:
        encoder_config (`dict` or `PreTrainedConfig`, *optional*):
            The frozen image-text encoder: a `ZooCLIPConfig` (`model_type="clipzoo-clip"`), a transformers `CLIPConfig`
            (`"clip"`) or the config of any registered dual encoder with `get_image_features`. Default: a ViT-B/32
            `ZooCLIPConfig`.
        class_names (`list[str]`, *optional*):
            The `C` classes the adapter was built on, in label order. Required to build a model.
        class_token_ids (`list[list[int]]`, *optional*):
            Each class name tokenised without special tokens by the tokenizer shipped with the model. Used to map the
            prompts of `pipeline("zero-shot-image-classification")` back to the built classes; `None` disables that.
        shots_per_class (`int`, *optional*, defaults to 1):
            `K`, the few-shot images per class in the cache (paper: 1, 2, 4, 8, 16).
        embed_dim (`int`, *optional*):
            `D`, the width of the joint embedding. Defaults to the encoder's `projection_dim`.
        zero_shot_scale (`float`, *optional*, defaults to 100.0):
            The fixed temperature of the zero-shot term (CLIP's `logit_scale.exp()` = 100; official code: `100.`).
        init_alpha (`float`, *optional*, defaults to 1.0):
            Residual ratio α before the search (Tip-Adapter `init_alpha`; per dataset 1.17–10). Must be >= 0.
        init_beta (`float`, *optional*, defaults to 1.0):
            Sharpness β of the affinity before the search (`init_beta` = 1 for every dataset). Must be > 0.
        cache_key_average (`str`, *optional*, defaults to `"raw"`):
            How `building.build_cache` made the cache keys from the augmented views of each few-shot image (stored
            for provenance; the model uses the keys it holds). `"raw"` (official Tip-Adapter / APE
            `build_cache_model`): the mean of the encoder's raw features over the augmentation epochs, then
            L2-normalised, so views whose features have a larger norm weigh more. `"normalized"`: every view is
            L2-normalised before the mean, so every view weighs the same (for encoders whose feature norm varies a
            lot with the crop). The official order is the default: the published numbers were made with it, and
            the spec (`methods/ape.md`) gives no reason to depart from it.
    """

    model_type = "clipzoo-tip-adapter"
    sub_configs_defaults = {"encoder_config": ZooCLIPConfig}

    encoder_config: dict | PreTrainedConfig | None = None
    class_names: list[str] | None = None
    class_token_ids: list[list[int]] | None = None
    shots_per_class: int = 1
    embed_dim: int | None = None
    zero_shot_scale: float = 100.0
    init_alpha: float = 1.0
    init_beta: float = 1.0
    cache_key_average: str = "raw"

    def __post_init__(self, **kwargs):
        check_extra_keys(type(self), kwargs)
        # Resolved before the parent, which would only know the `model_type`s registered with transformers.
        self.encoder_config = resolve_encoder_config(self.encoder_config)
        try:
            super().__post_init__(**kwargs)
        except StrictDataclassError as error:
            raise ValueError(str(error)) from error
        if self.embed_dim is None:
            self.embed_dim = getattr(self.encoder_config, "projection_dim", None)
            if self.embed_dim is None:
                raise ValueError(
                    f"`embed_dim` is required: the encoder config ({self.encoder_config.model_type}) has no "
                    "`projection_dim`."
                )
        self.validate_fields()

    def validate_fields(self) -> None:
        """Raise a `ValueError` naming the first invalid field."""
        check_fields(self, TIP_ADAPTER_FIELDS)
        if self.class_names is not None:
            if not isinstance(self.class_names, (list, tuple)):
                raise ValueError(f"`class_names` must be a list of strings, got {self.class_names!r}.")
            if len(self.class_names) == 0:
                raise ValueError("`class_names` is empty: an adapter needs at least one class.")
            empty = [name for name in self.class_names if not isinstance(name, str) or not name.strip()]
            if empty:
                raise ValueError(f"`class_names` must be non-empty strings, got {empty!r}.")
            if len(set(self.class_names)) != len(self.class_names):
                duplicates = sorted({name for name in self.class_names if self.class_names.count(name) > 1})
                raise ValueError(f"`class_names` contains duplicates {duplicates}: every class needs its own name.")
            if self.class_token_ids is not None and len(self.class_token_ids) != len(self.class_names):
                raise ValueError(
                    f"`class_token_ids` has {len(self.class_token_ids)} entries for {len(self.class_names)} classes."
                )

    @property
    def num_classes(self) -> int:
        return len(self.class_names or ())


class TipAdapterFConfig(TipAdapterConfig):
    r"""
    Configuration of [`TipAdapterFModel`]: Tip-Adapter whose cache keys are fine-tuned (paper §3.2, "Tip-Adapter-F");
    the values stay one-hot. Same fields as [`TipAdapterConfig`]; trainable parameters = C·K·D.
    """

    model_type = "clipzoo-tip-adapter-f"


class APEConfig(TipAdapterConfig):
    r"""
    Configuration of [`APEModel`] (Zhu et al., *Not All Features Matter: Enhancing Few-shot CLIP with Adaptive Prior
    Refinement*, ICCV 2023, arXiv 2304.01195), training-free APE: Tip-Adapter's cache restricted to `Q` refined
    channels, with cache values re-weighted by the cache→text agreement (trilateral affinities, §3.3).

    Args (besides those of [`TipAdapterConfig`]):
        num_refined_channels (`int`, *optional*, defaults to 16):
            `Q`, the channels kept by the prior refinement (§3.2; RN50 ImageNet 500 of 1024). Must be in [1, D].
        criterion_weight (`float`, *optional*, defaults to 0.7):
            λ in `J = −λ·sim + (1−λ)·var` (official `w_training_free[0]`; ImageNet 0.7, per dataset 0.1–0.9). The
            building code uses it to select the channels; it is stored for provenance. Must be in [0, 1].
        init_gamma (`float`, *optional*, defaults to 0.1):
            γ in `R_F'W' = exp(γ·KL(L ‖ softmax(F'W'ᵀ)))` before the search (official `init_gamma`). Must be >= 0.
    """

    model_type = "clipzoo-ape"

    num_refined_channels: int = 16
    criterion_weight: float = 0.7
    init_gamma: float = 0.1

    def validate_fields(self) -> None:
        super().validate_fields()
        check_fields(self, APE_FIELDS)
        if self.num_refined_channels > self.embed_dim:
            raise ValueError(
                f"`num_refined_channels` (Q) must be in [1, embed_dim={self.embed_dim}], got {self.num_refined_channels}."
            )


class APETConfig(APEConfig):
    r"""
    Configuration of [`APETModel`], APE-T (§3.4): a category residual `R ∈ R^{C×Q}` (zero-init) added to both the
    refined text weights and the refined cache keys of its class, and learnable per-entry cache value weights
    (ones-init) that replace the training-free `R_F'W'`. Trainable parameters = C·Q + C·K. γ is not used.

    The paper and the official code differ (spec §4.4, APE issue #15); both are available:

    Args (besides those of [`APEConfig`]; `criterion_weight` defaults to the official `w_training` 0.2):
        channel_mode (`str`, *optional*, defaults to `"extract"`):
            `"extract"` (paper): the cache term compares the Q refined channels only, `f'` against `F' + R` (so a
            freshly built APE-T equals APE with γ = 0); the residual also moves the Q channels of the full-width text
            weights of the zero-shot term. `"modify"` (official code): the residual is written into the Q channels of
            the full-width keys and text weights, and both terms use all D channels.
        renormalize (`bool`, *optional*, defaults to `True`):
            L2-normalise the keys and text weights again after adding the residual (the official code does not).
    """

    model_type = "clipzoo-ape-t"

    criterion_weight: float = 0.2
    init_gamma: float = 0.0
    channel_mode: str = "extract"
    renormalize: bool = True

    def validate_fields(self) -> None:
        super().validate_fields()
        check_fields(self, APE_T_FIELDS)


__all__ = [
    "APE_FIELDS",
    "APE_T_FIELDS",
    "TIP_ADAPTER_FIELDS",
    "APEConfig",
    "APETConfig",
    "APE_T_CHANNEL_MODES",
    "CACHE_KEY_AVERAGES",
    "KNOWN_ENCODER_CONFIGS",
    "TipAdapterConfig",
    "TipAdapterFConfig",
    "resolve_encoder_config",
]
