"""Configuration of CLIP-FSAR (Wang et al., *CLIP-guided Prototype Modulating for Few-shot Action Recognition*, IJCV 2023,
arXiv 2303.02982).

`CLIPFSARConfig` *is* a `ZooCLIPConfig` (same `text_config` / `vision_config` / `projection_dim`, so a baseline
zoo CLIP folder or a converted OpenAI CLIP loads into `CLIPFSARModel` with the towers' keys unchanged) plus the
fields of the method: the temporal transformer that modulates prototypes, the OTAM matching and the video-text loss.
The CLIP-only fields (`loss_type`, `logit_scale_init_value`, ...) are inherited for loading compatibility and unused.
"""

from __future__ import annotations

from ...validation import BOOLEAN, DROPOUT, NON_NEGATIVE, POSITIVE, POSITIVE_INT, check_fields
from ..clip.configuration_clip import CLIP_PRESETS, ZooCLIPConfig

# "world-*" presets are tiny: the official 2048-wide FFN (sized for D = 512 / 1024) would dwarf the towers, so
# `from_preset` scales it to 4 * projection_dim there (the usual transformer ratio) unless given explicitly.
TINY_PRESET_PREFIX = "world-"
CLIP_FSAR_FIELDS = {
    "num_frames": POSITIVE_INT,
    "temporal_heads": POSITIVE_INT,
    "temporal_mlp_dim": POSITIVE_INT,
    "temporal_depth": POSITIVE_INT,
    "attention_dropout": DROPOUT,
    "ffn_dropout": DROPOUT,
    "otam_lambda": POSITIVE,
    "bidirectional_otam": BOOLEAN,
    "cos_eps": NON_NEGATIVE,
    "text_loss_weight": NON_NEGATIVE,
    "video_text_scale_init_value": POSITIVE,
    "merge_before": BOOLEAN,
    "use_text": BOOLEAN,
    "freeze_text_model": BOOLEAN,
}


class CLIPFSARConfig(ZooCLIPConfig):
    r"""
    Configuration of [`CLIPFSARModel`]. Every field below lists its default and where it comes from (spec =
    `methods/clip_fsar.md` §1, official code = `alibaba-mmai-research/CLIP-FSAR:models/base/few_shot.py`).

    Args (besides the CLIP towers of [`ZooCLIPConfig`]: `text_config`, `vision_config`, `projection_dim`):
        num_frames (`int`, *optional*, defaults to 8):
            T, frames per video (`NUM_INPUT_FRAMES: 8`, spec §1.3). Inputs must have exactly T frames.
        temporal_heads (`int`, *optional*, defaults to 8):
            Heads of the temporal transformer (`Transformer_v1(heads=8)`, spec §1.2 step 3); must divide
            `projection_dim` (head width = D / heads, as `dim_head_k = D // 8`).
        temporal_mlp_dim (`int`, *optional*, defaults to 2048):
            Hidden width of its feed-forward block (`mlp_dim=2048`). `from_preset("world-*")` uses 4 · D instead.
        temporal_depth (`int`, *optional*, defaults to 1):
            Number of `[attention, FFN]` layers (`depth=1` in the paper).
        attention_dropout (`float`, *optional*, defaults to 0.2):
            Dropout after the attention output projection (`dropout_atte=0.2`).
        ffn_dropout (`float`, *optional*, defaults to 0.05):
            Dropout inside and after the FFN (`dropout_ffn=0.05`).
        otam_lambda (`float`, *optional*, defaults to 0.5):
            Soft-min temperature λ of OTAM (`OTAM_cum_dist_v2`, spec §1.2 step 4; the plain OTAM head uses 0.1).
        bidirectional_otam (`bool`, *optional*, defaults to `True`):
            Distance = OTAM(D) + OTAM(Dᵀ) (official default; `False` = `TRAIN.SINGLE_DIRECT`).
        cos_eps (`float`, *optional*, defaults to 0.01):
            ε of the official `cos_sim(x, y) = x·y / (‖x‖‖y‖ + ε)`, used both for frame distances and the video-text
            logits (spec §1.2 step 2).
        text_loss_weight (`float`, *optional*, defaults to 3.0):
            w in `loss = CE(−OTAM) + w · CE(video-text)` (`USE_CLASSIFICATION_VALUE`, spec §1.2 step 5). The default
            is the SSv2 value (3.0): the embedded world's action classes, like SSv2's, depend on temporal order.
            Kinetics / UCF use 1.5, HMDB 1.2. Must be >= 0.
        video_text_scale_init_value (`float`, *optional*, defaults to 1.0):
            Initial value of the learnable *linear* scale of the video-text logits (official `scale`, initialised to
            1.0, not CLIP's 100). Must be > 0.
        merge_before (`bool`, *optional*, defaults to `True`):
            For K > 1 shots, average each class's support frames and text tokens *before* the temporal transformer,
            so it sees one `[T+1, D]` sequence per class (`MERGE_BEFORE: true` in every released 5-shot config);
            `False` averages the K modulated supports after it. No effect for K = 1 (training is always 1-shot).
        use_text (`bool`, *optional*, defaults to `True`):
            `False` gives the "OTAM without text" baseline: no class-text token in the prototypes, no video-text loss
            and no video-text scale parameter (the temporal transformer is still applied, to supports and queries
            alike).
        freeze_text_model (`bool`, *optional*, defaults to `True`):
            Keep the CLIP text tower and `text_projection` frozen (the official code computes text features once
            under `no_grad`). The tower stays part of the saved model, so a loaded model can embed new class names.
    """

    model_type = "clipzoo-clip-fsar"

    num_frames: int = 8
    temporal_heads: int = 8
    temporal_mlp_dim: int = 2048
    temporal_depth: int = 1
    attention_dropout: float = 0.2
    ffn_dropout: float = 0.05
    otam_lambda: float = 0.5
    bidirectional_otam: bool = True
    cos_eps: float = 0.01
    text_loss_weight: float = 3.0
    video_text_scale_init_value: float = 1.0
    merge_before: bool = True
    use_text: bool = True
    freeze_text_model: bool = True

    def __post_init__(self, **kwargs):
        # Plain ValueErrors naming the field, checked before the towers' own validation.
        check_fields(self, CLIP_FSAR_FIELDS)
        super().__post_init__(**kwargs)
        if self.projection_dim % self.temporal_heads != 0:
            raise ValueError(
                f"`temporal_heads` ({self.temporal_heads}) must divide `projection_dim` ({self.projection_dim}): "
                "the temporal transformer splits the D-wide frame features into heads of width D / heads."
            )

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> CLIPFSARConfig:
        """A config from `CLIP_PRESETS`; for the tiny `world-*` presets the FFN width defaults to 4 · projection_dim."""
        presets = CLIP_PRESETS
        if name not in presets:
            raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(presets)}.")
        if name.startswith(TINY_PRESET_PREFIX) and "temporal_mlp_dim" not in kwargs:
            projection_dim = kwargs.get("projection_dim", presets[name]["projection_dim"])
            kwargs["temporal_mlp_dim"] = 4 * projection_dim
        return super().from_preset(name, **kwargs)


__all__ = ["CLIP_FSAR_FIELDS", "CLIPFSARConfig"]
