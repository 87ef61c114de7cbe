"""FFF: mined positives, batch text augmentation and the multi-positive sigmoid loss (arXiv 2405.10286)."""

from ...registry import register_method
from .configuration_fff import FFFConfig
from .modeling_fff import FFFModel, FFFOutput
from .processing_fff import FFFProcessor

register_method(
    "fff",
    paper="arXiv 2405.10286",
    config_class=FFFConfig,
    model_classes=(FFFModel,),
    processor_class=FFFProcessor,
)

__all__ = ["FFFConfig", "FFFModel", "FFFOutput", "FFFProcessor"]
