"""DreamLIP: "Language-Image Pre-training with Long Captions".

Paper: Kecheng Zheng, Yifei Zhang, Wei Wu, Fan Lu, Shuailei Ma, Xin Jin, Wei Chen, Yujun Shen, ECCV 2024,
arXiv 2403.17007. Official repository: https://github.com/zyf0619sjtu/DreamLIP (also ant-research/DreamLIP), an
open_clip fork under the MIT license; its training code is not released, its losses and data sampler are. License of
this implementation: Apache-2.0, like the rest of hf-clipzoo (written from the paper and a reading of the released
code, none of which is copied).

The model is the zoo's CLIP dual encoder (transformers' `CLIPTextModel` / `CLIPVisionModel`, `CLIPModel` key layout)
that also returns the vision tower's *patch tokens in the joint space* and has a second, *local* temperature. Each
training image brings `1 + K` captions (its raw caption and K subcaptions sampled from long MLLM captions, see
`hf_clipzoo.data.subcaptions`), passed as `input_ids` of shape `(batch, 1 + K, length)`. `return_loss=True` computes

    loss = λ_c · multi_caption_contrastive_loss + λ_s · subcaption_grouping_loss (+ λ_o · multi_caption_circle_loss)

through `hf_clipzoo.losses.grouping` (distributed-correct). At inference DreamLIP is a plain CLIP model (zero-shot
classification and retrieval as for CLIP); `get_patch_features` gives the patch embeddings for dense grounding.

What differs from the released code (each a `DreamLIPConfig` option, the code's behaviour included where it works):
- the patch tokens are projected into the joint space (`patch_tokens`; the code returns 768-d unprojected tokens
  that cannot be compared with 512-d captions);
- the grouping loss has a learned temperature `logit_scale_local` (`local_logit_scale`; the code's is `None`);
- in the grouping loss the code re-views slot-major gathered caption features as image-major
  (`stack(dim=0).view(-1, c)` then `.view(bs, number_text, c)`), pairing captions with the wrong images' patches;
  here caption (i, s) is always grouped over image i's patches;
- the grouping weights fall back to mean pooling where min-max normalisation has nothing left (the code divides by 0);
- patch tokens are not gathered across processes: the grouping is per image, only grouped embeddings are gathered;
- optional position interpolation lets the text tower read captions longer than 77 tokens
  (`text_position_interpolation`, off by default, exactly neutral for captions of at most 77 tokens);
- the released code's optional `--use_multipos_loss` term (`I2mT_loss`, a circle loss from each image to all
  captions, image → text only) is `circle_loss_weight` (off by default as in the released scripts and the paper;
  0.1 reproduces the code's `/ 10`), with its `--gamma` / `--margin` as `circle_loss_gamma` / `circle_loss_margin`.
  Its other optional extras (OT loss, noun-tag loss, synthetic image views) have no counterpart.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.models.clip.modeling_clip import CLIPTextEmbeddings

from ...losses.grouping import (
    multi_caption_circle_loss,
    multi_caption_contrastive_loss,
    subcaption_grouping_loss,
)
from ..clip.modeling_clip import ZooCLIPModel, ZooCLIPOutput, check_pixel_values
from .configuration_dreamlip import DreamLIPConfig


class InterpolatedCLIPTextEmbeddings(CLIPTextEmbeddings):
    """CLIP text embeddings that also accept captions longer than the position table, by position interpolation.

    A caption's length `L` is the index of its first end-of-text token + 1 (transformers pools the text there); padding
    after it does not change the caption's embedding because the text tower is causal. For `L <= P` (P = the table's
    rows, 77) the positions are `0..L-1` as in `CLIPTextEmbeddings`; for `L > P` position p reads the table at the
    fractional row `p·(P−1)/(L−1)`, linearly interpolated, so the whole caption spans the learned table. Same
    parameters and buffers as `CLIPTextEmbeddings` (its checkpoint keys).
    """

    def __init__(self, config, max_length: int):
        super().__init__(config)
        self.max_length = max_length
        self.eos_token_id = config.eos_token_id

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        table = self.position_embedding.weight
        num_positions = table.shape[0]
        seq_length = input_ids.shape[-1] if input_ids is not None else inputs_embeds.shape[-2]
        if seq_length <= num_positions or position_ids is not None or input_ids is None:
            return super().forward(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        if seq_length > self.max_length:
            raise ValueError(
                f"Captions of {seq_length} tokens exceed `max_text_length` ({self.max_length}); truncate them in the "
                "tokenizer or raise `max_text_length`."
            )
        if inputs_embeds is None:
            inputs_embeds = self.token_embedding(input_ids)
        is_eos = input_ids == self.eos_token_id
        # First end-of-text position + 1; captions without one use the whole sequence.
        lengths = torch.where(
            is_eos.any(-1), is_eos.int().argmax(-1) + 1, torch.full_like(input_ids[:, 0], seq_length)
        )
        lengths = lengths.clamp(min=1).to(table.dtype)[:, None]
        positions = torch.arange(seq_length, device=input_ids.device, dtype=table.dtype)[None, :]
        stretched = positions * (num_positions - 1) / (lengths - 1).clamp(min=1)
        # Short captions keep integer positions (their embeddings stay exactly those of the stock table).
        fractional = torch.where(lengths > num_positions, stretched, positions).clamp(max=num_positions - 1)
        low = fractional.floor().long()
        high = (low + 1).clamp(max=num_positions - 1)
        weight = (fractional - low.to(table.dtype))[..., None]
        position_embeddings = table[low] * (1 - weight) + table[high] * weight
        return inputs_embeds + position_embeddings


@dataclass
class DreamLIPOutput(ZooCLIPOutput):
    r"""
    Everything [`ZooCLIPOutput`] holds (`text_embeds` flattened to `(batch·(1+K), dim)` for 3-D `input_ids`, image-major,
    and `logits_per_image` of shape `(batch, batch·(1+K))`), plus:

    patch_embeds (`torch.FloatTensor` of shape `(batch, num_patches, projection_dim)`):
        L2-normalised patch tokens in the joint space (`config.patch_tokens`), for dense grounding.
    logit_scale_local (`torch.FloatTensor` of shape `()`):
        The log temperature of the grouping loss (the global one with `local_logit_scale="shared"`).
    contrastive_loss / grouping_loss / circle_loss (`torch.FloatTensor` of shape `()`, *optional*, with
        `return_loss=True`): the unweighted terms of `loss` (each `None` when its weight is 0).
    num_texts_per_image (`int`):
        Caption slots per image (1 + K; 1 for 2-D `input_ids`).
    """

    patch_embeds: torch.FloatTensor | None = None
    logit_scale_local: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    grouping_loss: torch.FloatTensor | None = None
    circle_loss: torch.FloatTensor | None = None
    num_texts_per_image: int | None = None


class DreamLIPModel(ZooCLIPModel):
    """CLIP dual encoder with projected patch tokens and a local temperature, trained with DreamLIP's losses."""

    config_class = DreamLIPConfig
    config: DreamLIPConfig
    # Fine-tuned from a CLIP baseline: it has no local temperature (DreamLIP's starts at
    # `local_logit_scale_init_value`), and a SigLIP baseline's sigmoid bias has no use in DreamLIP's softmax losses.
    _keys_to_ignore_on_load_missing = [r"^logit_scale_local$"]
    _keys_to_ignore_on_load_unexpected = [r"^logit_bias$"]

    def __init__(self, config: DreamLIPConfig):
        super().__init__(config)
        if config.local_logit_scale == "learned":
            self.logit_scale_local = nn.Parameter(torch.tensor(float(config.local_logit_scale_init_value)))
        else:
            self.register_parameter("logit_scale_local", None)
        if config.text_position_interpolation:
            # Same submodules and buffer, new forward: the checkpoint keys do not change.
            stock = self.text_model.embeddings
            embeddings = InterpolatedCLIPTextEmbeddings(config.text_config, config.max_text_length)
            embeddings.token_embedding = stock.token_embedding
            embeddings.position_embedding = stock.position_embedding
            embeddings.position_ids = stock.position_ids
            self.text_model.embeddings = embeddings
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, DreamLIPModel) and getattr(module, "logit_scale_local", None) is not None:
            init.constant_(module.logit_scale_local, self.config.local_logit_scale_init_value)

    def _local_logit_scale(self) -> torch.Tensor:
        return self.logit_scale_local if self.logit_scale_local is not None else self.logit_scale

    def _patch_embeds(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """Patch tokens (CLS dropped) through the final layer norm and, by default, the visual projection."""
        patches = self.vision_model.post_layernorm(last_hidden_state[:, 1:, :])
        return self.visual_projection(patches) if self.config.patch_tokens == "projected" else patches

    def get_patch_features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """Unnormalised patch embeddings `(batch, num_patches, dim)` in the joint space (dense grounding)."""
        check_pixel_values(pixel_values, self.config.vision_config.num_channels)
        outputs = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True
        )
        return self._patch_embeds(outputs.last_hidden_state)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DreamLIPOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, 1 + K, length)` or `(num_texts, length)`): every image's
                caption slots (raw caption first; the processor builds them from one list of captions per image), or
                a flat list of texts as for CLIP (zero-shot classification, retrieval).
            pixel_values (`torch.FloatTensor` of shape `(batch, 3, height, width)`): the images.
            attention_mask (`torch.Tensor`, *optional*): same shape as `input_ids`.
            return_loss (`bool`, *optional*): compute DreamLIP's loss. Flat `input_ids` then pair text i with
                image i (one caption slot per image).
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("DreamLIPModel.forward needs both `input_ids` and `pixel_values`.")
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim not in (2, 3):
            shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(
                f"`input_ids` must have shape (batch, 1 + K, length) or (num_texts, length), got {shape}."
            )
        num_images = pixel_values.shape[0] if isinstance(pixel_values, torch.Tensor) else None
        num_slots = 1
        if input_ids.ndim == 3:
            if input_ids.shape[0] != num_images:
                raise ValueError(
                    f"`input_ids` of shape {tuple(input_ids.shape)} holds caption slots for {input_ids.shape[0]} "
                    f"images, but {num_images} images were given."
                )
            if attention_mask is not None and attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"`attention_mask` {tuple(attention_mask.shape)} must match `input_ids` {tuple(input_ids.shape)}."
                )
            num_slots = input_ids.shape[1]
            input_ids = input_ids.flatten(0, 1)
            attention_mask = attention_mask.flatten(0, 1) if attention_mask is not None else None
        elif return_loss and input_ids.shape[0] != num_images:
            raise ValueError(
                f"`return_loss=True` with flat `input_ids` pairs text i with image i, but got {num_images} images and "
                f"{input_ids.shape[0]} texts; pass captions of shape (batch, 1 + K, length) for several per image."
            )

        outputs = super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            return_loss=False,
            interpolate_pos_encoding=interpolate_pos_encoding,
            return_dict=True,
            **kwargs,
        )
        output = DreamLIPOutput(**{key: outputs[key] for key in outputs.keys()})
        patch_embeds = self._patch_embeds(outputs.vision_model_output.last_hidden_state)
        output.patch_embeds = nn.functional.normalize(patch_embeds, dim=-1)
        output.logit_scale_local = self._local_logit_scale()
        output.num_texts_per_image = num_slots

        if return_loss:
            config = self.config
            text_embeds = output.text_embeds.reshape(num_images, num_slots, -1)
            loss = 0.0
            if config.contrastive_loss_weight > 0:
                output.contrastive_loss = multi_caption_contrastive_loss(
                    output.image_embeds,
                    text_embeds,
                    self.logit_scale,
                    mode=config.contrastive_mode,
                    local_loss=config.local_loss,
                )
                loss = loss + config.contrastive_loss_weight * output.contrastive_loss
            if config.grouping_loss_weight > 0:
                # The grouping weights compare captions with *normalised* patch tokens (released code, spec).
                output.grouping_loss = subcaption_grouping_loss(
                    text_embeds,
                    output.patch_embeds,
                    self._local_logit_scale(),
                    norm=config.grouping_norm,
                    threshold=config.grouping_threshold,
                    negatives=config.grouping_negatives,
                    local_loss=config.local_loss,
                )
                loss = loss + config.grouping_loss_weight * output.grouping_loss
            if config.circle_loss_weight > 0:
                output.circle_loss = multi_caption_circle_loss(
                    output.image_embeds,
                    text_embeds,
                    gamma=config.circle_loss_gamma,
                    margin=config.circle_loss_margin,
                    local_loss=config.local_loss,
                )
                loss = loss + config.circle_loss_weight * output.circle_loss
            output.loss = loss
        return output if return_dict is not False else output.to_tuple()


__all__ = ["DreamLIPModel", "DreamLIPOutput", "InterpolatedCLIPTextEmbeddings"]
