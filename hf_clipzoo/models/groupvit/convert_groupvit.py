"""Convert the official NVlabs GroupViT checkpoints into [`ZooGroupViTModel`] (transformers' `GroupViTModel` layout).

Paper: Xu et al., *GroupViT: Semantic Segmentation Emerges from Text Supervision*, CVPR 2022, arXiv 2202.11094.
Official code and weights: https://github.com/NVlabs/GroupViT (NVIDIA Source Code License, non-commercial; the
released files are `group_vit_gcc_yfcc_30e-879422e0.pth` and `group_vit_gcc_redcap_30e-3dd09a76.pth`). This file:
Apache-2.0, written from the official module definitions (`models/group_vit.py`, `models/transformer.py`,
`models/multi_label_contrastive.py`); the rename table agrees with transformers' own `convert_groupvit_nvlab_to_hf.py`.

The official file is a training checkpoint `{"model": state_dict, "config": <OmegaConf>, "metrics": ..., ...}` whose
`"model"` is the state dict of `MultiLabelContrastive`:

=========================================================  ==========================================================
official key                                               zoo / transformers key
=========================================================  ==========================================================
img_encoder.patch_embed.proj / .norm                       vision_model.embeddings.patch_embeddings.projection /
                                                           vision_model.embeddings.layernorm
img_encoder.pos_embed                                      vision_model.embeddings.position_embeddings
img_encoder.layers.{i}.group_token                         vision_model.encoder.stages.{i}.group_token
img_encoder.layers.{i}.blocks.{j}.norm1 / norm2            ….stages.{i}.layers.{j}.layer_norm1 / layer_norm2
img_encoder.layers.{i}.blocks.{j}.attn.qkv (fused)         ….layers.{j}.self_attn.q_proj, k_proj, v_proj (split)
img_encoder.layers.{i}.blocks.{j}.attn.proj                ….layers.{j}.self_attn.out_proj
img_encoder.layers.{i}.blocks.{j}.mlp.fc1 / fc2            ….layers.{j}.mlp.fc1 / fc2
img_encoder.layers.{i}.downsample.*                        ….stages.{i}.downsample.* (same names, except
                                                           `pre_assign_attn.attn.proj` -> `pre_assign_attn.attn.out_proj`)
img_encoder.layers.{i}.group_projector.0 / .1.fc1 / .1.fc2 ….stages.{i}.group_projector.0 / .1.fc1 / .1.fc2
img_encoder.norm                                           vision_model.layernorm
text_encoder.token_embedding / positional_embedding        text_model.embeddings.token_embedding /
                                                           text_model.embeddings.position_embedding.weight
text_encoder.transformer.resblocks.{j}.attn.in_proj_*      text_model.encoder.layers.{j}.self_attn.q/k/v_proj (split)
text_encoder.transformer.resblocks.{j}.attn.out_proj       text_model.encoder.layers.{j}.self_attn.out_proj
text_encoder.transformer.resblocks.{j}.ln_1 / ln_2         text_model.encoder.layers.{j}.layer_norm1 / layer_norm2
text_encoder.transformer.resblocks.{j}.mlp.c_fc / c_proj   text_model.encoder.layers.{j}.mlp.fc1 / fc2
text_encoder.ln_final                                      text_model.final_layer_norm
img_projector.linear_hidden.0 (Conv1d k=1) / .1 (BN)       visual_projection.0 (Linear, kernel dim squeezed) / .1
img_projector.linear_out (Conv1d k=1)                      visual_projection.3 (Linear)
text_projector.*                                           text_projection.* (same as the image projector)
logit_scale / multi_label_logit_scale                      logit_scale / multi_label_logit_scale
=========================================================  ==========================================================

The config is read off the tensor shapes (widths, depths, group counts, patch size, image size, vocabulary, context
length, projector widths, assignment-MLP ratios). Two numbers cannot be read off shapes: the attention head counts.
The official code uses 64-wide heads in the text tower (`TextTransformer`: `heads = width // 64`) and 6 heads for the
384-wide vision tower (`num_heads=[6, 6, 6]`, also 64 wide), so both default to `width // 64`; override them for
other checkpoints.

The YFCC checkpoint was trained with the multi-label loss (`multi_label=3`) and holds its own
`multi_label_logit_scale`; the RedCaps one (`multi_label=0`) has none. Without it the converted config gets
`share_temperature=True` and `num_prompts=0`, which is exactly the official RedCaps setup and gives transformers'
`GroupViTModel` layout, so the model still loads with zero missing keys.

Reading files: `.safetensors`, or `torch.load(weights_only=True)`. The official checkpoints also pickle their
OmegaConf training config (and numpy metrics), which `weights_only=True` refuses. Those objects are not needed, so
each such class is allow-listed *under its name* as an inert placeholder class (`load_state_dict_file(...,
inert_non_tensor_classes=True)` in `hf_clipzoo.backbones.convert`, through `torch.serialization.safe_globals`
with `(placeholder, "module.Name")` pairs): torch's restricted unpickler still refuses everything else, and no code
from the file, nor the named modules, is ever imported or run. Only the `"model"` entry is used, and every value in
it must be a real tensor.

    python -m hf_clipzoo.models.groupvit.convert_groupvit --checkpoint group_vit_gcc_yfcc_30e-879422e0.pth \
        --output_dir groupvit-gcc-yfcc
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ...backbones.convert import add_num_heads_arguments, converter_parser, load_state_dict_file
from .configuration_groupvit import ZooGroupViTConfig
from .modeling_groupvit import ZooGroupViTModel

logger = logging.getLogger(__name__)

# Key prefixes of the official `MultiLabelContrastive` model.
OFFICIAL_PREFIXES = ("img_encoder.", "text_encoder.", "img_projector.", "text_projector.")
# Official 64-wide attention heads (TextTransformer: width // 64; GroupViT: 6 heads of 384).
OFFICIAL_HEAD_WIDTH = 64
BATCHNORM_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# Plain renames, tried in order; the first full match wins. `{...}` groups are copied into the target.
_V = r"img_encoder\."
_STAGE = r"img_encoder\.layers\.(?P<i>\d+)\."
_BLOCK = _STAGE + r"blocks\.(?P<j>\d+)\."
_DOWN = _STAGE + r"downsample\."
_RES = r"text_encoder\.transformer\.resblocks\.(?P<j>\d+)\."
_P = r"(?P<p>weight|bias)"
RENAMES: tuple[tuple[str, str], ...] = (
    # vision embeddings and final norm
    (_V + r"pos_embed", "vision_model.embeddings.position_embeddings"),
    (_V + r"patch_embed\.proj\." + _P, "vision_model.embeddings.patch_embeddings.projection.{p}"),
    (_V + r"patch_embed\.norm\." + _P, "vision_model.embeddings.layernorm.{p}"),
    (_V + r"norm\." + _P, "vision_model.layernorm.{p}"),
    # stages: group tokens and their projector from the previous stage (LayerNorm + token-mixing MLP)
    (_STAGE + r"group_token", "vision_model.encoder.stages.{i}.group_token"),
    (_STAGE + r"group_projector\.0\." + _P, "vision_model.encoder.stages.{i}.group_projector.0.{p}"),
    (
        _STAGE + r"group_projector\.1\.(?P<fc>fc1|fc2)\." + _P,
        "vision_model.encoder.stages.{i}.group_projector.1.{fc}.{p}",
    ),
    # self-attention blocks (the fused qkv is split separately)
    (_BLOCK + r"norm1\." + _P, "vision_model.encoder.stages.{i}.layers.{j}.layer_norm1.{p}"),
    (_BLOCK + r"norm2\." + _P, "vision_model.encoder.stages.{i}.layers.{j}.layer_norm2.{p}"),
    (_BLOCK + r"attn\.proj\." + _P, "vision_model.encoder.stages.{i}.layers.{j}.self_attn.out_proj.{p}"),
    (_BLOCK + r"mlp\.(?P<fc>fc1|fc2)\." + _P, "vision_model.encoder.stages.{i}.layers.{j}.mlp.{fc}.{p}"),
    # grouping block: same names in both codebases except the cross-attention's output projection
    (
        _DOWN + r"pre_assign_attn\.attn\.proj\." + _P,
        "vision_model.encoder.stages.{i}.downsample.pre_assign_attn.attn.out_proj.{p}",
    ),
    (
        _DOWN + r"pre_assign_attn\.attn\.(?P<n>q_proj|k_proj|v_proj)\." + _P,
        "vision_model.encoder.stages.{i}.downsample.pre_assign_attn.attn.{n}.{p}",
    ),
    (
        _DOWN + r"pre_assign_attn\.(?P<n>norm2|norm_post|mlp\.fc1|mlp\.fc2)\." + _P,
        "vision_model.encoder.stages.{i}.downsample.pre_assign_attn.{n}.{p}",
    ),
    (
        _DOWN + r"assign\.(?P<n>q_proj|k_proj|v_proj|proj)\." + _P,
        "vision_model.encoder.stages.{i}.downsample.assign.{n}.{p}",
    ),
    (
        _DOWN + r"(?P<n>norm_tokens|norm_post_tokens|norm_x|norm_new_x|mlp_inter\.fc1|mlp_inter\.fc2|"
        r"mlp_channels\.fc1|mlp_channels\.fc2)\." + _P,
        "vision_model.encoder.stages.{i}.downsample.{n}.{p}",
    ),
    # text tower (OpenAI-CLIP style; the fused in_proj is split separately)
    (r"text_encoder\.token_embedding\.weight", "text_model.embeddings.token_embedding.weight"),
    (r"text_encoder\.positional_embedding", "text_model.embeddings.position_embedding.weight"),
    (r"text_encoder\.ln_final\." + _P, "text_model.final_layer_norm.{p}"),
    (_RES + r"attn\.out_proj\." + _P, "text_model.encoder.layers.{j}.self_attn.out_proj.{p}"),
    (_RES + r"ln_1\." + _P, "text_model.encoder.layers.{j}.layer_norm1.{p}"),
    (_RES + r"ln_2\." + _P, "text_model.encoder.layers.{j}.layer_norm2.{p}"),
    (_RES + r"mlp\.c_fc\." + _P, "text_model.encoder.layers.{j}.mlp.fc1.{p}"),
    (_RES + r"mlp\.c_proj\." + _P, "text_model.encoder.layers.{j}.mlp.fc2.{p}"),
    # projectors: ProjectMLP(linear_hidden = [Conv1d, BN, ReLU], linear_out = Conv1d) -> Sequential(Linear, BN, ReLU,
    # Linear); the BatchNorm keeps its running statistics.
    (r"img_projector\.linear_hidden\.1\.(?P<n>" + "|".join(BATCHNORM_ENTRIES) + ")", "visual_projection.1.{n}"),
    (r"text_projector\.linear_hidden\.1\.(?P<n>" + "|".join(BATCHNORM_ENTRIES) + ")", "text_projection.1.{n}"),
    (r"logit_scale", "logit_scale"),
    (r"multi_label_logit_scale", "multi_label_logit_scale"),
)
_COMPILED = tuple((re.compile(pattern), target) for pattern, target in RENAMES)
# Conv1d(k=1) weights of the projectors: squeeze the kernel dimension to get Linear weights.
_CONV1D = re.compile(r"(?P<t>img|text)_projector\.(?P<n>linear_hidden\.0|linear_out)\." + _P)
# Fused projections that are split into q / k / v (rows in that order in both the official code and PyTorch MHA).
_VISION_QKV = re.compile(_BLOCK + r"attn\.qkv\." + _P)
_TEXT_QKV = re.compile(_RES + r"attn\.in_proj_(?P<p>weight|bias)")


# --- reading files ---------------------------------------------------------------------------------------------------
def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The official-layout state dict of a GroupViT checkpoint file: the `"model"` entry of a `.pth` training
    checkpoint (or a bare state dict), or a `.safetensors` file. Strips a DDP `module.` prefix."""
    checkpoint = load_state_dict_file(path, inert_non_tensor_classes=True)
    return extract_state_dict(checkpoint, source=str(path))


def extract_state_dict(checkpoint: object, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap `{"model": ...}` (official) or `{"state_dict": ...}`, strip `module.`, check that values are tensors."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{source} holds a {type(checkpoint).__name__}; expected a dict with a 'model' state dict.")
    for wrapper in ("model", "state_dict"):
        if wrapper in checkpoint and isinstance(checkpoint[wrapper], Mapping):
            checkpoint = checkpoint[wrapper]
            break
    if checkpoint and all(isinstance(k, str) and k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module.") :]: v for k, v in checkpoint.items()}
    not_tensors = sorted(k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"Entries of the state dict in {source} that are not tensors: {not_tensors}.")
    if not any(isinstance(k, str) and k.startswith(OFFICIAL_PREFIXES) for k in checkpoint):
        raise ValueError(
            f"{source} is not an official GroupViT (`MultiLabelContrastive`) state dict: expected keys starting with "
            f"{OFFICIAL_PREFIXES}, got e.g. {sorted(checkpoint)[:5]}."
        )
    return dict(checkpoint)


# --- config ----------------------------------------------------------------------------------------------------------
def _get(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"The official GroupViT state dict lacks `{key}`, which the config is read from.")
    value = state_dict[key]
    if value.ndim != ndim:
        raise ValueError(f"`{key}` has shape {tuple(value.shape)}; expected a {ndim}-d tensor.")
    return value


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    found = sorted({int(m.group(1)) for key in state_dict if (m := regex.match(key))})
    if found != list(range(len(found))):
        raise ValueError(f"Non-contiguous indices {found} for keys matching `{pattern}`.")
    return found


def infer_groupvit_config(
    state_dict: Mapping[str, torch.Tensor],
    vision_num_attention_heads: int | None = None,
    text_num_attention_heads: int | None = None,
    **kwargs,
) -> ZooGroupViTConfig:
    """A `ZooGroupViTConfig` read off an official GroupViT state dict (see the module docstring for what is inferred).

    Head counts default to `width // 64` (official). Further keyword arguments set top-level `ZooGroupViTConfig`
    fields (e.g. `eval_assignment`)."""
    sd = state_dict
    patch = _get(sd, "img_encoder.patch_embed.proj.weight", 4)
    vision_width, num_channels, patch_size = patch.shape[0], patch.shape[1], patch.shape[-1]
    if patch.shape[-1] != patch.shape[-2]:
        raise ValueError(f"Only square patches are supported, got a {tuple(patch.shape[-2:])} patch embedding.")
    if "img_encoder.patch_embed.norm.weight" not in sd:
        raise ValueError(
            "The checkpoint has no `img_encoder.patch_embed.norm` (patch_norm=False), which the port lacks."
        )
    num_patches = _get(sd, "img_encoder.pos_embed", 3).shape[1]
    grid = round(num_patches**0.5)
    if grid * grid != num_patches:
        raise ValueError(f"`img_encoder.pos_embed` covers {num_patches} patches, not a square grid.")
    stages = _indices(sd, r"img_encoder\.layers\.(\d+)\.")
    if not stages:
        raise ValueError("The checkpoint has no `img_encoder.layers.*` stages.")
    depths, group_tokens, output_groups = [], [], []
    for i in stages:
        depths.append(len(_indices(sd, rf"img_encoder\.layers\.{i}\.blocks\.(\d+)\.")))
        token = sd.get(f"img_encoder.layers.{i}.group_token")
        group_tokens.append(0 if token is None else int(token.shape[1]))
        inter = sd.get(f"img_encoder.layers.{i}.downsample.mlp_inter.fc2.weight")
        output_groups.append(None if inter is None else int(inter.shape[0]))
        if any(k.startswith(f"img_encoder.layers.{i}.downsample.reduction.") for k in sd):
            raise ValueError(
                f"Stage {i} changes the width (`downsample.reduction`, official `embed_factors` != 1), which "
                "transformers' GroupViT layout cannot hold."
            )
    # The last stage has no grouping block; transformers' config convention repeats the previous group count there.
    for k, groups in enumerate(output_groups):
        if groups is None:
            output_groups[k] = output_groups[k - 1] if k > 0 else 0
    assign_mlp_ratio = [0.5, 4.0]
    inter_hidden = sd.get("img_encoder.layers.0.downsample.mlp_inter.fc1.weight")
    channel_hidden = sd.get("img_encoder.layers.0.downsample.mlp_channels.fc1.weight")
    if inter_hidden is not None and channel_hidden is not None:
        assign_mlp_ratio = [inter_hidden.shape[0] / vision_width, channel_hidden.shape[0] / vision_width]
    vision_intermediate = _get(sd, "img_encoder.layers.0.blocks.0.mlp.fc1.weight", 2).shape[0]

    token_embedding = _get(sd, "text_encoder.token_embedding.weight", 2)
    vocab_size, text_width = token_embedding.shape
    text_layers = _indices(sd, r"text_encoder\.transformer\.resblocks\.(\d+)\.")
    if not text_layers:
        raise ValueError("The checkpoint has no `text_encoder.transformer.resblocks.*` layers.")
    context = _get(sd, "text_encoder.positional_embedding", 2).shape[0]
    text_intermediate = _get(sd, "text_encoder.transformer.resblocks.0.mlp.c_fc.weight", 2).shape[0]

    for tower in ("img", "text"):
        extra = sorted(
            k for k in sd if k.startswith(f"{tower}_projector.linear_hidden.") and k.split(".")[2] not in ("0", "1")
        )
        if extra or f"{tower}_projector.linear_out.weight" not in sd:
            raise ValueError(
                f"`{tower}_projector` is not the released 2-layer ProjectMLP (Conv1d-BN-ReLU-Conv1d, "
                f"proj_num_layers=2){': unexpected ' + str(extra) if extra else ''}."
            )
    hidden = _get(sd, "img_projector.linear_hidden.0.weight", 3).shape[0]
    projection_dim = _get(sd, "img_projector.linear_out.weight", 3).shape[0]

    if "multi_label_logit_scale" not in sd:
        # Official RedCaps setup (multi_label=0): no separate temperature, no prompts.
        kwargs = {"share_temperature": True, "num_prompts": 0, **kwargs}

    def heads(width: int, given: int | None, name: str) -> int:
        count = given if given is not None else width // OFFICIAL_HEAD_WIDTH
        if count <= 0 or width % count:
            raise ValueError(
                f"Cannot use {count} attention heads for a {width}-wide {name} tower; pass "
                f"`{name}_num_attention_heads` (official: {OFFICIAL_HEAD_WIDTH}-wide heads)."
            )
        return count

    return ZooGroupViTConfig(
        text_config=dict(
            vocab_size=int(vocab_size),
            hidden_size=int(text_width),
            intermediate_size=int(text_intermediate),
            num_hidden_layers=len(text_layers),
            num_attention_heads=heads(int(text_width), text_num_attention_heads, "text"),
            max_position_embeddings=int(context),
        ),
        vision_config=dict(
            hidden_size=int(vision_width),
            intermediate_size=int(vision_intermediate),
            depths=depths,
            num_hidden_layers=sum(depths),
            num_group_tokens=group_tokens,
            num_output_groups=output_groups,
            num_attention_heads=heads(int(vision_width), vision_num_attention_heads, "vision"),
            image_size=int(grid * patch_size),
            patch_size=int(patch_size),
            num_channels=int(num_channels),
            assign_mlp_ratio=assign_mlp_ratio,
        ),
        projection_dim=int(projection_dim),
        projection_intermediate_dim=int(hidden),
        **kwargs,
    )


# --- state dict ------------------------------------------------------------------------------------------------------
def _split_qkv(value: torch.Tensor, width: int, key: str) -> tuple[torch.Tensor, ...]:
    if value.shape[0] != 3 * width:
        raise ValueError(f"`{key}` has {value.shape[0]} rows; expected 3 × {width} (fused q, k, v).")
    return tuple(part.clone() for part in value.split(width, dim=0))


def rename_official_key(key: str) -> str | None:
    """The zoo key of an official key that is renamed one-to-one (None for fused / Conv1d / unknown keys)."""
    for regex, target in _COMPILED:
        match = regex.fullmatch(key)
        if match:
            return target.format(**match.groupdict())
    return None


def convert_groupvit_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    config: ZooGroupViTConfig,
    dtype: torch.dtype | None = torch.float32,
    model: ZooGroupViTModel | None = None,
) -> dict[str, torch.Tensor]:
    """Official GroupViT state dict -> `ZooGroupViTModel` state dict; `load_state_dict(strict=True)` accepts it.

    `model` (optional) is the model the result is checked against; by default one is built on the meta device.
    Raises `ValueError` naming keys that match no rule, keys the model expects but the checkpoint lacks, and
    mis-shaped tensors."""
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if (match := _VISION_QKV.fullmatch(key)) is not None:
            prefix = f"vision_model.encoder.stages.{match['i']}.layers.{match['j']}.self_attn"
            parts = _split_qkv(value, config.vision_config.hidden_size, key)
        elif (match := _TEXT_QKV.fullmatch(key)) is not None:
            prefix = f"text_model.encoder.layers.{match['j']}.self_attn"
            parts = _split_qkv(value, config.text_config.hidden_size, key)
        elif (match := _CONV1D.fullmatch(key)) is not None:
            target = "visual_projection" if match["t"] == "img" else "text_projection"
            index = "0" if match["n"] == "linear_hidden.0" else "3"
            # Conv1d(k=1) weight [out, in, 1] -> Linear weight [out, in].
            converted[f"{target}.{index}.{match['p']}"] = value.squeeze(-1) if match["p"] == "weight" else value
            continue
        else:
            new_key = rename_official_key(key)
            if new_key is None:
                unknown.append(key)
            else:
                converted[new_key] = value
            continue
        for name, part in zip(("q_proj", "k_proj", "v_proj"), parts):
            converted[f"{prefix}.{name}.{match['p']}"] = part
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys of the checkpoint match no rule of the official GroupViT layout "
            f"(img_encoder.* / text_encoder.* / img_projector.* / text_projector.* / logit scales): {sorted(unknown)}"
        )
    if model is None:
        # Shapes only: the meta device allocates nothing, so checking a default-size config costs no memory.
        with torch.device("meta"):
            model = ZooGroupViTModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    if missing or extra:
        raise ValueError(
            f"The converted checkpoint does not fit the model built from its config: missing {missing}, "
            f"unexpected {extra}."
        )
    wrong = [
        f"{k}: {tuple(converted[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if converted[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(f"Converted tensors whose shape differs from the model's: {wrong}")
    if dtype is not None:
        converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in converted.items()}
    return converted


def load_groupvit_checkpoint(
    path: str | Path,
    vision_num_attention_heads: int | None = None,
    text_num_attention_heads: int | None = None,
    dtype: torch.dtype | None = torch.float32,
    **config_kwargs,
) -> ZooGroupViTModel:
    """A `ZooGroupViTModel` (eval mode) from an official GroupViT checkpoint file; keyword arguments set
    `ZooGroupViTConfig` fields.

    `dtype` is the dtype of the model's floating-point weights (`None`: the checkpoint's, when all its floating
    tensors share one, else float32). The model is cast before the weights are copied in, so they hold the
    checkpoint's values exactly wherever `dtype` can represent them (a float64 checkpoint loaded as float64 is
    bit-identical, not rounded through float32)."""
    state_dict = load_official_state_dict(path)
    config = infer_groupvit_config(
        state_dict,
        vision_num_attention_heads=vision_num_attention_heads,
        text_num_attention_heads=text_num_attention_heads,
        **config_kwargs,
    )
    if dtype is None:
        dtypes = {value.dtype for value in state_dict.values() if value.is_floating_point()}
        dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    model = ZooGroupViTModel(config).to(dtype)
    converted = convert_groupvit_state_dict(state_dict, config, dtype=dtype, model=model)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def build_parser() -> argparse.ArgumentParser:
    parser = converter_parser(__doc__, "Official GroupViT .pth (or a .safetensors state dict).")
    add_num_heads_arguments(parser)
    parser.add_argument(
        "--no_processor", action="store_true", help="Do not write the processor (tokenizer + image processor)."
    )
    return parser


def main(argv: list[str] | None = None) -> ZooGroupViTModel:
    """CLI: convert an official GroupViT checkpoint into a `save_pretrained` folder (safetensors) with its processor."""
    args = build_parser().parse_args(argv)
    model = load_groupvit_checkpoint(
        args.checkpoint,
        vision_num_attention_heads=args.vision_num_heads,
        text_num_attention_heads=args.text_num_heads,
    )
    model.save_pretrained(args.output_dir)
    config = model.config
    if args.no_processor:
        pass
    elif config.text_config.vocab_size == 49408:
        from .processing_groupvit import build_groupvit_processor

        image_size = config.vision_config.image_size
        processor = build_groupvit_processor(image_size, config.text_config.max_position_embeddings)
        processor.save_pretrained(args.output_dir)
    else:
        logger.warning("Vocabulary size %d is not CLIP's: no processor written.", config.text_config.vocab_size)
    print(f"Converted {args.checkpoint} -> {args.output_dir} ({model.num_parameters():,} parameters).")
    return model


__all__ = [
    "RENAMES",
    "build_parser",
    "convert_groupvit_state_dict",
    "extract_state_dict",
    "infer_groupvit_config",
    "load_groupvit_checkpoint",
    "load_official_state_dict",
    "rename_official_key",
]


if __name__ == "__main__":
    main()
