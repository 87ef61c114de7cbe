"""Convert the released DIVA weights (HF Hub `BAAI/DIVA`, OpenAI ViT-L/14 `.pth` files) into transformers'
`CLIPVisionModel` (+ CLIP's visual projection), the tower LLaVA-style users load.

The official `run_DIVA_with_OpenAICLIP.py` saves `trainer.model.state_dict()` of its `SDModel`, in which the OpenAI
CLIP (the `clip` library's `CLIP` class) lives under `class_model.model.` next to the SD components and the DIVA
`visual_proj` Linear; a file may also hold the bare CLIP state dict (`visual.*`, with or without a `module.` prefix).
This module finds the CLIP's `visual.*` keys under whatever prefix, and maps them:

    visual.conv1.weight                       -> embeddings.patch_embedding.weight
    visual.class_embedding                    -> embeddings.class_embedding
    visual.positional_embedding               -> embeddings.position_embedding.weight
    visual.ln_pre / visual.ln_post            -> pre_layrnorm / post_layernorm
    visual.transformer.resblocks.{i}.attn.in_proj_{weight,bias} -> encoder.layers.{i}.self_attn.{q,k,v}_proj (split)
    ....attn.out_proj / ln_1 / mlp.c_fc / mlp.c_proj / ln_2     -> self_attn.out_proj / layer_norm1 / mlp.fc1 / fc2 /
                                                                  layer_norm2
    visual.proj (width x embed, used as x @ proj)               -> visual_projection.weight (transposed)
    visual_proj.{weight,bias} (DIVA's Linear)                   -> DivaModel.condition_projection (optional)

Files are read with `torch.load(weights_only=True)` (or safetensors); nothing is unpickled.

    python -m hf_clipzoo.models.diva.convert_diva --checkpoint OpenAI-ViT-L-14-224.pth --output_dir diva-vit-l-14
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

VISUAL_ANCHOR = "visual.conv1.weight"
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


def extract_visual_state_dict(state_dict: Mapping[str, object]) -> tuple[dict[str, torch.Tensor], dict]:
    """The CLIP's `visual.*` tensors (prefix stripped to `visual.`) and DIVA's `visual_proj` tensors, if any."""
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"Expected a state dict (names -> tensors), got {type(state_dict).__name__}.")
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    anchors = [k for k in state_dict if isinstance(k, str) and k.endswith(VISUAL_ANCHOR)]
    if len(anchors) != 1:
        raise ValueError(
            f"Expected exactly one OpenAI-CLIP vision tower (a key ending in `{VISUAL_ANCHOR}`), found "
            f"{len(anchors)}: {anchors[:3]}. Only the OpenAI ViT layout (BAAI/DIVA `OpenAICLIP/*.pth`) is supported."
        )
    prefix = anchors[0][: -len(VISUAL_ANCHOR)]
    visual = {
        k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix + "visual.") and torch.is_tensor(v)
    }
    # DIVA's own projection sits next to the CLIP wrapper (`visual_proj.*` at the SDModel's top level).
    outer = prefix.split("class_model.")[0] if "class_model." in prefix else prefix
    diva_proj = {
        name: state_dict[f"{outer}visual_proj.{name}"]
        for name in ("weight", "bias")
        if f"{outer}visual_proj.{name}" in state_dict
    }
    return visual, diva_proj


def infer_vision_config(visual: Mapping[str, torch.Tensor], **kwargs) -> CLIPVisionConfig:
    """A `CLIPVisionConfig` read off the OpenAI tower's shapes (heads = width / 64, quick-GELU, as OpenAI)."""
    conv = visual[VISUAL_ANCHOR]
    hidden, patch = conv.shape[0], conv.shape[-1]
    num_positions = visual["visual.positional_embedding"].shape[0]
    grid = math.isqrt(num_positions - 1)
    if grid * grid != num_positions - 1:
        raise ValueError(f"`visual.positional_embedding` has {num_positions} rows; expected 1 + a square number.")
    layers = 1 + max(int(k.split(".")[3]) for k in visual if k.startswith("visual.transformer.resblocks."))
    defaults = dict(
        hidden_size=hidden,
        intermediate_size=visual["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        image_size=grid * patch,
        patch_size=patch,
        projection_dim=visual["visual.proj"].shape[1] if "visual.proj" in visual else hidden,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    return CLIPVisionConfig(**{**defaults, **kwargs})


def convert_visual_state_dict(
    visual: Mapping[str, torch.Tensor], config: CLIPVisionConfig
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """`CLIPVisionModel` keys (strict-loadable) and the `visual_projection.weight` (or `None`)."""
    source = dict(visual)
    converted = {
        "embeddings.patch_embedding.weight": source.pop("visual.conv1.weight"),
        "embeddings.class_embedding": source.pop("visual.class_embedding"),
        "embeddings.position_embedding.weight": source.pop("visual.positional_embedding"),
    }
    for old, new in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for suffix in ("weight", "bias"):
            converted[f"{new}.{suffix}"] = source.pop(f"visual.{old}.{suffix}")
    for i in range(config.num_hidden_layers):
        src, dst = f"visual.transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for suffix in ("weight", "bias"):
            fused = source.pop(f"{src}attn.in_proj_{suffix}")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), fused.chunk(3, dim=0)):
                converted[f"{dst}self_attn.{name}.{suffix}"] = part
        for old, new in BLOCK_RENAMES.items():
            converted[dst + new] = source.pop(src + old)
    projection = source.pop("visual.proj", None)
    if source:
        raise ValueError(f"Unconverted vision keys (unsupported layout): {sorted(source)[:5]}")
    converted = {k: v.float().contiguous() for k, v in converted.items()}
    return converted, None if projection is None else projection.t().float().contiguous()


def convert_diva_checkpoint(state_dict: Mapping[str, object], **config_kwargs):
    """`(CLIPVisionModel, visual_projection_weight | None, diva_visual_proj | {})` from a DIVA / OpenAI state dict."""
    visual, diva_proj = extract_visual_state_dict(state_dict)
    config = infer_vision_config(visual, **config_kwargs)
    converted, projection = convert_visual_state_dict(visual, config)
    model = CLIPVisionModel(config)
    model.load_state_dict(converted, strict=True)
    return model.eval(), projection, diva_proj


def build_parser() -> argparse.ArgumentParser:
    from ...backbones.convert import converter_parser

    return converter_parser(__doc__, "A BAAI/DIVA OpenAICLIP .pth (or .safetensors) file.")


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file

    from ...backbones.convert import load_state_dict_file

    args = build_parser().parse_args(argv)
    model, projection, diva_proj = convert_diva_checkpoint(load_state_dict_file(args.checkpoint))
    output = Path(args.output_dir)
    model.save_pretrained(output)
    extras = {}
    if projection is not None:
        extras["visual_projection.weight"] = projection
    extras.update({f"visual_proj.{k}": v.float().contiguous() for k, v in diva_proj.items()})
    if extras:
        save_file(extras, str(output / "diva_projections.safetensors"))
    print(f"Saved a CLIPVisionModel to {output}")


if __name__ == "__main__":
    main()
