"""DIVA: diffusion feedback post-training of the CLIP vision tower (arXiv 2407.20171)."""

from ...registry import register_method
from .configuration_diva import DivaConfig
from .modeling_diva import DivaModel, DivaOutput, DivaPreTrainedModel, encode_latents, freeze
from .pipeline_diva import DivaPipeline, DivaPipelineOutput

register_method("diva", paper="arXiv 2407.20171", config_class=DivaConfig, model_classes=(DivaModel,))

__all__ = [
    "DivaConfig",
    "DivaModel",
    "DivaOutput",
    "DivaPipeline",
    "DivaPipelineOutput",
    "DivaPreTrainedModel",
    "encode_latents",
    "freeze",
]
