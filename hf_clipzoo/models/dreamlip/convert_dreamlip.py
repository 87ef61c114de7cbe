"""Convert DreamLIP's released open_clip checkpoints (ViT-B/16 trained on CC3M / CC12M / YFCC15M / merged-30M with
long captions) into [`DreamLIPModel`].

The released `.pt` files are open_clip training checkpoints: `{"epoch", "name", "state_dict": {"module.<key>": ...},
...}` of open_clip's OpenAI-style `CLIP` with a `ViT-B-16` config (`nn.GELU`, not QuickGELU). The towers convert
exactly like any open_clip ViT (`hf_clipzoo.models.clip.convert_clip`); what is DreamLIP-specific:

- `logit_scale_local`: the released model leaves it `None`, so checkpoints normally lack it; when absent, the new
  parameter starts at `config.local_logit_scale_init_value` (log of 1/0.07). If present, it is kept.
- `multi_classifier.*`: the optional noun-tagging head of the released code (`use_meta_noun`, not part of the
  method). It has no place in the model and is dropped with a log message.

    python -m hf_clipzoo.models.dreamlip.convert_dreamlip --checkpoint dreamlip_cc30m_vitb16.pt --output_dir dreamlip-b16

Files are read with `torch.load(weights_only=True)` (or safetensors); no pickle is executed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from ...backbones.convert import converter_parser, load_state_dict_file
from ..clip.convert_clip import (
    OPENAI_VOCAB_SIZE,
    clean_state_dict,
    convert_openai_clip_state_dict,
    infer_clip_config,
)
from .configuration_dreamlip import DreamLIPConfig
from .modeling_dreamlip import DreamLIPModel

logger = logging.getLogger(__name__)

DROPPED_PREFIXES = ("multi_classifier.",)


def _split_dreamlip_entries(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, torch.Tensor | None]:
    """The CLIP part of a DreamLIP state dict, and its `logit_scale_local` (None when absent)."""
    source = dict(clean_state_dict(state_dict))
    local_scale = source.pop("logit_scale_local", None)
    dropped = sorted(key for key in source if key.startswith(DROPPED_PREFIXES))
    if dropped:
        logger.info("Dropping %d entries of the noun-tagging head (not part of DreamLIP): %s", len(dropped), dropped)
    return {key: value for key, value in source.items() if key not in dropped}, local_scale


def infer_dreamlip_config(
    state_dict: Mapping[str, torch.Tensor], hidden_act: str = "gelu", **kwargs
) -> DreamLIPConfig:
    """A `DreamLIPConfig` read off a DreamLIP / open_clip ViT state dict (tower shapes as `infer_clip_config`).

    `hidden_act` defaults to `"gelu"`: the released models use open_clip's `ViT-B-16` config (`nn.GELU`). Further
    keyword arguments set `DreamLIPConfig` fields (e.g. `grouping_negatives`, `text_position_interpolation`).
    """
    clip_part, _ = _split_dreamlip_entries(state_dict)
    clip_config = infer_clip_config(clip_part, hidden_act=hidden_act)
    return DreamLIPConfig(
        text_config=clip_config.text_config.to_dict(),
        vision_config=clip_config.vision_config.to_dict(),
        projection_dim=clip_config.projection_dim,
        **kwargs,
    )


def convert_dreamlip_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: DreamLIPConfig, dtype: torch.dtype | None = torch.float32
) -> dict[str, torch.Tensor]:
    """Rename a DreamLIP (open_clip) state dict into `DreamLIPModel`'s keys; `load_state_dict(strict=True)` accepts it.

    Raises `ValueError` naming missing, left-over or mis-shaped keys (from `convert_openai_clip_state_dict`).
    """
    clip_part, local_scale = _split_dreamlip_entries(state_dict)
    converted = convert_openai_clip_state_dict(clip_part, config, dtype=dtype)
    if config.local_logit_scale == "learned":
        if local_scale is None:
            local_scale = torch.tensor(float(config.local_logit_scale_init_value))
        if local_scale.numel() != 1:
            raise ValueError(f"`logit_scale_local` must be a scalar, got shape {tuple(local_scale.shape)}.")
        converted["logit_scale_local"] = local_scale.reshape(()).to(dtype or local_scale.dtype).clone()
    elif local_scale is not None:
        logger.warning("The checkpoint has a `logit_scale_local` but config.local_logit_scale='shared': dropped.")
    return converted


def load_dreamlip_checkpoint(
    path: str | Path, hidden_act: str = "gelu", dtype: torch.dtype | None = torch.float32, **config_kwargs
) -> DreamLIPModel:
    """Build a `DreamLIPModel` from a released DreamLIP checkpoint file (`.pt` via `weights_only=True`, or
    `.safetensors`). Keyword arguments set `DreamLIPConfig` fields."""
    state_dict = load_state_dict_file(path)
    config = infer_dreamlip_config(state_dict, hidden_act=hidden_act, **config_kwargs)
    model = DreamLIPModel(config)
    model.load_state_dict(convert_dreamlip_state_dict(state_dict, config, dtype=dtype), strict=True)
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def build_parser() -> argparse.ArgumentParser:
    parser = converter_parser(__doc__, "DreamLIP .pt (open_clip training checkpoint) file.")
    parser.add_argument(
        "--hidden_act", choices=("gelu", "quick_gelu"), default="gelu", help="Activation (released ViT-B/16: gelu)."
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """CLI: convert a released DreamLIP checkpoint into a `save_pretrained` folder with its processor."""
    args = build_parser().parse_args(argv)
    model = load_dreamlip_checkpoint(args.checkpoint, hidden_act=args.hidden_act)
    model.save_pretrained(args.output_dir)
    config = model.config
    if config.text_config.vocab_size == OPENAI_VOCAB_SIZE:
        from ...backbones.processing import build_clip_processor
        from .processing_dreamlip import DreamLIPProcessor

        clip_processor = build_clip_processor(
            config.vision_config.image_size, config.text_config.max_position_embeddings
        )
        DreamLIPProcessor(clip_processor.image_processor, clip_processor.tokenizer).save_pretrained(args.output_dir)
    else:
        logger.warning("Vocabulary size %d is not CLIP's: no processor written.", config.text_config.vocab_size)
    print(f"Converted {args.checkpoint} -> {args.output_dir} ({model.num_parameters():,} parameters).")


__all__ = ["build_parser", "convert_dreamlip_state_dict", "infer_dreamlip_config", "load_dreamlip_checkpoint"]


if __name__ == "__main__":
    main()
