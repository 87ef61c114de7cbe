"""DIVA: diffusion feedback post-training of the CLIP vision tower (arXiv 2407.20171)."""

from ...registry import register_method
from .configuration_diva import DivaConfig
from .modeling_diva import DivaModel, DivaOutput, DivaPreTrainedModel, encode_latents, freeze

register_method("diva", paper="arXiv 2407.20171", config_class=DivaConfig, model_classes=(DivaModel,))


def __getattr__(name: str):
    # The pipeline needs diffusers (~0.4 s to import): loaded on first use, not by `import hf_clipzoo`.
    if name in ("DivaPipeline", "DivaPipelineOutput"):
        from . import pipeline_diva

        return getattr(pipeline_diva, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
