"""The baseline CLIP / SigLIP dual encoder every method is compared with."""

from ...registry import register_method
from .configuration_clip import ZooCLIPConfig
from .modeling_clip import ZooCLIPModel, ZooCLIPOutput, ZooCLIPPreTrainedModel
from .processing_clip import ZooCLIPProcessor

register_method(
    "clip",
    paper="arXiv 2103.00020 (CLIP), arXiv 2303.15343 (SigLIP)",
    config_class=ZooCLIPConfig,
    model_classes=(ZooCLIPModel,),
    processor_class=ZooCLIPProcessor,
)

__all__ = ["ZooCLIPConfig", "ZooCLIPModel", "ZooCLIPOutput", "ZooCLIPPreTrainedModel", "ZooCLIPProcessor"]
