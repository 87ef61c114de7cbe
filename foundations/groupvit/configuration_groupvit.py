"""Configuration of GroupViT in the zoo: transformers' `GroupViTConfig` plus the training / inference options of the
official code that the transformers port lacks (multi-label loss and its temperature, Gumbel temperature, hard vs soft
assignment)."""

from huggingface_hub.errors import StrictDataclassError
from transformers import GroupViTConfig, GroupViTTextConfig, GroupViTVisionConfig

from .clipzoo_validation import ACTIVATION, BOOLEAN, DROPOUT, FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, TOKEN_ID, ListOf, OneOf, check_extra_keys, check_fields, check_sub_config_dicts

# Named shapes. "world-*" fit the embedded synthetic world on a CPU (64 px images, short captions); "gcc-yfcc" is the
# released model (`nvidia/groupvit-gcc-yfcc`, official `group_vit_gcc_yfcc_30e`).
GROUPVIT_PRESETS: dict[str, dict] = {
    # Tests and smoke runs: seconds on a CPU.
    "world-micro": dict(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            depths=[2, 1, 1],
            num_group_tokens=[8, 4, 0],
            num_output_groups=[8, 4, 4],
            num_attention_heads=2,
            image_size=32,
            patch_size=4,
        ),
        projection_dim=32,
        projection_intermediate_dim=64,
    ),
    "world-tiny": dict(
        text_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4),
        vision_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=6,
            depths=[3, 2, 1],
            num_group_tokens=[16, 4, 0],
            num_output_groups=[16, 4, 4],
            num_attention_heads=4,
            image_size=64,
            patch_size=8,
        ),
        projection_dim=128,
        projection_intermediate_dim=512,
    ),
    "gcc-yfcc": dict(text_config={}, vision_config={}),
}
EVAL_ASSIGNMENTS = ("hard", "soft")
GROUPVIT_TEXT_FIELDS = {
    "vocab_size": POSITIVE_INT,
    "hidden_size": POSITIVE_INT,
    "intermediate_size": POSITIVE_INT,
    "num_hidden_layers": POSITIVE_INT,
    "num_attention_heads": POSITIVE_INT,
    "max_position_embeddings": POSITIVE_INT,
    "hidden_act": ACTIVATION,
    "layer_norm_eps": POSITIVE,
    "dropout": DROPOUT,
    "attention_dropout": DROPOUT,
    "initializer_range": NON_NEGATIVE,
    "initializer_factor": NON_NEGATIVE,
    "pad_token_id": TOKEN_ID,
    "bos_token_id": TOKEN_ID,
    "eos_token_id": TOKEN_ID,
}
GROUPVIT_VISION_FIELDS = {
    "hidden_size": POSITIVE_INT,
    "intermediate_size": POSITIVE_INT,
    "num_hidden_layers": POSITIVE_INT,
    "depths": ListOf(POSITIVE_INT, min_length=1),
    "num_group_tokens": ListOf(NON_NEGATIVE_INT, min_length=1),
    "num_output_groups": ListOf(NON_NEGATIVE_INT, min_length=1),
    "num_attention_heads": POSITIVE_INT,
    "image_size": POSITIVE_INT,
    "patch_size": POSITIVE_INT,
    "num_channels": POSITIVE_INT,
    "hidden_act": ACTIVATION,
    "layer_norm_eps": POSITIVE,
    "dropout": DROPOUT,
    "attention_dropout": DROPOUT,
    "initializer_range": NON_NEGATIVE,
    "initializer_factor": NON_NEGATIVE,
    # The "+1" of the hard assignment's mean: 0 divides by zero for a group that gets no patch.
    "assign_eps": POSITIVE,
    "assign_mlp_ratio": ListOf(POSITIVE, length=2),
}
ZOO_GROUPVIT_FIELDS = {
    "projection_dim": POSITIVE_INT,
    "projection_intermediate_dim": POSITIVE_INT,
    "logit_scale_init_value": FINITE,
    "initializer_range": NON_NEGATIVE,
    "initializer_factor": NON_NEGATIVE,
    "output_segmentation": BOOLEAN,
    "multi_label_logit_scale_init_value": FINITE,
    "share_temperature": BOOLEAN,
    "multi_label_loss_weight": NON_NEGATIVE,
    "num_prompts": NON_NEGATIVE_INT,
    "gumbel_tau": POSITIVE,
    "gumbel": BOOLEAN,
    "eval_assignment": OneOf(EVAL_ASSIGNMENTS),
    "local_loss": BOOLEAN,
}
GROUPVIT_SUB_CONFIGS = {
    "text_config": (GroupViTTextConfig, GROUPVIT_TEXT_FIELDS),
    "vision_config": (GroupViTVisionConfig, GROUPVIT_VISION_FIELDS),
}


class ZooGroupViTConfig(GroupViTConfig):
    r"""
    Configuration of [`ZooGroupViTModel`] (Xu et al., *GroupViT: Semantic Segmentation Emerges from Text Supervision*,
    CVPR 2022, arXiv 2202.11094). It *is* a transformers `GroupViTConfig` (same `text_config` / `vision_config`
    sub-configs: `GroupViTTextConfig`, `GroupViTVisionConfig`; same top-level fields), so the `config.json` of
    `nvidia/groupvit-gcc-yfcc` loads unchanged, plus the fields below.

    Fields inherited from `GroupViTConfig` (defaults = the released model, paper §3/§4.1):
        text_config: width 256, 12 layers, 4 heads, 77 positions, QuickGELU (spec §1.1 text encoder).
        vision_config: width 384, depths (6, 3, 3), group tokens (64, 8, 0), output groups (64, 8, 8), 6 heads,
            224 px, patch 16, `assign_eps=1.0` (the "+1" of the hard-assignment mean, §3.1 / `AssignAttention`).
            `num_output_groups[-1]` is unused (the last stage has no grouping block; the official config has 2 entries).
        projection_dim (`int`, defaults to 256): joint embedding width (`ProjectMLP` output_dim).
        projection_intermediate_dim (`int`, defaults to 4096): hidden width of the 2-layer projection MLPs
            (Linear-BatchNorm-ReLU-Linear).
        logit_scale_init_value (`float`, defaults to 2.6592): the image-text log temperature, `ln(1/0.07)`.

    Args:
        multi_label_logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial *log* temperature of the multi-label contrastive loss (paper §3.2, Eq. 5). The official code keeps a
            separate learnable `multi_label_logit_scale` (`share_temperature=False`); the transformers port has none.
        share_temperature (`bool`, *optional*, defaults to `False`):
            Use `logit_scale` for the multi-label loss too (official option `share_temperature`). When `True` the
            separate parameter is not created, so the layout equals transformers' `GroupViTModel` exactly.
        multi_label_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of `L_ML` in `L = L_IT + w·L_ML` (official `multi_label_loss_weight`). 0 disables the loss.
        num_prompts (`int`, *optional*, defaults to 3):
            Noun/verb prompt sentences per image for `L_ML` (official `data.text_aug.multi_label=3`; RedCaps config 0).
        gumbel_tau (`float`, *optional*, defaults to 1.0):
            Temperature of the Gumbel-softmax assignment in training (official `tau=1`, §3.1).
        gumbel (`bool`, *optional*, defaults to `True`):
            Add Gumbel noise to the assignment logits in training mode (official). At eval there is never noise.
        eval_assignment (`str`, *optional*, defaults to `"hard"`):
            `"hard"`: straight-through argmax one-hot assignment at eval (official `hard_softmax`, also used for the
            classification embedding). `"soft"`: plain softmax (ablation; the authors report it lowers accuracy,
            NVlabs/GroupViT#40). Training always uses the hard straight-through Gumbel assignment.
        local_loss (`bool`, *optional*, defaults to `True`):
            In multi-process training compute the local rows against the gathered columns (same loss and gradients
            as the full matrix, less memory; the official code computes exactly the local rows).
    """

    model_type = "clipzoo-groupvit"

    multi_label_logit_scale_init_value: float = 2.6592
    share_temperature: bool = False
    multi_label_loss_weight: float = 1.0
    num_prompts: int = 3
    gumbel_tau: float = 1.0
    gumbel: bool = True
    eval_assignment: str = "hard"
    local_loss: bool = True

    def __post_init__(self, **kwargs):
        # Checked before the parent's strict validation so that users get a plain ValueError that names the field.
        check_extra_keys(type(self), kwargs, known=("text_config_dict", "vision_config_dict"))
        check_sub_config_dicts(self, GROUPVIT_SUB_CONFIGS)
        check_fields(self, ZOO_GROUPVIT_FIELDS)
        try:
            super().__post_init__(**kwargs)
        except StrictDataclassError as error:
            raise ValueError(str(error)) from error
        self.validate_towers()

    def validate_towers(self) -> None:
        """Raise a `ValueError` naming the first inconsistent tower field."""
        for name, (_, rules) in GROUPVIT_SUB_CONFIGS.items():
            sub = getattr(self, name)
            check_fields(sub, rules, f"{name}.")
            if sub.hidden_size % sub.num_attention_heads != 0:
                raise ValueError(
                    f"`{name}.hidden_size` ({sub.hidden_size}) must be divisible by `num_attention_heads` "
                    f"({sub.num_attention_heads})."
                )
        vision = self.vision_config
        depths, tokens, outputs = list(vision.depths), list(vision.num_group_tokens), list(vision.num_output_groups)
        if not (len(depths) == len(tokens) == len(outputs)):
            raise ValueError(
                "`vision_config.depths`, `num_group_tokens` and `num_output_groups` must have one entry per stage, got "
                f"{depths}, {tokens}, {outputs}."
            )
        if tokens[0] == 0:
            raise ValueError("`vision_config.num_group_tokens[0]` must be > 0: GroupViT's first stage groups patches.")
        seen_zero = False
        for i, t in enumerate(tokens):
            if seen_zero and t > 0:
                raise ValueError(
                    f"`vision_config.num_group_tokens` must not group again after a stage without groups, got {tokens}."
                )
            seen_zero = seen_zero or t == 0
            if t > 0 and outputs[i] <= 0:
                raise ValueError(f"`vision_config.num_output_groups[{i}]` must be > 0 for a grouping stage.")
            # Each grouping stage merges its input tokens into fewer (or as many) groups: a stage cannot output more
            # groups than the previous one produced (hierarchical grouping, paper §3.1).
            if t > 0 and i > 0 and outputs[i] > outputs[i - 1]:
                raise ValueError(
                    f"`vision_config.num_output_groups[{i}]` ({outputs[i]}) exceeds the previous stage's "
                    f"{outputs[i - 1]} groups: each grouping stage must merge groups, not split them."
                )
        image_size, patch_size = vision.image_size, vision.patch_size
        if image_size % patch_size != 0:
            raise ValueError(
                f"`vision_config.image_size` ({image_size}) must be a multiple of `vision_config.patch_size` "
                f"({patch_size}): the position embeddings cover a square grid of patches."
            )
        if (image_size // patch_size) ** 2 < outputs[0]:
            raise ValueError(
                f"{(image_size // patch_size) ** 2} patches cannot be split into "
                f"{outputs[0]} groups: lower `num_output_groups` or the patch size."
            )

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "ZooGroupViTConfig":
        """A config from one of `GROUPVIT_PRESETS`; keyword arguments override top-level fields."""
        if name not in GROUPVIT_PRESETS:
            raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(GROUPVIT_PRESETS)}.")
        preset = {k: dict(v) if isinstance(v, dict) else v for k, v in GROUPVIT_PRESETS[name].items()}
        for tower in ("text_config", "vision_config"):
            preset[tower].update(kwargs.pop(tower, None) or {})
        return cls(**{**preset, **kwargs})

    @classmethod
    def from_groupvit_config(cls, config: GroupViTConfig, **kwargs) -> "ZooGroupViTConfig":
        """The zoo config equal to a transformers `GroupViTConfig` (e.g. `nvidia/groupvit-gcc-yfcc`'s)."""
        data = config.to_dict()
        for key in ("model_type", "transformers_version", "architectures", "auto_map"):
            data.pop(key, None)
        return cls(**{**data, **kwargs})


__all__ = [
    "EVAL_ASSIGNMENTS",
    "GROUPVIT_PRESETS",
    "GROUPVIT_SUB_CONFIGS",
    "GROUPVIT_TEXT_FIELDS",
    "GROUPVIT_VISION_FIELDS",
    "ZOO_GROUPVIT_FIELDS",
    "ZooGroupViTConfig",
]
