"""hf-clipzoo: seven methods that repair CLIP's weak spots, as Hugging Face-native models.

Importing the package registers every method with transformers' Auto classes, so
`AutoModel.from_pretrained(path_or_repo)` works without `trust_remote_code`.
"""

__version__ = "0.1.0.dev0"

from .models.ape import APEConfig, APEModel, APETConfig, APETModel  # noqa: E402
from .models.clip import ZooCLIPConfig, ZooCLIPModel, ZooCLIPOutput, ZooCLIPProcessor  # noqa: E402
from .models.clip_fsar import CLIPFSARConfig, CLIPFSARModel, CLIPFSARProcessor  # noqa: E402
from .models.diva import DivaConfig, DivaModel  # noqa: E402
from .models.dreamlip import DreamLIPConfig, DreamLIPModel, DreamLIPProcessor  # noqa: E402
from .models.fff import FFFConfig, FFFModel, FFFOutput, FFFProcessor  # noqa: E402
from .models.groupvit import ZooGroupViTConfig, ZooGroupViTModel, ZooGroupViTProcessor  # noqa: E402
from .models.ma_clip import MACLIPConfig, MACLIPModel, MACLIPProcessor  # noqa: E402
from .registry import get_method, list_methods  # noqa: E402


def __getattr__(name: str):
    if name == "DivaPipeline":  # needs diffusers: imported on first use
        from .models.diva import DivaPipeline

        return DivaPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "APEConfig",
    "APEModel",
    "APETConfig",
    "APETModel",
    "CLIPFSARConfig",
    "CLIPFSARModel",
    "CLIPFSARProcessor",
    "DivaConfig",
    "DivaModel",
    "DivaPipeline",
    "DreamLIPConfig",
    "DreamLIPModel",
    "DreamLIPProcessor",
    "FFFConfig",
    "FFFModel",
    "FFFOutput",
    "FFFProcessor",
    "MACLIPConfig",
    "MACLIPModel",
    "MACLIPProcessor",
    "ZooCLIPConfig",
    "ZooCLIPModel",
    "ZooCLIPOutput",
    "ZooCLIPProcessor",
    "ZooGroupViTConfig",
    "ZooGroupViTModel",
    "ZooGroupViTProcessor",
    "get_method",
    "list_methods",
]
