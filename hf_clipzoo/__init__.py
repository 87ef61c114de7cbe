"""hf-clipzoo: seven methods that repair CLIP's weak spots, as Hugging Face-native models.

Importing the package registers every method with transformers' Auto classes (as soon as transformers is imported),
so `AutoModel.from_pretrained(path_or_repo)` works without `trust_remote_code`. The classes below are imported on
first use, as transformers does: `import hf_clipzoo` alone (and so `hf-clipzoo --help`) imports neither torch nor
transformers.
"""

__version__ = "0.1.0.dev0"

import importlib

from .registry import register_when_transformers_loads

# Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(("APEConfig", "APEModel", "APETConfig", "APETModel"), ".models.ape"),
    **dict.fromkeys(("ZooCLIPConfig", "ZooCLIPModel", "ZooCLIPOutput", "ZooCLIPProcessor"), ".models.clip"),
    **dict.fromkeys(("CLIPFSARConfig", "CLIPFSARModel", "CLIPFSARProcessor"), ".models.clip_fsar"),
    **dict.fromkeys(("DivaConfig", "DivaModel", "DivaPipeline"), ".models.diva"),
    **dict.fromkeys(("DreamLIPConfig", "DreamLIPModel", "DreamLIPProcessor"), ".models.dreamlip"),
    **dict.fromkeys(("FFFConfig", "FFFModel", "FFFOutput", "FFFProcessor"), ".models.fff"),
    **dict.fromkeys(("ZooGroupViTConfig", "ZooGroupViTModel", "ZooGroupViTProcessor"), ".models.groupvit"),
    **dict.fromkeys(("MACLIPConfig", "MACLIPModel", "MACLIPProcessor"), ".models.ma_clip"),
    **dict.fromkeys(("get_method", "list_methods"), ".registry"),
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])


register_when_transformers_loads()

__all__ = sorted(_EXPORTS)
