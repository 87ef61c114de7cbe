"""`hf-clipzoo bench`: train the baseline on the embedded world, run every implemented method from it, report.

The bench calls the same training scripts users run (`training_scripts/<method>.py`, through their `main(argv)`),
with a budget set by a preset, and writes into the output folder:
- `results.json` — every number, per method, row and metric, plus the preset and timings;
- `results.md` — the same as tables; methods that are not implemented are listed as missing, failures as failed;
- `plots/*.png` — learning curves and one bar chart per shared metric (methods add their own plots).
Nothing in the report is typed in: every value comes from the runs' own evaluation.

Adding a method: write `@bench_entry("<method>")` function below that runs `training_scripts/<method>.py` from the
baseline (`context.baseline_dir`) with the preset's budget and returns its rows (`run_script` does the bookkeeping).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .data.fashion_mnist import fashion_mnist_root
from .registry import PLANNED_METHODS, list_methods

logger = logging.getLogger(__name__)
SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "training_scripts"


@dataclass(frozen=True)
class BenchPreset:
    """The budget of one bench run (shared by every method, so comparisons are at equal cost)."""

    train_size: int
    eval_size: int
    classes_per_split: int
    max_train_steps: int
    batch_size: int
    model_preset: str
    learning_rate: float
    eval_steps: int | None
    warmup_steps: int
    # Method budgets: fine-tuning steps from the baseline, shots for few-shot classification, episodes.
    method_steps: int
    shots: tuple[int, ...]
    test_episodes: int


PRESETS = {
    # Exercised by the test suite: proves the pipeline end to end, not the numbers.
    "smoke": BenchPreset(
        train_size=128, eval_size=64, classes_per_split=2, max_train_steps=6, batch_size=32,
        model_preset="world-micro", learning_rate=5e-4, eval_steps=None, warmup_steps=2,
        method_steps=4, shots=(1, 2), test_episodes=20,
    ),
    # The README default: everything implemented in about 15 minutes on 2 CPU cores.
    "quick": BenchPreset(
        train_size=8192, eval_size=512, classes_per_split=10, max_train_steps=300, batch_size=64,
        model_preset="world-tiny", learning_rate=5e-4, eval_steps=None, warmup_steps=30,
        method_steps=60, shots=(1, 4, 16), test_episodes=200,
    ),
    # A GPU budget: bigger towers, longer schedules.
    "full": BenchPreset(
        train_size=100_000, eval_size=2000, classes_per_split=50, max_train_steps=20_000, batch_size=256,
        model_preset="world-small", learning_rate=5e-4, eval_steps=2000, warmup_steps=1000,
        method_steps=5000, shots=(1, 2, 4, 8, 16), test_episodes=10_000,
    ),
}  # fmt: skip


@dataclass
class BenchContext:
    """What a method's bench entry gets: the budget, where to write, and the trained baselines."""

    preset_name: str
    preset: BenchPreset
    output_dir: Path
    seed: int
    baseline_dir: Path | None = None  # the CLIP baseline's saved model (`<output_dir>/clip/final`)
    siglip_dir: Path | None = None
    extra_plots: list[str] = field(default_factory=list)  # method-specific figures, relative to output_dir

    def common_world_args(self) -> list[str]:
        """The data arguments every script shares, so all methods see the same world."""
        return [
            "--seed", str(self.seed),
            "--synthetic_train_size", str(self.preset.train_size),
            "--synthetic_eval_size", str(self.preset.eval_size),
            "--synthetic_classes_per_split", str(self.preset.classes_per_split),
        ]  # fmt: skip


def load_script(name: str):
    """Import `training_scripts/<name>.py` as a module (the scripts are not part of the installed package)."""
    path = SCRIPTS_DIR / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: `hf-clipzoo bench` runs the repository's training scripts; run it from a clone of "
            "the repository installed with `pip install -e .`."
        )
    spec = importlib.util.spec_from_file_location(f"hf_clipzoo_training_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_learning_curve(run_dir: Path) -> list[dict]:
    path = run_dir / "logs" / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row.get("event", "log") == "log"]


def run_script(name: str, argv: list[str], run_dir: Path) -> dict:
    """Run `training_scripts/<name>.py` in-process with `--output_dir run_dir`; one result row."""
    start = time.perf_counter()
    metrics = load_script(name).main([*argv, "--output_dir", str(run_dir)])
    return {
        "metrics": metrics,
        "seconds": time.perf_counter() - start,
        "model_dir": str(run_dir / "final"),
        "curve": read_learning_curve(run_dir),
    }


# --- entries ------------------------------------------------------------------------------------------------------
BENCH_ENTRIES: dict[str, Callable[[BenchContext], dict[str, dict]]] = {}
# The metrics a method's table in results.md shows (all of them when absent); results.json keeps every metric.
BENCH_COLUMNS: dict[str, tuple[str, ...]] = {}


def bench_entry(method: str, columns: tuple[str, ...] | None = None):
    """Register the function that benchmarks `method`; it returns `{row name: run_script(...) result}`.

    `columns` selects the metrics of its results.md table and plots (searched hyper-parameters and bookkeeping stay
    in results.json).
    """

    def register(function):
        BENCH_ENTRIES[method] = function
        if columns:
            BENCH_COLUMNS[method] = tuple(columns)
        return function

    return register


# The image-text methods' shared table: zero-shot on the 64 classes, retrieval against the long descriptions.
IMAGE_TEXT_COLUMNS = (
    "zero_shot/top1_accuracy", "zero_shot/top5_accuracy",
    "retrieval/image_to_text_R@1", "retrieval/image_to_text_R@5",
    "retrieval/text_to_image_R@1", "retrieval/text_to_image_R@5",
    "fashion_mnist/top1_accuracy", "train/loss",
)  # fmt: skip


def baseline_argv(context: BenchContext, loss_type: str) -> list[str]:
    preset = context.preset
    argv = [
        *context.common_world_args(),
        "--loss_type", loss_type,
        "--model_preset", preset.model_preset,
        "--max_train_steps", str(preset.max_train_steps),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(preset.learning_rate),
        "--num_warmup_steps", str(preset.warmup_steps),
        "--eval_caption_column", "long_caption",
        "--logging_steps", str(max(1, preset.max_train_steps // 50)),
    ]  # fmt: skip
    if preset.eval_steps:
        argv += ["--eval_steps", str(preset.eval_steps)]
    return argv


@bench_entry("clip", columns=IMAGE_TEXT_COLUMNS)
def bench_clip(context: BenchContext) -> dict[str, dict]:
    run = run_script("clip", baseline_argv(context, "softmax"), context.output_dir / "clip")
    context.baseline_dir = Path(run["model_dir"])
    rows = {"CLIP (InfoNCE)": run}
    real = fashion_mnist_zero_shot(context.baseline_dir, context)
    if real is not None:
        rows["CLIP (InfoNCE) on Fashion-MNIST, real images"] = real
    return rows


def fashion_mnist_zero_shot(model_dir: Path, context: BenchContext) -> dict | None:
    """The real-image track: zero-shot with "a photo of a {class}." on Fashion-MNIST's test split, when installed."""
    from .data.fashion_mnist import CLASS_NAMES, TEMPLATES, load_fashion_mnist

    if fashion_mnist_root() is None:
        return None
    from transformers import AutoModel, AutoProcessor

    from .eval.zero_shot import evaluate_zero_shot

    start = time.perf_counter()
    per_class = {"smoke": 5, "quick": 100}.get(context.preset_name, 1000)
    test = load_fashion_mnist("test", num_per_class=per_class, seed=context.seed)
    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    result = evaluate_zero_shot(model, processor, test, class_names=list(CLASS_NAMES), templates=list(TEMPLATES))
    metrics = {f"fashion_mnist/{k}": v for k, v in result.items() if isinstance(v, (int, float))}
    return {"metrics": metrics, "seconds": time.perf_counter() - start, "model_dir": str(model_dir), "curve": []}


@bench_entry("siglip", columns=IMAGE_TEXT_COLUMNS)
def bench_siglip(context: BenchContext) -> dict[str, dict]:
    run = run_script("clip", baseline_argv(context, "sigmoid"), context.output_dir / "siglip")
    context.siglip_dir = Path(run["model_dir"])
    return {"SigLIP (sigmoid)": run}


def finetune_argv(context: BenchContext) -> list[str]:
    """What every method that fine-tunes the baseline shares: start point, world, steps, batch, schedule."""
    if context.baseline_dir is None:
        raise RuntimeError("The CLIP baseline must run before the methods that start from it.")
    preset = context.preset
    return [
        "--model_name_or_path", str(context.baseline_dir),
        *context.common_world_args(),
        "--max_train_steps", str(preset.method_steps),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(preset.learning_rate / 5),
        "--num_warmup_steps", str(max(1, preset.method_steps // 10)),
        "--logging_steps", str(max(1, preset.method_steps // 50)),
    ]  # fmt: skip


@bench_entry("fff", columns=IMAGE_TEXT_COLUMNS)
def bench_fff(context: BenchContext) -> dict[str, dict]:
    """The paper's ablation on the world: the control is the same sigmoid fine-tuning without either fix."""
    base = [*finetune_argv(context), "--eval_caption_column", "long_caption"]
    variants = {
        "control: sigmoid fine-tune (no mining, K=0)": ["--no_mining", "--num_pseudo_captions", "0"],
        "mining only": ["--num_pseudo_captions", "0"],
        "augmentation only (K=5)": ["--no_mining"],
        "FFF (mining + K=5)": [],
    }
    rows = {}
    for index, (name, flags) in enumerate(variants.items()):
        rows[name] = run_script("fff", [*base, *flags], context.output_dir / "fff" / f"variant-{index}")
    return rows


@bench_entry(
    "groupvit",
    columns=(
        "zero_shot/top1_accuracy", "retrieval/image_to_text_R@1", "retrieval/text_to_image_R@1",
        "segmentation/mean_iou", "segmentation/overall_accuracy", "train/loss",
    ),
)  # fmt: skip
def bench_groupvit(context: BenchContext) -> dict[str, dict]:
    """GroupViT from scratch on the world (its towers differ from CLIP's, so it cannot start from the baseline), with
    and without the multi-label loss; segmentation follows the official protocol scaled to the world's image size."""
    preset = context.preset
    steps = preset.method_steps
    base = [
        *context.common_world_args(),
        "--model_preset", preset.model_preset,
        "--max_train_steps", str(steps),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(preset.learning_rate),
        "--num_warmup_steps", str(max(1, steps // 10)),
        "--logging_steps", str(max(1, steps // 50)),
        "--eval_caption_column", "long_caption",
        "--num_segmentation_eval_images", str(max(4, min(64, preset.eval_size // 8))),
    ]  # fmt: skip
    variants = {
        f"GroupViT, {steps} steps from scratch (image-text + multi-label)": [],
        f"GroupViT, {steps} steps from scratch, no multi-label loss": ["--multi_label_loss_weight", "0"],
    }
    rows = {}
    for index, (name, flags) in enumerate(variants.items()):
        rows[name] = run_script("groupvit", [*base, *flags], context.output_dir / "groupvit" / f"variant-{index}")
    plot = segmentation_overlays(Path(next(iter(rows.values()))["model_dir"]), context)
    if plot:
        context.extra_plots.append(plot)
    return rows


def segmentation_overlays(model_dir: Path, context: BenchContext, num_images: int = 4) -> str | None:
    """plots/groupvit_segmentation.png: held-out scenes, their ground truth and GroupViT's zero-shot segmentation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    from .data.synthetic import WorldConfig, make_scenes
    from .data.synthetic.vocab import SEGMENTATION_CLASSES
    from .models.groupvit.processing_groupvit import overlay_masks
    from .pipelines.zero_shot_segmentation import ZeroShotSegmentationPipeline

    pipeline = ZeroShotSegmentationPipeline.from_pretrained(model_dir)
    size = pipeline.model.config.vision_config.image_size
    # The official protocol scaled to the world's image size (as the training script's evaluation).
    options = dict(crop_size=size, stride=max(1, size // 2), short_side=size)
    scenes = make_scenes(num_images, split="test", config=WorldConfig(seed=context.seed, image_size=size))
    labels = list(SEGMENTATION_CLASSES[1:])
    palette = np.random.default_rng(0).integers(0, 256, size=(len(SEGMENTATION_CLASSES), 3))
    fig, axes = plt.subplots(num_images, 3, figsize=(6, 2 * num_images), squeeze=False)
    for row, scene in enumerate(scenes):
        image = scene["image"].convert("RGB")
        truth = np.asarray(scene["semantic_mask"], dtype=np.int64)
        results = pipeline(image, labels, **options)
        predicted = np.zeros_like(truth)
        for index, result in enumerate(results, start=1):
            predicted[np.asarray(result["mask"]) > 0] = index
        panels = (
            image,
            overlay_masks(image, truth, palette=palette),
            overlay_masks(image, predicted, palette=palette),
        )
        for column, (panel, title) in enumerate(zip(panels, ("image", "ground truth", "GroupViT"))):
            axes[row, column].imshow(panel)
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(title, fontsize=8)
    fig.tight_layout()
    plots_dir = context.output_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(plots_dir / "groupvit_segmentation.png", dpi=100)
    plt.close(fig)
    return "plots/groupvit_segmentation.png"


DIVA_COLUMNS = (
    "mmvp/before/average_accuracy", "mmvp/after/average_accuracy",
    "mmvp/before/pair_accuracy", "mmvp/after/pair_accuracy",
    "zero_shot/before/top1_accuracy", "zero_shot/after/top1_accuracy",
    "diffusion/val_loss", "diffusion/val_loss_shuffled_text", "diva/delta/feedback_loss",
)  # fmt: skip


@bench_entry("diva", columns=DIVA_COLUMNS)
def bench_diva(context: BenchContext) -> dict[str, dict]:
    """Pre-train the world's small text-to-image diffusion model (DIVA's feedback is only as good as its knowledge
    of the world: `diffusion/val_loss_shuffled_text` − `diffusion/val_loss` says how much it uses its condition), then
    post-train the baseline's vision tower with DIVA and compare MMVP pairs and zero-shot before and after."""
    if context.baseline_dir is None:
        raise RuntimeError("The CLIP baseline must run before DIVA (DIVA post-trains it).")
    preset = context.preset
    smoke = context.preset_name == "smoke"
    diffusion_steps = max(4, preset.max_train_steps // 4)
    diffusion_dir = context.output_dir / "diva" / "diffusion"
    diffusion = run_script(
        "diva_pretrain_diffusion",
        [
            "--clip_model_name_or_path", str(context.baseline_dir),
            "--seed", str(context.seed),
            # On a CPU budget the micro model at 32 px (a DIVA step costs ~5 CLIP steps; the tiny one at 64 px ~70).
            "--preset", "tiny" if context.preset_name == "full" else "micro",
            "--resolution", "64" if context.preset_name == "full" else "32",
            "--train_size", str(preset.train_size),
            "--eval_size", "16" if smoke else "128",
            "--batch_size", "16" if smoke else "32",
            "--vae_train_steps", str(max(2, diffusion_steps // 4)),
            "--max_train_steps", str(diffusion_steps),
            "--logging_steps", str(max(1, diffusion_steps // 20)),
        ],
        diffusion_dir,
    )  # fmt: skip
    argv = [
        *finetune_argv(context),
        "--diffusion_model_name_or_path", str(diffusion_dir),
        "--diffusion_resolution", "64" if context.preset_name == "full" else "32",
        "--mmvp_pairs", "20" if smoke else "200",
        "--per_device_train_batch_size", "8" if smoke else "16",
        # SGD (the official optimiser) at the official 1e-4 barely moves in a short run.
        "--learning_rate", "1e-3",
    ]  # fmt: skip
    row = run_script("diva", argv, context.output_dir / "diva" / "post-train")
    row["metrics"].update(diffusion["metrics"])
    row["seconds"] += diffusion["seconds"]
    return {f"DIVA on the baseline ({preset.method_steps} steps, diffusion model {diffusion_steps} steps)": row}


FEW_SHOT_VIDEO_COLUMNS = (
    "test/5way_1shot_accuracy", "test/5way_1shot_ci95", "test/5way_5shot_accuracy", "test/5way_5shot_ci95",
    "train/trainable_parameters", "adapter_checkpoint_bytes", "train/peak_memory_mb", "train/step_seconds",
)  # fmt: skip


def episodic_argv(context: BenchContext, method: str) -> list[str]:
    """What the few-shot video methods share: start point, episodic steps (a third of the image methods'
    fine-tuning steps), meta-val selection and meta-test episodes at 1 and 5 shots."""
    if context.baseline_dir is None:
        raise RuntimeError(f"The CLIP baseline must run before {method} (it starts from it).")
    steps = max(2, context.preset.method_steps // 3)
    return [
        "--model_name_or_path", str(context.baseline_dir),
        "--seed", str(context.seed),
        "--max_train_steps", str(steps),
        "--num_warmup_steps", str(max(1, steps // 10)),
        "--eval_steps", str(max(1, steps // 2)),
        "--logging_steps", str(max(1, steps // 10)),
        "--val_episodes", str(max(10, context.preset.test_episodes // 3)),
        "--test_episodes", str(context.preset.test_episodes),
        "--test_shots", "1", "5",
    ]  # fmt: skip


@bench_entry("clip_fsar", columns=FEW_SHOT_VIDEO_COLUMNS)
def bench_clip_fsar(context: BenchContext) -> dict[str, dict]:
    """5-way 1-shot training on the world's meta-train actions from the baseline CLIP; selection on meta-val, test on
    meta-test (1- and 5-shot, `test_episodes` episodes each). The control is OTAM on the same fine-tuned frame
    features without the text loss and the text-modulated prototypes."""
    base = episodic_argv(context, "CLIP-FSAR")
    variants = {"CLIP-FSAR": [], "OTAM without text (same fine-tuning, no text loss or text token)": ["--no_text"]}
    rows = {}
    for index, (name, flags) in enumerate(variants.items()):
        rows[name] = run_script("clip_fsar", [*base, *flags], context.output_dir / "clip_fsar" / f"variant-{index}")
    return rows


@bench_entry("ma_clip", columns=FEW_SHOT_VIDEO_COLUMNS)
def bench_ma_clip(context: BenchContext) -> dict[str, dict]:
    """MA-CLIP's adapters on the frozen baseline, same episodes and budget as the CLIP-FSAR rows; LoRA on the same
    base (PEFT) as the parameter-efficient comparison."""
    base = [*episodic_argv(context, "MA-CLIP"), "--learning_rate", "1e-3"]
    variants = {"MA-CLIP (adapters, PEFT)": [], "LoRA on the same frozen base (PEFT)": ["--peft_method", "lora"]}
    rows = {}
    for index, (name, flags) in enumerate(variants.items()):
        rows[name] = run_script("ma_clip", [*base, *flags], context.output_dir / "ma_clip" / f"variant-{index}")
    return rows


def grounding_metrics(model_dir: Path, context: BenchContext) -> dict[str, float]:
    """Pointing game and mIoU of text-patch similarity on the same held-out scenes the scripts evaluate on."""
    from transformers import AutoModel, AutoProcessor

    from .data.synthetic import WorldConfig, make_scenes
    from .data.synthetic.vocab import SEGMENTATION_CLASSES
    from .eval.grounding import evaluate_patch_grounding

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    world = WorldConfig(seed=context.seed, image_size=model.config.vision_config.image_size)
    scenes = make_scenes(context.preset.eval_size, split="test", config=world)
    result = evaluate_patch_grounding(model, processor, scenes, class_names=SEGMENTATION_CLASSES[1:])
    return {f"grounding/{k}": result[k] for k in ("pointing_accuracy", "pointing_chance", "mean_iou")}


@bench_entry(
    "dreamlip",
    columns=(
        *IMAGE_TEXT_COLUMNS[:6],
        "grounding/pointing_accuracy",
        "grounding/pointing_chance",
        "grounding/mean_iou",
    ),
)
def bench_dreamlip(context: BenchContext) -> dict[str, dict]:
    """Long captions on the world: the control fine-tunes on the raw captions only, for the same steps."""
    base = [*finetune_argv(context), "--eval_caption_column", "long_caption"]
    start = time.perf_counter()
    rows = {
        "baseline (before fine-tuning), grounding only": {
            "metrics": grounding_metrics(context.baseline_dir, context),
            "seconds": time.perf_counter() - start,
            "model_dir": str(context.baseline_dir),
            "curve": [],
        }
    }
    control = run_script("clip", [*base, "--loss_type", "softmax"], context.output_dir / "dreamlip" / "control")
    control["metrics"].update(grounding_metrics(Path(control["model_dir"]), context))
    rows["control: InfoNCE fine-tune, raw captions"] = control
    variants = {
        "multi-positive only (K=6 subcaptions)": ["--grouping_loss_weight", "0"],
        "DreamLIP (K=6, multi-positive + grouping)": [],
    }
    for index, (name, flags) in enumerate(variants.items()):
        rows[name] = run_script("dreamlip", [*base, *flags], context.output_dir / "dreamlip" / f"variant-{index}")
    return rows


def ape_argv(context: BenchContext, shots: int) -> list[str]:
    """APE's run at `shots`: the frozen baseline, the preset's budget, APE-T and Tip-Adapter-F trained too."""
    if context.baseline_dir is None:
        raise RuntimeError("The CLIP baseline must run before APE (it is APE's frozen encoder).")
    smoke = context.preset_name == "smoke"
    return [
        "--model_name_or_path", str(context.baseline_dir),
        "--seed", str(context.seed),
        "--shots", str(shots),
        "--augment_epochs", "1" if smoke else "10",
        "--num_train_epochs", "2" if smoke else "20",
        "--search_steps", *(("5", "3", "3") if smoke else ("200", "20", "20")),
        "--train", "--train_tip_adapter_f",
    ]  # fmt: skip


@bench_entry(
    "ape",
    columns=tuple(
        f"{name}/{metric}"
        for metric in ("test_accuracy", "trainable_parameters")
        for name in ("zero_shot", "tip_adapter", "tip_adapter_f", "ape", "ape_t")
        if f"{name}/{metric}" != "zero_shot/trainable_parameters"
    ),
)
def bench_ape(context: BenchContext) -> dict[str, dict]:
    """Few-shot classification on the world's 64 classes: zero-shot, Tip-Adapter(-F), APE, APE-T per shot count.

    The encoder is the frozen CLIP baseline; every shot count draws its own few-shot set from the same seed, and
    β, α (γ) are searched on the val split only.
    """
    smoke = context.preset_name == "smoke"
    rows = {}
    for shots in context.preset.shots:
        argv = [
            *ape_argv(context, shots),
            "--synthetic_train_per_class", str(max(context.preset.shots)),
            "--synthetic_val_per_class", "2" if smoke else "4",
            "--synthetic_test_per_class", "2" if smoke else "8",
        ]  # fmt: skip
        rows[f"{shots} shot{'s' if shots > 1 else ''}"] = run_script(
            "ape", argv, context.output_dir / "ape" / f"shots-{shots}"
        )
    real = fashion_mnist_few_shot(context)
    if real is not None:
        rows[f"Fashion-MNIST (real images), {max(context.preset.shots)} shots"] = real
    return rows


def fashion_mnist_few_shot(context: BenchContext) -> dict | None:
    """The real-image track's few-shot row: APE and the baselines on Fashion-MNIST, when installed.

    The few-shot images and a disjoint validation set (for the search and epoch selection) come from the train split,
    the reported accuracies from the test split; prompts are "a photo of a {class}.".
    """
    if fashion_mnist_root() is None:
        return None
    import datasets

    from .data.fashion_mnist import load_fashion_mnist

    shots = max(context.preset.shots)
    val_per_class = 4
    smoke = context.preset_name == "smoke"
    pool = load_fashion_mnist("train", num_per_class=shots + val_per_class, seed=context.seed)
    labels = pool["label"]
    available = {label: labels.count(label) for label in set(labels)}
    # The first rows of every class validate (up to `val_per_class`, leaving `shots`), the rest are the shots.
    num_val = {label: min(val_per_class, count - shots) for label, count in available.items()}
    if min(num_val.values()) < 1:
        raise ValueError(f"Fashion-MNIST's train split has too few images per class for {shots} shots + validation.")
    seen: dict[int, int] = {}
    is_val = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        is_val.append(seen[label] <= num_val[label])
    splits = datasets.DatasetDict(
        train=pool.select([i for i, v in enumerate(is_val) if not v]),
        val=pool.select([i for i, v in enumerate(is_val) if v]),
        test=load_fashion_mnist("test", num_per_class=5 if smoke else 100, seed=context.seed),
    )
    data_dir = context.output_dir / "ape" / "fashion_mnist_data"
    splits.save_to_disk(str(data_dir))
    argv = [*ape_argv(context, shots), "--dataset", str(data_dir), "--templates", "single"]
    return run_script("ape", argv, context.output_dir / "ape" / "fashion-mnist")


# --- report -------------------------------------------------------------------------------------------------------
def _table_metrics(method: str, rows: dict[str, dict]) -> list[str]:
    numeric = {m for row in rows.values() for m in row["metrics"] if isinstance(row["metrics"][m], (int, float))}
    if method in BENCH_COLUMNS:
        return [m for m in BENCH_COLUMNS[method] if m in numeric]
    return sorted(numeric)


def _ran_rows(results: dict) -> dict[str, dict]:
    rows = {}
    for method, entry in results["methods"].items():
        for row_name, row in entry.get("rows", {}).items():
            rows[f"{method}: {row_name}" if row_name != method else method] = row
    return rows


def write_plots(results: dict, plots_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = _ran_rows(results)
    plotted = {
        m for method, entry in results["methods"].items() if entry["status"] == "ran"
        for m in _table_metrics(method, entry["rows"])
    }  # fmt: skip

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, row in rows.items():
        points = [(r["step"], r["train/loss"]) for r in row.get("curve", []) if isinstance(r.get("train/loss"), float)]
        if len(points) > 1:
            ax.plot(*zip(*points), label=name)
    ax.set(xlabel="optimiser step", ylabel="training loss", title="Learning curves")
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots_dir / "learning_curves.png", dpi=100)
    plt.close(fig)
    written.append("plots/learning_curves.png")

    for method, entry in results["methods"].items():
        shot_rows = [r for r in entry.get("rows", {}).values() if isinstance(r["metrics"].get("shots"), int)]
        if entry["status"] != "ran" or len(shot_rows) < 2:
            continue
        shot_rows.sort(key=lambda r: r["metrics"]["shots"])
        shots = [r["metrics"]["shots"] for r in shot_rows]
        fig, ax = plt.subplots(figsize=(6, 4))
        names = sorted({m.split("/")[0] for r in shot_rows for m in r["metrics"] if m.endswith("/test_accuracy")})
        for name in names:
            ax.plot(shots, [r["metrics"].get(f"{name}/test_accuracy", math.nan) for r in shot_rows], marker="o",
                    label=name)  # fmt: skip
        ax.set(xscale="log", xlabel="shots per class", ylabel="test accuracy", title=f"{method}: accuracy by shots")
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plots_dir / f"{method}_accuracy_by_shots.png", dpi=100)
        plt.close(fig)
        written.append(f"plots/{method}_accuracy_by_shots.png")

    metric_names = sorted(m for m in plotted if not m.startswith("train/"))
    for metric in metric_names:
        names = [n for n, r in rows.items() if isinstance(r["metrics"].get(metric), (int, float))]
        values = [rows[n]["metrics"][metric] for n in names]
        if len(values) < 1 or any(math.isnan(v) for v in values):
            continue
        fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(names)), 3.8))
        ax.bar(range(len(names)), values, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set(title=metric, ylabel=metric.split("/")[-1])
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        fig.tight_layout()
        file = f"{metric.replace('/', '_').replace('@', 'at')}.png"
        fig.savefig(plots_dir / file, dpi=100)
        plt.close(fig)
        written.append(f"plots/{file}")
    return written


def _shown(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        f"# hf-clipzoo bench — preset `{results['preset_name']}`, seed {results['seed']}",
        "",
        "Every number below was measured by this run on the embedded synthetic world (held-out splits). "
        f"Total time: {results['total_seconds']:.0f} s.",
        "",
    ]
    for method, entry in results["methods"].items():
        lines.append(f"## {method}")
        lines.append("")
        if entry["status"] != "ran":
            lines += [f"**{entry['status']}**", ""]
            continue
        rows = entry["rows"]
        metrics = _table_metrics(method, rows)
        lines.append("| run | seconds | " + " | ".join(f"`{m}`" for m in metrics) + " |")
        lines.append("|---|---:|" + "---:|" * len(metrics))
        for name, row in rows.items():
            cells = [_shown(row["metrics"].get(m, "—")) for m in metrics]
            lines.append(f"| {name} | {row['seconds']:.0f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"Real-image track (Fashion-MNIST): {results['real_image_track']}.", ""]
    if results.get("chance"):
        lines += ["Chance levels: " + ", ".join(f"`{k}` = {v:.4f}" for k, v in results["chance"].items()), ""]
    if results.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in results["plots"]]
    path.write_text("\n".join(lines) + "\n")


def run_bench(preset: str = "quick", output_dir: str | Path = "bench_out", seed: int = 0, methods=None) -> dict:
    """Run the baselines, then every implemented method (or only `methods`), and write the report.

    A method whose run raises is recorded as failed (with the traceback in `results.json`) and the others still
    run; the caller decides what a failure means (the CLI exits non-zero).
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {sorted(PRESETS)}.")
    context = BenchContext(preset_name=preset, preset=PRESETS[preset], output_dir=Path(output_dir), seed=seed)
    context.output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    implemented = {m["name"] for m in list_methods()}
    order = ["clip", "siglip"] + [m for m in PLANNED_METHODS if m in BENCH_ENTRIES]
    if methods:
        unknown = set(methods) - set(BENCH_ENTRIES) - set(PLANNED_METHODS)
        if unknown:
            raise ValueError(
                f"Unknown methods {sorted(unknown)}; expected some of {['clip', 'siglip', *PLANNED_METHODS]}."
            )
        order = ["clip"] + [m for m in order if m in methods and m != "clip"]  # every method starts from the baseline
    results_methods: dict[str, dict] = {}
    for name in tqdm(order, desc="bench", unit="method"):
        if name not in ("clip", "siglip") and name not in implemented:
            continue
        try:
            results_methods[name] = {"status": "ran", "rows": BENCH_ENTRIES[name](context)}
        except Exception as error:  # one broken method must not hide the others' results
            logger.exception("bench: %s failed", name)
            results_methods[name] = {
                "status": f"failed: {type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
    for name in PLANNED_METHODS:
        if name not in results_methods and (not methods or name in methods):
            reason = "not implemented yet" if name not in implemented else "implemented, but has no bench entry yet"
            results_methods[name] = {"status": f"missing ({reason})"}

    results = {
        "preset_name": preset,
        "preset": asdict(context.preset),
        "seed": seed,
        "methods": results_methods,
        # Chance for R@1 over the held-out images and for top-1 over the world's 64 classes.
        "chance": {
            "retrieval R@1": 1.0 / context.preset.eval_size,
            "zero-shot top-1 (64 classes)": 1 / 64,
            "Fashion-MNIST top-1 (10 classes)": 1 / 10,
        },
        "real_image_track": "ran"
        if fashion_mnist_root()
        else ("skipped: Fashion-MNIST not installed (apt install dataset-fashion-mnist, or set FASHION_MNIST_DIR)"),
        "total_seconds": time.perf_counter() - start,
    }
    results["plots"] = write_plots(results, context.output_dir / "plots") + context.extra_plots
    (context.output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_markdown(results, context.output_dir / "results.md")
    return results


__all__ = [
    "BENCH_COLUMNS",
    "BENCH_ENTRIES",
    "PRESETS",
    "BenchContext",
    "BenchPreset",
    "bench_entry",
    "run_bench",
    "run_script",
]
