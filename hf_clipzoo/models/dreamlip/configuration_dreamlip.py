"""Configuration of DreamLIP (Zheng et al., ECCV 2024, arXiv 2403.17007)."""

import math

from ...losses.grouping import CONTRASTIVE_MODES, GROUPING_NEGATIVES, GROUPING_NORMS
from ...validation import BOOLEAN, FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Number, OneOf, check_fields
from ..clip.configuration_clip import ZooCLIPConfig

PATCH_TOKEN_MODES = ("projected", "unprojected")
LOCAL_LOGIT_SCALE_MODES = ("learned", "shared")
DREAMLIP_FIELDS = {
    "contrastive_mode": OneOf(CONTRASTIVE_MODES),
    "contrastive_loss_weight": NON_NEGATIVE,
    "grouping_loss_weight": NON_NEGATIVE,
    "circle_loss_weight": NON_NEGATIVE,
    "circle_loss_gamma": POSITIVE,
    "circle_loss_margin": FINITE,
    "grouping_norm": OneOf(GROUPING_NORMS),
    # Negative means 1 / num_patches (see the docstring).
    "grouping_threshold": Number(float, maximum=1),
    "grouping_negatives": OneOf(GROUPING_NEGATIVES),
    "patch_tokens": OneOf(PATCH_TOKEN_MODES),
    "local_logit_scale": OneOf(LOCAL_LOGIT_SCALE_MODES),
    "local_logit_scale_init_value": FINITE,
    "text_position_interpolation": BOOLEAN,
    "max_text_length": POSITIVE_INT,
}


class DreamLIPConfig(ZooCLIPConfig):
    r"""
    Configuration of [`DreamLIPModel`]: the zoo's CLIP dual encoder (all of [`ZooCLIPConfig`]'s fields, same towers,
    same `CLIPModel` key layout) trained on long captions with DreamLIP's two losses. Every field below is a choice
    the paper or the released code makes; where the released code has a gap (listed in the project's
    `methods/dreamlip.md`), the default is the choice that makes the method work, and the code's behaviour is an option.

    Args:
        contrastive_mode (`str`, *optional*, defaults to `"per_slot"`):
            The multi-positive contrastive loss over the 1 + K caption slots (§3.2). `"per_slot"`: the released
            code's `CLIP_loss + (De)CLIP_loss`, CLIP's InfoNCE per caption slot averaged over slots. `"soft_target"`:
            each image against all B·(1+K) captions with its own as soft positives
            (`hf_clipzoo.losses.multi_positive_contrastive_loss`).
        contrastive_loss_weight (`float`, *optional*, defaults to 1.0):
            λ of the contrastive loss (released code: `--clip_lossweight 1`).
        grouping_loss_weight (`float`, *optional*, defaults to 1.0):
            λ of the subcaption-specific grouping loss (§3.3; released code: `--sgl_lossweight 1`). 0 disables it.
        circle_loss_weight (`float`, *optional*, defaults to 0.0):
            λ of the released code's optional `--use_multipos_loss` term (`I2mT_loss`): a pair-wise circle loss from
            every image to all B·(1+K) captions of the global batch, its own 1 + K captions the positives
            (`hf_clipzoo.losses.grouping.multi_caption_circle_loss`). Off by default: the paper does not use it and
            the released scripts do not turn it on. The released code adds the circle loss divided by 10, so
            `circle_loss_weight=0.1` reproduces `--use_multipos_loss`.
        circle_loss_gamma (`float`, *optional*, defaults to 32.0):
            The circle loss's scale γ (released `--gamma 32`). Must be > 0.
        circle_loss_margin (`float`, *optional*, defaults to 0.25):
            The circle loss's relaxation margin m (released `--margin 0.25`): positives are pushed above 1 − m,
            negatives below m. Must be finite.
        grouping_norm (`str`, *optional*, defaults to `"minmax"`):
            How caption–patch similarities become weights: `"minmax"` over each image's patches (paper and code) or
            `"softmax"` (code option `--sgl_norm`).
        grouping_threshold (`float`, *optional*, defaults to 0.0):
            σ: normalised similarities below it are dropped before renormalising (released `--sgl_delta` default 0,
            which drops only the least similar patch). Negative: `1 / num_patches`. Must be <= 1.
        grouping_negatives (`str`, *optional*, defaults to `"batch"`):
            The denominator of the grouping loss. `"batch"` (released code): every (subcaption, grouped patches) pair
            of the *global* batch is a negative of the others, B·(1+K) candidates. `"image"` (the paper's formula):
            only the 1 + K subcaptions of the same image compete. The min-max normalisation itself is always per
            (image, subcaption) over that image's patches, in the paper and in the code. We keep the code's
            batch-wide denominator as default: with it the grouped embeddings must also be distinguishable across
            images, and it is the variant the released weights were trained with.
        patch_tokens (`str`, *optional*, defaults to `"projected"`):
            The patch embeddings the grouping loss uses. `"projected"`: the vision tower's patch tokens after its
            final layer norm *and* the visual projection, in the joint space of the captions (what the released code
            needs but omits, `#@ self.proj2`). `"unprojected"`: after the layer norm only, as the released code
            returns them; only possible when `vision_config.hidden_size == projection_dim`.
        local_logit_scale (`str`, *optional*, defaults to `"learned"`):
            Temperature of the grouping loss. `"learned"`: its own parameter `logit_scale_local` (the released code
            declares it but leaves it commented out, `None`). `"shared"`: reuse the global `logit_scale` (no extra
            parameter, e.g. to load a released checkpoint strictly).
        local_logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial log of the local temperature, `ln(1/0.07)` like CLIP's.
        text_position_interpolation (`bool`, *optional*, defaults to `False`):
            Accept captions longer than the text tower's `max_position_embeddings` (77): a caption of length
            L > 77 reads its position embeddings at the fractional positions `p·76/(L−1)` of the learned table,
            linearly interpolated (position interpolation). Captions of at most 77 tokens use the table unchanged,
            so they give *exactly* the same embeddings as with the option off; no parameter is added, so any CLIP
            checkpoint loads. The tokenizer must then truncate at `max_text_length`, not 77.
        max_text_length (`int`, *optional*, defaults to 248):
            Longest caption (tokens) accepted with `text_position_interpolation` (Long-CLIP's 248).

    Example:

    ```python
    >>> from hf_clipzoo.models.dreamlip import DreamLIPConfig, DreamLIPModel
    >>> model = DreamLIPModel(DreamLIPConfig.from_preset("world-tiny", grouping_negatives="image"))
    ```
    """

    model_type = "clipzoo-dreamlip"

    contrastive_mode: str = "per_slot"
    contrastive_loss_weight: float = 1.0
    grouping_loss_weight: float = 1.0
    circle_loss_weight: float = 0.0
    circle_loss_gamma: float = 32.0
    circle_loss_margin: float = 0.25
    grouping_norm: str = "minmax"
    grouping_threshold: float = 0.0
    grouping_negatives: str = "batch"
    patch_tokens: str = "projected"
    local_logit_scale: str = "learned"
    local_logit_scale_init_value: float = math.log(1 / 0.07)
    text_position_interpolation: bool = False
    max_text_length: int = 248

    def __post_init__(self, **kwargs):
        check_fields(self, DREAMLIP_FIELDS)
        if self.contrastive_loss_weight == 0 and self.grouping_loss_weight == 0 and self.circle_loss_weight == 0:
            raise ValueError(
                "`contrastive_loss_weight`, `grouping_loss_weight` and `circle_loss_weight` are all 0: there is no loss."
            )
        if self.loss_type != "softmax":
            raise ValueError(
                f"DreamLIP's losses are softmax InfoNCE losses: `loss_type` must be 'softmax', got {self.loss_type!r}."
            )
        super().__post_init__(**kwargs)
        max_positions = self.text_config.max_position_embeddings
        if self.text_position_interpolation and self.max_text_length < max_positions:
            raise ValueError(
                f"`max_text_length` ({self.max_text_length}) must be >= text_config.max_position_embeddings "
                f"({max_positions}) with `text_position_interpolation`."
            )
        if self.patch_tokens == "unprojected" and self.vision_config.hidden_size != self.projection_dim:
            raise ValueError(
                f"`patch_tokens='unprojected'` compares patch tokens of width vision_config.hidden_size "
                f"({self.vision_config.hidden_size}) with captions of width projection_dim ({self.projection_dim}); "
                "they must be equal (the released ViT-B/16 has 768 vs 512, hence `patch_tokens='projected'`)."
            )


__all__ = ["DREAMLIP_FIELDS", "LOCAL_LOGIT_SCALE_MODES", "PATCH_TOKEN_MODES", "DreamLIPConfig"]
