"""One place that registers every method of the zoo with transformers' Auto classes.

Each method's package calls `register_method(...)` once; `register_all_methods()` imports every method package, so
`AutoConfig` / `AutoModel` / `AutoProcessor` (and the task Auto classes a model declares in `_remote_auto_classes`)
resolve the zoo's `model_type`s without `trust_remote_code`, and registers the custom pipelines the models declare
(`_custom_pipelines`) with transformers' `PIPELINE_REGISTRY`, so `pipeline(task, model=model, processor=processor)`
finds them. `import hf_clipzoo` does not import torch or
transformers itself (the CLI answers `--help` without them); it calls `register_all_methods()` as soon as transformers
is imported (`register_when_transformers_loads`), which is the earliest an Auto class can be used.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field

# The seven methods of the zoo and their papers, in the order of the README table.
PLANNED_METHODS = {
    "groupvit": "arXiv 2202.11094",
    "fff": "arXiv 2405.10286",
    "dreamlip": "arXiv 2403.17007",
    "diva": "arXiv 2407.20171",
    "clip_fsar": "arXiv 2303.02982",
    "ma_clip": "arXiv 2308.01532",
    "ape": "arXiv 2304.01195",
}
# Every package under hf_clipzoo/models registers itself on import: the CLIP baseline, then the methods.
METHOD_PACKAGES = ("clip", *PLANNED_METHODS)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    paper: str
    config_class: type
    model_classes: tuple[type, ...]
    processor_class: type | None
    training_script: str
    auto_classes: tuple[str, ...] = field(default=())

    @property
    def model_type(self) -> str:
        return self.config_class.model_type


_METHODS: dict[str, MethodInfo] = {}


def register_method(
    name: str,
    *,
    paper: str,
    config_class: type,
    model_classes: tuple[type, ...],
    processor_class: type | None = None,
    training_script: str | None = None,
) -> MethodInfo:
    """Register a method's config, models and processor with the Auto classes and record it in `list_methods()`."""
    import transformers

    transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    auto_classes: list[str] = []
    for model_class in model_classes:
        for auto_name in getattr(model_class, "_remote_auto_classes", ("AutoModel",)):
            getattr(transformers, auto_name).register(config_class, model_class, exist_ok=True)
            auto_classes.append(auto_name)
    if processor_class is not None:
        from .backbones.tokenizer import ZooCLIPTokenizer

        transformers.AutoProcessor.register(config_class, processor_class, exist_ok=True)
        # Every processor of the zoo tokenizes with the CLIP BPE; registering the class also lets a saved
        # `tokenizer_config.json` naming `ZooCLIPTokenizer` load as local code where hf_clipzoo is installed.
        transformers.AutoTokenizer.register(config_class, tokenizer_class=ZooCLIPTokenizer, exist_ok=True)
    info = MethodInfo(
        name=name,
        paper=paper,
        config_class=config_class,
        model_classes=tuple(model_classes),
        processor_class=processor_class,
        training_script=training_script or f"training_scripts/{name}.py",
        auto_classes=tuple(auto_classes),
    )
    _METHODS[name] = info
    return info


def register_all_methods() -> None:
    """Import every method package (each registers itself) and register their pipelines; a no-op once done."""
    for package in METHOD_PACKAGES:
        importlib.import_module(f"hf_clipzoo.models.{package}")
    register_pipelines()


def register_pipelines() -> None:
    """Register the custom pipeline of every registered model (`_custom_pipelines`: task -> "module.Class").

    After the method packages, because a pipeline module imports from them.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    for info in list(_METHODS.values()):
        for model_class in info.model_classes:
            for task, reference in getattr(model_class, "_custom_pipelines", {}).items():
                module_name, _, class_name = reference.rpartition(".")
                pipeline_class = getattr(importlib.import_module(module_name), class_name)
                if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is pipeline_class:
                    continue
                auto_class = getattr(importlib.import_module("transformers"), model_class._remote_auto_classes[0])
                PIPELINE_REGISTRY.register_pipeline(task, pipeline_class, pt_model=auto_class, type="multimodal")


class _RegisterOnceTransformersLoads:
    """A `sys.meta_path` finder that registers every method as soon as an import leaves transformers loaded.

    It watches the imports of transformers and of hf_clipzoo's own modules and registers when the outermost of them
    has finished: never in the middle of one of the zoo's modules (registering imports all of them, which would find
    that module half-initialised). Every other import passes by untouched; the finder removes itself once done.
    """

    def __init__(self):
        self.depth = 0  # how many watched imports are executing (nested)

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers" and not fullname.startswith("hf_clipzoo."):
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            self.depth += 1
            try:
                exec_module(module)
            finally:
                self.depth -= 1
            if self.depth == 0 and "transformers" in sys.modules:
                self.register()

        spec.loader.exec_module = exec_then_register
        return spec

    def register(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        register_all_methods()


def register_when_transformers_loads() -> None:
    """Register every method now if transformers is already imported, else right after it is.

    This keeps `import hf_clipzoo` light (no torch, no transformers) while `import hf_clipzoo` followed by
    `AutoModel.from_pretrained(...)` still finds the zoo's classes.
    """
    if "transformers" in sys.modules:
        register_all_methods()
    elif not any(isinstance(finder, _RegisterOnceTransformersLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnceTransformersLoads())


def get_method(name: str) -> MethodInfo:
    register_all_methods()
    if name not in _METHODS:
        missing = " (planned, not implemented yet)" if name in PLANNED_METHODS else ""
        raise KeyError(f"Unknown method {name!r}{missing}; registered: {sorted(_METHODS)}.")
    return _METHODS[name]


def list_methods(include_planned: bool = False) -> list[dict]:
    """What the zoo provides: one dict per registered method (name, paper, model_type, classes, training script).

    With `include_planned=True`, methods that are planned but not implemented yet are listed with
    `"status": "not implemented"`.
    """
    register_all_methods()
    # In the README table's order, whatever order the packages happened to be imported in.
    ordered = sorted(
        _METHODS.values(),
        key=lambda m: METHOD_PACKAGES.index(m.name) if m.name in METHOD_PACKAGES else len(METHOD_PACKAGES),
    )
    rows = [
        {
            "name": m.name,
            "status": "implemented",
            "paper": m.paper,
            "model_type": m.model_type,
            "config": m.config_class.__name__,
            "models": [c.__name__ for c in m.model_classes],
            "processor": m.processor_class.__name__ if m.processor_class else None,
            "auto_classes": list(m.auto_classes),
            "training_script": m.training_script,
        }
        for m in ordered
    ]
    if include_planned:
        rows += [
            {"name": name, "status": "not implemented", "paper": paper}
            for name, paper in PLANNED_METHODS.items()
            if name not in _METHODS
        ]
    return rows


__all__ = [
    "METHOD_PACKAGES",
    "MethodInfo",
    "PLANNED_METHODS",
    "get_method",
    "list_methods",
    "register_all_methods",
    "register_method",
    "register_pipelines",
    "register_when_transformers_loads",
]
