"""CLIP-FSAR (arXiv 2303.02982): few-shot action recognition with CLIP frame features, text-modulated prototypes and
OTAM matching; `use_text=False` gives the "OTAM without text" baseline."""

from ...registry import register_method
from .configuration_clip_fsar import CLIPFSARConfig
from .modeling_clip_fsar import (
    CLIPFSARAttention,
    CLIPFSARFeedForward,
    CLIPFSARModel,
    CLIPFSAROutput,
    CLIPFSARPreTrainedModel,
    CLIPFSARTemporalTransformer,
    fsar_cos_sim,
)
from .processing_clip_fsar import CLIPFSARProcessor

register_method(
    "clip_fsar",
    paper="arXiv 2303.02982",
    config_class=CLIPFSARConfig,
    model_classes=(CLIPFSARModel,),
    processor_class=CLIPFSARProcessor,
)

__all__ = [
    "CLIPFSARAttention",
    "CLIPFSARConfig",
    "CLIPFSARFeedForward",
    "CLIPFSARModel",
    "CLIPFSAROutput",
    "CLIPFSARPreTrainedModel",
    "CLIPFSARProcessor",
    "CLIPFSARTemporalTransformer",
    "fsar_cos_sim",
]
