"""Training throughput of the image-text scripts, and of their input pipeline, against hand-written baselines.

    python benchmarks/bench_train_throughput.py [--shape vit-b-16] [--batch 32] [--repeats 5] [--device cuda]

**Training step** (data loading + one optimiser step, images/s). Candidate: each script of `training_scripts/`
(`clip`, `fff`, `dreamlip`, `groupvit`) set up by its own code: its `parse_args` on a JPEG image folder, its
`build_model`, its collator class, the shared `build_accelerator` / `load_image_text_data` / `build_train_batches` /
`build_optimizer` / `build_scheduler` and `accelerator.prepare`. The step is the body of the script's training loop
(which lives inline in each script's `main`, so it is restated here line for line): next batch, forward with
`return_loss=True`, `check_finite`, `accelerator.backward`, gradient clipping, optimiser and scheduler steps,
`.item()` of the loss, temperature clamp. FFF mines on every step (its steady state after `--mining_warmup_steps`);
GroupViT samples its noun prompts (`add_prompts`). Reference: a minimal loop on transformers' `CLIPModel` with the
same towers (the CLIP preset of `--shape`), batch size, files, captions, clipping and AdamW: a plain `DataLoader`
whose collate opens the JPEGs with PIL and calls the same image processor and tokenizer.

For `clip` the ratio is the scripts' overhead (design target <= 1.05). For the other methods it is the method's cost
over plain CLIP at the same shape: FFF's extra captions and mining, DreamLIP's subcaptions and grouping loss,
GroupViT's own towers (at `--shape vit-b-16` GroupViT runs its released `gcc-yfcc` size; it has no ViT-B/16 preset).

**Input pipeline** (decode + processor + collate, one process, i.e. images/s per DataLoader worker). Candidate: each
script's collator on rows read from the loaded dataset, as its DataLoader workers run it. Reference: a bare PIL
decode (`Image.open(...).convert("RGB")`) + resize to the model's resolution of the same files. A GPU needs about
`training images/s / per-worker images/s` workers.

The JPEGs (224 px, quality 90, the synthetic world's scenes and captions) are written to a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Comparison, compare, describe_machine, markdown_table, parse_args  # noqa: E402

SCRIPTS = ("clip", "fff", "dreamlip", "groupvit")
JPEG_SIZE = 224


def write_jpeg_folder(folder: str | Path, num_images: int, *, size: int = JPEG_SIZE, seed: int = 0) -> Path:
    """An image folder (`metadata.jsonl` + JPEGs) of the synthetic world's scenes with every caption column the
    scripts read (`caption`, `long_caption`, `pseudo_captions`, `nouns`)."""
    from hf_clipzoo.data.synthetic import WorldConfig, make_scenes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = make_scenes(num_images, split="train", config=WorldConfig(seed=seed, image_size=size))
    with open(folder / "metadata.jsonl", "w") as metadata:
        for index, scene in enumerate(scenes):
            name = f"{index:06d}.jpg"
            scene["image"].convert("RGB").save(folder / name, quality=90)
            row = {
                "file_name": name,
                **{key: scene[key] for key in ("caption", "long_caption", "pseudo_captions", "nouns")},
            }
            metadata.write(json.dumps(row) + "\n")
    return folder


def script_preset(script: str, shape: str) -> str:
    """The script's `--model_preset` for a CLIP-preset shape (GroupViT has its own presets)."""
    if script != "groupvit":
        return shape
    from hf_clipzoo.models.groupvit.configuration_groupvit import GROUPVIT_PRESETS

    return shape if shape in GROUPVIT_PRESETS else "gcc-yfcc"


@dataclass
class ScriptSetup:
    """What a script builds before its training loop, built by the script's own code."""

    script: str
    module: object
    args: argparse.Namespace
    accelerator: object
    model: torch.nn.Module
    processor: object
    collator: Callable
    train: object


def _collator(script: str, module, args, processor):
    # Each script builds its collator inline in `main`; these are the same calls with the script's own classes.
    if script == "clip":
        return module.ImageTextCollator(processor, image_column=args.image_column, caption_column=args.caption_column)
    if script == "fff":
        return module.MultiCaptionCollator(
            processor, image_column=args.image_column, caption_column=args.caption_column,
            extra_caption_column=args.pseudo_caption_column, num_extra_captions=args.num_pseudo_captions,
        )  # fmt: skip
    if script == "dreamlip":
        sampler = module.SubcaptionSampler(
            caption_columns=tuple(args.subcaption_columns),
            raw_caption_column=None if args.no_raw_caption else args.caption_column,
            num_subcaptions=args.num_subcaptions, merge=args.merge, replacement=args.replacement, seed=args.seed,
        )  # fmt: skip
        return module.SubcaptionCollator(processor, sampler, image_column=args.image_column)
    if script == "groupvit":
        return module.PromptCollator(
            processor, image_column=args.image_column, caption_column=args.caption_column,
            nouns_column=args.nouns_column or None, num_prompts=args.num_prompts,
        )  # fmt: skip
    raise ValueError(f"script must be one of {SCRIPTS}, got {script!r}")


def _extra_columns(script: str, args) -> tuple[str, ...]:
    if script == "fff":
        return (args.pseudo_caption_column,) if args.num_pseudo_captions else ()
    if script == "groupvit":
        return (args.nouns_column,) if args.nouns_column and args.num_prompts else ()
    return ()


def setup_script(
    script: str, dataset: Path, output_dir: Path, *, shape: str, batch: int, workers: int = 0,
    mixed_precision: str = "no",
) -> ScriptSetup:  # fmt: skip
    """Parse the script's arguments for `dataset` and build its accelerator, model, processor, collator and data."""
    from hf_clipzoo.bench import load_script
    from hf_clipzoo.training import build_accelerator
    from hf_clipzoo.training.image_text import load_image_text_data

    if script not in SCRIPTS:
        raise ValueError(f"script must be one of {SCRIPTS}, got {script!r}")
    module = load_script(script)
    args = module.parse_args(
        ["--dataset", str(dataset), "--model_preset", script_preset(script, shape), "--output_dir", str(output_dir),
         "--per_device_train_batch_size", str(batch), "--dataloader_num_workers", str(workers),
         "--mixed_precision", mixed_precision]
    )  # fmt: skip
    accelerator = build_accelerator(args)
    model, processor = module.build_model(args)
    data = load_image_text_data(args, accelerator, extra_columns=_extra_columns(script, args))
    collator = _collator(script, module, args, processor)
    return ScriptSetup(script, module, args, accelerator, model, processor, collator, data.train)


def _endless(loader, on_epoch: Callable[[int], None]):
    for epoch in itertools.count():
        on_epoch(epoch)
        yield from loader


def script_step(setup: ScriptSetup) -> Callable[[], float]:
    """One training step of the script (next batch + its loop body), as a no-argument callable returning the loss."""
    from hf_clipzoo.losses import clamp_logit_scale_
    from hf_clipzoo.training import build_optimizer, build_scheduler, check_finite
    from hf_clipzoo.training.image_text import build_train_batches

    args, accelerator, script = setup.args, setup.accelerator, setup.script
    loader = build_train_batches(args, accelerator, setup.train, setup.collator)
    optimizer = build_optimizer(
        setup.model, name="adamw", lr=args.learning_rate, weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
    )  # fmt: skip
    scheduler = build_scheduler(
        optimizer, name=args.lr_scheduler, num_warmup_steps=args.num_warmup_steps, num_training_steps=10**6
    )
    model, optimizer, loader = accelerator.prepare(setup.model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(model)
    config = unwrapped.config

    def on_epoch(epoch: int) -> None:
        loader.set_epoch(epoch)
        if hasattr(setup.collator, "set_epoch"):
            setup.collator.set_epoch(epoch)

    batches = _endless(loader, on_epoch)
    forward_kwargs = {"mine": config.mining} if script == "fff" else {}
    # The temperatures each script clamps after its step: CLIP (softmax) and GroupViT cap them at 100.
    clamped = []
    if script == "clip" and config.loss_type == "softmax":
        clamped = [unwrapped.logit_scale]
    if script == "groupvit":
        clamped = [p for p in (unwrapped.logit_scale, unwrapped.multi_label_logit_scale) if p is not None]
    step_index = itertools.count()

    def step() -> float:
        global_step = next(step_index)
        batch = next(batches)
        batch.pop("num_skipped")
        if script == "groupvit":
            step_seed = zlib.crc32(f"{args.seed}-{global_step}-0-{accelerator.process_index}".encode())
            torch.manual_seed(step_seed)
            batch = setup.module.add_prompts(batch, setup.processor, args.num_prompts, step_seed, accelerator.device)
        with accelerator.accumulate(model):
            loss = model(**batch, return_loss=True, **forward_kwargs).loss
            check_finite(loss, global_step)
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        value = loss.detach().item()
        for parameter in clamped:
            clamp_logit_scale_(parameter)
        return value

    return step


def _read_folder(dataset: Path) -> list[dict]:
    rows = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines() if line.strip()]
    return [{"path": str(dataset / row["file_name"]), "caption": row["caption"]} for row in rows]


def reference_step(
    dataset: Path, *, shape: str, batch: int, workers: int = 0, device: str = "cpu", max_grad_norm: float = 1.0,
    lr: float = 5e-4, mixed_precision: str = "no", seed: int = 0,
) -> Callable[[], float]:  # fmt: skip
    """One step of a minimal hand-written loop on transformers' `CLIPModel` over the same files and captions."""
    from PIL import Image
    from torch.utils.data import DataLoader
    from transformers import CLIPConfig, CLIPModel

    from hf_clipzoo.backbones.processing import build_clip_processor
    from hf_clipzoo.models.clip import ZooCLIPConfig

    towers = ZooCLIPConfig.from_preset(shape).to_dict()
    config = CLIPConfig(**{key: towers[key] for key in ("text_config", "vision_config", "projection_dim")})
    torch.manual_seed(seed)
    model = CLIPModel(config).to(device).train()
    processor = build_clip_processor(config.vision_config.image_size, config.text_config.max_position_embeddings)
    image_processor, tokenizer = processor.image_processor, processor.tokenizer

    def collate(rows: list[dict]) -> dict:
        images = [Image.open(row["path"]).convert("RGB") for row in rows]
        text = tokenizer([row["caption"] for row in rows], padding=True, truncation=True, return_tensors="pt")
        return {"pixel_values": image_processor(images, return_tensors="pt")["pixel_values"], **text}

    loader = DataLoader(
        _read_folder(dataset), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        collate_fn=collate, generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    batches = itertools.chain.from_iterable(iter(loader) for _ in itertools.count())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    autocast = (
        (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16))
        if mixed_precision == "bf16"
        else contextlib.nullcontext
    )

    def step() -> float:
        inputs = {key: value.to(device) for key, value in next(batches).items()}
        with autocast():
            loss = model(**inputs, return_loss=True).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        return loss.detach().item()

    return step


def pipeline_calls(setup: ScriptSetup, dataset: Path, batch: int) -> tuple[Callable[[], object], Callable[[], object]]:
    """(the script's collator on `batch` dataset rows, a bare PIL decode + resize of the same files)."""
    from PIL import Image

    size = setup.args.resolution
    paths = [row["path"] for row in _read_folder(dataset)]
    offsets = itertools.count()

    def window() -> list[int]:
        start = next(offsets) * batch % len(paths)
        return [(start + i) % len(paths) for i in range(batch)]

    def collate():
        return setup.collator([setup.train[i] for i in window()])

    def bare_decode():
        return [Image.open(paths[i]).convert("RGB").resize((size, size), Image.BICUBIC) for i in window()]

    return collate, bare_decode


@dataclass
class ThroughputRow:
    """One comparison and the images each call handles."""

    comparison: Comparison
    images_per_call: int

    @property
    def candidate_images_per_s(self) -> float:
        return self.images_per_call * 1e3 / self.comparison.candidate_ms

    @property
    def reference_images_per_s(self) -> float:
        return self.images_per_call * 1e3 / self.comparison.reference_ms


def benchmark(
    scripts: tuple[str, ...], *, shape: str, batch: int, repeats: int, warmup: int, device: str = "cpu",
    num_images: int | None = None, workers: int = 0, mixed_precision: str = "no", pipeline: bool = True,
    steps: bool = True, workdir: str | Path | None = None,
) -> dict[str, list[ThroughputRow]]:  # fmt: skip
    """Run the training-step and input-pipeline comparisons; `{"steps": [...], "pipeline": [...]}`."""
    if device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # the scripts' accelerator would otherwise take a visible GPU
    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        # Enough files that the timed steps do not all reread the same few (the OS cache still holds them).
        num_images = num_images or max(batch * (repeats + warmup + 1), 4 * batch)
        dataset = write_jpeg_folder(root / "jpegs", num_images)
        results = {"steps": [], "pipeline": []}
        reference = None
        if steps:
            reference = reference_step(
                dataset, shape=shape, batch=batch, workers=workers, device=device, mixed_precision=mixed_precision
            )
        for script in scripts:
            setup = setup_script(
                script, dataset, root / f"run-{script}", shape=shape, batch=batch, workers=workers,
                mixed_precision=mixed_precision,
            )  # fmt: skip
            if device != "cpu" and setup.accelerator.device.type != torch.device(device).type:
                raise RuntimeError(f"--device {device}, but the scripts' accelerator chose {setup.accelerator.device}")
            label = f"{script} ({script_preset(script, shape)}) batch {batch}"
            if steps:
                step = script_step(setup)
                results["steps"].append(
                    ThroughputRow(
                        compare(
                            f"training step: {label} vs CLIPModel loop",
                            step,
                            reference,
                            repeats=repeats,
                            warmup=warmup,
                            device=device,
                        ),  # fmt: skip
                        batch,
                    )
                )
            if pipeline:
                collate, bare_decode = pipeline_calls(setup, dataset, batch)
                results["pipeline"].append(
                    ThroughputRow(
                        compare(
                            f"input pipeline: {script} collator vs PIL decode+resize to {setup.args.resolution}px, "
                            f"{batch} JPEGs at {JPEG_SIZE}px",
                            collate,
                            bare_decode,
                            repeats=repeats,
                            warmup=warmup,
                            device="cpu",
                        ),  # fmt: skip
                        batch,
                    )
                )
            del setup
        return results


def images_table(rows: list[ThroughputRow]) -> str:
    lines = [
        "| benchmark | candidate images/s | reference images/s | time ratio |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.comparison.name} | {row.candidate_images_per_s:.1f} | {row.reference_images_per_s:.1f} | "
            f"{row.comparison.time_ratio:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="world-tiny", help="CLIP preset of the towers (default: world-tiny).")
    parser.add_argument("--batch", type=int, default=16, help="images per step (default: 16).")
    parser.add_argument("--scripts", nargs="+", choices=SCRIPTS, default=list(SCRIPTS), help="scripts to time.")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of both loops (default: 0).")
    parser.add_argument("--mixed_precision", choices=("no", "bf16"), default="no", help="both sides (default: no).")
    parser.add_argument("--num-images", type=int, default=None, help="JPEGs written (default: enough for the run).")
    parser.add_argument("--only", choices=("steps", "pipeline"), default=None, help="run one of the two parts.")
    args = parse_args(__doc__, parser)
    results = benchmark(
        tuple(args.scripts), shape=args.shape, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
        device=args.device, num_images=args.num_images, workers=args.workers, mixed_precision=args.mixed_precision,
        steps=args.only != "pipeline", pipeline=args.only != "steps",
    )  # fmt: skip
    print(describe_machine(args.device))
    for part, title in (("steps", "training step (data loading + step)"), ("pipeline", "input pipeline, one worker")):
        if results[part]:
            print(markdown_table([row.comparison for row in results[part]], title=title))
            print()
            print(images_table(results[part]))
            print()


if __name__ == "__main__":
    main()
