"""MA-CLIP (arXiv 2308.01532): adapters on a frozen CLIP for few-shot action recognition, trained through PEFT."""

from ...registry import register_method
from .configuration_ma_clip import MACLIPConfig
from .modeling_ma_clip import MACLIPAdapter, MACLIPBlockAdapters, MACLIPModel, MACLIPOutput, MACLIPPrototypeModule
from .peft_ma_clip import get_ma_clip_peft_model, load_ma_clip_adapter, ma_clip_peft_config, save_ma_clip_adapter
from .processing_ma_clip import MACLIPProcessor

register_method(
    "ma_clip",
    paper="arXiv 2308.01532",
    config_class=MACLIPConfig,
    model_classes=(MACLIPModel,),
    processor_class=MACLIPProcessor,
)

__all__ = [
    "MACLIPAdapter",
    "MACLIPBlockAdapters",
    "MACLIPConfig",
    "MACLIPModel",
    "MACLIPOutput",
    "MACLIPProcessor",
    "MACLIPPrototypeModule",
    "get_ma_clip_peft_model",
    "load_ma_clip_adapter",
    "ma_clip_peft_config",
    "save_ma_clip_adapter",
]
