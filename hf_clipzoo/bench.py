"""`hf-clipzoo bench`: every method from the shipped world foundations, each paper's claims measured, one report.

The bench starts from the foundations in `foundations/` (CLIP, GroupViT, the diffusion model; `hf-clipzoo
foundations` makes them, `--from_scratch` retrains them first), evaluates them on the world's test split, and runs
each method through the same training scripts users run (`training_scripts/<method>.py`, via their `main(argv)`)
with a budget set by a preset. It writes into the output folder, after every method (a run stopped part-way leaves
the report of what finished):
- `results.json` — the claims, every number per method, row and metric, the preset and timings;
- `results.md` — the claims table first, then one table per method;
- `plots/*.png` — the claims with their intervals, each method against its control, learning curves.
Nothing in the report is typed in: every value comes from the runs' own evaluation on the test split, and every
claim's interval from the per-item outcomes the runs saved (`hf_clipzoo.eval.outcomes`).

Adding a method: write a `@bench_entry("<method>")` function that runs `training_scripts/<method>.py` from a
foundation with the preset's budget and returns its rows (`run_script` does the bookkeeping), and a
`@claims_for("<method>")` function that turns the rows into claim rows (`claim_row`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .data.fashion_mnist import fashion_mnist_root
from .eval.outcomes import load_outcomes, mean_iou_statistic, paired_bootstrap, save_outcomes
from .foundations import FOUNDATIONS_DIR
from .options import PRESETS, BenchPreset
from .registry import PLANNED_METHODS, list_methods

logger = logging.getLogger(__name__)
SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "training_scripts"


@dataclass
class BenchContext:
    """What a method's bench entry gets: the budget, where to write, and the starting models."""

    preset_name: str
    preset: BenchPreset
    output_dir: Path
    seed: int
    foundations_dir: Path = FOUNDATIONS_DIR
    baseline_dir: Path | None = None  # the CLIP foundation every image-text method starts from
    siglip_dir: Path | None = None
    extra_plots: list[str] = field(default_factory=list)  # method-specific figures, relative to output_dir

    def foundation(self, name: str) -> Path:
        path = self.foundations_dir / name
        if not path.is_dir():
            raise FileNotFoundError(
                f"The {name} foundation is missing ({path}). Rebuild it with `hf-clipzoo foundations --only {name}` "
                "or run the bench with --from_scratch."
            )
        return path

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
        "run_dir": str(run_dir),
        "curve": read_learning_curve(run_dir),
    }


def evaluate_world_image_text(model_dir, **kwargs) -> dict:
    from .training.image_text import evaluate_world_image_text as evaluate

    return evaluate(model_dir, **kwargs)


def evaluation_row(metrics: dict, start: float, model_dir: Path, run_dir: Path) -> dict:
    """A result row for a model that was evaluated, not trained, by the bench."""
    return {
        "metrics": metrics,
        "seconds": time.perf_counter() - start,
        "model_dir": str(model_dir),
        "run_dir": str(run_dir),
        "curve": [],
    }


# --- entries ------------------------------------------------------------------------------------------------------
BENCH_ENTRIES: dict[str, Callable[[BenchContext], dict[str, dict]]] = {}
# The metrics a method's table in results.md shows (all of them when absent); results.json keeps every metric.
BENCH_COLUMNS: dict[str, tuple[str, ...]] = {}
# The reference runs every method is compared with (SigLIP only with `--methods siglip`), outside PLANNED_METHODS.
BASELINES = ("clip", "siglip")


def bench_entry(method: str, columns: tuple[str, ...] | None = None):
    """Register the function that benchmarks `method`; it returns `{row name: run_script(...) result}`.

    `columns` selects the metrics of its results.md table and plots (searched hyper-parameters and bookkeeping stay
    in results.json).
    """
    # run_bench runs the baselines, then the methods of `PLANNED_METHODS` in order: an entry for a method that is not
    # listed there would never run, and nothing would say so.
    if method not in BASELINES and method not in PLANNED_METHODS:
        raise ValueError(
            f"bench_entry({method!r}): {method!r} is not in hf_clipzoo.registry.PLANNED_METHODS, so the bench would "
            f"never run it; add it there (name -> paper) first. Planned: {sorted(PLANNED_METHODS)}."
        )

    def register(function):
        BENCH_ENTRIES[method] = function
        if columns:
            BENCH_COLUMNS[method] = tuple(columns)
        return function

    return register


# The image-text methods' shared table: zero-shot on the 64 classes, retrieval against the long descriptions.
IMAGE_TEXT_COLUMNS = (
    "zero_shot/top1_accuracy", "zero_shot/top5_accuracy", "zero_shot/colour_accuracy", "zero_shot/shape_accuracy",
    "linear_probe/shape_accuracy", "retrieval/image_to_text_R@1", "retrieval/image_to_text_R@5",
    "retrieval/text_to_image_R@1", "retrieval/text_to_image_R@5",
    "fashion_mnist/top1_accuracy", "train/loss",
)  # fmt: skip


@bench_entry("clip", columns=IMAGE_TEXT_COLUMNS)
def bench_clip(context: BenchContext) -> dict[str, dict]:
    """The shipped CLIP foundation, evaluated once on the world's test split (it is trained on train, validated on
    val by `hf-clipzoo foundations`)."""
    context.baseline_dir = context.foundation("clip")
    start = time.perf_counter()
    run_dir = context.output_dir / "clip"
    metrics = evaluate_world_image_text(
        context.baseline_dir, split="test", seed=context.seed, eval_size=context.preset.eval_size,
        classes_per_split=context.preset.classes_per_split, output_dir=run_dir,
    )  # fmt: skip
    metrics.update(frozen_feature_probe(context.baseline_dir, context))
    rows = {"CLIP (InfoNCE), shipped foundation": evaluation_row(metrics, start, context.baseline_dir, run_dir)}
    real = fashion_mnist_zero_shot(context.baseline_dir, context)
    if real is not None:
        rows["CLIP (InfoNCE) on Fashion-MNIST, real images"] = real
    return rows


def frozen_feature_probe(model_dir: Path, context: BenchContext, train_per_class: int = 32) -> dict[str, float]:
    """Linear probes of the frozen image embeddings for colour and for shape (8 classes each): fitted on the world's
    train split, scored on the test images zero-shot is scored on. They tell whether a zero-shot failure is the image
    features' (the information is not there) or the text side's (it is there, prompts cannot reach it)."""
    import torch
    from transformers import AutoModel, AutoProcessor

    from .data.synthetic import WorldConfig, make_classification
    from .data.synthetic.vocab import SHAPES
    from .eval.embeddings import encode_images
    from .eval.linear_probe import linear_probe_accuracy

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    world = WorldConfig(seed=context.seed, image_size=model.config.vision_config.image_size)
    per_class = {"train": 2 if context.preset_name == "smoke" else train_per_class}
    per_class["test"] = context.preset.classes_per_split  # the zero-shot evaluation's test images
    features, labels = {}, {}
    for split, count in per_class.items():
        images = make_classification(count, split=split, config=world)
        features[split] = torch.cat(
            [encode_images(model, processor, images[i : i + 256]["image"]) for i in range(0, len(images), 256)]
        )
        labels[split] = torch.tensor(images["label"])
    metrics = {}
    for name, of_label in (("colour", lambda y: y // len(SHAPES)), ("shape", lambda y: y % len(SHAPES))):
        result = linear_probe_accuracy(features["train"], of_label(labels["train"]), features["test"],
                                       of_label(labels["test"]))  # fmt: skip
        metrics[f"linear_probe/{name}_accuracy"] = result["test_accuracy"]
        metrics[f"linear_probe/{name}_train_accuracy"] = result["train_accuracy"]
    return metrics


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
    """SigLIP from scratch at the preset's budget (not a shipped foundation; run with `--methods siglip`)."""
    preset = context.preset
    argv = [
        *context.common_world_args(),
        "--loss_type", "sigmoid",
        "--model_preset", preset.model_preset,
        "--max_train_steps", str(preset.siglip_steps),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", "5e-4",
        "--num_warmup_steps", str(max(1, preset.siglip_steps // 10)),
        "--eval_caption_column", "long_caption",
        "--logging_steps", str(max(1, preset.siglip_steps // 50)),
    ]  # fmt: skip
    run = run_script("clip", argv, context.output_dir / "siglip")
    context.siglip_dir = Path(run["model_dir"])
    return {f"SigLIP (sigmoid), {preset.siglip_steps} steps from scratch": run}


def finetune_argv(context: BenchContext) -> list[str]:
    """What every method that fine-tunes the CLIP foundation shares: start point, world, steps, batch, schedule."""
    if context.baseline_dir is None:
        raise RuntimeError("The CLIP baseline must run before the methods that start from it.")
    preset = context.preset
    return [
        "--model_name_or_path", str(context.baseline_dir),
        *context.common_world_args(),
        "--max_train_steps", str(preset.method_steps),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(preset.learning_rate),
        "--num_warmup_steps", str(max(1, preset.method_steps // 10)),
        "--logging_steps", str(max(1, preset.method_steps // 50)),
    ]  # fmt: skip


@bench_entry("fff", columns=IMAGE_TEXT_COLUMNS)
def bench_fff(context: BenchContext) -> dict[str, dict]:
    """The paper's ablation on the world: the control is the same sigmoid fine-tuning without either fix. The FFF
    row also scores its mined positives against the world's ground truth (`mining_quality`)."""
    base = [*finetune_argv(context), "--eval_caption_column", "long_caption"]
    variants = {
        "control: sigmoid fine-tune (no mining, K=0)": ["--no_mining", "--num_pseudo_captions", "0"],
        "mining only": ["--num_pseudo_captions", "0"],
        "FFF (mining + K=5)": [],
    }
    rows = {}
    for index, (name, flags) in enumerate(variants.items()):
        rows[name] = run_script("fff", [*base, *flags], context.output_dir / "fff" / f"variant-{index}")
    fff = rows["FFF (mining + K=5)"]
    fff["metrics"].update(mining_quality(Path(fff["model_dir"]), Path(fff["run_dir"]), context))
    return rows


def mining_quality(model_dir: Path, run_dir: Path, context: BenchContext) -> dict[str, float]:
    """Precision and recall of FFF's mined positives against the world's ground truth (`caption_is_true`).

    Held-out test scenes are cut into batches of the training batch size, each image with FFF's texts (its short
    caption, then its pseudo-captions); the model's own embeddings and its configured thresholds mine positives
    exactly as in training (`mine_positives`). A mined pair (image i, text j of another image) is correct when text j
    is true of image i. Per-batch counts go to the run's outcomes for a bootstrap over batches.
    """
    import numpy as np
    import torch
    from transformers import AutoModel, AutoProcessor

    from .data.synthetic import WorldConfig, make_scenes
    from .data.synthetic.captions import caption_is_true
    from .eval.embeddings import encode_images, encode_texts
    from .losses.positives import mine_positives

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    config = model.config
    scenes = make_scenes(
        context.preset.eval_size, split="test",
        config=WorldConfig(seed=context.seed, image_size=config.vision_config.image_size),
    )  # fmt: skip
    batch = context.preset.batch_size
    counts = []  # per batch: true positives, mined, true off-owner pairs, all off-owner pairs
    device = torch.device("cpu")
    for start in range(0, len(scenes) - batch + 1, batch):
        rows = scenes.select(range(start, start + batch))
        texts, owner = [], []
        for index, row in enumerate(rows):
            for text in [row["caption"], *row["pseudo_captions"]]:
                texts.append(text)
                owner.append(index)
        with torch.no_grad():
            images = encode_images(model, processor, rows["image"], device)  # both L2-normalised
            text_features = encode_texts(model, processor, texts, device)
        owner_tensor = torch.tensor(owner)
        mined = mine_positives(
            images, text_features, owner_tensor,
            image_text_threshold=config.mining_image_text_threshold,
            image_image_threshold=config.mining_image_image_threshold,
            text_text_threshold=config.mining_text_text_threshold,
            combination=config.mining_combination, text_text_reference=config.mining_text_text_reference,
        ).numpy()  # fmt: skip
        truth = np.array(
            [[caption_is_true(t, row["objects"], row["background"]) for t in texts] for row in rows], dtype=bool
        )
        off_owner = np.arange(batch)[:, None] != np.asarray(owner)[None, :]
        truth &= off_owner
        counts.append([(mined & truth).sum(), mined.sum(), truth.sum(), off_owner.sum()])
    counts = np.asarray(counts, dtype=np.float64)
    save_outcomes(run_dir, {"mining/batch_counts": counts})
    tp, mined_total, true_total, pairs = counts.sum(axis=0)
    return {
        "mining/precision": tp / mined_total if mined_total else float("nan"),
        "mining/recall": tp / true_total if true_total else float("nan"),
        "mining/base_rate": true_total / pairs,
        "mining/mined_per_image": mined_total / (len(counts) * batch),
    }


@bench_entry(
    "groupvit",
    columns=(
        "zero_shot/top1_accuracy", "retrieval/image_to_text_R@1", "retrieval/text_to_image_R@1",
        "segmentation/mean_iou", "segmentation/all_background_mean_iou", "segmentation/overall_accuracy",
        "segmentation/bg_thresh", "train/loss",
    ),
)  # fmt: skip
def bench_groupvit(context: BenchContext) -> dict[str, dict]:
    """The shipped GroupViT foundation on the world's test scenes (against predicting background everywhere), then
    the multi-label ablation at equal budget: the foundation fine-tuned with and without the multi-label loss.
    Segmentation follows the official protocol scaled to the world's image size."""

    preset = context.preset
    foundation = context.foundation("groupvit")
    start = time.perf_counter()
    run_dir = context.output_dir / "groupvit" / "foundation"
    metrics = evaluate_world_image_text(
        foundation, split="test", seed=context.seed, eval_size=preset.eval_size,
        classes_per_split=preset.classes_per_split, output_dir=run_dir,
    )  # fmt: skip
    metrics.update(segment_test_scenes(foundation, run_dir, context))
    rows = {"GroupViT, shipped foundation": evaluation_row(metrics, start, foundation, run_dir)}

    steps = preset.groupvit_steps
    base = [
        "--model_name_or_path", str(foundation),
        *context.common_world_args(),
        "--max_train_steps", str(steps),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(preset.learning_rate),
        "--num_warmup_steps", str(max(1, steps // 10)),
        "--logging_steps", str(max(1, steps // 50)),
        "--eval_caption_column", "long_caption",
        "--num_segmentation_eval_images", "0",  # segmented below, with the threshold chosen on val
    ]  # fmt: skip
    variants = {
        f"fine-tuned {steps} steps, image-text + multi-label": [],
        f"fine-tuned {steps} steps, no multi-label loss": ["--multi_label_loss_weight", "0"],
    }
    for index, (name, flags) in enumerate(variants.items()):
        row = run_script("groupvit", [*base, *flags], context.output_dir / "groupvit" / f"variant-{index}")
        row["metrics"].update(segment_test_scenes(Path(row["model_dir"]), Path(row["run_dir"]), context))
        rows[name] = row
    plot = segmentation_overlays(foundation, context)
    if plot:
        context.extra_plots.append(plot)
    return rows


BACKGROUND_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def segment_test_scenes(model_dir: Path, run_dir: Path, context: BenchContext) -> dict[str, float]:
    """GroupViT's zero-shot segmentation of the test scenes, with the protocol's background threshold chosen on the
    val scenes (the official 0.95 is tuned for VOC; a small model's group-text probabilities are flatter). Per-image
    confusion matrices of the model and of "background everywhere" go to `run_dir`'s outcomes."""
    import torch
    from transformers import AutoModel, AutoProcessor

    from .data.synthetic import WorldConfig, make_scenes
    from .eval.segmentation import evaluate_world_segmentation

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    world = WorldConfig(seed=context.seed, image_size=model.config.vision_config.image_size)
    count = context.preset.segmentation_images
    val = make_scenes(count, split="val", config=world)
    scores = {
        t: evaluate_world_segmentation(model, processor, val, count, t)["mean_iou"] for t in BACKGROUND_THRESHOLDS
    }
    threshold = max(scores, key=scores.get)  # first best on ties: thresholds are in increasing order
    test = make_scenes(context.preset.eval_size, split="test", config=world)
    result = evaluate_world_segmentation(model, processor, test, count, threshold)
    save_outcomes(
        run_dir,
        {
            "segmentation/confusion": result["confusions"],
            "segmentation/all_background_confusion": result["all_background_confusions"],
        },
    )
    metrics = {f"segmentation/{k}": v for k, v in result.items() if isinstance(v, float)}
    return {**metrics, "segmentation/bg_thresh": threshold, "segmentation/val_mean_iou": scores[threshold]}


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
    """Post-train the CLIP foundation's vision tower with DIVA through the shipped diffusion model (its validation
    `diffusion/val_loss_shuffled_text` − `diffusion/val_loss` in the manifest says how much it uses its condition),
    and compare MMVP pairs and zero-shot before and after on the test split."""
    if context.baseline_dir is None:
        raise RuntimeError("The CLIP baseline must run before DIVA (DIVA post-trains it).")
    preset = context.preset
    diffusion_dir = context.foundation("diffusion")
    resolution = json.loads((diffusion_dir / "diva_diffusion.json").read_text())["image_size"]
    argv = [
        *finetune_argv(context),
        "--max_train_steps", str(preset.diva_steps),
        "--num_warmup_steps", str(max(1, preset.diva_steps // 10)),
        "--diffusion_model_name_or_path", str(diffusion_dir),
        "--diffusion_resolution", str(resolution),
        "--mmvp_pairs", str(preset.mmvp_pairs),
        "--per_device_train_batch_size", str(min(16, preset.batch_size)),
        # SGD (the official optimiser) at the official 1e-4 barely moves in a short run.
        "--learning_rate", "1e-3",
    ]  # fmt: skip
    row = run_script("diva", argv, context.output_dir / "diva" / "post-train")
    manifest = json.loads((context.foundations_dir / "manifest.json").read_text())
    row["metrics"].update(manifest["foundations"]["diffusion"]["validation"])
    return {f"DIVA on the CLIP foundation ({preset.diva_steps} steps)": row}


FEW_SHOT_VIDEO_COLUMNS = (
    "test/5way_1shot_accuracy", "test/5way_1shot_ci95", "test/5way_5shot_accuracy", "test/5way_5shot_ci95",
    "train/trainable_parameters", "adapter_checkpoint_bytes", "train/peak_memory_mb", "train/step_seconds",
)  # fmt: skip


def episodic_argv(context: BenchContext, method: str) -> list[str]:
    """What the few-shot video methods share: start point, episodic steps, meta-val selection and meta-test episodes
    at 1 and 5 shots (the same test episodes for every method: the scripts seed them identically)."""
    if context.baseline_dir is None:
        raise RuntimeError(f"The CLIP baseline must run before {method} (it starts from it).")
    steps = context.preset.episodic_steps
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
    if context.preset_name == "smoke":  # the pipeline, not the numbers: one small episode per step
        base += ["--tasks_per_step", "1", "--train_query", "2"]
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


def grounding_metrics(model_dir: Path, run_dir: Path, context: BenchContext) -> dict[str, float]:
    """Pointing game and mIoU of text-patch similarity on the held-out test scenes; the per-object pointing hits go
    to `run_dir`'s outcomes."""
    import torch
    from transformers import AutoModel, AutoProcessor

    from .data.synthetic import WorldConfig, make_scenes
    from .data.synthetic.vocab import SEGMENTATION_CLASSES
    from .eval.grounding import evaluate_patch_grounding

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    world = WorldConfig(seed=context.seed, image_size=model.config.vision_config.image_size)
    scenes = make_scenes(context.preset.grounding_scenes, split="test", config=world)
    result = evaluate_patch_grounding(model, processor, scenes, class_names=SEGMENTATION_CLASSES[1:])
    save_outcomes(run_dir, {"grounding/pointing_hits": result["pointing_hits"]})
    return {f"grounding/{k}": result[k] for k in ("pointing_accuracy", "pointing_chance", "mean_iou")}


@bench_entry(
    "dreamlip",
    columns=(
        *IMAGE_TEXT_COLUMNS[:8],
        "grounding/pointing_accuracy",
        "grounding/pointing_chance",
        "grounding/mean_iou",
    ),
)
def bench_dreamlip(context: BenchContext) -> dict[str, dict]:
    """Long captions on the world: the control fine-tunes on the raw captions only, for the same steps."""
    base = [*finetune_argv(context), "--eval_caption_column", "long_caption"]
    start = time.perf_counter()
    baseline_run = context.output_dir / "dreamlip" / "baseline"
    rows = {
        "baseline (before fine-tuning), grounding only": evaluation_row(
            grounding_metrics(context.baseline_dir, baseline_run, context), start, context.baseline_dir, baseline_run
        )
    }
    runs = {
        "control: InfoNCE fine-tune, raw captions": ("clip", ["--loss_type", "softmax"], "control"),
        "multi-positive only (K=6 subcaptions)": ("dreamlip", ["--grouping_loss_weight", "0"], "variant-0"),
        "DreamLIP (K=6, multi-positive + grouping)": ("dreamlip", [], "variant-1"),
    }
    for name, (script, flags, folder) in runs.items():
        row = run_script(script, [*base, *flags], context.output_dir / "dreamlip" / folder)
        row["metrics"].update(grounding_metrics(Path(row["model_dir"]), Path(row["run_dir"]), context))
        rows[name] = row
    return rows


def ape_argv(context: BenchContext, shots: int, seed: int | None = None) -> list[str]:
    """APE's run at `shots`: the frozen baseline, the preset's budget, APE-T and Tip-Adapter-F trained too."""
    if context.baseline_dir is None:
        raise RuntimeError("The CLIP baseline must run before APE (it is APE's frozen encoder).")
    smoke = context.preset_name == "smoke"
    return [
        "--model_name_or_path", str(context.baseline_dir),
        "--seed", str(context.seed if seed is None else seed),
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
    β, α (γ) and the trained adapters' epochs are selected on the val split only. The largest shot count (the
    claims') also runs at `few_shot_seeds - 1` further seeds, each its own world draw, few-shot set and training.
    """
    rows = {}
    preset = context.preset
    runs = [(shots, context.seed) for shots in preset.shots]
    runs += [(max(preset.shots), context.seed + k) for k in range(1, preset.few_shot_seeds)]
    for shots, seed in runs:
        argv = [
            *ape_argv(context, shots, seed),
            "--synthetic_train_per_class", str(max(preset.shots)),
            "--synthetic_val_per_class", str(preset.few_shot_val_per_class),
            "--synthetic_test_per_class", str(preset.few_shot_test_per_class),
        ]  # fmt: skip
        name, folder = few_shot_row_name(shots), f"shots-{shots}"
        if seed != context.seed:
            name, folder = f"{name}, seed {seed}", f"{folder}-seed-{seed}"
        rows[name] = run_script("ape", argv, context.output_dir / "ape" / folder)
        rows[name]["seed"] = seed
    real = fashion_mnist_few_shot(context)
    if real is not None:
        rows[f"Fashion-MNIST (real images), {max(context.preset.shots)} shots"] = real
    return rows


def few_shot_row_name(shots: int) -> str:
    return f"{shots} shot{'s' if shots > 1 else ''}"


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
    val_per_class = context.preset.few_shot_val_per_class
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


# --- claims -------------------------------------------------------------------------------------------------------
# Each paper's claims as comparisons against a control at equal budget, measured on the same test items: the
# difference of the two metrics with a 95% paired-bootstrap interval over those items (images, image-caption pairs,
# MMVP pairs, objects or episodes). ">" holds when the interval's lower end is above 0; "≥" (no worse) when it is
# above -NON_INFERIORITY_MARGIN. The interval covers test-set sampling. Most runs are one seed; APE's claims pool
# `few_shot_seeds` seeds (its papers average 3 few-shot draws), whose test items are then distinct items of one pool:
# their interval covers the test sampling of every seed, and each seed's own difference is listed beside it.
CLAIMS: dict[str, Callable[[dict, BenchContext], list[dict]]] = {}
NON_INFERIORITY_MARGIN = 0.01
NUM_RESAMPLES = 2000


def claims_for(method: str):
    """Register the function that turns `method`'s rows (and those it compares with) into claim rows."""

    def register(function):
        CLAIMS[method] = function
        return function

    return register


def _retrieval_r1(outcomes: dict):
    """Per image: the mean of its image→text and text→image R@1 hits (one long caption per image)."""
    image_to_text = (outcomes["retrieval/image_to_text_ranks"] < 1).astype(float)
    text_to_image = (outcomes["retrieval/text_to_image_ranks"] < 1).astype(float)  # bool + bool would be an OR
    return (image_to_text + text_to_image) / 2


def _key(name: str):
    return lambda outcomes: outcomes[name]


def claim_row(
    method: str, claim: str, metric: str, method_run: dict | None, control_run: dict | None, *,
    method_outcome, control_outcome=None, rule: str = ">", statistic=None, unit: str = "test items",
    seed: int = 0, chance: float | None = None, extra_condition: tuple[str, bool] | None = None,
) -> dict:  # fmt: skip
    """One claim: `method_outcome(outcomes of method_run)` against `control_outcome(outcomes of control_run)`.

    `method_run` and `control_run` may be lists of runs at different seeds (paired in order): their per-item outcomes
    are pooled (each seed's test items are distinct items), and the row lists each seed's own difference too.
    """
    import numpy as np

    row = {"method": method, "claim": claim, "metric": metric, "rule": rule, "chance": chance}
    method_runs = method_run if isinstance(method_run, list) else [method_run]
    control_runs = control_run if isinstance(control_run, list) else [control_run]
    try:
        if not method_runs or None in method_runs or None in control_runs or len(method_runs) != len(control_runs):
            raise KeyError("a run it needs did not run")
        method_values = [method_outcome(load_outcomes(run["run_dir"])) for run in method_runs]
        control_values = [(control_outcome or method_outcome)(load_outcomes(run["run_dir"])) for run in control_runs]
    except KeyError as error:
        return {**row, "holds": False, "status": f"not measured: {error}"}
    kwargs = {"statistic": statistic} if statistic is not None else {}
    if len(method_runs) > 1:
        statistic_of = statistic or np.mean
        row["per_seed_differences"] = [
            float(statistic_of(m) - statistic_of(c)) for m, c in zip(method_values, control_values)
        ]
    method_values, control_values = np.concatenate(method_values), np.concatenate(control_values)
    result = paired_bootstrap(method_values, control_values, num_resamples=NUM_RESAMPLES, seed=seed, **kwargs)
    result["method_value"], result["control_value"] = result.pop("method"), result.pop("control")
    threshold = 0.0 if rule == ">" else -NON_INFERIORITY_MARGIN
    holds = result["low"] > threshold
    if extra_condition is not None:
        holds = holds and extra_condition[1]
        row["condition"] = extra_condition[0]
    interval = f"95% paired bootstrap over {result['num_items']} {unit} ({NUM_RESAMPLES} resamples)"
    if len(method_runs) > 1:
        per_seed = ", ".join(f"{d:+.4f}" for d in row["per_seed_differences"])
        interval += f" of {len(method_runs)} seeds pooled (each seed: {per_seed})"
    return {**row, **result, "holds": bool(holds), "status": "measured", "interval": interval}


def _rows(results: dict, method: str) -> dict:
    entry = results.get(method, {})
    return entry.get("rows", {}) if entry.get("status") == "ran" else {}


@claims_for("fff")
def fff_claims(results: dict, context: BenchContext) -> list[dict]:
    rows = _rows(results, "fff")
    control = rows.get("control: sigmoid fine-tune (no mining, K=0)")
    metric = "retrieval R@1 vs long captions (mean of both directions)"
    common = dict(method_outcome=_retrieval_r1, unit="test images", seed=context.seed)
    claims = [
        claim_row("fff", "FFF (mining + K pseudo-captions) > sigmoid control", metric,
                  rows.get("FFF (mining + K=5)"), control, **common),
        claim_row("fff", "mining alone > sigmoid control", metric, rows.get("mining only"), control, **common),
    ]  # fmt: skip
    fff = rows.get("FFF (mining + K=5)")
    claims.append(mining_precision_claim(fff, context))
    return claims


def _ratio_of_sums(values) -> float:
    """`sum(numerators) / sum(denominators)` of `(n, 2)` per-batch counts."""
    return values[:, 0].sum() / max(values[:, 1].sum(), 1.0)


def mining_precision_claim(fff: dict | None, context: BenchContext) -> dict:
    """Precision of the mined positives against the world's truth (true mined / mined), compared with the base rate
    of true pairs among all pairs of other images (what mining at random would score), on the same batches."""
    counts = load_outcomes(fff["run_dir"]).get("mining/batch_counts") if fff else None
    recall = counts[:, 0].sum() / max(counts[:, 2].sum(), 1.0) if counts is not None else float("nan")
    claim = claim_row(
        "fff", "mined positives are true pairs more often than random pairs (precision > base rate)",
        f"precision of mined pairs vs the world's truth (recall {recall:.3f})", fff, fff,
        method_outcome=lambda outcomes: outcomes["mining/batch_counts"][:, :2],
        control_outcome=lambda outcomes: outcomes["mining/batch_counts"][:, 2:],
        statistic=_ratio_of_sums, unit="test batches", seed=context.seed,
    )  # fmt: skip
    if counts is not None and counts[:, 1].sum() == 0:
        return {**claim, "holds": False, "status": "not measured: no mined pair"}
    return {**claim, "chance": claim.get("control_value")}


@claims_for("dreamlip")
def dreamlip_claims(results: dict, context: BenchContext) -> list[dict]:
    rows = _rows(results, "dreamlip")
    dreamlip = rows.get("DreamLIP (K=6, multi-positive + grouping)")
    return [
        claim_row(
            "dreamlip", "DreamLIP (sub-captions of long captions) > fine-tuning on the raw captions",
            "retrieval R@1 vs long captions (mean of both directions)", dreamlip,
            rows.get("control: InfoNCE fine-tune, raw captions"), method_outcome=_retrieval_r1, unit="test images",
            seed=context.seed,
        ),
        claim_row(
            "dreamlip", "the grouping loss raises patch grounding (DreamLIP > multi-positive only)",
            "pointing-game accuracy", dreamlip, rows.get("multi-positive only (K=6 subcaptions)"),
            method_outcome=_key("grounding/pointing_hits"), unit="objects", seed=context.seed,
            chance=(dreamlip or {}).get("metrics", {}).get("grounding/pointing_chance"),
        ),
    ]  # fmt: skip


@claims_for("groupvit")
def groupvit_claims(results: dict, context: BenchContext) -> list[dict]:
    rows = _rows(results, "groupvit")
    foundation = rows.get("GroupViT, shipped foundation")
    names = list(rows)
    with_ml = rows.get(names[1]) if len(names) > 1 else None
    without_ml = rows.get(names[2]) if len(names) > 2 else None
    metrics = (foundation or {}).get("metrics", {})
    ratio = metrics.get("segmentation/mean_iou", 0.0) / max(
        metrics.get("segmentation/all_background_mean_iou", 1.0), 1e-9
    )
    return [
        claim_row(
            "groupvit", f"zero-shot segmentation above predicting background everywhere ({ratio:.1f}x its mIoU)",
            "segmentation mIoU", foundation, foundation, method_outcome=_key("segmentation/confusion"),
            control_outcome=_key("segmentation/all_background_confusion"), statistic=mean_iou_statistic,
            unit="test scenes", seed=context.seed,
            chance=metrics.get("segmentation/all_background_mean_iou"),
        ),
        claim_row(
            "groupvit", "with the multi-label loss > without (equal fine-tuning budget)", "segmentation mIoU",
            with_ml, without_ml, method_outcome=_key("segmentation/confusion"), statistic=mean_iou_statistic,
            unit="test scenes", seed=context.seed,
        ),
    ]  # fmt: skip


@claims_for("diva")
def diva_claims(results: dict, context: BenchContext) -> list[dict]:
    rows = _rows(results, "diva")
    run = next(iter(rows.values()), None)
    return [
        claim_row(
            "diva", "DIVA raises MMVP-style pair accuracy (after > before)", "MMVP pair accuracy", run, run,
            method_outcome=_key("mmvp/after/pair_correct"), control_outcome=_key("mmvp/before/pair_correct"),
            unit="MMVP pairs", seed=context.seed, chance=0.25,
        ),
        claim_row(
            "diva", f"DIVA keeps zero-shot (after ≥ before − {NON_INFERIORITY_MARGIN})", "zero-shot top-1 (64 classes)",
            run, run, method_outcome=_key("zero_shot/after/top1_correct"),
            control_outcome=_key("zero_shot/before/top1_correct"), rule="≥", unit="test images", seed=context.seed,
            chance=1 / 64,
        ),
    ]  # fmt: skip


@claims_for("ape")
def ape_claims(results: dict, context: BenchContext) -> list[dict]:
    rows = _rows(results, "ape")
    shots = max(context.preset.shots)
    name = few_shot_row_name(shots)
    seeds = [context.seed + k for k in range(context.preset.few_shot_seeds)]
    runs = [rows.get(name if seed == context.seed else f"{name}, seed {seed}") for seed in seeds]
    run = runs[0]
    metric = f"test top-1 at {shots} shots (64 classes)"

    def compare(claim, method, control, rule=">"):
        return claim_row(
            "ape", claim, metric, runs, runs, method_outcome=_key(f"{method}/test_correct"),
            control_outcome=_key(f"{control}/test_correct"), rule=rule, unit="test images", seed=context.seed,
            chance=1 / 64,
        )  # fmt: skip

    params = (run or {}).get("metrics", {})
    tip_f, ape_t = params.get("tip_adapter_f/trainable_parameters"), params.get("ape_t/trainable_parameters")
    fewer = tip_f is not None and ape_t is not None and ape_t < tip_f
    claims = [
        compare("APE > Tip-Adapter (both training-free)", "ape", "tip_adapter"),
        compare("Tip-Adapter > zero-shot", "tip_adapter", "zero_shot"),
        compare("APE-T ≥ APE", "ape_t", "ape", rule="≥"),
        compare("Tip-Adapter-F ≥ Tip-Adapter", "tip_adapter_f", "tip_adapter", rule="≥"),
    ]
    claims.append(
        {
            "method": "ape",
            "claim": "APE-T trains fewer parameters than Tip-Adapter-F",
            "metric": "trainable parameters",
            "rule": "count",
            "method_value": ape_t,
            "control_value": tip_f,
            "difference": (ape_t - tip_f) if tip_f is not None and ape_t is not None else None,
            "holds": bool(fewer),
            "status": "measured" if tip_f is not None else "not measured",
            "interval": "exact (a count)",
            "low": None,
            "high": None,
        }  # fmt: skip
    )
    return claims


@claims_for("clip_fsar")
def clip_fsar_claims(results: dict, context: BenchContext) -> list[dict]:
    rows = _rows(results, "clip_fsar")
    return [
        claim_row(
            "clip_fsar", "CLIP-FSAR > OTAM without text (5-way 1-shot)", "5-way 1-shot accuracy",
            rows.get("CLIP-FSAR"), rows.get("OTAM without text (same fine-tuning, no text loss or text token)"),
            method_outcome=_key("test/5way_1shot_episode_accuracy"), unit="test episodes", seed=context.seed,
            chance=0.2,
        )
    ]  # fmt: skip


@claims_for("ma_clip")
def ma_clip_claims(results: dict, context: BenchContext) -> list[dict]:
    rows = _rows(results, "ma_clip")
    ma_clip, lora = rows.get("MA-CLIP (adapters, PEFT)"), rows.get("LoRA on the same frozen base (PEFT)")
    fsar = _rows(results, "clip_fsar").get("CLIP-FSAR")
    trainable = (ma_clip or {}).get("metrics", {}).get("train/trainable_parameters")
    fsar_trainable = (fsar or {}).get("metrics", {}).get("train/trainable_parameters")
    ratio = trainable / fsar_trainable if trainable and fsar_trainable else float("nan")
    outcome = _key("test/5way_1shot_episode_accuracy")
    return [
        claim_row(
            "ma_clip", f"MA-CLIP ≥ CLIP-FSAR at ≤ 1/8 of its trainable parameters ({ratio:.3f}x)",
            "5-way 1-shot accuracy", ma_clip, fsar, method_outcome=outcome, rule="≥", unit="test episodes",
            seed=context.seed, chance=0.2, extra_condition=("trainable ratio ≤ 1/8", bool(ratio <= 1 / 8)),
        ),
        claim_row(
            "ma_clip", "MA-CLIP's adapters ≥ LoRA on the same frozen base", "5-way 1-shot accuracy", ma_clip, lora,
            method_outcome=outcome, rule="≥", unit="test episodes", seed=context.seed, chance=0.2,
        ),
    ]  # fmt: skip


def compute_claims(results_methods: dict, context: BenchContext) -> list[dict]:
    """Every registered claim whose method ran (or was asked for); failures become 'not measured' rows."""
    claims = []
    for method, function in CLAIMS.items():
        if method not in results_methods:
            continue
        try:
            claims.extend(function(results_methods, context))
        except Exception as error:  # a broken claim must not hide the others
            logger.exception("claims of %s failed", method)
            claims.append({"method": method, "claim": "(all)", "holds": False, "status": f"failed: {error}"})
    return claims


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


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _claim_label(claim: dict, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(f"{claim['method']}: {claim['claim']}", width))


def plot_claims(claims: list[dict], plots_dir: Path) -> str | None:
    """plots/claims.png: each claim's difference (method − control) with its 95% interval, the zero line and the
    non-inferiority margin; green = holds, red = does not hold, grey = not measured."""
    plt = _pyplot()
    measured = [c for c in claims if c.get("low") is not None and c.get("difference") is not None]
    if plt is None or not measured:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(measured) + 1.5))
    for index, claim in enumerate(reversed(measured)):
        colour = "tab:green" if claim["holds"] else "tab:red"
        difference = claim["difference"]
        ax.errorbar(
            difference, index, xerr=[[difference - claim["low"]], [claim["high"] - difference]], fmt="o",
            color=colour, capsize=4,
        )  # fmt: skip
        ax.annotate(
            "holds" if claim["holds"] else "does not hold", (claim["high"], index), xytext=(6, -3),
            textcoords="offset points", fontsize=7, color=colour,
        )  # fmt: skip
    ax.axvline(0, color="black", linewidth=1)
    ax.axvline(-NON_INFERIORITY_MARGIN, color="grey", linewidth=0.8, linestyle="--", label="≥ margin")
    ax.set_yticks(range(len(measured)), [_claim_label(c, 60) for c in reversed(measured)], fontsize=7)
    ax.set(xlabel="method − control (95% paired-bootstrap interval)", title="Each paper's claims on the world")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(plots_dir / "claims.png", dpi=110)
    plt.close(fig)
    return "plots/claims.png"


def plot_method_claims(method: str, claims: list[dict], plots_dir: Path) -> str | None:
    """plots/<method>_claims.png: method and control side by side for each of the method's claims, the
    difference's interval printed above, chance drawn where the metric has one."""
    plt = _pyplot()
    mine = [
        c for c in claims
        if c["method"] == method and c.get("method_value") is not None and c.get("low") is not None
    ]  # fmt: skip
    if plt is None or not mine:
        return None
    fig, axes = plt.subplots(1, len(mine), figsize=(3.6 * len(mine), 3.8), squeeze=False)
    for ax, claim in zip(axes[0], mine):
        values = [claim["control_value"], claim["method_value"]]
        ax.bar([0, 1], values, color=["tab:grey", "tab:green" if claim["holds"] else "tab:red"])
        ax.set_xticks([0, 1], ["control", "method"])
        if claim.get("chance") is not None:
            ax.axhline(claim["chance"], color="black", linestyle=":", linewidth=1, label="chance / trivial")
            ax.legend(fontsize=6, loc="lower right")
        ax.set_title(_claim_label(claim, 38), fontsize=7)
        ax.set_ylabel(claim["metric"][:40], fontsize=7)
        top = max(v for v in values if v is not None)
        ax.set_ylim(0, max(top * 1.3, 1e-3))
        ax.text(
            0.5, top * 1.12, f"Δ {claim['difference']:+.3f} [{claim['low']:+.3f}, {claim['high']:+.3f}]",
            ha="center", fontsize=7,
        )  # fmt: skip
    fig.tight_layout()
    file = f"{method}_claims.png"
    fig.savefig(plots_dir / file, dpi=100)
    plt.close(fig)
    return f"plots/{file}"


def plot_learning_curves(results: dict, plots_dir: Path) -> str | None:
    """plots/learning_curves.png: one panel per method (each with its own loss scale: FFF's sigmoid loss is summed
    over the batch's pairs, hence ~10^3, CLIP's InfoNCE is a mean), training loss on a log axis."""
    plt = _pyplot()
    curves = {}
    for method, entry in results["methods"].items():
        for name, row in entry.get("rows", {}).items():
            points = [
                (r["step"], r["train/loss"]) for r in row.get("curve", []) if isinstance(r.get("train/loss"), float)
            ]
            points = [(x, y) for x, y in points if y > 0]
            if len(points) > 1:
                curves.setdefault(method, []).append((name, points))
    if plt is None or not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.4), squeeze=False)
    for ax, (method, runs) in zip(axes[0], curves.items()):
        for name, points in runs:
            ax.plot(*zip(*points), label=name[:40])
        ax.set(yscale="log", xlabel="optimiser step", title=method)
        ax.set_ylabel("training loss (log)", fontsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(plots_dir / "learning_curves.png", dpi=100)
    plt.close(fig)
    return "plots/learning_curves.png"


def plot_accuracy_by_shots(results: dict, plots_dir: Path) -> list[str]:
    plt = _pyplot()
    written = []
    for method, entry in results["methods"].items():
        # One curve of the bench seed's runs: the claims' extra seeds run at the largest shot count only.
        shot_rows = [
            r for r in entry.get("rows", {}).values()
            if isinstance(r["metrics"].get("shots"), int) and r.get("seed", results["seed"]) == results["seed"]
        ]  # fmt: skip
        if plt is None or entry["status"] != "ran" or len(shot_rows) < 2:
            continue
        shot_rows.sort(key=lambda r: r["metrics"]["shots"])
        shots = [r["metrics"]["shots"] for r in shot_rows]
        fig, ax = plt.subplots(figsize=(6, 4))
        names = sorted({m.split("/")[0] for r in shot_rows for m in r["metrics"] if m.endswith("/test_accuracy")})
        for name in names:
            ax.plot(shots, [r["metrics"].get(f"{name}/test_accuracy", math.nan) for r in shot_rows], marker="o",
                    label=name)  # fmt: skip
        ax.axhline(1 / 64, color="black", linestyle=":", linewidth=1, label="chance")
        ax.set(xscale="log", xlabel="shots per class", ylabel="test accuracy", title=f"{method}: accuracy by shots")
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plots_dir / f"{method}_accuracy_by_shots.png", dpi=100)
        plt.close(fig)
        written.append(f"plots/{method}_accuracy_by_shots.png")
    return written


def write_plots(results: dict, plots_dir: Path) -> list[str]:
    plots_dir.mkdir(parents=True, exist_ok=True)
    claims = results.get("claims", [])
    written = [plot_claims(claims, plots_dir), plot_learning_curves(results, plots_dir)]
    written += [plot_method_claims(method, claims, plots_dir) for method in dict.fromkeys(c["method"] for c in claims)]
    written += plot_accuracy_by_shots(results, plots_dir)
    return [path for path in written if path]


def _shown(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def claims_markdown(claims: list[dict]) -> list[str]:
    if not claims:
        return []
    held = sum(c["holds"] for c in claims)
    lines = [
        f"## Claims: {held} of {len(claims)} hold",
        "",
        "Each row compares a method with its control at equal budget on the same test items. '>' holds when the 95% "
        f"interval of the difference is above 0, '≥' when it is above −{NON_INFERIORITY_MARGIN}. Intervals are paired "
        "bootstraps over the test items. A row that pools several seeds (each its own world draw, few-shot set and "
        "training) says so and lists each seed's difference; the others are one training seed, so their intervals do "
        "not cover seed-to-seed variation.",
        "",
        "| method | claim | metric | method | control | difference [95% interval] | holds | interval |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for c in claims:
        if c.get("status") != "measured":
            lines.append(f"| {c['method']} | {c['claim']} | {c.get('metric', '')} | | | | **no** ({c['status']}) | |")
            continue
        if c.get("low") is None:
            interval = f"{_shown(c['difference'])}"
        else:
            interval = f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"
        verdict = "**holds**" if c["holds"] else "**does not hold**"
        lines.append(
            f"| {c['method']} | {c['claim']} | {c['metric']} | {_shown(c['method_value'])} | "
            f"{_shown(c['control_value'])} | {interval} | {verdict} | {c.get('interval', '')} |"
        )
    return [*lines, ""]


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        f"# hf-clipzoo bench — preset `{results['preset_name']}`, seed {results['seed']}",
        "",
        "Every number below was measured by this run on the embedded synthetic world (held-out test splits). "
        f"Starting models: {results.get('foundations', 'shipped foundations')}. "
        f"Total time: {results['total_seconds']:.0f} s{'' if results.get('complete', True) else ' (stopped part-way: the methods below are those that finished)'}.",
        "",
        *claims_markdown(results.get("claims", [])),
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


def write_report(results_methods: dict, context: BenchContext, start: float, *, complete: bool, **extra) -> dict:
    """results.json and results.md for the methods that have finished (called after each method, so a run stopped
    part-way leaves the report of what it measured, never the previous run's); plots/ once the run is complete
    (drawing every figure after every method costs the smoke run more than some of its methods)."""
    results = {
        "preset_name": context.preset_name,
        "preset": asdict(context.preset),
        "seed": context.seed,
        "complete": complete,
        **extra,
        "claims": compute_claims(results_methods, context),
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
    results["plots"] = write_plots(results, context.output_dir / "plots") + context.extra_plots if complete else []
    # Written through a temporary name: a reader never sees half a file.
    for name, text in (("results.json", json.dumps(results, indent=2, default=str) + "\n"),):
        tmp = context.output_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(context.output_dir / name)
    write_markdown(results, context.output_dir / "results.md")
    return results


README_START, README_END = "<!-- bench-results:start -->", "<!-- bench-results:end -->"


def readme_results_block(results: dict, plots_prefix: str = "") -> str:
    """The README's results section, generated from a bench run's `results.json` (never typed in by hand)."""
    held = sum(c["holds"] for c in results["claims"])
    lines = [
        f"Measured by `hf-clipzoo bench --preset {results['preset_name']}` (seed {results['seed']}, "
        f"{results['total_seconds'] / 60:.1f} min on this project's 2-core CPU machine; starting models "
        f"{results.get('foundations', '')}): **{held} of {len(results['claims'])} claims hold**.",
        "",
        *claims_markdown(results["claims"])[2:],
    ]
    if "plots/claims.png" in results.get("plots", []):
        lines += [f"![claims]({plots_prefix}plots/claims.png)", ""]
    lines += starting_points_markdown(results)
    return "\n".join(lines).rstrip() + "\n"


def linear_probe_text(metrics: dict) -> str:
    if "linear_probe/shape_accuracy" not in metrics:
        return ""
    return (
        f"; linear probes of its frozen image embeddings (fitted on train): colour "
        f"{metrics['linear_probe/colour_accuracy']:.3f}, shape {metrics['linear_probe/shape_accuracy']:.3f} "
        f"(chance 0.125 each)"
    )


def starting_points_markdown(results: dict) -> list[str]:
    """The foundations as the bench measured them on the test split (what every claim starts from)."""
    methods = results["methods"]
    clip = next(iter(methods.get("clip", {}).get("rows", {}).values()), None)
    groupvit = methods.get("groupvit", {}).get("rows", {}).get("GroupViT, shipped foundation")
    diva = next(iter(methods.get("diva", {}).get("rows", {}).values()), None)
    lines = ["| starting point (test split) | measured |", "|---|---|"]
    if clip:
        m = clip["metrics"]
        lines.append(
            f"| CLIP foundation | zero-shot top-1 {m['zero_shot/top1_accuracy']:.3f} over 64 colour x shape classes "
            f"(chance 0.016): colour right {m.get('zero_shot/colour_accuracy', math.nan):.3f}, shape right "
            f"{m.get('zero_shot/shape_accuracy', math.nan):.3f} (chance 0.125); retrieval R@1 vs long captions "
            f"{m['retrieval/image_to_text_R@1']:.3f} / {m['retrieval/text_to_image_R@1']:.3f} (chance "
            f"{results['chance']['retrieval R@1']:.3f}){linear_probe_text(m)} |"
        )
    if groupvit:
        m = groupvit["metrics"]
        lines.append(
            f"| GroupViT foundation | segmentation mIoU {m['segmentation/mean_iou']:.3f} against "
            f"{m['segmentation/all_background_mean_iou']:.3f} for background everywhere (background threshold "
            f"{m['segmentation/bg_thresh']} chosen on val); zero-shot top-1 {m['zero_shot/top1_accuracy']:.3f} |"
        )
    if diva and "diffusion/val_loss" in diva["metrics"]:
        m = diva["metrics"]
        gap = m["diffusion/val_loss_shuffled_text"] / m["diffusion/val_loss"] - 1
        lines.append(
            f"| diffusion foundation (val) | ε-loss {m['diffusion/val_loss']:.4f} with the right captions, "
            f"{m['diffusion/val_loss_shuffled_text']:.4f} with shuffled ones ({gap:+.1%}) |"
        )
    return [*lines, ""] if len(lines) > 2 else []


def update_readme(results_path: str | Path, readme_path: str | Path, plots_prefix: str = "") -> bool:
    """Replace the block between `README_START` and `README_END` of `readme_path` by `readme_results_block`;
    `True` when the file changed."""
    results = json.loads(Path(results_path).read_text())
    readme = Path(readme_path)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block to fill.")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{readme_results_block(results, plots_prefix)}{README_END}{tail}"
    readme.write_text(new)
    return new != text


def run_bench(
    preset: str = "quick",
    output_dir: str | Path = "bench_out",
    seed: int = 0,
    methods=None,
    from_scratch: bool = False,
    foundations_dir: str | Path | None = None,
) -> dict:
    """Evaluate the shipped foundations, run every implemented method (or only `methods`) from them, and report.

    With `from_scratch`, `hf-clipzoo foundations` first retrains the foundations into `<output_dir>/foundations`;
    `foundations_dir` points at foundations built elsewhere (default: the repository's `foundations/`).
    A method whose run raises is recorded as failed (with the traceback in `results.json`) and the others still
    run; the caller decides what a failure means (the CLI exits non-zero).
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {sorted(PRESETS)}.")
    context = BenchContext(preset_name=preset, preset=PRESETS[preset], output_dir=Path(output_dir), seed=seed)
    context.output_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("results.json", "results.md"):  # never leave the previous run's report next to this one
        (context.output_dir / stale).unlink(missing_ok=True)
    shutil.rmtree(context.output_dir / "plots", ignore_errors=True)
    start = time.perf_counter()
    if foundations_dir is not None:
        context.foundations_dir = Path(foundations_dir)
    if from_scratch:
        from .foundations import build_foundations

        context.foundations_dir = context.output_dir / "foundations"
        build_foundations(context.foundations_dir, context.output_dir / "foundations_work", seed=seed)
    if from_scratch:
        foundations = "retrained by this run (--from_scratch)"
    elif context.foundations_dir == FOUNDATIONS_DIR:
        foundations = "shipped in `foundations/`"
    else:
        foundations = f"from {context.foundations_dir}"

    implemented = {m["name"] for m in list_methods()}
    # SigLIP is not shipped: it trains from scratch only when asked for (`--methods siglip`).
    order = ["clip"] + [m for m in PLANNED_METHODS if m in BENCH_ENTRIES]
    if methods:
        unknown = set(methods) - set(BENCH_ENTRIES) - set(PLANNED_METHODS)
        if unknown:
            raise ValueError(
                f"Unknown methods {sorted(unknown)}; expected some of {['clip', 'siglip', *PLANNED_METHODS]}."
            )
        order = ["clip"] + [m for m in ["siglip", *order] if m in methods and m != "clip"]
    results_methods: dict[str, dict] = {}
    for name in tqdm(order, desc="bench", unit="method"):
        if name not in BASELINES and name not in implemented:
            continue
        try:
            results_methods[name] = {"status": "ran", "rows": BENCH_ENTRIES[name](context)}
        except Exception as error:  # one broken method must not hide the others' results
            logger.exception("bench: %s failed", name)
            results_methods[name] = {
                "status": f"failed: {type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        write_report(results_methods, context, start, complete=False, foundations=foundations)
    for name in PLANNED_METHODS:
        if name not in results_methods and (not methods or name in methods):
            reason = "not implemented yet" if name not in implemented else "implemented, but has no bench entry yet"
            results_methods[name] = {"status": f"missing ({reason})"}
    return write_report(results_methods, context, start, complete=True, foundations=foundations)


__all__ = [
    "BENCH_COLUMNS",
    "CLAIMS",
    "claims_for",
    "compute_claims",
    "readme_results_block",
    "update_readme",
    "BENCH_ENTRIES",
    "PRESETS",
    "BenchContext",
    "BenchPreset",
    "bench_entry",
    "run_bench",
    "run_script",
]
