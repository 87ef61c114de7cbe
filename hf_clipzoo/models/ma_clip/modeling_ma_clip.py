"""MA-CLIP: a frozen CLIP ViT with temporal, multimodal and joint adapters for few-shot action recognition.

Paper: Xing, Wang, Hou, Dai, Wang, Liu, *Multimodal Adaptation of CLIP for Few-Shot Action Recognition*
(arXiv 2308.01532, v1 "MA-CLIP"; v2 "MA-FSAR", Pattern Recognition 2025).
Official repository: none was found (spec `methods/ma_clip.md` §2), so there is no official code or license to
follow; this re-implementation is Apache-2.0 like the rest of hf-clipzoo. The adapter unit follows AIM's official
code (https://github.com/taoyang1122/adapt-image-models, Apache-2.0): `Linear(D, r·D) → GELU → Linear(r·D, D)` with
the up-projection zero-initialised. OTAM and the prototype construction follow CLIP-FSAR
(https://github.com/alibaba-mmai-research/CLIP-FSAR, no license file); OTAM is the shared
`hf_clipzoo.eval.few_shot.otam_distance`.

Per vision block of the frozen CLIP (tokens `x [B·T, N+1, D]`):
1. temporal: `x[:, 0] += T_Adapter(attn(ln_1(cls [B, T, D])))` along time with the block's frozen attention, no skip;
2. multimodal: `h = attn(ln_1([x; t]))[:, :N+1]` where `t` is the support's class-text token (text feature mapped to
   the vision width by a trainable linear layer); queries have no text, `h = attn(ln_1(x))`.
   `"parallel"` (default): `x += attn(ln_1(x)) + MM_Adapter(h)`; `"replace"` (AIM literal): `x += h + MM_Adapter(h)`;
3. joint: `x += MLP(ln_2(x)) + s · J_Adapter(ln_2(x))`, s = 0.5.
Frame features are the projected class tokens `[B, T, P]`. The TPCM (a small transformer over `[frames; text]` for
supports, frames only for queries) builds prototypes (mean over shots); queries are matched to them with OTAM.
`L = α·½(CE(S→T) + CE(Q→T)) + (1−α)·CE(Q→S)` and `p = α·softmax(Q→T) + (1−α)·softmax(Q→S)`.

What differs from the paper (whose details are unverified, see the spec) — each is a config option:
- the multimodal wiring defaults to `"parallel"`, which keeps the frozen attention path so that a fresh model equals
  the frozen CLIP also for text-conditioned supports; AIM's literal wiring is `multimodal_mode="replace"`;
- the video-text loss is the cross-entropy of scaled cosine logits (equal to ActionCLIP's KL divergence to one-hot
  targets when every class has one text);
- AIM's zero-initialised temporal embedding is kept (`use_temporal_embedding`);
- the TPCM's residual branches are zero-initialised (`prototype_zero_init`), so prototypes start at the frozen
  features; its text fusion is `"concat"` (CLIP-FSAR-like) or `"cross_attention"`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...eval.few_shot import cosine_frame_distances, otam_distance
from ...hub.export import RemoteCodeModelMixin
from ..clip.modeling_clip import ZooCLIPModel, check_input_ids
from .configuration_ma_clip import MIN_FRAMES, MACLIPConfig


@dataclass
class MACLIPOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `return_loss=True`):
        `α·½(L_S2T + L_Q2T) + (1−α)·L_Q2S`.
    probs (`torch.FloatTensor` of shape `(num_queries, way)`):
        The fused prediction `p = α·softmax(logits_query_text) + (1−α)·softmax(logits_query_support)`.
    logits_query_support (`torch.FloatTensor` of shape `(num_queries, way)`):
        `−otam_logit_scale · OTAM(query, prototype)`.
    logits_query_text (`torch.FloatTensor` of shape `(num_queries, way)`):
        Scaled cosine similarity of the queries' mean frame feature with the class texts.
    logits_support_text (`torch.FloatTensor` of shape `(num_supports, way)`):
        Same for the supports.
    query_embeds (`torch.FloatTensor` of shape `(num_queries, T, projection_dim)`):
        Query frame features after the TPCM.
    prototype_embeds (`torch.FloatTensor` of shape `(way, T, projection_dim)`):
        Class prototypes (TPCM output of the supports, mean over shots).
    text_embeds (`torch.FloatTensor` of shape `(way, projection_dim)`):
        L2-normalised class text embeddings of the frozen text tower.
    """

    loss: torch.FloatTensor | None = None
    probs: torch.FloatTensor | None = None
    logits_query_support: torch.FloatTensor | None = None
    logits_query_text: torch.FloatTensor | None = None
    logits_support_text: torch.FloatTensor | None = None
    query_embeds: torch.FloatTensor | None = None
    prototype_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


class MACLIPAdapter(nn.Module):
    """AIM's bottleneck adapter `up(GELU(down(x)))`, plus `x` when `skip`; `up` is zero-initialised."""

    def __init__(self, width: int, bottleneck: int, skip: bool):
        super().__init__()
        self.skip = skip
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.up(F.gelu(self.down(hidden_states)))
        return hidden_states + out if self.skip else out


class MACLIPBlockAdapters(GradientCheckpointingLayer):
    """The adapters of one vision block; `forward` runs the whole adapted block around the frozen CLIP layer.

    The frozen layer is passed in rather than owned, so its weights keep their CLIP names (`clip.vision_model...`) and
    appear once in the state dict.
    """

    def __init__(self, config: MACLIPConfig):
        super().__init__()
        width, bottleneck = config.vision_width, config.bottleneck_width
        self.config = config
        self.temporal_adapter = (
            MACLIPAdapter(width, bottleneck, config.temporal_adapter_skip) if config.use_temporal_adapter else None
        )
        mm_skip = config.multimodal_mode == "replace" and config.multimodal_adapter_skip
        self.multimodal_adapter = MACLIPAdapter(width, bottleneck, mm_skip) if config.use_multimodal_adapter else None
        self.joint_adapter = MACLIPAdapter(width, bottleneck, False) if config.use_joint_adapter else None

    def forward(self, hidden_states, text_tokens, layer, num_frames: int):
        # hidden_states [B·T, N+1, D] (frame-major inside a video); text_tokens [B·T, 1, D] or None.
        config = self.config
        attn, ln_1 = layer.self_attn, layer.layer_norm1
        if self.temporal_adapter is not None:
            cls = hidden_states[:, 0].reshape(-1, num_frames, hidden_states.shape[-1])  # [B, T, D]
            temporal = self.temporal_adapter(attn(ln_1(cls))[0]).reshape(-1, hidden_states.shape[-1])
            hidden_states = torch.cat([(hidden_states[:, 0] + temporal)[:, None], hidden_states[:, 1:]], dim=1)

        num_tokens = hidden_states.shape[1]
        if self.multimodal_adapter is None:
            hidden_states = hidden_states + attn(ln_1(hidden_states))[0]
        else:
            if text_tokens is not None:
                joined = attn(ln_1(torch.cat([hidden_states, text_tokens], dim=1)))[0][:, :num_tokens]
            if config.multimodal_mode == "parallel":
                frozen = attn(ln_1(hidden_states))[0]
                mm_input = joined if text_tokens is not None else frozen
                hidden_states = hidden_states + frozen + self.multimodal_adapter(mm_input)
            else:
                mm_input = joined if text_tokens is not None else attn(ln_1(hidden_states))[0]
                hidden_states = hidden_states + self.multimodal_adapter(mm_input)

        normed = layer.layer_norm2(hidden_states)
        out = hidden_states + layer.mlp(normed)
        if self.joint_adapter is not None:
            out = out + config.adapter_scale * self.joint_adapter(normed)
        return out


class MACLIPTemporalEmbedding(nn.Module):
    """AIM's learnable `temporal_embedding [1, T, 1, D]` (zero-init), added to every token of frame `t`.

    A module rather than a bare parameter so that PEFT can list it in `modules_to_save`.
    """

    def __init__(self, num_frames: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, num_frames, 1, width))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # hidden_states [B, T, N+1, D]
        return hidden_states + self.weight


class MACLIPAttention(nn.Module):
    """Multi-head attention of the TPCM; `out_proj` is zero-initialised with `prototype_zero_init`."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        batch, width = queries.shape[0], queries.shape[-1]

        def heads(x):
            return x.reshape(batch, x.shape[1], self.num_heads, width // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.q_proj(queries)), heads(self.k_proj(keys)), heads(self.v_proj(keys))
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, queries.shape[1], width))


class MACLIPPrototypeLayer(nn.Module):
    def __init__(self, width: int, num_heads: int, cross_attention: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.self_attn = MACLIPAttention(width, num_heads)
        if cross_attention:
            self.norm_cross = nn.LayerNorm(width)
            self.cross_attn = MACLIPAttention(width, num_heads)
        else:
            self.cross_attn = None
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        normed = self.norm1(x)
        x = x + self.self_attn(normed, normed)
        if self.cross_attn is not None and text is not None:
            x = x + self.cross_attn(self.norm_cross(x), self.norm_cross(text))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class MACLIPPrototypeModule(nn.Module):
    """TPCM: temporal attention over a video's frame features; supports also see their class text.

    `"concat"`: the text token is appended to the frames (with its own position), attended over, then dropped.
    `"cross_attention"`: frames attend to each other, then cross-attend to the text token.
    """

    def __init__(self, config: MACLIPConfig):
        super().__init__()
        width = config.projection_dim
        self.fusion = config.prototype_text_fusion
        self.position_embedding = nn.Parameter(torch.zeros(config.num_frames + 1, width))
        heads = config.resolved_prototype_num_heads()
        self.layers = nn.ModuleList(
            MACLIPPrototypeLayer(width, heads, self.fusion == "cross_attention")
            for _ in range(config.prototype_num_layers)
        )

    def forward(self, frames: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        # frames [B, T, P]; text [B, P] or None. Returns [B, T, P].
        num_frames = frames.shape[1]
        x = frames + self.position_embedding[:num_frames]
        text_token = None if text is None else (text + self.position_embedding[num_frames])[:, None]
        if self.fusion == "concat" and text_token is not None:
            x = torch.cat([x, text_token], dim=1)
        for layer in self.layers:
            x = layer(x, text_token if self.fusion == "cross_attention" else None)
        return x[:, :num_frames]


def check_videos(name: str, pixel_values, num_frames: int, num_channels: int) -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(pixel_values).__name__}.")
    if pixel_values.ndim != 5 or pixel_values.shape[2] != num_channels:
        raise ValueError(
            f"`{name}` must have shape (videos, frames, {num_channels}, height, width), got "
            f"{tuple(pixel_values.shape)}. Use MACLIPProcessor(videos=...) to build it."
        )
    if pixel_values.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch: expected at least 1 video.")
    frames = pixel_values.shape[1]
    if frames < MIN_FRAMES:
        raise ValueError(
            f"`{name}` has {frames} frame(s) per video: too few frames, expected {num_frames} (at least {MIN_FRAMES})."
        )
    if frames != num_frames:
        raise ValueError(
            f"`{name}` has {frames} frames per video, expected config.num_frames={num_frames}; resample the videos "
            "(`MACLIPProcessor(..., num_frames=N)(videos=...)` resamples every video to N frames)."
        )


def check_episode(support_labels, num_supports: int, way: int, query_labels=None, num_queries: int | None = None):
    """Validate an N-way K-shot episode; returns K. Errors start with "inconsistent episode"."""
    if not isinstance(support_labels, torch.Tensor) or support_labels.ndim != 1:
        raise ValueError(
            "inconsistent episode: `support_labels` must be a 1-D integer tensor (one label per support)."
        )
    if support_labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"inconsistent episode: `support_labels` must be integers, got {support_labels.dtype}.")
    if support_labels.shape[0] != num_supports:
        raise ValueError(
            f"inconsistent episode: {num_supports} support videos but {support_labels.shape[0]} support labels."
        )
    if num_supports % way != 0:
        raise ValueError(f"inconsistent episode: {num_supports} supports cannot be split evenly over {way} classes.")
    shot = num_supports // way
    counts = torch.bincount(support_labels.clamp(min=0), minlength=way)
    if support_labels.min() < 0 or support_labels.max() >= way or not bool((counts == shot).all()):
        raise ValueError(
            f"inconsistent episode: support labels must take each value 0..{way - 1} (one per class text) exactly "
            f"{shot} times, got counts {counts.tolist()}."
        )
    if query_labels is not None:
        if not isinstance(query_labels, torch.Tensor) or query_labels.ndim != 1:
            raise ValueError("inconsistent episode: `query_labels` must be a 1-D integer tensor.")
        if query_labels.shape[0] != num_queries:
            raise ValueError(
                f"inconsistent episode: {num_queries} query videos but {query_labels.shape[0]} query labels."
            )
        if query_labels.numel() and (query_labels.min() < 0 or query_labels.max() >= way):
            raise ValueError(
                f"inconsistent episode: query labels must lie in [0, {way}), got {query_labels.tolist()}."
            )
    return shot


class MACLIPPreTrainedModel(PreTrainedModel):
    config: MACLIPConfig
    config_class = MACLIPConfig
    base_model_prefix = "ma_clip"
    main_input_name = "query_pixel_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True

    def _initialize_weights(self, module, is_custom_code: bool = False):
        # transformers skips, for code outside its package, modules whose *own* parameters are all flagged as loaded;
        # a module without own parameters (an adapter: down/up are children) then counts as loaded and its zero-init
        # would never run. Our `_init_weights` only uses `transformers.initialization`, which checks the flag per
        # tensor, so calling it unconditionally is safe.
        if getattr(module, "_is_hf_initialized", False):
            return
        self._init_weights(module)
        module._is_hf_initialized = True

    @torch.no_grad()
    def _init_weights(self, module):
        # Only MA-CLIP's own modules; the frozen CLIP (a PreTrainedModel) is initialised by its own `_init_weights`.
        if isinstance(module, MACLIPAdapter):
            init.xavier_uniform_(module.down.weight)
            init.zeros_(module.down.bias)
            # Zero up-projection (AIM): every adapter starts as zero (or identity with its skip).
            init.zeros_(module.up.weight)
            init.zeros_(module.up.bias)
        elif isinstance(module, MACLIPAttention):
            for proj in (module.q_proj, module.k_proj, module.v_proj):
                init.xavier_uniform_(proj.weight)
                init.zeros_(proj.bias)
            if self.config.prototype_zero_init:
                init.zeros_(module.out_proj.weight)
            else:
                init.xavier_uniform_(module.out_proj.weight)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, MACLIPPrototypeLayer):
            init.xavier_uniform_(module.fc1.weight)
            init.zeros_(module.fc1.bias)
            if self.config.prototype_zero_init:
                init.zeros_(module.fc2.weight)
            else:
                init.xavier_uniform_(module.fc2.weight)
            init.zeros_(module.fc2.bias)
            for norm in (module.norm1, module.norm2, getattr(module, "norm_cross", None)):
                if norm is not None:
                    init.ones_(norm.weight)
                    init.zeros_(norm.bias)
        elif isinstance(module, MACLIPPrototypeModule):
            # Added to the features outside the residual branches: zero keeps the TPCM an identity at init.
            if self.config.prototype_zero_init:
                init.zeros_(module.position_embedding)
            else:
                init.normal_(module.position_embedding, std=0.02)
        elif isinstance(module, MACLIPTemporalEmbedding):
            init.zeros_(module.weight)
        elif isinstance(module, MACLIPModel):
            if module.text_to_vision is not None:
                init.normal_(module.text_to_vision.weight, std=module.config.projection_dim**-0.5)
                init.zeros_(module.text_to_vision.bias)


class MACLIPModel(RemoteCodeModelMixin, MACLIPPreTrainedModel):
    """MA-CLIP: frozen CLIP + per-block adapters + TPCM + OTAM; forward takes one N-way K-shot episode."""

    _remote_auto_classes = ("AutoModel",)
    _custom_pipelines = {"few-shot-video-classification": "hf_clipzoo.pipelines.few_shot_video.FewShotVideoClassifier"}

    def __init__(self, config: MACLIPConfig):
        super().__init__(config)
        self.clip = ZooCLIPModel._from_config(config.clip_config)
        # The backbone is frozen (paper §3): only the adapters, the text token projection and the TPCM train.
        self.clip.requires_grad_(False)
        num_layers = config.clip_config.vision_config.num_hidden_layers
        self.adapters = (
            nn.ModuleList(MACLIPBlockAdapters(config) for _ in range(num_layers)) if config.any_adapter else None
        )
        if config.use_temporal_embedding and config.any_adapter:
            self.temporal_embedding = MACLIPTemporalEmbedding(config.num_frames, config.vision_width)
        else:
            self.temporal_embedding = None
        if config.use_multimodal_adapter and config.use_text_in_support:
            self.text_to_vision = nn.Linear(config.projection_dim, config.vision_width)
        else:
            self.text_to_vision = None
        self.prototype_module = MACLIPPrototypeModule(config)
        self.post_init()

    @classmethod
    def from_clip(cls, clip_model: ZooCLIPModel, **config_kwargs) -> MACLIPModel:
        """An MA-CLIP model around (a copy of) the weights of a zoo CLIP; adapters and TPCM freshly initialised.

        This is the base an adapter-only PEFT checkpoint loads onto. `seed` (default 0) seeds the initialisation.
        """
        if not isinstance(clip_model, ZooCLIPModel):
            raise ValueError(f"`clip_model` must be a ZooCLIPModel, got {type(clip_model).__name__}.")
        seed = config_kwargs.pop("seed", 0)
        config = MACLIPConfig(clip_config=clip_model.config.to_dict(), **config_kwargs)
        # Seeded so that two bases built from the same CLIP are identical (the TPCM's non-zero init included).
        torch.manual_seed(seed)
        model = cls(config)
        model.clip.load_state_dict(clip_model.state_dict(), strict=True)
        return model

    def get_input_embeddings(self) -> nn.Module:
        # The text tower's token embedding: `AutoPeftModel.from_pretrained` compares it with the tokenizer saved next to
        # an adapter (transformers cannot find it on its own in a model that wraps a CLIP).
        return self.clip.text_model.embeddings.token_embedding

    # --- features ------------------------------------------------------------------------------------------
    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected, unnormalised class-text features `[N, P]` of the frozen text tower."""
        check_input_ids(input_ids, self.config.clip_config.text_config.vocab_size)
        return self.clip.get_text_features(input_ids, attention_mask=attention_mask).pooler_output

    def get_video_features(
        self, pixel_values: torch.Tensor, text_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Projected class-token features `[B, T, P]` of every frame through the adapted vision tower.

        `text_features` `[B, P]` (one per video, e.g. its class text) join the multimodal attention when given.
        """
        config = self.config
        check_videos("pixel_values", pixel_values, config.num_frames, config.clip_config.vision_config.num_channels)
        batch, num_frames = pixel_values.shape[:2]
        vision = self.clip.vision_model
        hidden = vision.embeddings(pixel_values.flatten(0, 1))  # [B·T, N+1, D]
        if self.temporal_embedding is not None:
            hidden = self.temporal_embedding(hidden.unflatten(0, (batch, num_frames))).flatten(0, 1)
        hidden = vision.pre_layrnorm(hidden)
        text_tokens = None
        if text_features is not None and self.text_to_vision is not None:
            if text_features.shape != (batch, config.projection_dim):
                raise ValueError(
                    f"`text_features` must have shape ({batch}, {config.projection_dim}), got "
                    f"{tuple(text_features.shape)}."
                )
            text_tokens = self.text_to_vision(text_features).repeat_interleave(num_frames, dim=0)[:, None]
        for index, layer in enumerate(vision.encoder.layers):
            if self.adapters is None:
                hidden = layer(hidden, None)
            else:
                hidden = self.adapters[index](hidden, text_tokens, layer=layer, num_frames=num_frames)
        pooled = vision.post_layernorm(hidden[:, 0])
        return self.clip.visual_projection(pooled).unflatten(0, (batch, num_frames))

    def text_logit_scale(self) -> torch.Tensor:
        if self.config.text_logit_scale is not None:
            return torch.tensor(self.config.text_logit_scale, device=self.clip.logit_scale.device)
        return self.clip.logit_scale.exp()

    def encode_videos(
        self, pixel_values: torch.Tensor, text_features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What an episode is scored from, per video: the adapted tower's frame features `[B, T, P]` and their TPCM
        output `[B, T, P]`. `text_features` `[B, P]` (a support's own class text) join both; queries pass None.

        Nothing here looks at the other videos of an episode, so an evaluation over many episodes encodes every
        video once, as a support and as a query, and scores each episode with `score_episode` (the script does).
        """
        frames = self.get_video_features(pixel_values, text_features)
        return frames, self.prototype_module(frames, text_features)

    def score_episode(
        self,
        support_frames: torch.Tensor,
        support_tpcm: torch.Tensor,
        support_labels: torch.LongTensor,
        query_frames: torch.Tensor,
        query_tpcm: torch.Tensor,
        text_features: torch.Tensor,
        query_labels: torch.LongTensor | None = None,
        return_loss: bool | None = None,
    ) -> MACLIPOutput:
        """The episode head on `encode_videos` outputs (supports with their class text, queries without) and the
        episode's class-text features `[N, P]` in episode-label order; `forward` is `encode_videos` + this."""
        config = self.config
        way = text_features.shape[0]
        shot = check_episode(support_labels, support_frames.shape[0], way, query_labels, query_frames.shape[0])
        if return_loss and query_labels is None:
            raise ValueError("`return_loss=True` needs `query_labels`.")
        text_embeds = F.normalize(text_features, dim=-1)
        scale = self.text_logit_scale()
        logits_support_text = scale * F.normalize(support_frames.mean(1), dim=-1) @ text_embeds.t()
        logits_query_text = scale * F.normalize(query_frames.mean(1), dim=-1) @ text_embeds.t()

        # Class-major grouping by label (stable sort keeps shot order), then the mean over the K shots.
        order = torch.argsort(support_labels, stable=True)
        prototype_embeds = support_tpcm[order].reshape(way, shot, *support_tpcm.shape[1:]).mean(1)
        distances = otam_distance(
            cosine_frame_distances(query_tpcm, prototype_embeds),
            lam=config.otam_lambda,
            bidirectional=config.otam_bidirectional,
        )
        logits_query_support = -config.otam_logit_scale * distances

        alpha = config.loss_alpha
        probs = alpha * logits_query_text.softmax(-1) + (1 - alpha) * logits_query_support.softmax(-1)
        loss = None
        if return_loss:
            loss = alpha * 0.5 * (
                F.cross_entropy(logits_support_text, support_labels) + F.cross_entropy(logits_query_text, query_labels)
            ) + (1 - alpha) * F.cross_entropy(logits_query_support, query_labels)
        return MACLIPOutput(
            loss=loss,
            probs=probs,
            logits_query_support=logits_query_support,
            logits_query_text=logits_query_text,
            logits_support_text=logits_support_text,
            query_embeds=query_tpcm,
            prototype_embeds=prototype_embeds,
            text_embeds=text_embeds,
        )

    def forward(
        self,
        support_pixel_values: torch.FloatTensor | None = None,
        support_labels: torch.LongTensor | None = None,
        query_pixel_values: torch.FloatTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_labels: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
    ) -> MACLIPOutput | tuple:
        r"""
        One N-way K-shot episode.

        Args:
            support_pixel_values (`torch.FloatTensor` of shape `(N·K, T, 3, H, W)`): support videos.
            support_labels (`torch.LongTensor` of shape `(N·K,)`): episode labels `0..N-1`, each exactly K times.
            query_pixel_values (`torch.FloatTensor` of shape `(Q, T, 3, H, W)`): query videos.
            input_ids (`torch.LongTensor` of shape `(N, L)`): the class prompts, in episode-label order.
            attention_mask (`torch.Tensor` of shape `(N, L)`, *optional*).
            query_labels (`torch.LongTensor` of shape `(Q,)`, *optional*): needed for `return_loss`.
            return_loss (`bool`, *optional*): compute `α·½(L_S2T + L_Q2T) + (1−α)·L_Q2S`.
        """
        if support_pixel_values is None or query_pixel_values is None or input_ids is None or support_labels is None:
            raise ValueError(
                "MACLIPModel.forward needs `support_pixel_values`, `support_labels`, `query_pixel_values` and "
                "`input_ids` (one class prompt per episode label)."
            )
        config = self.config
        channels = config.clip_config.vision_config.num_channels
        check_videos("support_pixel_values", support_pixel_values, config.num_frames, channels)
        check_videos("query_pixel_values", query_pixel_values, config.num_frames, channels)
        if return_loss and query_labels is None:
            raise ValueError("`return_loss=True` needs `query_labels`.")
        way = input_ids.shape[0] if isinstance(input_ids, torch.Tensor) and input_ids.ndim == 2 else None
        if way is None:
            raise ValueError("`input_ids` must have shape (way, sequence_length): one class prompt per episode label.")
        check_episode(support_labels, support_pixel_values.shape[0], way, query_labels, query_pixel_values.shape[0])

        text_features = self.get_text_features(input_ids, attention_mask)
        support_text = text_features[support_labels] if config.use_text_in_support else None
        support_frames, support_tpcm = self.encode_videos(support_pixel_values, support_text)
        query_frames, query_tpcm = self.encode_videos(query_pixel_values)
        output = self.score_episode(
            support_frames, support_tpcm, support_labels, query_frames, query_tpcm, text_features,
            query_labels=query_labels, return_loss=return_loss,
        )  # fmt: skip
        return output if return_dict is not False else output.to_tuple()


__all__ = [
    "MACLIPAdapter",
    "MACLIPBlockAdapters",
    "MACLIPModel",
    "MACLIPOutput",
    "MACLIPPreTrainedModel",
    "MACLIPPrototypeModule",
    "MACLIPTemporalEmbedding",
    "check_episode",
    "check_videos",
]
