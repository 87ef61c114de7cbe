"""The start of every training script: one `Accelerator` configured the same way everywhere."""

from __future__ import annotations

import logging
from pathlib import Path

from .tracking import build_trackers


def build_accelerator(args, *, gradient_accumulation_steps: int | None = None, seedable_sampler: bool = True):
    """An `Accelerator` for a script's `args` (`output_dir`, `report_to`, `mixed_precision`, `seed`,
    `gradient_accumulation_steps`), with logging configured (INFO on the main process only), the seed set and
    `output_dir` created.

    `seedable_sampler`: the data order becomes a function of (seed, epoch), which is what makes a resumed run see the
    batches of an uninterrupted one. `gradient_accumulation_steps` overrides `args.gradient_accumulation_steps`.
    """
    import datasets
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    output_dir = Path(args.output_dir)
    accumulation = gradient_accumulation_steps or getattr(args, "gradient_accumulation_steps", 1)
    accelerator = Accelerator(
        gradient_accumulation_steps=accumulation,
        mixed_precision=args.mixed_precision,
        log_with=build_trackers(output_dir / "logs", args.report_to),
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=seedable_sampler),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.ERROR)
        datasets.utils.logging.set_verbosity_error()
    logging.getLogger(__name__).info(accelerator.state)
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    return accelerator


__all__ = ["build_accelerator"]
