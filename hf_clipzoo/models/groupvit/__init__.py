"""GroupViT (arXiv 2202.11094): hierarchical grouping learned from text, zero-shot semantic segmentation."""

from ...registry import register_method
from .configuration_groupvit import GROUPVIT_PRESETS, ZooGroupViTConfig
from .modeling_groupvit import (
    ProcessGroupBatchNorm1d,
    ZooGroupViTModel,
    ZooGroupViTOutput,
    gumbel_softmax_straight_through,
    hard_straight_through,
    multi_label_targets,
)
from .processing_groupvit import (
    ZooGroupViTProcessor,
    build_groupvit_processor,
    build_prompts,
    extract_prompt_words,
    overlay_masks,
)

register_method(
    "groupvit",
    paper="arXiv 2202.11094",
    config_class=ZooGroupViTConfig,
    model_classes=(ZooGroupViTModel,),
    processor_class=ZooGroupViTProcessor,
)

__all__ = [
    "GROUPVIT_PRESETS",
    "ProcessGroupBatchNorm1d",
    "ZooGroupViTConfig",
    "ZooGroupViTModel",
    "ZooGroupViTOutput",
    "ZooGroupViTProcessor",
    "build_groupvit_processor",
    "build_prompts",
    "extract_prompt_words",
    "gumbel_softmax_straight_through",
    "hard_straight_through",
    "multi_label_targets",
    "overlay_masks",
]
