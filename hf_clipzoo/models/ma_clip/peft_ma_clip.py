"""PEFT integration of MA-CLIP: adapter-only checkpoints that load onto a base model with `PeftModel.from_pretrained`.

Why a `LoraConfig`: PEFT 0.21 has no config type for arbitrary user adapters (new tuner types need an entry in its
`PeftType` enum) and refuses a config that targets no module. So the MA-CLIP adapters, the text→vision projection,
the temporal embedding and the TPCM are PEFT `modules_to_save` (trained, and saved alone in
`adapter_model.safetensors`), and the mandatory LoRA target is a rank-1 *anchor* on the frozen CLIP's
`visual_projection`: its `lora_B` starts at zero and is kept frozen, so it is an exact identity (a few hundred bytes
in the checkpoint). `peft_method="lora"` is the comparison baseline: real LoRA on the vision attention projections,
with the TPCM as `modules_to_save`.

The base model is an `MACLIPModel` with freshly initialised (zero) adapters around the CLIP weights, e.g.
`MACLIPModel.from_clip(ZooCLIPModel.from_pretrained(path), **ma_clip_kwargs)`. PEFT cannot add modules to a plain
CLIP (its tuners wrap existing layers; `modules_to_save` only copies modules that exist), so the base an adapter
folder names is such an MA-CLIP folder (`training_scripts/ma_clip.py` writes it as `base/`); it loads the standard way
and the adapter goes on top:

    base = AutoModel.from_pretrained(base_dir, trust_remote_code=True)
    model = PeftModel.from_pretrained(base, adapter_dir)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .modeling_ma_clip import MACLIPModel

ANCHOR_MODULE = "visual_projection"


def trainable_module_names(model: MACLIPModel) -> list[str]:
    """Names (leaf names, as PEFT matches them) of the MA-CLIP modules trained and saved through PEFT."""
    names = ["prototype_module"]
    config = model.config
    if config.peft_method == "adapters":
        names += [
            name
            for name, flag in (
                ("temporal_adapter", config.use_temporal_adapter),
                ("multimodal_adapter", config.use_multimodal_adapter),
                ("joint_adapter", config.use_joint_adapter),
            )
            if flag
        ]
        if model.text_to_vision is not None:
            names.append("text_to_vision")
        if model.temporal_embedding is not None:
            names.append("temporal_embedding")
    return names


def ma_clip_peft_config(model: MACLIPModel):
    """The `LoraConfig` that trains MA-CLIP's adapters (or the LoRA baseline) on `model` (see module docstring)."""
    from peft import LoraConfig

    config = model.config
    if config.peft_method == "adapters":
        return LoraConfig(
            r=1,
            lora_alpha=1,
            lora_dropout=0.0,
            target_modules=[ANCHOR_MODULE],
            modules_to_save=trainable_module_names(model),
        )
    # LoRA baseline: only the vision tower's attention projections (regex, so the text tower keeps its weights).
    pattern = r"clip\.vision_model\.encoder\.layers\.\d+\.self_attn\.(" + "|".join(config.lora_target_modules) + ")"
    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=2 * config.lora_rank,
        lora_dropout=0.0,
        target_modules=pattern,
        modules_to_save=trainable_module_names(model),
    )


def freeze_anchor(peft_model) -> None:
    """Keep the rank-1 anchor LoRA of `peft_method="adapters"` frozen at its zero B (an exact identity)."""
    if peft_model.base_model.model.config.peft_method != "adapters":
        return
    for name, param in peft_model.named_parameters():
        if ANCHOR_MODULE in name and "lora_" in name:
            param.requires_grad_(False)


def get_ma_clip_peft_model(model: MACLIPModel, peft_config=None):
    """`get_peft_model(model, ma_clip_peft_config(model))` with the anchor frozen."""
    from peft import get_peft_model

    if not isinstance(model, MACLIPModel):
        raise ValueError(f"`model` must be an MACLIPModel, got {type(model).__name__}.")
    peft_model = get_peft_model(model, peft_config or ma_clip_peft_config(model))
    freeze_anchor(peft_model)
    return peft_model


def load_ma_clip_adapter(model: MACLIPModel, adapter_dir, is_trainable: bool = False):
    """`PeftModel.from_pretrained(model, adapter_dir)`, anchor kept frozen when trainable."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=is_trainable)
    if is_trainable:
        freeze_anchor(peft_model)
    return peft_model


def save_ma_clip_adapter(peft_model, save_directory: str | os.PathLike, base_model_name_or_path: str) -> Path:
    """`peft_model.save_pretrained(save_directory)`, with `adapter_config.json` naming its base and loadable without
    the package.

    `base_model_name_or_path`: the Hub id (or local folder) of the MA-CLIP base the adapter goes on; PEFT would record
    the in-memory model's empty `name_or_path` (null). PEFT's `auto_mapping` would name `hf_clipzoo`'s module, which
    `AutoPeftModel` refuses to import (not in its allowlist) and which a user without the package does not have;
    transformers' `AutoModel` reaches the same class through the base folder's remote code.
    """
    if not isinstance(base_model_name_or_path, str) or not base_model_name_or_path.strip():
        raise ValueError(
            f"`base_model_name_or_path` must name the MA-CLIP base folder or Hub id, got {base_model_name_or_path!r}."
        )
    save_directory = Path(save_directory)
    peft_model.save_pretrained(save_directory)
    path = save_directory / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model_name_or_path
    config["auto_mapping"] = {"base_model_class": "AutoModel", "parent_library": "transformers"}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return save_directory


__all__ = [
    "ANCHOR_MODULE",
    "freeze_anchor",
    "get_ma_clip_peft_model",
    "load_ma_clip_adapter",
    "ma_clip_peft_config",
    "save_ma_clip_adapter",
    "trainable_module_names",
]
