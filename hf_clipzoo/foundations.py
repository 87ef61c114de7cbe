"""`hf-clipzoo foundations`: train the embedded world's starting models from scratch, deterministically, and ship them.

Every method of the bench starts from a model that already knows the world: the CLIP baseline (FFF, DreamLIP, DIVA,
APE, CLIP-FSAR and MA-CLIP fine-tune or freeze it), the SigLIP baseline, GroupViT (its towers differ from CLIP's) and
the small text-to-image diffusion model whose feedback DIVA learns from. Training them takes longer than the bench
may, so the repository ships them in `foundations/` with `foundations/manifest.json`:

- the command that made them, the seed, the commit, torch's version and thread count;
- every shipped file's sha256, and the validation numbers of what is shipped (measured on the *val* splits; the test
  splits are left to the bench);
- the sha256 of each run's early checkpoint (`EARLY_STEP`), which `tests/test_foundations.py` re-creates with the
  same command, so what is shipped is what the command makes.

A foundation is trained twice over its first `EARLY_STEP` steps: once stopped there (`--stop_after_step`, the
checkpoint the test reproduces) and once to the end (the shipped model) — cheaper than keeping every checkpoint.
Weights are stored in fp16 where that costs nothing: the fp16 copy is re-evaluated and kept only when its validation
numbers match the fp32 model's to within `FP16_TOLERANCE`, else the fp32 weights are shipped.

`hf-clipzoo foundations --refresh` (`refresh_foundation`) brings shipped folders up to the current code without
retraining: everything but the weights (config, bundled remote code, processor and tokenizer, card, diffusers'
`model_index.json`) is re-written by the same functions a new run saves with, the weights files are copied byte for
byte, the validation numbers are re-measured and must not move, and the manifest records the refresh.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .hub.folders import file_sha256
from .hub.scrub import scrub_secrets

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
FOUNDATIONS_DIR = REPO_ROOT / "foundations"
MANIFEST_FILE = "manifest.json"
EARLY_STEP = 20
FP16_TOLERANCE = 0.005
# Same weights and same inputs give the same numbers; the margin only absorbs summation order (thread count).
REFRESH_TOLERANCE = 1e-5


@dataclass(frozen=True)
class FoundationSpec:
    """One starting model: the training script, its recipe and what its validation numbers are.

    `argv` is the whole recipe (world, model, budget, schedule) minus `--seed` and `--output_dir`; `needs` names
    foundations whose folder is passed as `--<flag> <folder>` (e.g. the diffusion model's frozen text encoder).
    """

    name: str
    script: str
    argv: tuple[str, ...]
    validation_metrics: tuple[str, ...]
    model_subdir: str = "final"
    needs: dict[str, str] = field(default_factory=dict)
    description: str = ""


# The embedded world every foundation sees, validated on the world's *val* split (the test split is the bench's).
_WORLD = (
    "--synthetic_train_size 16384 --synthetic_eval_size 512 --synthetic_classes_per_split 10 "
    "--synthetic_eval_split val --eval_caption_column long_caption "
)
_IMAGE_TEXT_VALIDATION = (
    "zero_shot/top1_accuracy",
    "zero_shot/top5_accuracy",
    "retrieval/image_to_text_R@1",
    "retrieval/text_to_image_R@1",
)

FOUNDATIONS: dict[str, FoundationSpec] = {
    "clip": FoundationSpec(
        name="clip",
        script="clip",
        argv=tuple(
            (
                _WORLD + "--model_preset world-tiny --loss_type softmax --per_device_train_batch_size 256 "
                "--learning_rate 1.5e-3 --num_warmup_steps 80 --max_train_steps 900 --logging_steps 20 "
                "--eval_steps 300 --checkpointing_steps 100 --checkpoints_total_limit 1"
            ).split()
        ),
        validation_metrics=_IMAGE_TEXT_VALIDATION,
        description="CLIP (InfoNCE) baseline, world-tiny towers, trained on the world's short alt-text captions.",
    ),
    "groupvit": FoundationSpec(
        name="groupvit",
        script="groupvit",
        argv=tuple(
            (
                _WORLD + "--model_preset world-tiny --per_device_train_batch_size 128 --learning_rate 1e-3 "
                "--num_warmup_steps 60 --max_train_steps 600 --logging_steps 20 --eval_steps 300 "
                "--num_segmentation_eval_images 64 --checkpointing_steps 100 --checkpoints_total_limit 1"
            ).split()
        ),
        validation_metrics=(
            *_IMAGE_TEXT_VALIDATION,
            "segmentation/mean_iou",
            "segmentation/all_background_mean_iou",
            "segmentation/overall_accuracy",
        ),
        description="GroupViT (image-text + multi-label losses) from scratch, world-tiny towers.",
    ),
    "diffusion": FoundationSpec(
        name="diffusion",
        script="diva_pretrain_diffusion",
        argv=tuple(
            (
                "--preset micro --resolution 32 --caption_column long_caption --train_size 8192 --eval_size 256 "
                "--batch_size 32 --vae_train_steps 300 --max_train_steps 1200 --learning_rate 5e-4 "
                "--num_warmup_steps 60 --logging_steps 100"
            ).split()
        ),
        # The VAE's reconstruction error is in the manifest's training metrics (measured by the script).
        validation_metrics=("diffusion/val_loss", "diffusion/val_loss_shuffled_text"),
        model_subdir="",
        description="Text-to-image latent diffusion model (VAE + UNet + its own text encoder, SD layout) that DIVA "
        "learns from, conditioned on the world's long descriptions.",
    ),
}


def folder_sha256(folder: str | Path) -> dict[str, str]:
    """`{relative path: sha256}` of every file under `folder`, sorted."""
    folder = Path(folder)
    return {str(path.relative_to(folder)): file_sha256(path) for path in sorted(folder.rglob("*")) if path.is_file()}


def git_commit() -> str:
    """The repository's HEAD commit, with `-dirty` when tracked files differ from it (or `unknown`)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _run(spec: FoundationSpec, run_dir: Path, seed: int, extra: list[str]) -> dict:
    from .bench import run_script

    return run_script(spec.script, [*spec.argv, "--seed", str(seed), *extra], run_dir)


def early_checkpoint_sha256(spec: FoundationSpec, work_dir: str | Path, seed: int = 0) -> str:
    """Run `spec` from scratch up to `EARLY_STEP` (same schedule as the full run) and hash that checkpoint's
    weights: the test compares it with the manifest."""
    run_dir = Path(work_dir) / spec.name / "early"
    shutil.rmtree(run_dir, ignore_errors=True)
    _run(spec, run_dir, seed, ["--stop_after_step", str(EARLY_STEP)])
    return file_sha256(run_dir / f"checkpoint-{EARLY_STEP}" / "model.safetensors")


def _to_fp16_if_free(spec: FoundationSpec, model_dir: Path, fp32_metrics: dict) -> dict:
    """Rewrite `model_dir`'s safetensors files in fp16 when the validation numbers do not move (else restore fp32)."""
    import torch
    from safetensors.torch import load_file, save_file

    files = sorted(model_dir.rglob("*.safetensors"))
    backups = {}
    for path in files:
        tensors = load_file(str(path))
        backups[path] = tensors
        halved = {
            k: (v.half() if v.is_floating_point() and v.dtype == torch.float32 else v) for k, v in tensors.items()
        }
        save_file(halved, str(path), metadata={"format": "pt"})
    fp16_metrics = validate_foundation(spec, model_dir)
    moved = {
        k: abs(fp16_metrics[k] - fp32_metrics[k])
        for k in spec.validation_metrics
        if k in fp16_metrics and k in fp32_metrics
    }
    if moved and max(moved.values()) <= FP16_TOLERANCE:
        return {"dtype": "float16", "fp32_validation": fp32_metrics, "max_change": max(moved.values())}
    for path, tensors in backups.items():
        save_file(tensors, str(path), metadata={"format": "pt"})
    return {"dtype": "float32", "fp16_validation": fp16_metrics, "max_change": max(moved.values()) if moved else None}


def validate_foundation(spec: FoundationSpec, model_dir: Path, seed: int = 0) -> dict[str, float]:
    """The spec's validation numbers of the model saved in `model_dir`, on the world's val split."""
    if spec.name == "diffusion":
        from .models.diva.diffusion import validate_diffusion_folder

        return validate_diffusion_folder(model_dir, seed=seed, caption_column="long_caption", eval_size=256)
    from .training.image_text import evaluate_world_image_text

    metrics = evaluate_world_image_text(model_dir, split="val", seed=seed, eval_size=512, classes_per_split=10)
    if spec.name == "groupvit":
        import torch
        from transformers import AutoModel, AutoProcessor

        from .data.synthetic import WorldConfig, make_scenes
        from .eval.segmentation import evaluate_world_segmentation

        model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
        processor = AutoProcessor.from_pretrained(model_dir)
        world = WorldConfig(seed=seed, image_size=model.config.vision_config.image_size)
        scenes = make_scenes(64, split="val", config=world)
        result = evaluate_world_segmentation(model, processor, scenes, num_images=64)
        metrics.update({f"segmentation/{k}": v for k, v in result.items() if isinstance(v, float)})
    return {k: v for k, v in metrics.items() if k in spec.validation_metrics}


def build_foundations(
    output_dir: str | Path = FOUNDATIONS_DIR,
    work_dir: str | Path = "foundations_work",
    names: list[str] | None = None,
    seed: int = 0,
) -> dict:
    """Train the foundations (`names`, default all) from scratch into `output_dir/<name>/`, and write the manifest.

    Runs (checkpoints, logs) go to `work_dir`; a killed build resumes each full run from its last checkpoint.
    """
    import torch

    output_dir, work_dir = Path(output_dir), Path(work_dir)
    names = list(names or FOUNDATIONS)
    unknown = set(names) - set(FOUNDATIONS)
    if unknown:
        raise ValueError(f"Unknown foundations {sorted(unknown)}; expected some of {sorted(FOUNDATIONS)}.")
    manifest_path = output_dir / MANIFEST_FILE
    manifest = {"foundations": {}}
    for name in names:
        spec = FOUNDATIONS[name]
        start = time.perf_counter()
        early = early_checkpoint_sha256(spec, work_dir, seed)
        run_dir = work_dir / name / "full"
        resumable = ["--resume_from_checkpoint", "latest"] if spec.script != "diva_pretrain_diffusion" else []
        run = _run(spec, run_dir, seed, resumable)
        seconds = time.perf_counter() - start
        source = run_dir / spec.model_subdir if spec.model_subdir else run_dir
        target = output_dir / name
        shutil.rmtree(target, ignore_errors=True)
        ignore = shutil.ignore_patterns("checkpoint-*", "logs", "eval_outcomes.json", "*.tmp")
        shutil.copytree(source, target, ignore=ignore)
        fp32_metrics = validate_foundation(spec, target, seed)
        storage = _to_fp16_if_free(spec, target, fp32_metrics)
        validation = validate_foundation(spec, target, seed)
        entry = {
            "description": spec.description,
            "command": f"hf-clipzoo foundations --only {name} --seed {seed}",
            "script_command": " ".join(
                ["python", f"training_scripts/{spec.script}.py", *spec.argv, "--seed", str(seed)]
            ),
            "seed": seed,
            "commit": git_commit(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "seconds": round(seconds, 1),
            "validation": validation,
            "training_metrics": {k: v for k, v in run["metrics"].items() if isinstance(v, (int, float))},
            "storage": storage,
            "early_checkpoint": {"step": EARLY_STEP, "file": "model.safetensors", "sha256": early},
            "files": folder_sha256(target),
        }
        output_dir.mkdir(parents=True, exist_ok=True)
        # Re-read first: foundations built by parallel commands each add their own entry.
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"foundations": {}}
        manifest["foundations"][name] = scrub_secrets(entry)  # the manifest ships: no credentials, no local paths
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        logger.info("foundation %s: %s", name, json.dumps(validation))
    return manifest


def load_manifest(folder: str | Path = FOUNDATIONS_DIR) -> dict:
    path = Path(folder) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the shipped foundations are missing. Rebuild them with `hf-clipzoo foundations` or "
            "run the bench with --from_scratch."
        )
    return json.loads(path.read_text())


def verify_foundations(folder: str | Path = FOUNDATIONS_DIR) -> dict[str, list[str]]:
    """`{name: [problems]}` of the shipped folders against the manifest (missing, extra or changed files)."""
    folder = Path(folder)
    problems: dict[str, list[str]] = {}
    for name, entry in load_manifest(folder)["foundations"].items():
        actual = folder_sha256(folder / name) if (folder / name).is_dir() else {}
        issues = [f"missing {f}" for f in entry["files"] if f not in actual]
        issues += [f"not in the manifest: {f}" for f in actual if f not in entry["files"]]
        issues += [f"sha256 differs: {f}" for f, h in entry["files"].items() if f in actual and actual[f] != h]
        problems[name] = issues
    return problems


# --- refresh: current code around the shipped weights ---------------------------------------------------------------
WEIGHTS_SUFFIX = ".safetensors"


def _script_args(spec: FoundationSpec, seed: int):
    """The training script's arguments of the run that made `spec` (for the model card's training table)."""
    from .bench import load_script

    argv = [*spec.argv, "--seed", str(seed), "--output_dir", f"foundations_work/{spec.name}/full"]
    return load_script(spec.script).parse_args(argv)


def world_texts(seed: int = 0, image_size: int = 64, train_size: int = 16384, eval_size: int = 512) -> list[str]:
    """Every text the foundations met: the scene captions (short, long, pseudo, nouns) of the train split and the
    val / test splits, and the zero-shot prompts of the world's classes."""
    from .data.synthetic import CLASSIFICATION_TEMPLATES, WorldConfig, class_names
    from .data.synthetic.scenes import generate_scene_texts
    from .eval.zero_shot import DEFAULT_TEMPLATES

    config = WorldConfig(seed=seed, image_size=image_size)
    texts = set()
    for split, size in (("train", train_size), ("val", eval_size), ("test", eval_size)):
        for index in range(size):
            row = generate_scene_texts(index, split=split, config=config)
            texts.update([row["caption"], row["long_caption"], *row["pseudo_captions"], *row["nouns"]])
    texts.update(t.format(c) for c in class_names() for t in (*DEFAULT_TEMPLATES, *CLASSIFICATION_TEMPLATES))
    return sorted(texts)


def changed_token_ids(old_tokenizer, new_tokenizer, texts: list[str], batch_size: int = 4096) -> list[str]:
    """The texts `new_tokenizer` gives other ids than `old_tokenizer` (truncated to the old maximum length)."""
    changed = []
    length = old_tokenizer.model_max_length
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        old = old_tokenizer(batch, truncation=True, max_length=length).input_ids
        new = new_tokenizer(batch, truncation=True, max_length=length).input_ids
        changed += [text for text, a, b in zip(batch, old, new) if a != b]
    return changed


def _rewrite_image_text(spec: FoundationSpec, source: Path, target: Path, seed: int) -> tuple:
    """Re-save a CLIP / GroupViT folder with the current code; `(old tokenizer, new tokenizer, image size)`."""
    import torch
    from transformers import CLIPTokenizer

    from .backbones.processing import build_clip_processor
    from .models.clip import ZooCLIPModel
    from .models.groupvit import ZooGroupViTModel
    from .models.groupvit.processing_groupvit import build_groupvit_processor
    from .training.hub import write_model_folder

    model_class, build_processor = {
        "clip": (ZooCLIPModel, build_clip_processor),
        "groupvit": (ZooGroupViTModel, build_groupvit_processor),
    }[spec.name]
    model = model_class.from_pretrained(source, dtype=torch.float32)
    config = model.config
    # The processor a new run builds (official text cleaning); its image settings must be the shipped ones.
    processor = build_processor(config.vision_config.image_size, config.text_config.max_position_embeddings)
    shipped = json.loads((source / "processor_config.json").read_text())["image_processor"]
    current = json.loads(processor.image_processor.to_json_string())
    keys = ("size", "crop_size", "image_mean", "image_std", "resample", "rescale_factor", "do_center_crop")
    differ = {k: (shipped.get(k), current.get(k)) for k in keys if shipped.get(k) != current.get(k)}
    if differ:
        raise ValueError(f"{source}: the current processor would change the image settings {differ}; not a refresh.")
    results = json.loads((source / "results.json").read_text())
    metrics = {k: v for k, v in results.items() if k != "step"}
    write_model_folder(
        target, model, processor, _script_args(spec, seed), method=spec.name, metrics=metrics, results=results
    )
    return CLIPTokenizer.from_pretrained(source), processor.tokenizer, config.vision_config.image_size


def _rewrite_diffusion(spec: FoundationSpec, source: Path, target: Path, seed: int) -> tuple:
    """Re-save the diffusion folder as `diva_pretrain_diffusion.py` now saves it; `(old tokenizer, new tokenizer,
    image size)`."""
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    from .backbones.tokenizer import load_clip_tokenizer
    from .models.diva.diffusion import load_diffusion_folder, save_world_diffusion_folder

    vae, unet, scheduler, extras = load_diffusion_folder(source, torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(source / "text_encoder", dtype=torch.float32)
    # The script's tokenizer: transformers' CLIPTokenizer (a plain StableDiffusionPipeline loads no remote code).
    tokenizer = load_clip_tokenizer(extras["text_max_length"], text_cleaning="none")
    args = _script_args(spec, seed)
    metrics = {k: v for k, v in extras.items() if "/" in k}
    save_world_diffusion_folder(
        target, vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        image_size=extras["image_size"], preset=extras["preset"], metrics=metrics, training_args=vars(args),
    )  # fmt: skip
    return CLIPTokenizer.from_pretrained(source / "tokenizer"), tokenizer, extras["image_size"]


def _check_same_tensors(original: Path, resaved: Path) -> None:
    """The current code saves the tensors the shipped file holds (names and shapes), so the copied bytes fit it."""
    from safetensors import safe_open

    def layout(path):
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}

    old, new = layout(original), layout(resaved)
    if old != new:
        missing, extra = sorted(set(old) - set(new)), sorted(set(new) - set(old))
        reshaped = sorted(k for k in set(old) & set(new) if old[k] != new[k])
        raise ValueError(
            f"{original}: the current code saves other tensors (missing {missing[:5]}, extra {extra[:5]}, "
            f"other shapes {reshaped[:5]}); the weights cannot be kept as they are, retrain instead."
        )


def refresh_foundation(name: str, folder: str | Path = FOUNDATIONS_DIR, commit: str | None = None) -> dict:
    """Re-write shipped foundation `folder/name` with the current code, keeping its weights files byte-identical.

    The folder must match the manifest first. Everything else is written as a new run writes it (into a staging
    folder), the validation numbers are re-measured there and must equal the manifest's (to `REFRESH_TOLERANCE`),
    then the staging folder replaces the shipped one and the manifest's entry gets the new file hashes and, when a
    file changed, a `refreshes` record (commit, changed / added / removed files, re-measured validation, tokenizer
    check). The command, seed, validation numbers and early-checkpoint hash stay as the training run wrote them.
    """
    folder = Path(folder)
    if name not in FOUNDATIONS:
        raise ValueError(f"Unknown foundation {name!r}; expected one of {sorted(FOUNDATIONS)}.")
    spec = FOUNDATIONS[name]
    manifest = load_manifest(folder)
    if name not in manifest["foundations"]:
        raise ValueError(f"{folder / MANIFEST_FILE} has no entry {name!r}: build it with `hf-clipzoo foundations`.")
    entry = manifest["foundations"][name]
    source = folder / name
    problems = verify_foundations(folder).get(name)
    if problems:
        raise ValueError(f"{source} does not match {folder / MANIFEST_FILE} ({problems[:5]}); refresh only a folder "
                         "that is what the manifest says (git checkout it, or rebuild).")  # fmt: skip
    seed = entry["seed"]
    staging_root = folder / f".refresh-{name}"
    shutil.rmtree(staging_root, ignore_errors=True)
    # The folder name a run saves under (the model card's model id): `final` for the scripts, the run dir otherwise.
    staging = staging_root / (spec.model_subdir or "full")
    try:
        rewrite = _rewrite_diffusion if name == "diffusion" else _rewrite_image_text
        old_tokenizer, new_tokenizer, image_size = rewrite(spec, source, staging, seed)

        weights = sorted(f for f in entry["files"] if f.endswith(WEIGHTS_SUFFIX))
        resaved = sorted(str(p.relative_to(staging)) for p in staging.rglob(f"*{WEIGHTS_SUFFIX}"))
        if resaved != weights:
            raise ValueError(f"{source}: the current code saves weights files {resaved}, the folder has {weights}.")
        for relative in weights:
            _check_same_tensors(source / relative, staging / relative)
            shutil.copyfile(source / relative, staging / relative)  # the shipped bytes, not a re-serialisation
            if file_sha256(staging / relative) != entry["files"][relative]:
                raise RuntimeError(f"{staging / relative} differs from the shipped weights after copying.")

        texts = world_texts(seed, image_size)
        changed_ids = changed_token_ids(old_tokenizer, new_tokenizer, texts)
        validation = validate_foundation(spec, staging, seed)
        moved = {k: (v, validation.get(k)) for k, v in entry["validation"].items()
                 if validation.get(k) is None or abs(validation[k] - v) > REFRESH_TOLERANCE}  # fmt: skip
        if moved:
            raise ValueError(f"{source}: refreshed with the current code, its validation numbers move {moved} "
                             "(manifest, re-measured); not a refresh.")  # fmt: skip

        old_files, new_files = entry["files"], folder_sha256(staging)
        retired = folder / f".refresh-{name}-old"
        shutil.rmtree(retired, ignore_errors=True)
        source.rename(retired)
        staging.rename(source)
        shutil.rmtree(retired)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)

    record = {
        "commit": commit or git_commit(),
        "changed": sorted(f for f in new_files if f in old_files and new_files[f] != old_files[f]),
        "added": sorted(set(new_files) - set(old_files)),
        "removed": sorted(set(old_files) - set(new_files)),
        "weights_unchanged": weights,
        "validation": validation,
        "tokenizer": {
            "class": type(new_tokenizer).__name__,
            "text_cleaning": getattr(new_tokenizer, "text_cleaning", "none"),
            "trained_with": type(old_tokenizer).__name__,
            "world_texts_checked": len(texts),
            "world_texts_with_other_ids": changed_ids,
        },
    }
    manifest = load_manifest(folder)  # re-read: refreshes of several foundations each update their own entry
    manifest["foundations"][name]["files"] = new_files
    if record["changed"] or record["added"] or record["removed"]:  # a refresh that changed nothing is no event
        manifest["foundations"][name].setdefault("refreshes", []).append(scrub_secrets(record))
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    logger.info(
        "refreshed foundation %s: %s", name, json.dumps({k: record[k] for k in ("changed", "added", "removed")})
    )
    return record


def refresh_foundations(folder: str | Path = FOUNDATIONS_DIR, names: list[str] | None = None) -> dict[str, dict]:
    """`refresh_foundation` for `names` (default: every foundation in the manifest), all recorded at one commit."""
    folder = Path(folder)
    names = list(names or load_manifest(folder)["foundations"])
    commit = git_commit()  # before the first folder changes, so the record names the code, not `-dirty` from it
    return {name: refresh_foundation(name, folder, commit=commit) for name in names}


__all__ = [
    "EARLY_STEP",
    "FOUNDATIONS",
    "FOUNDATIONS_DIR",
    "FoundationSpec",
    "build_foundations",
    "early_checkpoint_sha256",
    "folder_sha256",
    "load_manifest",
    "refresh_foundation",
    "refresh_foundations",
    "verify_foundations",
]
