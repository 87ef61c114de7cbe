"""APE / APE-T (arXiv 2304.01195) with Tip-Adapter / Tip-Adapter-F (arXiv 2111.03930) as baselines."""

import transformers

from ...registry import register_method
from .building import (
    build_adapter,
    build_cache,
    build_text_weights,
    encode_dataset,
    load_cupl_prompts,
    random_resized_crop,
    refinement_criterion,
    sample_few_shot,
    search_hyperparameters,
    select_channels,
)
from .configuration_ape import APEConfig, APETConfig, TipAdapterConfig, TipAdapterFConfig
from .modeling_ape import (
    APEModel,
    APEOutput,
    APETModel,
    CacheAdapterPreTrainedModel,
    CacheTerms,
    TipAdapterFModel,
    TipAdapterModel,
)

register_method(
    "ape",
    paper="arXiv 2304.01195 (APE), arXiv 2111.03930 (Tip-Adapter)",
    config_class=APEConfig,
    model_classes=(APEModel,),
)
# APE-T and the two baselines are variants of the same method (one row of the zoo), each with its own model_type so
# that the Auto classes rebuild the right class from a saved folder.
for _config_class, _model_class in (
    (APETConfig, APETModel),
    (TipAdapterConfig, TipAdapterModel),
    (TipAdapterFConfig, TipAdapterFModel),
):
    transformers.AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    for _auto_name in _model_class._remote_auto_classes:
        getattr(transformers, _auto_name).register(_config_class, _model_class, exist_ok=True)

__all__ = [
    "APEConfig",
    "APEModel",
    "APEOutput",
    "APETConfig",
    "APETModel",
    "CacheAdapterPreTrainedModel",
    "CacheTerms",
    "TipAdapterConfig",
    "TipAdapterFConfig",
    "TipAdapterFModel",
    "TipAdapterModel",
    "build_adapter",
    "build_cache",
    "build_text_weights",
    "encode_dataset",
    "load_cupl_prompts",
    "random_resized_crop",
    "refinement_criterion",
    "sample_few_shot",
    "search_hyperparameters",
    "select_channels",
]
