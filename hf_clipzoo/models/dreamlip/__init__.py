"""DreamLIP (arXiv 2403.17007): long-caption training with subcaption sampling, multi-positive and grouping losses."""

from ...registry import register_method
from .configuration_dreamlip import DreamLIPConfig
from .modeling_dreamlip import DreamLIPModel, DreamLIPOutput
from .processing_dreamlip import DreamLIPProcessor

register_method(
    "dreamlip",
    paper="arXiv 2403.17007",
    config_class=DreamLIPConfig,
    model_classes=(DreamLIPModel,),
    processor_class=DreamLIPProcessor,
)

__all__ = ["DreamLIPConfig", "DreamLIPModel", "DreamLIPOutput", "DreamLIPProcessor"]
