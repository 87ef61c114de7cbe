"""CLIP-FSAR: CLIP-guided prototype modulating for few-shot action recognition.

Paper: Xiang Wang, Shiwei Zhang, Jun Cen, Changxin Gao, Yingya Zhang, Deli Zhao, Nong Sang, *CLIP-guided Prototype
Modulating for Few-shot Action Recognition*, IJCV 2023 (arXiv 2303.02982).
Official code: https://github.com/alibaba-mmai-research/CLIP-FSAR (`models/base/few_shot.py::CNN_OTAM_CLIPFSAR`;
the repository ships no license file). Nothing is copied from it: this is a re-implementation from the paper and the
spec (`methods/clip_fsar.md` §1), Apache-2.0 like the rest of hf-clipzoo.

The model, per N-way K-shot episode (T frames per video, D = `projection_dim`):
1. frame features `[·, T, D]`: every frame through the CLIP image tower + `visual_projection` (fine-tuned);
2. video-text loss (training): the temporal mean of the support and query frame features against the frozen CLIP
   text embeddings of *all* meta-train class names, `scale · x·y / (‖x‖‖y‖ + 0.01)` with a learnable linear `scale`
   initialised to 1, cross-entropy on the global class ids;
3. prototype modulation: one `Transformer_v1` layer (shared pre-LayerNorm on q, k, v; residual to q; FFN without
   LayerNorm; no positional encoding) over `[support frames; class-text token]` of each support, keeping the T
   frame outputs. Queries go through the same layer over their own T frames only: they never see text;
4. OTAM matching: `logits = −OTAM(1 − cos)` (bidirectional, soft-min λ = 0.5), `hf_clipzoo.eval.few_shot`.
   `loss = CE(logits, query_labels) + w · CE(video-text)`.

What differs from the official code:
- the towers are transformers' `CLIPVisionModel` / `CLIPTextModel` (ViT), under `CLIPModel`'s attribute names, so
  converted OpenAI CLIP or zoo CLIP checkpoints load into it; the official code only releases RN50 configs;
- the frozen text tower is part of the model (and its weights are saved): the official code computes the text
  features once in `__init__` and drops the encoder. Here the training script precomputes them once too, but a
  saved model can embed new class names (pipeline, meta-test) by itself;
- the per-class averaging does not assume class-major supports (supports are grouped by label), and episodes are
  validated (N / K consistency, labels in range, T frames) with clear errors;
- the loss is not divided by the number of tasks here; the training script's gradient accumulation averages over
  the tasks of an optimiser step (the official code divides by `TRAIN.BATCH_SIZE` and steps every 4 tasks);
- the optional `TRAIN.COMBINE` test-time fusion (unused by every released config) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPPreTrainedModel, CLIPTextModel, CLIPVisionModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...eval.few_shot import cosine_frame_distances, otam_distance
from ...hub.export import RemoteCodeModelMixin
from .configuration_clip_fsar import CLIPFSARConfig


def fsar_cos_sim(x: torch.Tensor, y: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """The official `cos_sim`: `x·yᵀ / (‖x‖ ‖y‖ + eps)` for `x [A, D]`, `y [B, D]` -> `[A, B]` (eps outside the product)."""
    return (x @ y.t()) / (x.norm(dim=-1, keepdim=True) * y.norm(dim=-1).unsqueeze(0) + eps)


@dataclass
class CLIPFSAROutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        `otam_loss + text_loss_weight · text_loss` (the text term only with `use_text=True`).
    logits (`torch.FloatTensor` of shape `(N·Q, N)`):
        `−OTAM distance` of every query to every class prototype (no temperature).
    class_logits (`torch.FloatTensor` of shape `(N·K + N·Q, C_train)`, *optional*):
        Video-text logits of the supports then the queries against the meta-train class names (when given).
    otam_loss / text_loss (`torch.FloatTensor` of shape `()`, *optional*):
        The two terms of the loss, unweighted.
    prototype_embeds (`torch.FloatTensor` of shape `(N, T, D)`):
        The text-modulated class prototypes (frame sequences) OTAM compares against.
    query_embeds (`torch.FloatTensor` of shape `(N·Q, T, D)`):
        The queries after the temporal transformer (self-attention over their own frames only).
    support_frame_embeds / query_frame_embeds (`torch.FloatTensor` of shape `(·, T, D)`):
        The CLIP frame features before the temporal transformer.
    video_text_scale (`torch.FloatTensor` of shape `()`, *optional*):
        The learnable linear scale of the video-text logits.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    class_logits: torch.FloatTensor | None = None
    otam_loss: torch.FloatTensor | None = None
    text_loss: torch.FloatTensor | None = None
    prototype_embeds: torch.FloatTensor | None = None
    query_embeds: torch.FloatTensor | None = None
    support_frame_embeds: torch.FloatTensor | None = None
    query_frame_embeds: torch.FloatTensor | None = None
    video_text_scale: torch.FloatTensor | None = None


# --- the temporal transformer (official `Transformer_v1`) -------------------------------------------------------
class CLIPFSARAttention(nn.Module):
    """`PreNormattention_qkv(Attention_qkv)`: one LayerNorm shared by q, k, v; multi-head attention; `+ q`."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        # Official `project_out = not (heads == 1 and dim_head == dim)`: one full-width head has no output projection
        # (and so no dropout either).
        self.to_out = nn.Linear(dim, dim) if heads > 1 else None
        self.dropout = nn.Dropout(dropout)
        for linear in (self.to_q, self.to_k, self.to_v, self.to_out):
            if linear is not None:
                linear._fsar_init_std = dim**-0.5

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, length, dim = q.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(batch, -1, self.heads, self.head_dim).transpose(1, 2)

        # The same LayerNorm instance normalises q, k and v (official `PreNormattention_qkv`).
        query, key, value = self.norm(q), self.norm(k), self.norm(v)
        query, key, value = split(self.to_q(query)), split(self.to_k(key)), split(self.to_v(value))
        # Scale (D / heads)^-0.5 is SDPA's default; no dropout on the attention weights (the official has none).
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        if self.to_out is None:
            return attended + q
        return self.dropout(self.to_out(attended)) + q


class CLIPFSARFeedForward(nn.Module):
    """`Linear → GELU → Dropout → Linear → Dropout`, with no LayerNorm before it (official `FeedForward`)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.fc1._fsar_init_std = dim**-0.5
        self.fc2._fsar_init_std = hidden_dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class CLIPFSARTemporalLayer(nn.Module):
    def __init__(self, config: CLIPFSARConfig):
        super().__init__()
        dim = config.projection_dim
        self.attention = CLIPFSARAttention(dim, config.temporal_heads, config.attention_dropout)
        self.feed_forward = CLIPFSARFeedForward(dim, config.temporal_mlp_dim, config.ffn_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, x, x)
        return self.feed_forward(x) + x


class CLIPFSARTemporalTransformer(nn.Module):
    """`Transformer_v1`: `depth` layers of `[attention(q, k, v) + q, FFN(x) + x]`; no positional encoding, so it is
    permutation-equivariant over frames (OTAM supplies the order sensitivity)."""

    def __init__(self, config: CLIPFSARConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPFSARTemporalLayer(config) for _ in range(config.temporal_depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


# --- the model --------------------------------------------------------------------------------------------------
class CLIPFSARPreTrainedModel(CLIPPreTrainedModel):
    config: CLIPFSARConfig
    config_class = CLIPFSARConfig
    base_model_prefix = "clip_fsar"
    main_input_name = "query_pixel_values"
    input_modalities = ("video", "text")

    @torch.no_grad()
    def _init_weights(self, module):
        # Linear layers of this method carry their own std (`_fsar_init_std`, set in their constructors): transformers
        # initialises leaf modules on their own, so a rule written on the parent module would not reach them.
        std = getattr(module, "_fsar_init_std", None)
        if isinstance(module, nn.Linear) and std is not None:
            init.normal_(module.weight, std=std * self.config.initializer_factor)
            if module.bias is not None:
                init.zeros_(module.bias)
            return
        super()._init_weights(module)
        if isinstance(module, CLIPFSARModel) and module.video_text_scale is not None:
            init.constant_(module.video_text_scale, self.config.video_text_scale_init_value)


def _check_labels(name: str, labels, count: int, num_classes: int | None, device) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != count:
        raise ValueError(f"`{name}` must have shape ({count},) (one per video), got {tuple(labels.shape)}.")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"`{name}` must be integer class indices, got dtype {labels.dtype}.")
    if num_classes is not None and count and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"`{name}` must lie in 0..{num_classes - 1} (the episode's N={num_classes} classes), got values in "
            f"{labels.min().item()}..{labels.max().item()}."
        )
    return labels.to(device=device, dtype=torch.long)


class CLIPFSARModel(RemoteCodeModelMixin, CLIPFSARPreTrainedModel):
    """CLIP-FSAR: CLIP frame features + text-modulated prototypes + OTAM matching, trained episodically."""

    _remote_auto_classes = ("AutoModel",)
    _custom_pipelines = {"few-shot-video-classification": "hf_clipzoo.pipelines.few_shot_video.FewShotVideoClassifier"}
    # Built from a CLIP baseline: the temporal transformer and the video-text scale are new; the baseline's
    # image-text temperature (and a SigLIP's bias) have no place in the episodic losses.
    _keys_to_ignore_on_load_missing = [r"^temporal_transformer\.", r"^video_text_scale$"]
    _keys_to_ignore_on_load_unexpected = [r"^logit_scale$", r"^logit_bias$"]

    def __init__(self, config: CLIPFSARConfig):
        super().__init__(config)
        self.projection_dim = config.projection_dim
        self.text_embed_dim = config.text_config.hidden_size
        self.vision_embed_dim = config.vision_config.hidden_size
        # The towers keep `CLIPModel`'s attribute names, so CLIP checkpoints load with matching keys.
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.visual_projection = nn.Linear(self.vision_embed_dim, self.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_embed_dim, self.projection_dim, bias=False)
        self.visual_projection._fsar_init_std = self.vision_embed_dim**-0.5
        self.text_projection._fsar_init_std = self.text_embed_dim**-0.5
        self.temporal_transformer = CLIPFSARTemporalTransformer(config)
        # Only the text variant has the video-text logits; without text the parameter would never get a gradient.
        self.video_text_scale = (
            nn.Parameter(torch.tensor(float(config.video_text_scale_init_value))) if config.use_text else None
        )
        if config.freeze_text_model:
            self.text_model.requires_grad_(False)
            self.text_projection.requires_grad_(False)
        self.post_init()

    # --- features -------------------------------------------------------------------------------------------
    def _check_videos(self, name: str, pixel_values) -> torch.Tensor:
        channels = self.config.vision_config.num_channels
        num_frames = self.config.num_frames
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"`{name}` must be a torch.Tensor, got {type(pixel_values).__name__}.")
        if pixel_values.ndim != 5 or pixel_values.shape[2] != channels:
            raise ValueError(
                f"`{name}` must have shape (videos, {num_frames} frames, {channels}, height, width), got "
                f"{tuple(pixel_values.shape)}. Use CLIPFSARProcessor(videos=...) to build it."
            )
        if pixel_values.shape[0] == 0:
            raise ValueError(f"`{name}` holds no videos.")
        if pixel_values.shape[1] != num_frames:
            raise ValueError(
                f"`{name}` has {pixel_values.shape[1]} frames per video; this model expects exactly "
                f"T={num_frames} (config.num_frames). Resample the videos (the processor does it)."
            )
        return pixel_values

    def get_frame_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """Per-frame CLIP embeddings `[B, T, D]` (image tower + `visual_projection`, not normalised) of `[B, T, 3, H, W]`."""
        pixel_values = self._check_videos("pixel_values", pixel_values)
        batch, frames = pixel_values.shape[:2]
        outputs = self.vision_model(pixel_values=pixel_values.flatten(0, 1), return_dict=True, **kwargs)
        return self.visual_projection(outputs.pooler_output).reshape(batch, frames, -1)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected CLIP text embeddings `[C, D]` (not normalised) of tokenised prompts, e.g. "a photo of {class}"."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or 0 in input_ids.shape:
            shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"`input_ids` must be a (num_texts, sequence_length) tensor, got {shape}.")
        frozen = self.config.freeze_text_model
        # A frozen tower needs no graph: the official code encodes the class names under `no_grad` too.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            return self.text_projection(outputs.pooler_output)

    def _text_embeds(self, name: str, embeds, input_ids, attention_mask, rows: int | None) -> torch.Tensor | None:
        if embeds is not None and input_ids is not None:
            raise ValueError(f"Pass `{name}_text_embeds` or `{name}_input_ids`, not both.")
        if input_ids is not None:
            embeds = self.get_text_features(input_ids, attention_mask)
        if embeds is None:
            return None
        if (
            embeds.ndim != 2
            or embeds.shape[1] != self.projection_dim
            or (rows is not None and embeds.shape[0] != rows)
        ):
            expected = f"({rows if rows is not None else 'C'}, {self.projection_dim})"
            raise ValueError(f"`{name}_text_embeds` must have shape {expected}, got {tuple(embeds.shape)}.")
        return embeds

    # --- episode ---------------------------------------------------------------------------------------------
    def compute_prototypes(
        self,
        support_frame_embeds: torch.Tensor,
        support_labels: torch.Tensor,
        num_classes: int,
        class_text_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text-modulated prototypes `[N, T, D]` from support frame features `[N·K, T, D]` with labels in 0..N-1.

        With text, each support's sequence is `[T frames; text token of its class]` and the T frame outputs of the
        temporal transformer are kept. `merge_before` averages the K shots (and their identical text tokens) before
        the transformer, otherwise the K modulated supports are averaged after it.
        """
        shots = support_frame_embeds.shape[0] // num_classes
        # Group the supports by class (stable), so the layout need not be class-major.
        order = torch.argsort(support_labels, stable=True)
        frames = support_frame_embeds[order].reshape(num_classes, shots, *support_frame_embeds.shape[1:])
        num_frames = frames.shape[2]
        if self.config.use_text:
            tokens = class_text_embeds.to(frames.dtype)[:, None, None, :].expand(-1, shots, 1, -1)
            frames = torch.cat([frames, tokens], dim=2)  # [N, K, T+1, D]
        if self.config.merge_before:
            modulated = self.temporal_transformer(frames.mean(dim=1))
        else:
            modulated = self.temporal_transformer(frames.flatten(0, 1))
            modulated = modulated.reshape(num_classes, shots, *modulated.shape[1:]).mean(dim=1)
        # The output at the text position is discarded (official `[:, :T, :]`).
        return modulated[:, :num_frames]

    def compute_episode_logits(
        self,
        support_frame_embeds: torch.Tensor,
        support_labels: torch.Tensor,
        query_frame_embeds: torch.Tensor,
        class_text_embeds: torch.Tensor | None = None,
        num_classes: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(logits [N·Q, N], prototypes [N, T, D], queries [N·Q, T, D])` from frame features (validated episode).

        The training script calls this on cached frame features for its thousands of evaluation episodes.
        """
        for name, value in (
            ("support_frame_embeds", support_frame_embeds),
            ("query_frame_embeds", query_frame_embeds),
        ):
            if value.ndim != 3 or value.shape[-1] != self.projection_dim or value.shape[0] == 0:
                raise ValueError(
                    f"`{name}` must have shape (videos, T, {self.projection_dim}), got {tuple(value.shape)}."
                )
        if num_classes is None:
            if class_text_embeds is not None:
                num_classes = class_text_embeds.shape[0]
            else:
                num_classes = int(torch.as_tensor(support_labels).max().item()) + 1
        support_labels = _check_labels(
            "support_labels", support_labels, support_frame_embeds.shape[0], num_classes, support_frame_embeds.device
        )
        counts = torch.bincount(support_labels, minlength=num_classes)
        if (counts != counts[0]).any() or counts[0] == 0:
            raise ValueError(
                f"Inconsistent episode: every one of the N={num_classes} classes needs the same number K >= 1 of "
                f"supports, got supports per class {counts.tolist()}."
            )
        if self.config.use_text:
            if class_text_embeds is None:
                raise ValueError(
                    "This model modulates prototypes with the class text (use_text=True): pass `class_text_embeds` "
                    "[N, D] or `class_input_ids` for the episode's N classes (in label order)."
                )
            if class_text_embeds.shape != (num_classes, self.projection_dim):
                raise ValueError(
                    f"`class_text_embeds` must have shape ({num_classes}, {self.projection_dim}) (one per episode "
                    f"class), got {tuple(class_text_embeds.shape)}."
                )
        prototypes = self.compute_prototypes(support_frame_embeds, support_labels, num_classes, class_text_embeds)
        # Queries have no label, hence no text: pure self-attention over their own T frames.
        queries = self.temporal_transformer(query_frame_embeds)
        frame_dists = cosine_frame_distances(queries, prototypes, eps=self.config.cos_eps)
        distances = otam_distance(
            frame_dists, lam=self.config.otam_lambda, bidirectional=self.config.bidirectional_otam
        )
        return -distances, prototypes, queries

    def forward(
        self,
        support_pixel_values: torch.FloatTensor | None = None,
        support_labels: torch.LongTensor | None = None,
        query_pixel_values: torch.FloatTensor | None = None,
        query_labels: torch.LongTensor | None = None,
        class_text_embeds: torch.FloatTensor | None = None,
        class_input_ids: torch.LongTensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        train_text_embeds: torch.FloatTensor | None = None,
        train_input_ids: torch.LongTensor | None = None,
        train_attention_mask: torch.Tensor | None = None,
        support_class_ids: torch.LongTensor | None = None,
        query_class_ids: torch.LongTensor | None = None,
        support_frame_embeds: torch.FloatTensor | None = None,
        query_frame_embeds: torch.FloatTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CLIPFSAROutput | tuple:
        r"""
        One N-way K-shot episode.

        Args:
            support_pixel_values (`torch.FloatTensor` of shape `(N·K, T, 3, H, W)`):
                The support videos (from `CLIPFSARProcessor`). Or pass `support_frame_embeds` `(N·K, T, D)`.
            support_labels (`torch.LongTensor` of shape `(N·K,)`):
                Episode labels in `0..N-1`, every class exactly K times (any order).
            query_pixel_values (`torch.FloatTensor` of shape `(N·Q, T, 3, H, W)`):
                The query videos. Or pass `query_frame_embeds` `(N·Q, T, D)`.
            query_labels (`torch.LongTensor` of shape `(N·Q,)`, *optional*):
                Episode labels of the queries; needed for the loss.
            class_text_embeds (`torch.FloatTensor` of shape `(N, D)`), or class_input_ids / class_attention_mask:
                Text embeddings (or tokenised prompts) of the episode's N classes in label order; the support text
                tokens (`use_text=True`). Never used for the queries.
            train_text_embeds (`torch.FloatTensor` of shape `(C_train, D)`), or train_input_ids / train_attention_mask:
                Text embeddings of all meta-train classes, for the video-text loss.
            support_class_ids / query_class_ids (`torch.LongTensor` of shapes `(N·K,)` / `(N·Q,)`):
                Global class ids (rows of `train_text_embeds`) of the supports and queries, for the video-text loss.
            return_loss (`bool`, *optional*):
                Compute the loss; defaults to `query_labels is not None`. With `use_text=True` it needs the
                meta-train text and the global class ids.
        """
        if (support_pixel_values is None) == (support_frame_embeds is None):
            raise ValueError("Pass exactly one of `support_pixel_values` and `support_frame_embeds`.")
        if (query_pixel_values is None) == (query_frame_embeds is None):
            raise ValueError("Pass exactly one of `query_pixel_values` and `query_frame_embeds`.")
        if support_labels is None:
            raise ValueError("`support_labels` (episode labels 0..N-1 of the supports) are required.")
        if support_frame_embeds is None:
            support_frame_embeds = self.get_frame_features(
                self._check_videos("support_pixel_values", support_pixel_values), **kwargs
            )
        if query_frame_embeds is None:
            query_frame_embeds = self.get_frame_features(
                self._check_videos("query_pixel_values", query_pixel_values), **kwargs
            )
        if support_frame_embeds.shape[1] != query_frame_embeds.shape[1]:
            raise ValueError(
                f"Supports have {support_frame_embeds.shape[1]} frames and queries {query_frame_embeds.shape[1]}; "
                "expected the same T."
            )
        class_text_embeds = self._text_embeds("class", class_text_embeds, class_input_ids, class_attention_mask, None)
        if not self.config.use_text:
            class_text_embeds = None  # the baseline ignores any text it is given
        num_classes = None if class_text_embeds is None else class_text_embeds.shape[0]
        logits, prototypes, queries = self.compute_episode_logits(
            support_frame_embeds, support_labels, query_frame_embeds, class_text_embeds, num_classes=num_classes
        )
        num_classes = logits.shape[1]

        if return_loss is None:
            return_loss = query_labels is not None
        if return_loss and query_labels is None:
            raise ValueError("`return_loss=True` needs `query_labels` (episode labels 0..N-1 of the queries).")
        if query_labels is not None:
            query_labels = _check_labels(
                "query_labels", query_labels, query_frame_embeds.shape[0], num_classes, logits.device
            )

        class_logits = text_loss = otam_loss = loss = None
        train_text_embeds = self._text_embeds("train", train_text_embeds, train_input_ids, train_attention_mask, None)
        if self.config.use_text and train_text_embeds is not None:
            if support_class_ids is None or query_class_ids is None:
                raise ValueError(
                    "The video-text loss needs `support_class_ids` and `query_class_ids` (rows of the meta-train text)."
                )
            num_train = train_text_embeds.shape[0]
            global_ids = torch.cat(
                [
                    _check_labels(
                        "support_class_ids", support_class_ids, support_frame_embeds.shape[0], num_train, logits.device
                    ),
                    _check_labels(
                        "query_class_ids", query_class_ids, query_frame_embeds.shape[0], num_train, logits.device
                    ),
                ]
            )
            # Temporal mean of the *un-modulated* frame features (official GAP before the transformer).
            video_embeds = torch.cat([support_frame_embeds, query_frame_embeds]).mean(dim=1)
            class_logits = self.video_text_scale * fsar_cos_sim(
                video_embeds, train_text_embeds.to(video_embeds.dtype), self.config.cos_eps
            )
            text_loss = F.cross_entropy(class_logits, global_ids)
        if return_loss:
            if self.config.use_text and text_loss is None:
                raise ValueError(
                    "CLIP-FSAR's loss needs the video-text term: pass `train_text_embeds` (or `train_input_ids`) with "
                    "`support_class_ids` / `query_class_ids`, or use `use_text=False` for the OTAM-only baseline."
                )
            otam_loss = F.cross_entropy(logits, query_labels)
            loss = otam_loss if text_loss is None else otam_loss + self.config.text_loss_weight * text_loss

        output = CLIPFSAROutput(
            loss=loss,
            logits=logits,
            class_logits=class_logits,
            otam_loss=otam_loss,
            text_loss=text_loss,
            prototype_embeds=prototypes,
            query_embeds=queries,
            support_frame_embeds=support_frame_embeds,
            query_frame_embeds=query_frame_embeds,
            video_text_scale=self.video_text_scale,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = [
    "CLIPFSARAttention",
    "CLIPFSARFeedForward",
    "CLIPFSARModel",
    "CLIPFSAROutput",
    "CLIPFSARPreTrainedModel",
    "CLIPFSARTemporalTransformer",
    "fsar_cos_sim",
]
