"""FFF: "Fixing Flawed Foundations in contrastive pre-training results in very strong Vision-Language models".

Paper: Bulat, Ouali, Tzimiropoulos, CVPR 2024, arXiv 2405.10286. Official code: none published (no repository, no
weights). License of this implementation: Apache-2.0, like the rest of hf-clipzoo.

The model is the zoo's CLIP dual encoder (transformers' `CLIPTextModel` / `CLIPVisionModel` towers, `CLIPModel` key
layout, SigLIP's learnable `logit_scale` and `logit_bias`) with FFF's training objective:
- *batch text augmentation*: a batch holds B images and, for each, its raw caption plus up to K pseudo-captions;
  `text_owner[j]` says which image text j belongs to, and all of an image's captions are its positives;
- *positive mining*: the assignment matrix adds (image i, text j) pairs whose image–text, image–image or text–text
  similarity passes a threshold (`hf_clipzoo.losses.positives.mine_positives`), over the global batch of all
  processes, so mined positives cross processes;
- the *sigmoid loss* with that mask (`hf_clipzoo.losses.sigmoid_loss`, distributed and optionally chunked).

What differs from the paper: without official code, the mining rule, thresholds and feature source are
reconstructions, exposed in `FFFConfig` and marked unverified there. At inference FFF is a plain dual encoder, so
zero-shot classification and retrieval work exactly as for CLIP (the bias does not change rankings).
"""

from dataclasses import dataclass

import torch
from torch import nn

from ...losses.positives import check_text_owner, mined_positive_loss
from ..clip.modeling_clip import ZooCLIPModel, ZooCLIPOutput
from .configuration_fff import FFFConfig


@dataclass
class FFFOutput(ZooCLIPOutput):
    r"""
    Everything [`ZooCLIPOutput`] holds, plus, when `return_loss=True`:

    positive_mask (`torch.BoolTensor` of shape `(global_num_images, global_num_texts)`, *optional*):
        The assignment matrix used by the loss: each image's own captions plus the mined pairs (all processes).
    num_mined_positives (`torch.LongTensor` of shape `()`, *optional*):
        Pairs the mining added beyond the images' own captions, over the global batch (the same on every process).
    """

    positive_mask: torch.BoolTensor | None = None
    num_mined_positives: torch.LongTensor | None = None


class FFFModel(ZooCLIPModel):
    """CLIP/SigLIP dual encoder trained with FFF's mined positives and several captions per image."""

    config_class = FFFConfig
    config: FFFConfig
    # Fine-tuned from a CLIP (softmax) baseline, which has no sigmoid bias: FFF's starts at `logit_bias_init_value`.
    _keys_to_ignore_on_load_missing = [r"^logit_bias$"]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        text_owner: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        mining_image_embeds: torch.FloatTensor | None = None,
        mining_text_embeds: torch.FloatTensor | None = None,
        mine: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FFFOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(num_texts, sequence_length)`): every caption of the batch.
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, height, width)`): the images.
            text_owner (`torch.LongTensor` of shape `(num_texts,)`, *optional*): local index of the image each text
                describes (the processor returns it for lists of captions per image). Default: text i ↔ image i.
            return_loss (`bool`, *optional*): compute FFF's loss with the mined assignment matrix.
            mining_image_embeds / mining_text_embeds (`torch.FloatTensor`, *optional*): the features to mine with
                when `config.mining_source` is `"teacher"` or `"precomputed"` (one row per local image / text).
            mine (`bool`, *optional*): override `config.mining` for this call (e.g. no mining during a warm-up from
                random initialisation, where every pair looks alike).
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("FFFModel.forward needs both `input_ids` and `pixel_values`.")
        num_images, num_texts = pixel_values.shape[0], input_ids.shape[0]
        if text_owner is None:
            if return_loss and num_texts != num_images:
                raise ValueError(
                    f"Got {num_images} images and {num_texts} texts without `text_owner`: pass `text_owner` (the image "
                    "index of every text; the FFF processor returns it for lists of captions per image)."
                )
        else:
            if text_owner.shape != (num_texts,):
                raise ValueError(
                    f"`text_owner` must have shape ({num_texts},) (one entry per text), got {tuple(text_owner.shape)}."
                )
            text_owner = check_text_owner(text_owner.to(input_ids.device), num_images, "FFFModel.forward")

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
        output = FFFOutput(**{key: outputs[key] for key in outputs.keys()})
        if return_loss:
            if text_owner is None:
                text_owner = torch.arange(num_texts, device=input_ids.device)
            output.loss, output.positive_mask, output.num_mined_positives = self._fff_loss(
                output.image_embeds,
                output.text_embeds,
                text_owner,
                mining_image_embeds,
                mining_text_embeds,
                self.config.mining if mine is None else mine,
            )
        return output if return_dict is not False else output.to_tuple()

    def _mining_features(self, image_embeds, text_embeds, mining_image_embeds, mining_text_embeds):
        if self.config.mining_source == "model":
            return None  # the loss mines with the embeddings themselves, detached
        if mining_image_embeds is None or mining_text_embeds is None:
            raise ValueError(
                f"`config.mining_source={self.config.mining_source!r}` needs `mining_image_embeds` and "
                "`mining_text_embeds` (teacher or precomputed features, one row per image / text of the batch)."
            )
        if (
            mining_image_embeds.shape[0] != image_embeds.shape[0]
            or mining_text_embeds.shape[0] != text_embeds.shape[0]
        ):
            raise ValueError(
                f"Mining features must have one row per image / text: got {mining_image_embeds.shape[0]} and "
                f"{mining_text_embeds.shape[0]} for {image_embeds.shape[0]} images and {text_embeds.shape[0]} texts."
            )
        return (
            nn.functional.normalize(mining_image_embeds.detach().float(), dim=-1),
            nn.functional.normalize(mining_text_embeds.detach().float(), dim=-1),
        )

    def _fff_loss(self, image_embeds, text_embeds, text_owner, mining_image_embeds, mining_text_embeds, mine):
        config = self.config
        return mined_positive_loss(
            image_embeds,
            text_embeds,
            text_owner,
            self.logit_scale,
            self.logit_bias,
            loss_type=config.loss_type,
            mine=mine,
            mining_features=self._mining_features(image_embeds, text_embeds, mining_image_embeds, mining_text_embeds)
            if mine
            else None,
            image_text_threshold=config.mining_image_text_threshold,
            image_image_threshold=config.mining_image_image_threshold,
            text_text_threshold=config.mining_text_text_threshold,
            combination=config.mining_combination,
            text_text_reference=config.mining_text_text_reference,
            chunk_size=config.sigmoid_chunk_size,
            local_loss=config.local_loss,
        )


__all__ = ["FFFModel", "FFFOutput"]
