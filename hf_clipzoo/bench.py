"""`hf-clipzoo bench`: train the baseline on the embedded world, run every implemented method from it, report.

The bench calls the same training scripts users run (`training_scripts/<method>.py`, through their `main(argv)`),
with a budget set by a preset, and writes into the output folder:
- `results.json` — every number, per method and metric, plus the preset and timings;
- `results.md` — the same as tables, with methods that are not implemented listed as missing;
- `plots/*.png` — learning curves and one bar chart per metric.
Nothing in the report is typed in: every value comes from the runs' own evaluation.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .registry import PLANNED_METHODS, list_methods

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


PRESETS = {
    # Exercised by the test suite: proves the pipeline end to end, not the numbers.
    "smoke": BenchPreset(
        train_size=128, eval_size=64, classes_per_split=2, max_train_steps=6, batch_size=32,
        model_preset="world-micro", learning_rate=5e-4, eval_steps=None, warmup_steps=2,
    ),
    # The README default: about 15 minutes on 2 CPU cores for everything implemented.
    "quick": BenchPreset(
        train_size=8192, eval_size=512, classes_per_split=10, max_train_steps=1500, batch_size=64,
        model_preset="world-tiny", learning_rate=1e-3, eval_steps=250, warmup_steps=100,
    ),
    # A GPU budget: bigger towers, longer schedules.
    "full": BenchPreset(
        train_size=100_000, eval_size=2000, classes_per_split=50, max_train_steps=20_000, batch_size=256,
        model_preset="world-small", learning_rate=5e-4, eval_steps=2000, warmup_steps=1000,
    ),
}


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
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_baseline(preset: BenchPreset, output_dir: Path, seed: int, loss_type: str) -> dict:
    script = load_script("clip")
    run_dir = output_dir / ("clip" if loss_type == "softmax" else "siglip")
    argv = [
        "--output_dir", str(run_dir),
        "--loss_type", loss_type,
        "--model_preset", preset.model_preset,
        "--synthetic_train_size", str(preset.train_size),
        "--synthetic_eval_size", str(preset.eval_size),
        "--synthetic_classes_per_split", str(preset.classes_per_split),
        "--max_train_steps", str(preset.max_train_steps),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(preset.learning_rate),
        "--num_warmup_steps", str(preset.warmup_steps),
        "--eval_caption_column", "long_caption",
        "--seed", str(seed),
        "--logging_steps", str(max(1, preset.max_train_steps // 50)),
    ]
    if preset.eval_steps:
        argv += ["--eval_steps", str(preset.eval_steps)]
    start = time.perf_counter()
    metrics = script.main(argv)
    return {
        "metrics": metrics,
        "seconds": time.perf_counter() - start,
        "model_dir": str(run_dir / "final"),
        "curve": read_learning_curve(run_dir),
    }


def write_plots(results: dict, plots_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    runs = {name: r for name, r in results["methods"].items() if r.get("status") == "ran"}

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, run in runs.items():
        points = [(row["step"], row["train/loss"]) for row in run.get("curve", []) if "train/loss" in row]
        if points:
            ax.plot(*zip(*points), label=name)
    ax.set(xlabel="optimiser step", ylabel="training loss", title="Learning curves")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots_dir / "learning_curves.png", dpi=100)
    plt.close(fig)
    written.append("plots/learning_curves.png")

    metric_names = sorted({m for run in runs.values() for m in run["metrics"] if not m.startswith("train/")})
    for metric in metric_names:
        names = [n for n, r in runs.items() if isinstance(r["metrics"].get(metric), (int, float))]
        values = [runs[n]["metrics"][metric] for n in names]
        if not values or any(math.isnan(v) for v in values):
            continue
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names)), 3.5))
        ax.bar(names, values, color="tab:blue")
        ax.set(title=metric, ylabel=metric.split("/")[-1])
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        fig.tight_layout()
        file = f"{metric.replace('/', '_')}.png"
        fig.savefig(plots_dir / file, dpi=100)
        plt.close(fig)
        written.append(f"plots/{file}")
    return written


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        f"# hf-clipzoo bench — preset `{results['preset_name']}`, seed {results['seed']}",
        "",
        "Every number below was measured by this run (the embedded synthetic world, held-out splits).",
        "",
        "| method | status | metric | value |",
        "|---|---|---|---|",
    ]
    for name, run in results["methods"].items():
        if run.get("status") != "ran":
            lines.append(f"| {name} | {run['status']} | — | — |")
            continue
        for metric, value in sorted(run["metrics"].items()):
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"| {name} | ran in {run['seconds']:.0f} s | `{metric}` | {shown} |")
    if results.get("chance"):
        lines += ["", "Chance levels: " + ", ".join(f"`{k}` = {v:.4f}" for k, v in results["chance"].items())]
    if results.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in results["plots"]]
    path.write_text("\n".join(lines) + "\n")


def run_bench(preset: str = "quick", output_dir: str | Path = "bench_out", seed: int = 0) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {sorted(PRESETS)}.")
    settings = PRESETS[preset]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    methods: dict[str, dict] = {}
    for name, loss_type in (("clip", "softmax"), ("siglip", "sigmoid")):
        methods[name] = {"status": "ran", **run_baseline(settings, output_dir, seed, loss_type)}
    implemented = {m["name"] for m in list_methods()}
    for name in PLANNED_METHODS:
        if name not in implemented:
            methods[name] = {"status": "missing (not implemented yet)"}

    results = {
        "preset_name": preset,
        "preset": asdict(settings),
        "seed": seed,
        "methods": methods,
        # Chance for R@1 over N held-out images and for top-1 over the world's classes.
        "chance": {
            "retrieval R@1": 1.0 / min(settings.eval_size, settings.train_size),
        },
        "total_seconds": None,
    }
    results["plots"] = write_plots(results, output_dir / "plots")
    results["total_seconds"] = time.perf_counter() - start
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_markdown(results, output_dir / "results.md")
    return results


__all__ = ["PRESETS", "BenchPreset", "run_bench"]
