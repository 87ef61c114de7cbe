"""Convert OpenAI CLIP / open_clip ViT checkpoints into the transformers `CLIPModel` layout of `ZooCLIPModel`.

Source layouts (both MIT): OpenAI CLIP's `clip/model.py` (`model.state_dict()` of `clip.load(..., jit=False)`) and
open_clip's OpenAI-style `CLIP` class (`open_clip/model.py`, `open_clip/transformer.py`), whose ViT keys are the same:

    visual.conv1.weight                                  -> vision_model.embeddings.patch_embedding.weight
    visual.class_embedding / visual.positional_embedding -> vision_model.embeddings.{class_embedding,position_embedding}
    visual.ln_pre / visual.ln_post                       -> vision_model.{pre_layrnorm,post_layernorm}
    [visual.]transformer.resblocks.{i}.attn.in_proj_*    -> ...encoder.layers.{i}.self_attn.{q,k,v}_proj (split in 3)
    ... .attn.out_proj / ln_1 / mlp.c_fc / mlp.c_proj / ln_2 -> self_attn.out_proj / layer_norm1 / mlp.fc1 / mlp.fc2 /
                                                                layer_norm2
    token_embedding / positional_embedding / ln_final    -> text_model.embeddings.* / text_model.final_layer_norm
    visual.proj, text_projection (width x embed, x @ proj) -> visual_projection.weight, text_projection.weight (transposed)
    logit_scale [, logit_bias (SigLIP-trained)]          -> logit_scale [, logit_bias]

Text pooling: OpenAI takes the features at `argmax(input_ids)`, i.e. at the end-of-text token because it has the largest
id. The converted config sets `eos_token_id = vocab_size - 1`, for which transformers takes the first end-of-text
position: the same token whenever, as in OpenAI's tokenizer, end-of-text is the last vocabulary entry.

Not supported (clear errors): ModifiedResNet vision towers (`visual.attnpool`, `visual.layer1`...), open_clip towers
with extra parts (LayerScale `ls_1`/`ls_2`, attentional pooling, timm / HF text towers, projection biases).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ...backbones.convert import add_num_heads_arguments, converter_parser, load_state_dict_file
from .configuration_clip import ZooCLIPConfig
from .modeling_clip import ZooCLIPModel

logger = logging.getLogger(__name__)

# Entries that are not weights: OpenAI's TorchScript state dicts carry the model's hyper-parameters as tensors, and
# open_clip (older versions) saves the text tower's causal mask as a persistent buffer. Both are rebuilt by the model.
NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask", "visual.attn_mask")
OPENAI_VOCAB_SIZE = 49408

# Per-block renames, OpenAI name -> transformers name (the fused `in_proj` is split separately).
BLOCK_RENAMES = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
}


def _require(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"The checkpoint has no `{key}`; it is not an OpenAI / open_clip ViT CLIP state dict.")
    tensor = state_dict[key]
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != ndim:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"`{key}` must be a {ndim}-d tensor, got {shape}.")
    return tensor


def _num_layers(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    if not indices:
        raise ValueError(f"The checkpoint has no `{prefix}{{i}}.*` blocks.")
    if indices != set(range(len(indices))):
        raise ValueError(f"The blocks `{prefix}{{i}}` are not numbered 0..n-1: found {sorted(indices)}.")
    return len(indices)


def _check_supported(state_dict: Mapping[str, torch.Tensor]) -> None:
    resnet_keys = [k for k in state_dict if k.startswith(("visual.attnpool.", "visual.layer1.", "visual.stem"))]
    if resnet_keys:
        raise ValueError(
            f"This is a ModifiedResNet CLIP (found e.g. `{resnet_keys[0]}`); only ViT vision towers can be converted "
            "to the transformers CLIP layout."
        )
    if any(k.startswith("visual.trunk.") for k in state_dict) or any(k.startswith("text.") for k in state_dict):
        raise ValueError(
            "This is an open_clip `CustomTextCLIP` (timm / Hugging Face towers under `visual.trunk.` / `text.`); only "
            "the OpenAI-style `CLIP` layout can be converted."
        )


def clean_state_dict(state_dict: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Unwrap `{"state_dict": ...}`, strip a DDP `module.` prefix and drop non-weight entries (see `NON_WEIGHT_KEYS`)."""
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"Expected a state dict (a mapping of names to tensors), got {type(state_dict).__name__}.")
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        # open_clip's training checkpoints: {"epoch", "name", "state_dict", "optimizer", ...}.
        state_dict = state_dict["state_dict"]
    if state_dict and all(isinstance(k, str) and k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    cleaned = {}
    for key, value in state_dict.items():
        if key in NON_WEIGHT_KEYS:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"Entry `{key}` of the state dict is a {type(value).__name__}, not a tensor.")
        cleaned[key] = value
    return cleaned


def infer_clip_config(
    state_dict: Mapping[str, torch.Tensor],
    hidden_act: str = "quick_gelu",
    vision_num_heads: int | None = None,
    text_num_heads: int | None = None,
    layer_norm_eps: float = 1e-5,
    **kwargs,
) -> ZooCLIPConfig:
    """
    Read a `ZooCLIPConfig` off an OpenAI / open_clip ViT state dict, as OpenAI's `build_model` does.

    Args:
        state_dict: the raw checkpoint (wrappers, `module.` prefixes and non-weight entries are handled).
        hidden_act: `"quick_gelu"` for OpenAI's models and open_clip's `*-quickgelu` ones; `"gelu"` for open_clip
            models trained with `nn.GELU` (e.g. the LAION ViT-B-32 / ViT-H-14). The weights do not record it.
        vision_num_heads / text_num_heads: attention heads; default `width // 64` (OpenAI's and open_clip's
            head width). The weights do not record it either.
        layer_norm_eps: OpenAI and open_clip use `nn.LayerNorm`'s default 1e-5.
        **kwargs: further top-level `ZooCLIPConfig` fields (e.g. `local_loss`).

    Widths, depths, MLP sizes, patch size, image size (from the number of position embeddings), context length,
    vocabulary and projection dim come from tensor shapes. A `logit_bias` entry (SigLIP-trained) gives
    `loss_type="sigmoid"`.
    """
    if hidden_act not in ("quick_gelu", "gelu"):
        raise ValueError(
            f"`hidden_act` must be 'quick_gelu' (OpenAI) or 'gelu' (open_clip nn.GELU), got {hidden_act!r}."
        )
    state_dict = clean_state_dict(state_dict)
    _check_supported(state_dict)

    conv1 = _require(state_dict, "visual.conv1.weight", 4)
    vision_width, num_channels, patch_size = conv1.shape[0], conv1.shape[1], conv1.shape[-1]
    vision_pos = _require(state_dict, "visual.positional_embedding", 2)
    grid = math.isqrt(vision_pos.shape[0] - 1)
    if grid * grid != vision_pos.shape[0] - 1:
        raise ValueError(
            f"`visual.positional_embedding` has {vision_pos.shape[0]} rows; expected 1 + a square number of patches."
        )
    vision_layers = _num_layers(state_dict, "visual.transformer.resblocks.")
    vision_mlp = _require(state_dict, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2).shape[0]
    visual_proj = _require(state_dict, "visual.proj", 2)

    token_embedding = _require(state_dict, "token_embedding.weight", 2)
    vocab_size, text_width = token_embedding.shape
    context_length = _require(state_dict, "positional_embedding", 2).shape[0]
    text_layers = _num_layers(state_dict, "transformer.resblocks.")
    text_mlp = _require(state_dict, "transformer.resblocks.0.mlp.c_fc.weight", 2).shape[0]
    if "text_projection.weight" in state_dict:
        # open_clip with `nn.Linear` text projection: weight is (embed, width) already.
        projection_dim = _require(state_dict, "text_projection.weight", 2).shape[0]
    else:
        projection_dim = _require(state_dict, "text_projection", 2).shape[1]
    if visual_proj.shape[1] != projection_dim:
        raise ValueError(
            f"`visual.proj` projects to {visual_proj.shape[1]} dims but the text projection to {projection_dim}."
        )

    vision_num_heads = vision_num_heads or max(vision_width // 64, 1)
    text_num_heads = text_num_heads or max(text_width // 64, 1)
    return ZooCLIPConfig(
        text_config=dict(
            hidden_size=text_width,
            intermediate_size=text_mlp,
            num_hidden_layers=text_layers,
            num_attention_heads=text_num_heads,
            max_position_embeddings=context_length,
            vocab_size=vocab_size,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
            projection_dim=projection_dim,
            # OpenAI's tokenizer: <|startoftext|> and <|endoftext|> are the last two ids (see the module docstring).
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
        ),
        vision_config=dict(
            hidden_size=vision_width,
            intermediate_size=vision_mlp,
            num_hidden_layers=vision_layers,
            num_attention_heads=vision_num_heads,
            num_channels=num_channels,
            image_size=grid * patch_size,
            patch_size=patch_size,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
            projection_dim=projection_dim,
        ),
        projection_dim=projection_dim,
        loss_type="sigmoid" if "logit_bias" in state_dict else "softmax",
        **kwargs,
    )


def _convert_tower(
    source: dict[str, torch.Tensor], converted: dict[str, torch.Tensor], src: str, dst: str, num_layers: int
) -> None:
    """Move the residual blocks `{src}{i}.*` to `{dst}{i}.*`, splitting the fused q/k/v projection (in that order)."""
    for i in range(num_layers):
        for suffix in ("weight", "bias"):
            key = f"{src}{i}.attn.in_proj_{suffix}"
            if key not in source:
                raise ValueError(f"The checkpoint has no `{key}`.")
            fused = source.pop(key)
            if fused.shape[0] % 3 != 0:
                raise ValueError(f"`{key}` has {fused.shape[0]} rows; expected 3 x width (q, k, v).")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), fused.chunk(3, dim=0)):
                converted[f"{dst}{i}.self_attn.{name}.{suffix}"] = part
        for old, new in BLOCK_RENAMES.items():
            key = f"{src}{i}.{old}"
            if key not in source:
                raise ValueError(f"The checkpoint has no `{key}`.")
            converted[f"{dst}{i}.{new}"] = source.pop(key)


def convert_openai_clip_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: ZooCLIPConfig, dtype: torch.dtype | None = torch.float32
) -> dict[str, torch.Tensor]:
    """
    Rename / reshape an OpenAI / open_clip ViT CLIP state dict into `ZooCLIPModel`'s keys (= transformers `CLIPModel`).

    Args:
        state_dict: the raw checkpoint (wrappers, `module.` prefixes and non-weight entries are handled).
        config: the target config, usually from `infer_clip_config`.
        dtype: floating-point tensors are cast to it (OpenAI's checkpoints are fp16); `None` keeps their dtype.

    Returns:
        A new state dict that `ZooCLIPModel(config).load_state_dict(..., strict=True)` accepts.

    Raises:
        ValueError: naming the keys that are missing, left over (not understood), or of the wrong shape for `config`.
    """
    source = clean_state_dict(state_dict)
    _check_supported(source)
    source = dict(source)  # entries are popped as they are converted, so what remains is left over
    converted: dict[str, torch.Tensor] = {}

    def move(old: str, new: str, transpose: bool = False) -> None:
        if old not in source:
            raise ValueError(f"The checkpoint has no `{old}` (needed for `{new}`).")
        tensor = source.pop(old)
        converted[new] = tensor.t() if transpose else tensor

    move("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight")
    move("visual.class_embedding", "vision_model.embeddings.class_embedding")
    move("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight")
    for suffix in ("weight", "bias"):
        move(f"visual.ln_pre.{suffix}", f"vision_model.pre_layrnorm.{suffix}")
        move(f"visual.ln_post.{suffix}", f"vision_model.post_layernorm.{suffix}")
        move(f"ln_final.{suffix}", f"text_model.final_layer_norm.{suffix}")
    _convert_tower(
        source,
        converted,
        "visual.transformer.resblocks.",
        "vision_model.encoder.layers.",
        config.vision_config.num_hidden_layers,
    )
    _convert_tower(
        source, converted, "transformer.resblocks.", "text_model.encoder.layers.", config.text_config.num_hidden_layers
    )
    move("visual.proj", "visual_projection.weight", transpose=True)
    move("token_embedding.weight", "text_model.embeddings.token_embedding.weight")
    move("positional_embedding", "text_model.embeddings.position_embedding.weight")
    if "text_projection.weight" in source:
        if "text_projection.bias" in source:
            raise ValueError("`text_projection.bias`: projections with a bias are not supported by the CLIP layout.")
        move("text_projection.weight", "text_projection.weight")
    else:
        move("text_projection", "text_projection.weight", transpose=True)
    move("logit_scale", "logit_scale")
    if config.loss_type == "sigmoid":
        if "logit_bias" not in source:
            raise ValueError("`config.loss_type` is 'sigmoid' but the checkpoint has no `logit_bias`.")
        move("logit_bias", "logit_bias")

    if source:
        raise ValueError(
            f"{len(source)} checkpoint entries have no place in the CLIP layout (unsupported tower parts, or a "
            f"`logit_bias` with loss_type='softmax'): {sorted(source)}"
        )

    # Compare with the model the config builds, without allocating it (meta device).
    with torch.device("meta"):
        expected = ZooCLIPModel(config).state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise ValueError(f"Converted keys do not match the model: missing {missing}, unexpected {unexpected}.")
    mismatched = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if converted[key].shape != expected[key].shape
    ]
    if mismatched:
        raise ValueError("Shape mismatches between the checkpoint and the config:\n  " + "\n  ".join(mismatched))

    # `.contiguous()`: transposes and q/k/v chunks are views, which safetensors refuses to save.
    return {
        key: (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).contiguous()
        for key, tensor in converted.items()
    }


def load_openai_clip_checkpoint(
    path: str | Path, hidden_act: str = "quick_gelu", dtype: torch.dtype | None = torch.float32, **config_kwargs
) -> ZooCLIPModel:
    """
    Build a `ZooCLIPModel` from an OpenAI / open_clip ViT CLIP checkpoint file.

    Args:
        path: a `torch.save` state dict (optionally `{"state_dict": ...}` with a `module.` prefix, as open_clip's
            training checkpoints) or a `.safetensors` file. TorchScript archives are refused (see the error).
        hidden_act: `"quick_gelu"` (OpenAI) or `"gelu"` (open_clip models trained with `nn.GELU`).
        dtype: dtype of the returned weights; `None` keeps the checkpoint's.
        **config_kwargs: passed to `infer_clip_config` (e.g. `vision_num_heads`, `local_loss`).
    """
    state_dict = load_state_dict_file(path)
    config = infer_clip_config(state_dict, hidden_act=hidden_act, **config_kwargs)
    converted = convert_openai_clip_state_dict(state_dict, config, dtype=dtype)
    model = ZooCLIPModel(config)
    model.load_state_dict(converted, strict=True)
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def build_parser() -> argparse.ArgumentParser:
    parser = converter_parser(__doc__, "OpenAI / open_clip state dict (.pt / .bin / .safetensors).")
    parser.add_argument(
        "--open_clip",
        action="store_true",
        help="The checkpoint comes from open_clip training: default activation `gelu` instead of `quick_gelu`.",
    )
    parser.add_argument(
        "--hidden_act",
        choices=("quick_gelu", "gelu"),
        default=None,
        help="Override the activation (default: quick_gelu, or gelu with --open_clip; use quick_gelu for *-quickgelu).",
    )
    add_num_heads_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    """CLI: convert a checkpoint and write `save_pretrained` weights + config + processor to a folder."""
    args = build_parser().parse_args(argv)

    hidden_act = args.hidden_act or ("gelu" if args.open_clip else "quick_gelu")
    model = load_openai_clip_checkpoint(
        args.checkpoint,
        hidden_act=hidden_act,
        vision_num_heads=args.vision_num_heads,
        text_num_heads=args.text_num_heads,
    )
    model.save_pretrained(args.output_dir)
    config = model.config
    if config.text_config.vocab_size == OPENAI_VOCAB_SIZE:
        from ...backbones.processing import build_clip_processor

        processor = build_clip_processor(
            image_size=config.vision_config.image_size, model_max_length=config.text_config.max_position_embeddings
        )
        processor.save_pretrained(args.output_dir)
    else:
        # The bundled BPE has 49,408 tokens; a different vocabulary needs its own tokenizer.
        logger.warning(
            "Vocabulary size %d is not OpenAI CLIP's %d: no processor written to %s.",
            config.text_config.vocab_size,
            OPENAI_VOCAB_SIZE,
            args.output_dir,
        )
    print(f"Converted {args.checkpoint} -> {args.output_dir} ({model.num_parameters():,} parameters, {hidden_act}).")


__all__ = [
    "build_parser",
    "clean_state_dict",
    "convert_openai_clip_state_dict",
    "infer_clip_config",
    "load_openai_clip_checkpoint",
]


if __name__ == "__main__":
    main()
