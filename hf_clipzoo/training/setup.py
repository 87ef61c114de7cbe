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

    `--torch_compile` (`args.torch_compile`, `args.torch_compile_backend`) is applied here, once for every script:
    `accelerator.prepare(model)` compiles the model's forward. Sharded launches (an FSDP or DeepSpeed
    `accelerate launch --config_file`) are refused where they would not shard (see `check_sharding`).
    """
    import datasets
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, TorchDynamoPlugin, set_seed

    output_dir = Path(args.output_dir)
    accumulation = gradient_accumulation_steps or getattr(args, "gradient_accumulation_steps", 1)
    accelerator = Accelerator(
        gradient_accumulation_steps=accumulation,
        mixed_precision=args.mixed_precision,
        log_with=build_trackers(output_dir / "logs", args.report_to),
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=seedable_sampler),
        dynamo_plugin=TorchDynamoPlugin(backend=args.torch_compile_backend) if getattr(args, "torch_compile", False)
        else None,
    )  # fmt: skip
    check_sharding(accelerator)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.ERROR)
        datasets.utils.logging.set_verbosity_error()
    logging.getLogger(__name__).info(accelerator.state)
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    return accelerator


def check_sharding(accelerator) -> None:
    """Raise when the launch asked for FSDP but accelerate set up something else, and when FSDP is asked for at all.

    accelerate enables FSDP only on accelerators (CUDA, XPU, NPU, ...): with `--config_file fsdp.yaml` on CPU it
    silently trains plain data-parallel instead, which a user would take for sharded training. And FSDP (both
    `FullyShardedDataParallel` and `fully_shard`) refuses 0-dim parameters, which every zoo model has (the
    `logit_scale` of transformers' CLIP): wrapping would fail inside `prepare`, after the data is loaded.
    """
    import os

    from accelerate.utils import DistributedType

    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")
    if asked and accelerator.distributed_type != DistributedType.FSDP:
        raise ValueError(
            f"The accelerate config asks for FSDP, but accelerate set up {accelerator.distributed_type} (it enables "
            "FSDP on GPUs / other accelerators only, never on CPU): the run would not be sharded. Use "
            "examples/accelerate/ddp.yaml on CPU."
        )
    if accelerator.distributed_type == DistributedType.FSDP:
        raise ValueError(
            "FSDP cannot wrap the zoo's models yet: torch's FSDP refuses 0-dim parameters, and every model holds one "
            "(`logit_scale`, as transformers' CLIP). Use examples/accelerate/deepspeed_zero2.yaml to shard the "
            "optimiser state, or ddp.yaml. See examples/accelerate/README.md."
        )


__all__ = ["build_accelerator", "check_sharding"]
