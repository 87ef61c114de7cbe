"""Configuration of MA-CLIP (Xing et al., *Multimodal Adaptation of CLIP for Few-Shot Action Recognition*,
arXiv 2308.01532; v2 "MA-FSAR", Pattern Recognition 2025).

No official code exists (spec `methods/ma_clip.md` §2), and several details are unverified; every such detail is a
field below, documented with its default and where it comes from.
"""

from __future__ import annotations

from huggingface_hub.errors import StrictDataclassError
from transformers import PreTrainedConfig

from ...validation import (
    BOOLEAN,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    ListOf,
    Number,
    OneOf,
    Text,
    check_extra_keys,
    check_fields,
)
from ..clip.configuration_clip import ZooCLIPConfig

MULTIMODAL_MODES = ("parallel", "replace")
PROTOTYPE_TEXT_FUSIONS = ("concat", "cross_attention")
PEFT_METHODS = ("adapters", "lora")
MIN_FRAMES = 2
MA_CLIP_FIELDS = {
    # At least 2: the temporal adapter attends across frames.
    "num_frames": Number(int, minimum=MIN_FRAMES),
    "adapter_ratio": POSITIVE,
    "adapter_scale": NON_NEGATIVE,
    "use_temporal_adapter": BOOLEAN,
    "use_multimodal_adapter": BOOLEAN,
    "use_joint_adapter": BOOLEAN,
    "use_text_in_support": BOOLEAN,
    "multimodal_mode": OneOf(MULTIMODAL_MODES),
    "multimodal_adapter_skip": BOOLEAN,
    "temporal_adapter_skip": BOOLEAN,
    "use_temporal_embedding": BOOLEAN,
    "prototype_num_layers": POSITIVE_INT,
    "prototype_num_heads": Number(int, minimum=1, optional=True),
    "prototype_text_fusion": OneOf(PROTOTYPE_TEXT_FUSIONS),
    "prototype_zero_init": BOOLEAN,
    "loss_alpha": PROBABILITY,
    "text_logit_scale": Number(float, minimum=0, exclusive_minimum=True, optional=True),
    "otam_lambda": POSITIVE,
    "otam_bidirectional": BOOLEAN,
    "otam_logit_scale": POSITIVE,
    "peft_method": OneOf(PEFT_METHODS),
    "lora_rank": POSITIVE_INT,
    "lora_target_modules": ListOf(Text(non_empty=True), min_length=1),
}


class MACLIPConfig(PreTrainedConfig):
    r"""
    Configuration of [`MACLIPModel`]: a frozen CLIP (`clip_config`, a [`ZooCLIPConfig`]) whose vision blocks each get
    three AIM-style bottleneck adapters (`Linear(D, r·D) → GELU → Linear(r·D, D)`, up-projection zero-initialised),
    a text-guided prototype construction module (TPCM) and OTAM matching.

    Args:
        clip_config (`dict` or `ZooCLIPConfig`, *optional*):
            The frozen CLIP towers (`text_config`, `vision_config`, `projection_dim`, `logit_scale`). Default: a ViT-B/32
            `ZooCLIPConfig` (the paper uses ViT-B/16: `ZooCLIPConfig.from_preset("vit-b-16")`).
        num_frames (`int`, *optional*, defaults to 8):
            `T`, frames per video (paper §4.1: 8). Videos must have exactly `T` frames (the temporal embedding has `T`
            rows); at least 2 (the temporal adapter attends across frames).
        adapter_ratio (`float`, *optional*, defaults to 0.25):
            Bottleneck width as a fraction of the vision width (AIM `mlp_ratio=0.25`: 192 for ViT-B). A ratio giving a
            zero-width bottleneck (`int(ratio · D) == 0`) is rejected.
        adapter_scale (`float`, *optional*, defaults to 0.5):
            `s` in the joint adaptation `x + MLP(ln_2 x) + s · MLP_Adapter(ln_2 x)` (AIM `adapter_scale`).
        use_temporal_adapter (`bool`, *optional*, defaults to `True`):
            Temporal adaptation (v2 "Global Temporal Adaptation"): the frames' class tokens `[B, T, D]` go through the
            block's **frozen** attention along time, then an adapter **without skip** (spec §2.1, item 1).
        use_multimodal_adapter (`bool`, *optional*, defaults to `True`):
            Multimodal adaptation (v2 "Local Multimodal Adaptation"): spatial attention over a frame's tokens plus the
            support's class-text token; the extra token is dropped after the attention, then an adapter (item 2).
        use_joint_adapter (`bool`, *optional*, defaults to `True`):
            Joint adaptation: a parallel adapter on the block's MLP, scaled by `adapter_scale`, no skip (item 3).
        use_text_in_support (`bool`, *optional*, defaults to `True`):
            Whether support videos' class-text tokens join the multimodal attention (v2: only supports have text;
            queries never do). With `False` the multimodal adapter sees frame tokens only.
        multimodal_mode (`str`, *optional*, defaults to `"parallel"`):
            How the text-joined attention enters the block (unverified in the paper):
            `"parallel"`: the frozen spatial attention is kept as it is and the adapter adds
            `MM_Adapter(attn(ln_1([x; t]))[:N+1])` next to it, so a freshly built model equals the frozen CLIP for
            supports *and* queries (acceptance: zero-init identity).
            `"replace"`: AIM's literal wiring `x + S_Adapter(attn(ln_1([x; t]))[:N+1])` with the skip inside the
            adapter; the text token then changes support features already at initialisation.
        multimodal_adapter_skip (`bool`, *optional*, defaults to `True`):
            Only for `"replace"`: AIM's `S_Adapter` skip (`h + adapter(h)`). Without it the frozen attention output is
            replaced by the adapter's (which starts at zero).
        temporal_adapter_skip (`bool`, *optional*, defaults to `False`):
            Add a skip to the temporal adapter (`h + adapter(h)`); the paper has none, so the branch is zero at init.
            With a skip the model no longer equals the frozen CLIP at initialisation.
        use_temporal_embedding (`bool`, *optional*, defaults to `True`):
            AIM's zero-initialised learnable `temporal_embedding [1, T, D]` added to every token of frame `t` after the
            patch + position embedding. MA-CLIP says its adapters follow AIM; unverified whether it keeps this.
        prototype_num_layers (`int`, *optional*, defaults to 1):
            Layers of the TPCM transformer (CLIP-FSAR's `Transformer_v1` baseline: 1 layer).
        prototype_num_heads (`int`, *optional*):
            Heads of the TPCM attention; must divide `projection_dim`. Default: the text tower's head count if it
            divides, else the largest of 8, 4, 2, 1 that does.
        prototype_text_fusion (`str`, *optional*, defaults to `"concat"`):
            How the support's class text enters the TPCM (unverified): `"concat"` (CLIP-FSAR style: self-attention over
            `[frames; text]`, the text token dropped afterwards) or `"cross_attention"` (self-attention over the
            frames, then frames cross-attend to the text token). Queries go through the same module without text.
        prototype_zero_init (`bool`, *optional*, defaults to `True`):
            Zero-initialise the output projections of the TPCM's residual branches and its position embedding, so
            prototypes start as the frozen CLIP frame features (mean over shots). `False`: Xavier / normal(0.02) init.
        loss_alpha (`float`, *optional*, defaults to 0.5):
            α in `L = α·½(L_S2T + L_Q2T) + (1−α)·L_Q2S` and in the fusion `p = α·p_Q2T + (1−α)·p_Q2S` (paper Eq.;
            the value is unverified). In [0, 1].
        text_logit_scale (`float`, *optional*):
            Temperature of the video-text logits. `None` uses the frozen CLIP's `logit_scale.exp()` (100 for OpenAI
            CLIP); ActionCLIP's KL loss is unverified here, and with one text per class a KL divergence to one-hot
            targets equals the cross-entropy used.
        otam_lambda (`float`, *optional*, defaults to 0.5):
            Soft-min temperature λ of OTAM (CLIP-FSAR's `OTAM_cum_dist_v2`). > 0.
        otam_bidirectional (`bool`, *optional*, defaults to `True`):
            Sum of both alignment directions (CLIP-FSAR's default).
        otam_logit_scale (`float`, *optional*, defaults to 1.0):
            The query→support logits are `−otam_logit_scale · distance` (CLIP-FSAR: 1, the raw negative distance).
        peft_method (`str`, *optional*, defaults to `"adapters"`):
            What `ma_clip_peft_config` trains through PEFT. `"adapters"`: the MA-CLIP adapters, the text→vision
            projection and the TPCM are PEFT `modules_to_save` of a `LoraConfig`; PEFT 0.21 refuses a config that
            targets no module and cannot register new tuner types without editing its `PeftType` enum, so the LoRA part
            is a rank-1 *anchor* on the frozen `visual_projection` whose B matrix is zero and stays frozen (an exact
            identity, a few hundred bytes). `"lora"`: the comparison baseline, LoRA (rank `lora_rank`) on the vision
            attention projections `lora_target_modules`, with no MA-CLIP adapters built (all `use_*_adapter` must then
            be False) and the TPCM saved alongside.
        lora_rank (`int`, *optional*, defaults to 8):
            Rank of the LoRA baseline (`peft_method="lora"`).
        lora_target_modules (`list[str]`, *optional*, defaults to `["q_proj", "v_proj"]`):
            Module names of the vision encoder that the LoRA baseline adapts.

    Example:

    ```python
    >>> from hf_clipzoo.models.clip import ZooCLIPConfig
    >>> from hf_clipzoo.models.ma_clip import MACLIPConfig, MACLIPModel
    >>> config = MACLIPConfig(clip_config=ZooCLIPConfig.from_preset("world-micro"), num_frames=8)
    >>> model = MACLIPModel(config)
    ```
    """

    model_type = "clipzoo-ma-clip"
    sub_configs = {"clip_config": ZooCLIPConfig}

    clip_config: dict | ZooCLIPConfig | None = None
    num_frames: int = 8
    adapter_ratio: float = 0.25
    adapter_scale: float = 0.5
    use_temporal_adapter: bool = True
    use_multimodal_adapter: bool = True
    use_joint_adapter: bool = True
    use_text_in_support: bool = True
    multimodal_mode: str = "parallel"
    multimodal_adapter_skip: bool = True
    temporal_adapter_skip: bool = False
    use_temporal_embedding: bool = True
    prototype_num_layers: int = 1
    prototype_num_heads: int | None = None
    prototype_text_fusion: str = "concat"
    prototype_zero_init: bool = True
    loss_alpha: float = 0.5
    text_logit_scale: float | None = None
    otam_lambda: float = 0.5
    otam_bidirectional: bool = True
    otam_logit_scale: float = 1.0
    peft_method: str = "adapters"
    lora_rank: int = 8
    lora_target_modules: list[str] | None = None

    def __post_init__(self, **kwargs):
        check_extra_keys(type(self), kwargs)
        if self.clip_config is None:
            self.clip_config = ZooCLIPConfig()
        elif isinstance(self.clip_config, dict):
            clip_kwargs = {k: v for k, v in self.clip_config.items() if k != "model_type"}
            self.clip_config = ZooCLIPConfig(**clip_kwargs)
        elif not isinstance(self.clip_config, ZooCLIPConfig):
            raise ValueError(
                f"`clip_config` must be a ZooCLIPConfig or a dict of its fields, got {type(self.clip_config).__name__}."
            )
        if self.lora_target_modules is None:
            self.lora_target_modules = ["q_proj", "v_proj"]
        try:
            super().__post_init__(**kwargs)
        except StrictDataclassError as error:
            raise ValueError(str(error)) from error
        self.validate_fields()

    @property
    def vision_width(self) -> int:
        return self.clip_config.vision_config.hidden_size

    @property
    def projection_dim(self) -> int:
        return self.clip_config.projection_dim

    @property
    def bottleneck_width(self) -> int:
        return int(self.adapter_ratio * self.vision_width)

    @property
    def any_adapter(self) -> bool:
        return self.use_temporal_adapter or self.use_multimodal_adapter or self.use_joint_adapter

    def resolved_prototype_num_heads(self) -> int:
        if self.prototype_num_heads is not None:
            return self.prototype_num_heads
        text_heads = self.clip_config.text_config.num_attention_heads
        for heads in (text_heads, 8, 4, 2, 1):
            if self.projection_dim % heads == 0:
                return heads
        return 1

    def validate_fields(self) -> None:
        """Raise a `ValueError` naming the first invalid field."""
        check_fields(self, MA_CLIP_FIELDS)
        if self.bottleneck_width < 1:
            raise ValueError(
                f"`adapter_ratio`={self.adapter_ratio} gives a zero-width bottleneck for vision width "
                f"{self.vision_width} (int(ratio * width) = 0); use a ratio >= {1 / self.vision_width:.4g}."
            )
        heads = self.resolved_prototype_num_heads()
        if self.projection_dim % heads != 0:
            raise ValueError(f"`prototype_num_heads` ({heads}) must divide `projection_dim` ({self.projection_dim}).")
        if self.peft_method == "lora" and self.any_adapter:
            raise ValueError(
                "`peft_method='lora'` is the LoRA baseline without MA-CLIP adapters: set use_temporal_adapter, "
                "use_multimodal_adapter and use_joint_adapter to False."
            )


__all__ = [
    "MA_CLIP_FIELDS",
    "MACLIPConfig",
    "MIN_FRAMES",
    "MULTIMODAL_MODES",
    "PEFT_METHODS",
    "PROTOTYPE_TEXT_FUSIONS",
]
