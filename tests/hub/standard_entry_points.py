"""Load every model folder under some roots through its library's standard entry point, as a Hub user would.

Run without `hf_clipzoo` installed (the test runs this file's code in a fresh interpreter where importing it fails):
every zoo class must then come from the folder's own code (`trust_remote_code=True`). Imports only transformers,
diffusers, peft, numpy and PIL.

- a diffusers pipeline folder (`model_index.json`): `DiffusionPipeline.from_pretrained`; its components load with it;
- a PEFT adapter (`adapter_config.json`): `PeftModel.from_pretrained` on the base the adapter records;
- a transformers folder (`config.json`): `AutoConfig`, `AutoModel`, `AutoProcessor` where it has a processor, the
  card's `pipeline_tag` through `pipeline()` and every custom pipeline of its config, each run on a tiny input.

`walk(roots)` loads one folder of each distinct kind per root (`distinct_folders`: the variants of one bench run, e.g. FFF's
ablations, are the same classes and files with other weights) and returns `{folder: [what was loaded, ...]}`; it
raises on the first folder that does not load.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _red_image(size=32):
    return Image.new("RGB", (size, size), "red")


def _random_video(seed, frames=8, size=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def _card_pipeline_tag(folder: Path) -> str | None:
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md").data.pipeline_tag if (folder / "README.md").is_file() else None


def run_on_tiny_input(task: str, pipe):
    """Run a built pipeline of `task` on a tiny input; returns its output. Labels are the model's own classes where
    it has a fixed set (APE scores only the classes of its cache)."""
    labels = list(getattr(pipe.model.config, "class_names", None) or ["a circle", "a square"])[:2]
    if task == "zero-shot-image-classification":
        return pipe(_red_image(), candidate_labels=labels)
    if task == "zero-shot-image-segmentation":
        return pipe(_red_image(), labels)
    if task == "few-shot-video-classification":
        return pipe([_random_video(0), _random_video(1)], ["left", "right"], [_random_video(2)])
    raise AssertionError(f"no tiny input known for the pipeline task {task!r}; add one in {__file__}")


def load_transformers_folder(folder: Path) -> list[str]:
    from transformers import AutoConfig, AutoModel, AutoProcessor, pipeline

    loaded = []
    config_dict = json.loads((folder / "config.json").read_text())
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    if "auto_map" in config_dict:  # a zoo class: it must be the folder's code, not an installed package's
        assert type(model).__module__.startswith("transformers_modules"), (folder, type(model).__module__)
    loaded.append(f"AutoModel -> {type(model).__name__} ({type(config).__name__})")
    if any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")):
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        loaded.append(f"AutoProcessor -> {type(processor).__name__}")
    tasks = [_card_pipeline_tag(folder), *config_dict.get("custom_pipelines", {})]
    for task in filter(None, tasks):
        pipe = pipeline(task, model=str(folder), trust_remote_code=True)
        assert run_on_tiny_input(task, pipe), (folder, task)
        loaded.append(f"pipeline({task!r})")
    return loaded


def load_adapter_folder(folder: Path) -> list[str]:
    from peft import PeftModel
    from transformers import AutoModel, AutoProcessor

    base_reference = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base_reference, f"{folder}: the adapter does not record its base"
    base = AutoModel.from_pretrained(base_reference, trust_remote_code=True)
    model = PeftModel.from_pretrained(base, folder)
    assert type(model.base_model.model).__module__.startswith("transformers_modules"), folder
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    return [f"PeftModel on {type(base).__name__}", f"AutoProcessor -> {type(processor).__name__}"]


def load_diffusers_folder(folder: Path) -> list[str]:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    components = sorted(name for name, value in pipe.components.items() if value is not None)
    loaded = [f"DiffusionPipeline -> {type(pipe).__name__} ({', '.join(components)})"]
    tag = _card_pipeline_tag(folder)
    if tag == "text-to-image":
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        images = pipe("a red circle", num_inference_steps=1, height=size, width=size, output_type="np").images
        assert images.shape == (1, size, size, 3), images.shape
        loaded.append(f"{tag}: one denoising step")
    elif tag is None and hasattr(pipe, "condition_model"):  # DIVA: the diffusion feedback of an image
        loss = pipe([_red_image()]).loss
        assert np.isfinite(float(loss)), loss
        loaded.append("DIVA feedback of one image")
    else:
        raise AssertionError(f"{folder}: no check for a diffusers pipeline with pipeline_tag {tag!r}; add one here")
    return loaded


def model_folders(roots) -> dict[Path, str]:
    """Every folder under `roots` that a library loads, with the kind that loads it. A diffusers pipeline's
    components are loaded by the pipeline; one with its own model card is a model of its own too."""
    folders = {}
    for root in map(Path, roots):
        for index_file in root.rglob("model_index.json"):
            folders[index_file.parent] = "diffusers"
        for adapter_file in root.rglob("adapter_config.json"):
            folders[adapter_file.parent] = "peft"
        for config_file in root.rglob("config.json"):
            folder = config_file.parent
            is_component = (folder.parent / "model_index.json").is_file()
            if folder in folders or (is_component and not (folder / "README.md").is_file()):
                continue
            if "_class_name" in json.loads(config_file.read_text()):  # a diffusers model config
                raise AssertionError(f"{folder}: a diffusers model outside a pipeline folder")
            folders[folder] = "transformers"
    return dict(sorted(folders.items()))


def _folder_signature(folder: Path, kind: str) -> tuple:
    """What decides how a folder loads: its kind, the classes and custom pipelines its configs name, its card's
    pipeline tag and its file names. Two folders with one signature differ only in their weights' values."""
    files = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix != ".safetensors"))
    weights = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors")))
    configs = []
    for name in ("config.json", "adapter_config.json", "model_index.json"):
        if (folder / name).is_file():
            config = json.loads((folder / name).read_text())
            configs.append(
                json.dumps(
                    {key: config.get(key) for key in ("model_type", "architectures", "auto_map", "custom_pipelines",
                                                      "peft_type", "_class_name", "base_model_name_or_path")},
                    sort_keys=True,
                )
            )  # fmt: skip
    return kind, _card_pipeline_tag(folder), tuple(configs), weights, files


def distinct_folders(roots) -> dict[Path, str]:
    """The first folder of each `_folder_signature` under each root (every root keeps its own: the shipped
    foundations are loaded even where a bench folder has their signature)."""
    distinct = {}
    for root in roots:
        seen = set()
        for folder, kind in model_folders([root]).items():
            signature = _folder_signature(folder, kind)
            if signature not in seen:
                seen.add(signature)
                distinct[folder] = kind
    return distinct


LOADERS = {"diffusers": load_diffusers_folder, "peft": load_adapter_folder, "transformers": load_transformers_folder}


def walk(roots) -> dict[str, list[str]]:
    report = {}
    for folder, kind in distinct_folders(roots).items():
        try:
            report[str(folder)] = LOADERS[kind](folder)
        except Exception as error:
            raise AssertionError(f"{folder} ({kind}) does not load through its standard entry point") from error
    return report
