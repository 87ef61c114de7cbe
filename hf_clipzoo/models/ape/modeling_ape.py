"""Few-shot cache adapters on a frozen CLIP: Tip-Adapter, Tip-Adapter-F, APE (training-free) and APE-T.

Papers: Zhang et al., *Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification*, ECCV 2022
(arXiv 2111.03930); Zhu et al., *Not All Features Matter: Enhancing Few-shot CLIP with Adaptive Prior Refinement*,
ICCV 2023 (arXiv 2304.01195).
Official code: https://github.com/gaopengcuhk/Tip-Adapter (no license file), https://github.com/yangyangyang127/APE
(no license file). Nothing is copied from them; this is a re-implementation from the papers and the spec
(`methods/ape.md`), and the method's code here is Apache-2.0 like the rest of hf-clipzoo.

Every adapter is a `PreTrainedModel` that owns its frozen image-text encoder (`encoder`, a `ZooCLIPModel`, a
transformers `CLIPModel` or any registered dual encoder) and the few-shot state as persistent buffers saved in
`model.safetensors`: text classifier `text_weights (C, D)`, cache `cache_keys (C·K, D)` / `cache_values (C·K, C)`,
APE's refined channels `channel_idx (Q,)`, and the searched `alpha`, `beta` (and APE's `gamma`). The building steps
(prompt ensembles, the augmented cache, the refinement criterion, the hyper-parameter search) live in `building.py`.

What differs from the official code:
- the refinement criterion is computed in closed form (the official code runs a quadruple Python loop and caches its
  result under a file name that ignores which variant was computed);
- the search is vectorised over α and γ and picks the first best setting in the official (β, α, γ) loop order, on
  the validation split only (Tip-Adapter's ImageNet script searched on the test features);
- APE-T's choice between the paper (cache term on the Q extracted channels) and the official code (residual written
  into the full-width features, which makes the refinement a no-op for the cache term, APE issue #15) is the config
  field `channel_mode`; re-normalising after the residual is `renormalize`. The official APE-T shape bug (Q of the
  training-free criterion vs `training_feat_num`) cannot happen: Q is stored with the channels;
- everything runs in float32 (the official code runs the cache in fp16);
- the cache keys are built as in the official `build_cache_model` by default (raw features averaged over the
  augmentation epochs, then L2-normalised); `cache_key_average="normalized"` (config field, `build_cache`'s
  `key_average`) normalises every view before the mean instead, so that every view weighs the same;
- Tip-Adapter-F is trained with the official Tip-Adapter optimiser (AdamW lr 1e-3, eps 1e-4, torch's default weight
  decay 0.01) and APE-T with APE's (AdamW eps 1e-3, weight decay 0.1), both cosine over all steps
  (`training_scripts/ape.py`); the best epoch is chosen on val for both (the official Tip-Adapter-F used test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, CLIPModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...hub.export import RemoteCodeModelMixin
from ..clip.modeling_clip import ZooCLIPModel
from .configuration_ape import APEConfig, APETConfig, TipAdapterConfig, TipAdapterFConfig

# Encoders built directly (rather than through `AutoModel`) so that a remote-code folder works without hf_clipzoo.
KNOWN_ENCODERS: dict[str, type[PreTrainedModel]] = {"clipzoo-clip": ZooCLIPModel, "clip": CLIPModel}


@dataclass
class APEOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
        Cross-entropy of `logits` against `labels` (the training loss of APE-T and Tip-Adapter-F).
    logits (`torch.FloatTensor` of shape `(batch_size, num_classes)`):
        The adapter's logits over all the classes it was built on (`config.class_names` order).
    logits_per_image (`torch.FloatTensor` of shape `(batch_size, num_texts)`):
        With `input_ids` (zero-shot-classification pipeline): the logits of the classes the prompts name, in prompt
        order. Otherwise equal to `logits`.
    logits_per_text (`torch.FloatTensor` of shape `(num_texts, batch_size)`):
        The transpose of `logits_per_image`.
    image_embeds (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
        The L2-normalised image embeddings of the frozen encoder.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None


class CacheTerms(NamedTuple):
    """The pieces every adapter's logits are made of, for the search to reuse across hyper-parameters.

    `logits = zero_shot + α · exp(−β (1 − affinity)) @ (values ⊙ exp(γ · divergence))`.
    """

    zero_shot: torch.Tensor  # (N, C): zero_shot_scale · f Wᵀ
    affinity: torch.Tensor  # (N, C·K): cosine similarity of the images to the cache keys
    values: torch.Tensor  # (C·K, C): cache values
    divergence: torch.Tensor | None  # (C·K, 1): APE's cache→text KL divergence (base 2), None without γ


def combine_cache_terms(terms: CacheTerms, alpha, beta, gamma=None) -> torch.Tensor:
    """`zero_shot + α · exp(−β (1 − affinity)) @ values'` with `values' = values ⊙ exp(γ · divergence)` for APE."""
    values = terms.values
    if terms.divergence is not None and gamma is not None:
        values = values * torch.exp(gamma * terms.divergence)
    return terms.zero_shot + alpha * (torch.exp(-beta * (1.0 - terms.affinity)) @ values)


def build_encoder(encoder_config) -> PreTrainedModel:
    """The frozen encoder's module, built from its config (weights are loaded with the adapter's)."""
    encoder_class = KNOWN_ENCODERS.get(encoder_config.model_type)
    if encoder_class is not None:
        return encoder_class._from_config(encoder_config)
    return AutoModel.from_config(encoder_config)


def one_hot_cache_values(num_classes: int, shots_per_class: int) -> torch.Tensor:
    """One-hot values `(C·K, C)` of a class-major cache (rows `c·K .. c·K + K − 1` belong to class `c`)."""
    labels = torch.arange(num_classes).repeat_interleave(shots_per_class)
    return F.one_hot(labels, num_classes).float()


def match_candidate_labels(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, class_token_ids: list[list[int]], class_names
) -> torch.Tensor:
    """Index of the built class each tokenised prompt names: the longest class-name token sequence found in it.

    The zero-shot-classification pipeline sends prompts (`hypothesis_template.format(label)`), not labels; CLIP's BPE
    tokenises words independently of their context, so a label's tokens appear verbatim inside its prompt.
    """
    if input_ids.ndim != 2:
        raise ValueError(f"`input_ids` must have shape (num_texts, sequence_length), got {tuple(input_ids.shape)}.")
    columns = []
    for row, ids in enumerate(input_ids.tolist()):
        if attention_mask is not None:
            ids = [t for t, keep in zip(ids, attention_mask[row].tolist()) if keep]
        found = [c for c, name_ids in enumerate(class_token_ids) if _contains(ids, name_ids)]
        if found:
            longest = max(len(class_token_ids[c]) for c in found)
            found = [c for c in found if len(class_token_ids[c]) == longest]
        if len(found) != 1:
            problem = "names none of" if not found else f"is ambiguous between {[class_names[c] for c in found]} of"
            shown = ", ".join(repr(name) for name in list(class_names)[:10])
            more = f" and {len(class_names) - 10} more" if len(class_names) > 10 else ""
            raise ValueError(
                f"Candidate label {row} {problem} the {len(class_names)} classes this adapter was built on "
                f"({shown}{more}). "
                "An APE / Tip-Adapter model only scores the classes of its cache; rebuild it for new classes."
            )
        columns.append(found[0])
    return torch.tensor(columns, dtype=torch.long, device=input_ids.device)


def _contains(sequence: list[int], pattern: list[int]) -> bool:
    n = len(pattern)
    return any(sequence[i : i + n] == pattern for i in range(len(sequence) - n + 1))


class CacheAdapterPreTrainedModel(RemoteCodeModelMixin, PreTrainedModel):
    """Base of the four adapters: the frozen encoder, the text classifier, the cache, α and β."""

    config: TipAdapterConfig
    config_class = TipAdapterConfig
    base_model_prefix = "adapter"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _remote_auto_classes = ("AutoModel", "AutoModelForZeroShotImageClassification")
    # Trainable cache keys replace the `cache_keys` buffer (Tip-Adapter-F).
    _trainable_keys = False

    def __init__(self, config: TipAdapterConfig):
        super().__init__(config)
        if not config.class_names:
            raise ValueError(
                f"{type(self).__name__} needs `config.class_names` (the classes of its cache); build one with "
                "`hf_clipzoo.models.ape.build_adapter(...)`."
            )
        self.num_classes = len(config.class_names)
        self.shots_per_class = config.shots_per_class
        self.embed_dim = config.embed_dim
        num_entries = self.num_classes * self.shots_per_class

        self.encoder = build_encoder(config.encoder_config)
        # APE / Tip-Adapter never update the encoder (both papers freeze CLIP).
        self.encoder.requires_grad_(False)

        self.register_buffer("text_weights", torch.zeros(self.num_classes, self.embed_dim))
        if self._trainable_keys:
            self.cache_keys = nn.Parameter(torch.zeros(num_entries, self.embed_dim))
        else:
            self.register_buffer("cache_keys", torch.zeros(num_entries, self.embed_dim))
        self.register_buffer("cache_values", torch.zeros(num_entries, self.num_classes))
        self.register_buffer("alpha", torch.tensor(float(config.init_alpha)))
        self.register_buffer("beta", torch.tensor(float(config.init_beta)))
        self._add_method_state(config)
        self.post_init()

    def _add_method_state(self, config) -> None:
        """Hook for the subclasses' extra buffers / parameters (created before `post_init`)."""

    @torch.no_grad()
    def _init_weights(self, module):
        # Only the adapter's own state; the encoder (a PreTrainedModel) is initialised by its own `_init_weights`.
        if isinstance(module, CacheAdapterPreTrainedModel):
            init.zeros_(module.text_weights)
            init.zeros_(module.cache_keys)
            init.copy_(module.cache_values, one_hot_cache_values(module.num_classes, module.shots_per_class))
            init.constant_(module.alpha, module.config.init_alpha)
            init.constant_(module.beta, module.config.init_beta)

    # --- features ------------------------------------------------------------------------------------------
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """L2-normalised image embeddings `(N, D)` of the frozen encoder, in float32."""
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"`pixel_values` must have shape (batch, channels, height, width), got {shape}.")
        output = self.encoder.get_image_features(pixel_values=pixel_values, **kwargs)
        embeds = output if isinstance(output, torch.Tensor) else output.pooler_output
        return F.normalize(embeds.float(), dim=-1)

    def _check_image_embeds(self, image_embeds: torch.Tensor) -> torch.Tensor:
        if image_embeds.ndim != 2 or image_embeds.shape[1] != self.embed_dim:
            raise ValueError(
                f"`image_embeds` must have shape (batch, {self.embed_dim}), got {tuple(image_embeds.shape)}: the "
                "features must come from the encoder the adapter was built with."
            )
        return F.normalize(image_embeds.float(), dim=-1)

    # --- logits --------------------------------------------------------------------------------------------
    def cache_terms(self, image_embeds: torch.Tensor) -> CacheTerms:
        """The zero-shot logits, the affinities to the cache and the cache values for normalised `image_embeds`."""
        raise NotImplementedError

    def gamma_value(self) -> torch.Tensor | None:
        return None

    def compute_logits(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Logits `(N, C)` for L2-normalised image embeddings, with the stored α, β (and γ)."""
        return combine_cache_terms(self.cache_terms(image_embeds), self.alpha, self.beta, self.gamma_value())

    def forward(
        self,
        pixel_values: torch.FloatTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> APEOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`):
                Images from the processor; encoded by the frozen encoder.
            input_ids / attention_mask (*optional*):
                Tokenised prompts naming some of the built classes (what `pipeline("zero-shot-image-classification")`
                sends); `logits_per_image` then holds those classes' logits in prompt order. Unknown labels raise.
            image_embeds (`torch.FloatTensor` of shape `(batch_size, embed_dim)`, *optional*):
                Precomputed encoder embeddings instead of `pixel_values` (they are L2-normalised here).
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices; the output then carries the cross-entropy `loss`.
            return_loss (`bool`, *optional*):
                Compute the loss (requires `labels`). Defaults to `labels is not None`.
        """
        if (pixel_values is None) == (image_embeds is None):
            raise ValueError("Pass exactly one of `pixel_values` and `image_embeds`.")
        if image_embeds is None:
            image_embeds = self.get_image_features(pixel_values, **kwargs)
        else:
            image_embeds = self._check_image_embeds(image_embeds)
        logits = self.compute_logits(image_embeds)

        loss = None
        if return_loss and labels is None:
            raise ValueError("`return_loss=True` needs `labels` (class indices of the images).")
        if labels is not None and return_loss is not False:
            if labels.shape != (logits.shape[0],) or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(
                    f"`labels` must be {logits.shape[0]} class indices in [0, {self.num_classes}), got shape "
                    f"{tuple(labels.shape)} with values in [{labels.min().item()}, {labels.max().item()}]."
                )
            loss = F.cross_entropy(logits, labels)

        logits_per_image = logits
        if input_ids is not None:
            if self.config.class_token_ids is None:
                raise ValueError(
                    "This adapter was built without `class_token_ids`, so prompts cannot be mapped to its classes; "
                    "rebuild it with a tokenizer (`build_adapter(..., tokenizer=...)`) or read `logits` directly."
                )
            columns = match_candidate_labels(
                input_ids, attention_mask, self.config.class_token_ids, self.config.class_names
            )
            logits_per_image = logits[:, columns]

        output = APEOutput(
            loss=loss,
            logits=logits,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            image_embeds=image_embeds,
        )
        return output if return_dict is not False else output.to_tuple()


class TipAdapterModel(CacheAdapterPreTrainedModel):
    """Tip-Adapter (training-free): `100 · f Wᵀ + α · exp(−β (1 − f Fᵀ)) L`."""

    config: TipAdapterConfig
    config_class = TipAdapterConfig

    def cache_terms(self, image_embeds: torch.Tensor) -> CacheTerms:
        zero_shot = self.config.zero_shot_scale * image_embeds @ self.text_weights.t()
        return CacheTerms(zero_shot, image_embeds @ self.cache_keys.t(), self.cache_values, None)


class TipAdapterFModel(TipAdapterModel):
    """Tip-Adapter-F: Tip-Adapter whose cache keys are a trainable `(C·K, D)` parameter (values stay one-hot)."""

    config: TipAdapterFConfig
    config_class = TipAdapterFConfig
    _trainable_keys = True


class APEModel(CacheAdapterPreTrainedModel):
    """Training-free APE: the cache term on the Q refined channels, values re-weighted by `exp(γ · KL)`."""

    config: APEConfig
    config_class = APEConfig

    def _add_method_state(self, config: APEConfig) -> None:
        self.register_buffer("channel_idx", torch.arange(config.num_refined_channels))
        self.register_buffer("gamma", torch.tensor(float(config.init_gamma)))
        # The refined keys and the divergences depend only on buffers: computed once per buffer version.
        self._refined_memo: tuple | None = None

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, APEModel):
            init.copy_(module.channel_idx, torch.arange(module.config.num_refined_channels))
            init.constant_(module.gamma, module.config.init_gamma)

    def gamma_value(self) -> torch.Tensor | None:
        return self.gamma

    def refined_cache(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(F', div)`: the re-normalised Q-channel cache keys `(C·K, Q)` and `KL(L ‖ softmax(F' W'ᵀ))` `(C·K, 1)`.

        `div_i = Σ_c L_ic · log2((L_ic + 1e-6) / (P_ic + 1e-6))` (official `cache_div`); for one-hot values it is
        ≈ −log2 P(y_i | F'_i), large for cache entries that the zero-shot classifier gets wrong (paper §3.3, R_F'W').
        """
        state = (self.cache_keys, self.text_weights, self.cache_values, self.channel_idx)
        key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in state)
        if self._refined_memo is not None and self._refined_memo[0] == key:
            return self._refined_memo[1]
        refined_keys = F.normalize(self.cache_keys[:, self.channel_idx], dim=-1)
        refined_text = F.normalize(self.text_weights[:, self.channel_idx], dim=-1)
        probs = (refined_keys @ refined_text.t()).softmax(dim=1)
        values = self.cache_values
        divergence = (values * torch.log2((values + 1e-6) / (probs + 1e-6))).sum(dim=1, keepdim=True)
        self._refined_memo = (key, (refined_keys, divergence))
        return refined_keys, divergence

    def cache_terms(self, image_embeds: torch.Tensor) -> CacheTerms:
        zero_shot = self.config.zero_shot_scale * image_embeds @ self.text_weights.t()
        refined_keys, divergence = self.refined_cache()
        refined_images = F.normalize(image_embeds[:, self.channel_idx], dim=-1)
        return CacheTerms(zero_shot, refined_images @ refined_keys.t(), self.cache_values, divergence)


class APETModel(APEModel):
    """APE-T: APE plus a zero-init category residual `(C, Q)` shared by the text and the cache, and ones-init cache
    value weights `(C·K, 1)`; trainable parameters = C·Q + C·K. See `APETConfig.channel_mode` / `renormalize`."""

    config: APETConfig
    config_class = APETConfig

    def _add_method_state(self, config: APETConfig) -> None:
        super()._add_method_state(config)
        self.residual = nn.Parameter(torch.zeros(self.num_classes, config.num_refined_channels))
        self.value_weights = nn.Parameter(torch.ones(self.num_classes * self.shots_per_class, 1))

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, APETModel):
            init.zeros_(module.residual)
            init.ones_(module.value_weights)

    def gamma_value(self) -> torch.Tensor | None:
        # The learnable value weights replace R_F'W' (official `APE_Training`); γ is not used.
        return None

    def cache_terms(self, image_embeds: torch.Tensor) -> CacheTerms:
        idx, residual = self.channel_idx, self.residual
        # The same residual row moves the text weight of class c and each of its K cache keys.
        residual_keys = residual.repeat_interleave(self.shots_per_class, dim=0)
        text = self.text_weights.index_add(1, idx, residual)
        if self.config.renormalize:
            text = F.normalize(text, dim=-1)
        if self.config.channel_mode == "extract":
            keys = F.normalize(self.cache_keys[:, idx], dim=-1) + residual_keys
            images = F.normalize(image_embeds[:, idx], dim=-1)
        else:
            keys = self.cache_keys.index_add(1, idx, residual_keys)
            images = image_embeds
        if self.config.renormalize:
            keys = F.normalize(keys, dim=-1)
        zero_shot = self.config.zero_shot_scale * image_embeds @ text.t()
        return CacheTerms(zero_shot, images @ keys.t(), self.cache_values * self.value_weights, None)


__all__ = [
    "APEModel",
    "APEOutput",
    "APETModel",
    "CacheAdapterPreTrainedModel",
    "CacheTerms",
    "TipAdapterFModel",
    "TipAdapterModel",
    "combine_cache_terms",
    "match_candidate_labels",
    "one_hot_cache_values",
]
