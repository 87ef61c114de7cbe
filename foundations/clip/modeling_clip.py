"""The baseline dual encoder of the zoo: CLIP (softmax InfoNCE) or SigLIP (pairwise sigmoid) on transformers' towers.

Papers: CLIP, Radford et al. 2021 (arXiv 2103.00020); SigLIP, Zhai et al. 2023 (arXiv 2303.15343).
Official code: https://github.com/openai/CLIP (MIT), https://github.com/google-research/big_vision (Apache-2.0);
training reference https://github.com/mlfoundations/open_clip (MIT).

The towers are transformers' public `CLIPTextModel` / `CLIPVisionModel`, composed under the attribute names of
`CLIPModel`, so `openai/clip-vit-base-patch16`-layout checkpoints load with zero missing / unexpected keys and give the
same embeddings as `CLIPModel`. What differs from `CLIPModel`:
- the loss comes from `hf_clipzoo.losses` and is distributed-correct (gather with gradient, local loss), where
  `CLIPModel`'s `return_loss` is single-process only;
- `loss_type="sigmoid"` adds SigLIP's learnable `logit_bias` (absent otherwise, so CLIP checkpoints load cleanly);
- the output also carries `logit_scale` / `logit_bias`, named as the loss functions' arguments;
- inputs are validated with errors that say what was expected.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import CLIPPreTrainedModel, CLIPTextModel, CLIPVisionModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from .clipzoo_hub_export import RemoteCodeModelMixin
from .clipzoo_losses_contrastive import clip_loss
from .clipzoo_losses_sigmoid import sigmoid_loss
from .configuration_clip import ZooCLIPConfig


@dataclass
class ZooCLIPOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        The configured contrastive loss (InfoNCE or sigmoid) over the batch, gathered across processes.
    logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`):
        Scaled cosine similarities (plus the bias for the sigmoid variant).
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`):
        The transpose of `logits_per_image`.
    text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`):
        L2-normalised projected text embeddings.
    image_embeds (`torch.FloatTensor` of shape `(image_batch_size, projection_dim)`):
        L2-normalised projected image embeddings.
    logit_scale (`torch.FloatTensor` of shape `()`):
        The learnable *log* temperature (the loss functions take it in this form).
    logit_bias (`torch.FloatTensor` of shape `()`, *optional*):
        The learnable bias of the sigmoid loss.
    text_model_output / vision_model_output (`BaseModelOutputWithPooling`):
        The towers' outputs (hidden states, attentions when requested).
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    logit_scale: torch.FloatTensor | None = None
    logit_bias: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(
            self[k] if k not in ("text_model_output", "vision_model_output") else getattr(self, k).to_tuple()
            for k in self.keys()
        )


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int) -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`pixel_values` must be a torch.Tensor, got {type(pixel_values).__name__}.")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"`pixel_values` must have shape (batch, {num_channels}, height, width), got {tuple(pixel_values.shape)}. "
            "Use the model's processor to turn images into pixel values."
        )
    if pixel_values.shape[0] == 0:
        raise ValueError("`pixel_values` is an empty batch.")


def check_input_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise ValueError(f"`input_ids` must be a torch.Tensor, got {type(input_ids).__name__}.")
    if input_ids.ndim != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(
            f"`input_ids` must have shape (batch, sequence_length) with both > 0, got {tuple(input_ids.shape)}."
        )
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"`input_ids` must be an integer tensor, got dtype {input_ids.dtype}.")
    if input_ids.min() < 0 or input_ids.max() >= vocab_size:
        raise ValueError(
            f"`input_ids` must lie in [0, {vocab_size}), got values in [{input_ids.min()}, {input_ids.max()}]."
        )


class ZooCLIPPreTrainedModel(CLIPPreTrainedModel):
    config: ZooCLIPConfig
    base_model_prefix = "clip"

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ZooCLIPModel):
            factor = self.config.initializer_factor
            init.normal_(module.text_projection.weight, std=module.text_embed_dim**-0.5 * factor)
            init.normal_(module.visual_projection.weight, std=module.vision_embed_dim**-0.5 * factor)
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            if module.logit_bias is not None:
                init.constant_(module.logit_bias, self.config.logit_bias_init_value)


class ZooCLIPModel(RemoteCodeModelMixin, ZooCLIPPreTrainedModel):
    """CLIP / SigLIP dual encoder. Same parameters and names as transformers' `CLIPModel` (+ `logit_bias` for SigLIP)."""

    _remote_auto_classes = ("AutoModel", "AutoModelForZeroShotImageClassification")

    def __init__(self, config: ZooCLIPConfig):
        super().__init__(config)
        self.projection_dim = config.projection_dim
        self.text_embed_dim = config.text_config.hidden_size
        self.vision_embed_dim = config.vision_config.hidden_size

        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.visual_projection = nn.Linear(self.vision_embed_dim, self.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_embed_dim, self.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        if config.loss_type == "sigmoid":
            self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias_init_value)))
        else:
            self.register_parameter("logit_bias", None)
        self.post_init()

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """Text tower output whose `pooler_output` is the *projected, unnormalised* embedding (transformers v5 API)."""
        check_input_ids(input_ids, self.config.text_config.vocab_size)
        outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, return_dict=True, **kwargs
        )
        outputs.pooler_output = self.text_projection(outputs.pooler_output)
        return outputs

    def get_image_features(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, **kwargs
    ) -> BaseModelOutputWithPooling:
        """Vision tower output whose `pooler_output` is the *projected, unnormalised* embedding (transformers v5 API)."""
        check_pixel_values(pixel_values, self.config.vision_config.num_channels)
        outputs = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True, **kwargs
        )
        outputs.pooler_output = self.visual_projection(outputs.pooler_output)
        return outputs

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
    ) -> ZooCLIPOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(text_batch_size, sequence_length)`): token ids from the processor.
            pixel_values (`torch.FloatTensor` of shape `(image_batch_size, 3, height, width)`): from the processor.
            attention_mask (`torch.Tensor`, *optional*): 1 for real tokens, 0 for padding.
            return_loss (`bool`, *optional*): compute the configured loss; image `i` and text `i` are the positive
                pairs, so both batches must have the same size.
            interpolate_pos_encoding (`bool`): interpolate the vision position embeddings for other resolutions.
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("ZooCLIPModel.forward needs both `input_ids` and `pixel_values`.")
        if return_loss and input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"`return_loss=True` pairs image i with text i, so the batches must match: got "
                f"{pixel_values.shape[0]} images and {input_ids.shape[0]} texts."
            )
        vision_outputs = self.get_image_features(
            pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        text_outputs = self.get_text_features(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )

        image_embeds = nn.functional.normalize(vision_outputs.pooler_output, dim=-1)
        text_embeds = nn.functional.normalize(text_outputs.pooler_output, dim=-1)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()
        if self.logit_bias is not None:
            logits_per_text = logits_per_text + self.logit_bias

        loss = None
        if return_loss:
            if self.config.loss_type == "sigmoid":
                loss = sigmoid_loss(
                    image_embeds,
                    text_embeds,
                    self.logit_scale,
                    self.logit_bias,
                    chunk_size=self.config.sigmoid_chunk_size,
                )
            else:
                loss = clip_loss(image_embeds, text_embeds, self.logit_scale, local_loss=self.config.local_loss)

        output = ZooCLIPOutput(
            loss=loss,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            logit_scale=self.logit_scale,
            logit_bias=self.logit_bias,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = ["ZooCLIPModel", "ZooCLIPOutput", "ZooCLIPPreTrainedModel"]
