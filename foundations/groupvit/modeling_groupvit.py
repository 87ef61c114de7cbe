"""GroupViT: hierarchical grouping of image tokens learned from text supervision alone.

Paper: Xu, De Mello, Liu, Byeon, Breuel, Kautz, Wang, *GroupViT: Semantic Segmentation Emerges from Text Supervision*,
CVPR 2022, arXiv 2202.11094. Official code: https://github.com/NVlabs/GroupViT (NVIDIA Source Code License,
non-commercial; released weights `nvidia/groupvit-gcc-yfcc`, `nvidia/groupvit-gcc-redcaps`). This file: Apache-2.0.

Why transformers' GroupViT modules are reused: the released weights live on the Hub in the layout of transformers'
`GroupViTModel`, and its blocks (`GroupViTVisionEmbeddings`, `GroupViTVisionEncoder` with its stages and grouping
blocks, `GroupViTTextTransformer`) are a faithful port of the official `GroupViT` / `TextTransformer` (spec §1.8).
Building the towers from those same modules under the same attribute names makes checkpoints load with zero missing /
unexpected keys and gives bit-identical embeddings (tested), and keeps sdpa / gradient checkpointing of the blocks. The
parts the port lacks are added here:

- the assignment attention is our subclass (same parameters): straight-through Gumbel-softmax in training with a
  configurable temperature, straight-through hard argmax at eval (`config.eval_assignment="soft"` for the ablation);
- the vision tower interpolates the position embeddings to any input size (the segmentation protocol runs 448 px
  crops; the port's tower does not pass `interpolate_pos_encoding` and rejects non-224 inputs);
- the soft assignment maps of every grouping stage and the projected group embeddings are returned for zero-shot
  segmentation (`output_segmentation=True`); the official protocol itself is in the processor;
- the losses: image-text InfoNCE and the multi-label contrastive loss on noun prompts with its own temperature, both
  gathered with gradient across processes (`hf_clipzoo.losses`); the port's loss is single-process CLIP only;
- `convert_sync_batchnorm()` turns the projection MLPs' BatchNorm into a process-group BatchNorm (official: SyncBN),
  implemented with a gather-with-gradient so it also runs on CPU / gloo, where `torch.nn.SyncBatchNorm` refuses.

What differs from the official code (besides the layout):
- `logit_scale` is not clamped inside the forward (official: `exp().clamp(max=100)`); the training script clamps the
  parameter after each step (`clamp_logit_scale_`), which keeps the loss and its gradient consistent;
- `num_output_groups` has a third, unused entry (transformers' config convention);
- the text tower pools at the first EOS token (transformers) rather than at `argmax(ids)` — identical for the CLIP BPE,
  whose EOS has the highest id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.groupvit.modeling_groupvit import (
    GroupViTAssignAttention,
    GroupViTPreTrainedModel,
    GroupViTStage,
    GroupViTTextTransformer,
    GroupViTVisionEmbeddings,
    GroupViTVisionEncoder,
)
from transformers.utils import ModelOutput

from .clipzoo_hub_export import RemoteCodeModelMixin
from .clipzoo_losses_contrastive import clip_loss, multi_positive_contrastive_loss
from .clipzoo_losses_distributed import gather_batch_sizes, gather_with_grad, world_info
from .configuration_groupvit import ZooGroupViTConfig


# --- assignment ------------------------------------------------------------------------------------------------------
def hard_straight_through(soft: torch.Tensor, dim: int) -> torch.Tensor:
    """One-hot of `argmax(soft)` along `dim` in the forward pass, the gradient of `soft` in the backward pass.

    `y_hard - soft.detach() + soft` (official `hard_softmax`): the value is exactly the one-hot, the Jacobian is the
    identity onto `soft`, so gradients flow as through the soft assignment.
    """
    index = soft.argmax(dim, keepdim=True)
    hard = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return hard - soft.detach() + soft


def gumbel_softmax_straight_through(logits: torch.Tensor, tau: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Straight-through Gumbel-softmax (official `gumbel_softmax(hard=True)`): one-hot of the noisy argmax forward,
    gradient of `softmax((logits + g) / tau)` backward, `g ~ Gumbel(0, 1)`."""
    # -log(Exp(1)) is Gumbel(0, 1) and never produces log(0) (pytorch#41663, the reason the official code avoids
    # `-log(-log(U))`).
    gumbels = -torch.empty_like(logits).exponential_().log()
    soft = ((logits + gumbels) / tau).softmax(dim)
    return hard_straight_through(soft, dim)


class ZooGroupViTAssignAttention(GroupViTAssignAttention):
    """transformers' `GroupViTAssignAttention` (same parameters: q/k/v/proj) with the official assignment rules.

    The assignment runs over the *groups* (dim -2) for every image token: each token goes to exactly one group.
    Training: straight-through Gumbel-softmax (tau = `config.gumbel_tau`, noise off with `config.gumbel=False`).
    Eval: straight-through argmax (`eval_assignment="hard"`, official) or plain softmax (`"soft"`).
    Returns the output tokens and the *soft* (noise-free softmax) assignment, which segmentation uses.
    """

    def __init__(self, vision_config, *, gumbel: bool = True, gumbel_tau: float = 1.0, eval_assignment: str = "hard"):
        super().__init__(vision_config)
        self.gumbel = gumbel
        self.gumbel_tau = gumbel_tau
        self.eval_assignment = eval_assignment

    def assign(self, raw_attn: torch.Tensor) -> torch.Tensor:
        if self.training:
            if self.gumbel:
                return gumbel_softmax_straight_through(raw_attn, tau=self.gumbel_tau, dim=-2)
            return hard_straight_through(raw_attn.softmax(dim=-2), dim=-2)
        if self.eval_assignment == "hard":
            return hard_straight_through(raw_attn.softmax(dim=-2), dim=-2)
        return raw_attn.softmax(dim=-2)

    def forward(self, query, key):
        value = self.v_proj(key)
        raw_attn = (self.q_proj(query) @ self.k_proj(key).transpose(-2, -1)) * self.scale  # [B, groups, tokens]
        attn = self.assign(raw_attn)
        soft_attn = raw_attn.softmax(dim=-2)
        # Each group is the (+assign_eps smoothed) mean of the tokens assigned to it.
        attn = attn / (attn.sum(dim=-1, keepdim=True) + self.assign_eps)
        return self.proj(attn @ value), soft_attn


# --- process-group BatchNorm -----------------------------------------------------------------------------------------
class ProcessGroupBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics cover the batch of *all* processes (the official projectors use SyncBN).

    Same parameters and buffers as `nn.BatchNorm1d` (checkpoints are interchangeable). In training with several
    processes the local rows are gathered *with gradient* (`gather_with_grad`), so the statistics and their gradients
    equal those of one process on the concatenated batch; on one process, or at eval, it is `nn.BatchNorm1d`.
    `torch.nn.SyncBatchNorm` is not used because it refuses CPU tensors (gloo runs, the test suite).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        _, world_size = world_info()
        if not self.training or world_size == 1:
            return super().forward(input)
        everything = gather_with_grad(input)
        mean = everything.mean(dim=0)
        var = everything.var(dim=0, unbiased=False)
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None:
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = everything.shape[0]
                unbiased = var * n / max(n - 1, 1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        out = (input - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out


def convert_to_process_group_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every `nn.BatchNorm1d` under `module` by a `ProcessGroupBatchNorm1d` with the same state."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            new = ProcessGroupBatchNorm1d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(device=child.weight.device if child.affine else None)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_to_process_group_batchnorm(child)
    return module


# --- targets ---------------------------------------------------------------------------------------------------------
def multi_label_targets(num_images: int, num_prompts: int, *, device=None) -> torch.Tensor:
    """The `(num_images, num_images·num_prompts)` positive mask of the multi-label loss: image i owns prompts
    `i·P … i·P+P−1`. Row-normalised it is the paper's soft target (1/P on each own prompt); column-normalised it is
    the one-hot target of each prompt on its image."""
    owner = torch.arange(num_images * num_prompts, device=device) // num_prompts
    return (torch.arange(num_images, device=device)[:, None] == owner[None, :]).float()


# --- outputs ---------------------------------------------------------------------------------------------------------
@dataclass
class ZooGroupViTOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*): `L_IT + multi_label_loss_weight · L_ML` (return_loss=True).
    logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`): scaled cosine similarities.
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`): the transpose.
    text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`): L2-normalised caption embeddings.
    image_embeds (`torch.FloatTensor` of shape `(image_batch_size, projection_dim)`): L2-normalised image embeddings
        (the projected average of the final group tokens).
    prompt_embeds (`torch.FloatTensor` of shape `(image_batch_size·num_prompts, projection_dim)`, *optional*):
        L2-normalised embeddings of the noun prompts, when `prompt_input_ids` are given.
    group_embeds (`torch.FloatTensor` of shape `(image_batch_size, num_groups, projection_dim)`, *optional*):
        L2-normalised projected final group tokens (`output_segmentation=True`).
    assignment_maps (`tuple(torch.FloatTensor)`, *optional*): per grouping stage, the *soft* assignment
        `(image_batch_size, num_groups_i, num_inputs_i)`; stage 0's inputs are the patches in raster order
        (`output_segmentation=True` or `output_attentions=True`).
    feature_grid (`tuple(int, int)`, *optional*): the patch grid (height, width) the first assignment map covers.
    image_text_loss / multi_label_loss (`torch.FloatTensor` of shape `()`, *optional*): the two loss terms.
    logit_scale / multi_label_logit_scale (`torch.FloatTensor` of shape `()`): the learnable *log* temperatures.
    text_model_output / vision_model_output (`BaseModelOutputWithPooling`): the towers' outputs.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    prompt_embeds: torch.FloatTensor | None = None
    group_embeds: torch.FloatTensor | None = None
    assignment_maps: tuple[torch.FloatTensor, ...] | None = None
    feature_grid: tuple[int, int] | None = None
    image_text_loss: torch.FloatTensor | None = None
    multi_label_loss: torch.FloatTensor | None = None
    logit_scale: torch.FloatTensor | None = None
    multi_label_logit_scale: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(
            self[k] if k not in ("text_model_output", "vision_model_output") else getattr(self, k).to_tuple()
            for k in self.keys()
        )


# --- input checks ----------------------------------------------------------------------------------------------------
def check_pixel_values(pixel_values, num_channels: int, patch_size: int) -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`pixel_values` must be a torch.Tensor, got {type(pixel_values).__name__}.")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels or pixel_values.shape[0] == 0:
        raise ValueError(
            f"`pixel_values` must have shape (batch > 0, {num_channels}, height, width), got "
            f"{tuple(pixel_values.shape)}. Use the model's processor to turn images into pixel values."
        )
    height, width = pixel_values.shape[-2:]
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"The image ({height}x{width}) is smaller than one {patch_size}x{patch_size} patch; expected at least "
            f"{patch_size} pixels on each side."
        )


def check_input_ids(input_ids, vocab_size: int, name: str = "input_ids") -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(input_ids).__name__}.")
    if input_ids.ndim != 2 or 0 in input_ids.shape:
        raise ValueError(
            f"`{name}` must have shape (batch, sequence_length) with both > 0, got {tuple(input_ids.shape)}."
        )
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"`{name}` must be an integer tensor, got dtype {input_ids.dtype}.")
    if input_ids.min() < 0 or input_ids.max() >= vocab_size:
        raise ValueError(f"`{name}` must lie in [0, {vocab_size}), got [{input_ids.min()}, {input_ids.max()}].")


def _patch_size(vision_config) -> int:
    size = vision_config.patch_size
    return size if isinstance(size, int) else int(size[0])


# --- towers ----------------------------------------------------------------------------------------------------------
class ZooGroupViTVisionTransformer(nn.Module):
    """transformers' `GroupViTVisionTransformer` (same submodules and names: `embeddings`, `encoder`, `layernorm`) with
    the zoo's assignment attention, position-embedding interpolation and the soft assignment maps always available."""

    def __init__(self, config: ZooGroupViTConfig):
        super().__init__()
        vision_config = config.vision_config
        self.config = vision_config
        self.embeddings = GroupViTVisionEmbeddings(vision_config)
        self.encoder = GroupViTVisionEncoder(vision_config)
        self.layernorm = nn.LayerNorm(vision_config.hidden_size, eps=vision_config.layer_norm_eps)
        for stage in self.encoder.stages:
            if stage.downsample is not None:
                stage.downsample.assign = ZooGroupViTAssignAttention(
                    vision_config,
                    gumbel=config.gumbel,
                    gumbel_tau=config.gumbel_tau,
                    eval_assignment=config.eval_assignment,
                )

    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutputWithPooling:
        height, width = pixel_values.shape[-2:]
        image_size = self.config.image_size
        image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if interpolate_pos_encoding is None:
            # Official behaviour: any input size works, the learned grid is bicubic-resized to it (models/misc.py).
            interpolate_pos_encoding = (height, width) != image_size
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        encoder_outputs = self.encoder(
            hidden_states=hidden_states,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        last_hidden_state = self.layernorm(encoder_outputs.last_hidden_state)
        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=last_hidden_state.mean(dim=1),
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )


def _projection_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    # Official `ProjectMLP` (Conv1d k=1 + BN + ReLU + Conv1d), in transformers' key layout (Linear = Conv1d k=1).
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=True),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim, bias=True),
    )


class ZooGroupViTPreTrainedModel(GroupViTPreTrainedModel):
    config: ZooGroupViTConfig
    config_class = ZooGroupViTConfig
    base_model_prefix = "groupvit"
    # transformers-layout checkpoints have no multi-label temperature; it starts from its config value.
    _keys_to_ignore_on_load_missing = [r"multi_label_logit_scale"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, GroupViTVisionEmbeddings):
            # Official `pos_embed_type='simple'`: trunc_normal std .02.
            init.trunc_normal_(module.position_embeddings, std=0.02)
        elif isinstance(module, GroupViTStage) and module.group_token is not None:
            # Official: the first stage's group tokens are trunc_normal .02; later stages start at zero and get the
            # projected previous groups added (`zero_init_group_token`).
            if module.group_projector is None:
                init.trunc_normal_(module.group_token, std=0.02)
            else:
                init.zeros_(module.group_token)
        elif isinstance(module, ZooGroupViTModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            if module.multi_label_logit_scale is not None:
                init.constant_(module.multi_label_logit_scale, self.config.multi_label_logit_scale_init_value)


class ZooGroupViTModel(RemoteCodeModelMixin, ZooGroupViTPreTrainedModel):
    """GroupViT dual encoder with the official training objective; `GroupViTModel` key layout (+ the multi-label
    temperature unless `share_temperature=True`)."""

    _remote_auto_classes = ("AutoModel", "AutoModelForZeroShotImageClassification")
    _custom_pipelines = {
        "zero-shot-image-segmentation": "hf_clipzoo.pipelines.zero_shot_segmentation.ZeroShotSegmentationPipeline"
    }
    main_input_name = "pixel_values"

    def __init__(self, config: ZooGroupViTConfig):
        super().__init__(config)
        self.projection_dim = config.projection_dim
        self.text_model = GroupViTTextTransformer(config.text_config)
        self.vision_model = ZooGroupViTVisionTransformer(config)
        self.visual_projection = _projection_mlp(
            config.vision_config.hidden_size, config.projection_intermediate_dim, config.projection_dim
        )
        self.text_projection = _projection_mlp(
            config.text_config.hidden_size, config.projection_intermediate_dim, config.projection_dim
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        if config.share_temperature:
            self.register_parameter("multi_label_logit_scale", None)
        else:
            self.multi_label_logit_scale = nn.Parameter(torch.tensor(float(config.multi_label_logit_scale_init_value)))
        self.post_init()

    # --- utilities -------------------------------------------------------------------------------------------
    def convert_sync_batchnorm(self) -> ZooGroupViTModel:
        """Make the projection MLPs' BatchNorm compute statistics over all processes (official SyncBN). Call before
        wrapping the model for multi-process training; the state dict keys do not change."""
        convert_to_process_group_batchnorm(self.visual_projection)
        convert_to_process_group_batchnorm(self.text_projection)
        return self

    @property
    def patch_size(self) -> int:
        return _patch_size(self.config.vision_config)

    # --- features --------------------------------------------------------------------------------------------
    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, position_ids=None, **kwargs
    ) -> BaseModelOutputWithPooling:
        """Text tower output whose `pooler_output` is the *projected, unnormalised* embedding (transformers v5 API)."""
        check_input_ids(input_ids, self.config.text_config.vocab_size)
        outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, return_dict=True, **kwargs
        )
        outputs.pooler_output = self.text_projection(outputs.pooler_output)
        return outputs

    def get_image_features(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None = None, **kwargs
    ) -> BaseModelOutputWithPooling:
        """Vision tower output whose `pooler_output` is the *projected, unnormalised* embedding (transformers v5 API)."""
        check_pixel_values(pixel_values, self.config.vision_config.num_channels, self.patch_size)
        outputs = self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        outputs.pooler_output = self.visual_projection(outputs.pooler_output)
        return outputs

    def get_group_embeds(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """L2-normalised projections of the final group tokens `(batch, groups, projection_dim)` (official
        `GroupViTSegInference`: each segment token through the image projector)."""
        batch, groups, hidden = last_hidden_state.shape
        projected = self.visual_projection(last_hidden_state.reshape(batch * groups, hidden))
        return F.normalize(projected.reshape(batch, groups, -1), dim=-1)

    # --- forward ---------------------------------------------------------------------------------------------
    def _encode_texts(self, input_ids, attention_mask, prompt_input_ids, prompt_attention_mask, position_ids):
        """Captions and prompts through the text tower in *one* pass, as the official model does ([B, 1+P, 77]):
        the projector's BatchNorm then sees the statistics of all texts of the batch."""
        if prompt_input_ids is None:
            return self.get_text_features(input_ids, attention_mask, position_ids), None
        check_input_ids(prompt_input_ids, self.config.text_config.vocab_size, "prompt_input_ids")
        length = max(input_ids.shape[1], prompt_input_ids.shape[1])
        pad_id = self.config.text_config.pad_token_id
        pad_id = self.config.text_config.eos_token_id if pad_id is None else pad_id

        def pad(ids, mask):
            mask = torch.ones_like(ids) if mask is None else mask
            extra = length - ids.shape[1]
            # Padding goes after the EOS token; the causal mask keeps it from changing the pooled EOS feature.
            return F.pad(ids, (0, extra), value=int(pad_id)), F.pad(mask, (0, extra), value=0)

        ids_a, mask_a = pad(input_ids, attention_mask)
        ids_b, mask_b = pad(prompt_input_ids, prompt_attention_mask)
        outputs = self.get_text_features(torch.cat([ids_a, ids_b]), torch.cat([mask_a, mask_b]))
        return outputs, input_ids.shape[0]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        prompt_input_ids: torch.LongTensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        output_segmentation: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ZooGroupViTOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(text_batch_size, sequence_length)`): caption / class-prompt ids.
            pixel_values (`torch.FloatTensor` of shape `(image_batch_size, 3, height, width)`): any size ≥ one patch;
                the position embeddings are interpolated when it differs from `vision_config.image_size`.
            prompt_input_ids (`torch.LongTensor` of shape `(image_batch_size·P, sequence_length)`, *optional*): the
                noun prompts of each image, image-major (image i owns rows i·P … i·P+P−1); enables the multi-label
                loss (`GroupViTProcessor.build_prompts` makes them).
            return_loss (`bool`, *optional*): `L_IT` over the global batch (image i ↔ caption i) plus
                `multi_label_loss_weight · L_ML` when prompts are given.
            output_segmentation (`bool`, *optional*): also return the soft assignment maps of every grouping stage and
                the projected group embeddings (what `post_process_semantic_segmentation` needs).
            interpolate_pos_encoding (`bool`, *optional*): force / forbid interpolation; `None` = when needed.
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("ZooGroupViTModel.forward needs both `input_ids` and `pixel_values`.")
        num_images = pixel_values.shape[0]
        if return_loss and input_ids.shape[0] != num_images:
            raise ValueError(
                f"`return_loss=True` pairs image i with caption i, so the batches must match: got {num_images} images "
                f"and {input_ids.shape[0]} captions."
            )
        if prompt_input_ids is not None and prompt_input_ids.shape[0] % num_images != 0:
            raise ValueError(
                f"`prompt_input_ids` must hold the same number of prompts for every image ({num_images} images), got "
                f"{prompt_input_ids.shape[0]} prompts, which {num_images} does not divide."
            )
        output_attentions = bool(output_segmentation or output_attentions)
        vision_outputs = self.get_image_features(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=bool(output_hidden_states),
        )
        text_outputs, split = self._encode_texts(
            input_ids, attention_mask, prompt_input_ids, prompt_attention_mask, position_ids
        )
        all_text = F.normalize(text_outputs.pooler_output, dim=-1)
        text_embeds, prompt_embeds = (all_text, None) if split is None else (all_text[:split], all_text[split:])
        image_embeds = F.normalize(vision_outputs.pooler_output, dim=-1)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()

        group_embeds = None
        feature_grid = (pixel_values.shape[-2] // self.patch_size, pixel_values.shape[-1] // self.patch_size)
        if output_segmentation:
            group_embeds = self.get_group_embeds(vision_outputs.last_hidden_state)

        loss = image_text_loss = multi_label_loss = None
        if return_loss:
            image_text_loss = clip_loss(image_embeds, text_embeds, self.logit_scale, local_loss=self.config.local_loss)
            loss = image_text_loss
            if prompt_embeds is not None and self.config.multi_label_loss_weight > 0:
                multi_label_loss = self.multi_label_loss(image_embeds, prompt_embeds)
                loss = loss + self.config.multi_label_loss_weight * multi_label_loss

        output = ZooGroupViTOutput(
            loss=loss,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            prompt_embeds=prompt_embeds,
            group_embeds=group_embeds,
            assignment_maps=vision_outputs.attentions if output_attentions else None,
            feature_grid=feature_grid if output_attentions else None,
            image_text_loss=image_text_loss,
            multi_label_loss=multi_label_loss,
            logit_scale=self.logit_scale,
            multi_label_logit_scale=self.multi_label_logit_scale,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )
        return output if return_dict is not False else output.to_tuple()

    def multi_label_loss(self, image_embeds: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """`L_ML` (paper §3.2, Eq. 5): each image against all prompts of the global batch with target 1/P on each of
        its own P prompts, each prompt against all images with a one-hot target; mean of the two directions."""
        num_prompts = prompt_embeds.shape[0] // image_embeds.shape[0]
        sizes = gather_batch_sizes(image_embeds.shape[0], device=image_embeds.device)
        mask = multi_label_targets(sum(sizes), num_prompts, device=image_embeds.device)
        scale = self.logit_scale if self.multi_label_logit_scale is None else self.multi_label_logit_scale
        return multi_positive_contrastive_loss(
            image_embeds, prompt_embeds, scale, mask, local_loss=self.config.local_loss
        )


__all__ = [
    "ProcessGroupBatchNorm1d",
    "ZooGroupViTAssignAttention",
    "ZooGroupViTModel",
    "ZooGroupViTOutput",
    "ZooGroupViTPreTrainedModel",
    "ZooGroupViTVisionTransformer",
    "convert_to_process_group_batchnorm",
    "gumbel_softmax_straight_through",
    "hard_straight_through",
    "multi_label_targets",
]
