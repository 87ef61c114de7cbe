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


__all__ = [
    "EARLY_STEP",
    "FOUNDATIONS",
    "FOUNDATIONS_DIR",
    "FoundationSpec",
    "build_foundations",
    "early_checkpoint_sha256",
    "folder_sha256",
    "load_manifest",
    "verify_foundations",
]
