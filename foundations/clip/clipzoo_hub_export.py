"""Remote-code export: make every saved folder loadable without `hf_clipzoo` installed.

transformers' own mechanism (`register_for_auto_class`) copies a class's module plus the files it reaches through
single-dot relative imports, and crashes on `from ..losses import x`. The package keeps its nested layout, so this
module bundles what a model needs at save time instead:

1. starting from the modules that define the saved classes, it follows every import of an `hf_clipzoo` module
   (absolute or relative) and collects the source files;
2. it gives each file a flat name (`hf_clipzoo.losses.sigmoid` -> `clipzoo_losses_sigmoid.py`; files of the model's
   own folder keep their name, e.g. `modeling_clip.py`) and rewrites those imports into `from .<flat> import ...`, the
   only form transformers follows when it fetches remote code;
3. it writes `auto_map` into `config.json` / `processor_config.json`, and `custom_pipelines` into `config.json` for the
   pipelines a model declares (`_custom_pipelines`), so `pipeline(task, model=folder, trust_remote_code=True)` finds
   them as transformers' own `Pipeline.save_pretrained` would record them.

Rule for package code that gets bundled: import names (functions, classes) from `hf_clipzoo` modules, never
submodules as objects, and keep such modules free of imports the user may not have (anything beyond torch,
transformers, numpy, PIL, safetensors, huggingface_hub must sit inside a `try:` block, which transformers' import
check skips).

When the class itself was loaded as remote code (module under `transformers_modules`), its folder already is flat:
the sibling files are copied as they are, so a model loaded with `trust_remote_code=True` saves loadable folders too.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
from pathlib import Path

from safetensors import SafetensorError

from .clipzoo_hub_folders import check_model_path, corrupt_safetensors_error

PACKAGE = "hf_clipzoo"
_FLAT_PREFIX = "clipzoo_"


def _module_source(module_name: str) -> tuple[Path, bool]:
    """Path of the source of an importable module, and whether it is a package `__init__`."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"Cannot bundle {module_name!r}: no Python source file found.")
    return Path(spec.origin), spec.submodule_search_locations is not None


def _resolve(node: ast.ImportFrom, current: str, current_is_package: bool) -> str | None:
    """Absolute name of the module an `ImportFrom` refers to, if it is a module of the package."""
    if node.level == 0:
        name = node.module or ""
    else:
        base = current.split(".") if current_is_package else current.split(".")[:-1]
        if node.level > 1:
            base = base[: -(node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        return name
    return None


def _flat_name(module_name: str, home_package: str) -> str:
    if module_name == PACKAGE:
        raise ValueError(
            f"Bundled code must not import from the top-level `{PACKAGE}` package (it registers every method); "
            "import from the defining module instead."
        )
    parent, _, leaf = module_name.rpartition(".")
    if parent == home_package:
        return leaf
    return _FLAT_PREFIX + module_name[len(PACKAGE) + 1 :].replace(".", "_")


def _rewrite(source: str, module_name: str, is_package: bool, home_package: str) -> tuple[str, list[str]]:
    """Rewrite package imports of one file into flat relative imports; return the new source and the modules used."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    raise ValueError(
                        f"{module_name}: `import {alias.name}` cannot be bundled as remote code; "
                        "use `from <module> import <name>`."
                    )
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _resolve(node, module_name, is_package)
        if target is None:
            continue
        # `from . import submodule` would import a module object, which the flat layout cannot express.
        for alias in node.names:
            if importlib.util.find_spec(f"{target}.{alias.name}") is not None if _is_package(target) else False:
                raise ValueError(
                    f"{module_name}: `from {target} import {alias.name}` imports a submodule; "
                    "import the names you need from it instead."
                )
        used.append(target)
        names = ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in node.names)
        indent = lines[node.lineno - 1][: node.col_offset]
        replacement = f"{indent}from .{_flat_name(target, home_package)} import {names}\n"
        edits.append((node.lineno, node.end_lineno, replacement))
    for start, end, replacement in sorted(edits, reverse=True):
        lines[start - 1 : end] = [replacement]
    return "".join(lines), used


def _is_package(module_name: str) -> bool:
    spec = importlib.util.find_spec(module_name)
    return spec is not None and spec.submodule_search_locations is not None


def bundle_modules(entry_modules: list[str], save_directory: str | os.PathLike) -> dict[str, str]:
    """Write the flat, self-contained code of `entry_modules` (and all package modules they import) into
    `save_directory`. Returns `{module_name: flat_module_name}` for every file written; files of the first module's
    package keep their names."""
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    remote = [m for m in entry_modules if not (m == PACKAGE or m.startswith(PACKAGE + "."))]
    if remote:
        return _copy_flat_siblings(remote, save_directory)

    home_package = entry_modules[0].rpartition(".")[0]
    written: dict[str, str] = {}
    queue = list(entry_modules)
    while queue:
        name = queue.pop()
        if name in written:
            continue
        path, is_package = _module_source(name)
        source, used = _rewrite(path.read_text(encoding="utf-8"), name, is_package, home_package)
        flat = _flat_name(name, home_package)
        if flat in written.values():
            raise ValueError(f"Two bundled modules map to the same file name {flat!r}.")
        (save_directory / f"{flat}.py").write_text(source, encoding="utf-8")
        written[name] = flat
        queue.extend(u for u in used if u not in written)
    return written


def _copy_flat_siblings(modules: list[str], save_directory: Path) -> dict[str, str]:
    import sys

    written = {}
    for name in modules:
        module_file = Path(sys.modules[name].__file__)
        for file in module_file.parent.glob("*.py"):
            if file.name != "__init__.py" and file.resolve() != (save_directory / file.name).resolve():
                shutil.copyfile(file, save_directory / file.name)
        written[name] = module_file.stem
    return written


def class_reference(cls: type, flat_names: dict[str, str]) -> str:
    return f"{flat_names[cls.__module__]}.{cls.__name__}"


def update_json(path: str | os.PathLike, auto_map: dict[str, str], key: str = "auto_map") -> None:
    """Merge entries into the `key` dict of a saved JSON file (config.json / processor_config.json)."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault(key, {}).update(auto_map)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RemoteCodeModelMixin:
    """Mixin for `PreTrainedModel`s of the zoo: `save_pretrained` (and so `push_to_hub`) also writes the model's code
    and `auto_map`, so the folder loads with `trust_remote_code=True` where `hf_clipzoo` is not installed.

    `from_pretrained` checks the folder first (`check_model_path`): a broken folder fails with its path and what was
    expected, also through `AutoModel` and as remote code (this module is bundled with the model).

    `_remote_auto_classes` lists the Auto classes (besides `AutoConfig`) the saved folder answers to.
    `_custom_pipelines` maps custom pipeline tasks to the `Pipeline` class serving them (`"module.Class"`): their code
    is bundled too and `custom_pipelines` written into `config.json`; the registry registers them with transformers.
    """

    _remote_auto_classes: tuple[str, ...] = ("AutoModel",)
    _custom_pipelines: dict[str, str] = {}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        if pretrained_model_name_or_path is not None:  # None: weights come from `state_dict=`
            check_model_path(
                pretrained_model_name_or_path,
                subfolder=kwargs.get("subfolder") or "",
                needs_config=kwargs.get("config") is None,
            )
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:  # a Hub download: the local check could not see the cached files
            raise corrupt_safetensors_error(f"A weights file of {pretrained_model_name_or_path}", error) from error

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if not is_main_process:
            return
        config_cls = type(self.config)
        pipeline_modules = [reference.rpartition(".")[0] for reference in self._custom_pipelines.values()]
        flat = bundle_modules([type(self).__module__, config_cls.__module__, *pipeline_modules], save_directory)
        auto_map = {"AutoConfig": class_reference(config_cls, flat)}
        auto_map.update({auto: class_reference(type(self), flat) for auto in self._remote_auto_classes})
        config_path = Path(save_directory) / "config.json"
        update_json(config_path, auto_map)
        # Loaded as remote code, the config already carries `custom_pipelines` and the siblings were copied as they are.
        if self._custom_pipelines and all(module in flat for module in pipeline_modules):
            custom_pipelines = {
                task: {
                    "impl": f"{flat[module]}.{reference.rpartition('.')[2]}",
                    "pt": [self._remote_auto_classes[0]],
                    "type": "multimodal",
                }
                for (task, reference), module in zip(self._custom_pipelines.items(), pipeline_modules)
            }
            update_json(config_path, custom_pipelines, key="custom_pipelines")


class RemoteCodeProcessorMixin:
    """Same as `RemoteCodeModelMixin` for `ProcessorMixin` subclasses (`processor_config.json` gets `auto_map`)."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        flat = bundle_modules([type(self).__module__], save_directory)
        update_json(
            Path(save_directory) / "processor_config.json", {"AutoProcessor": class_reference(type(self), flat)}
        )
        return result


__all__ = ["RemoteCodeModelMixin", "RemoteCodeProcessorMixin", "bundle_modules", "update_json"]
