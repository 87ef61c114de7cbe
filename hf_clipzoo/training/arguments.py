"""Argument groups every training script shares (optimisation and run control), so their flags mean one thing."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..hub.folders import check_model_path
from ..validation import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Number, OneOf
from .optim import SCHEDULERS

OPTIONAL_POSITIVE_INT = Number(int, minimum=1, optional=True)
# torch.compile backends that need nothing beyond torch: "eager" / "aot_eager" trace without generating code (quick,
# for checking a model compiles at all), "inductor" generates the fast kernels (a C++ compiler on CPU, Triton on GPU).
COMPILE_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")
BETA = Number(float, minimum=0, maximum=1, exclusive_maximum=True)

# Every numeric flag the scripts share (through the `add_*_arguments` groups, or under the same name in their own
# parser), checked by `check_shared_arguments` wherever the script has it: one rule and one message per flag.
SHARED_FLAG_RULES: dict[str, Any] = {
    "per_device_train_batch_size": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "gradient_accumulation_steps": POSITIVE_INT,
    "learning_rate": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "adam_beta1": BETA,
    "adam_beta2": BETA,
    "adam_epsilon": POSITIVE,
    "num_warmup_steps": NON_NEGATIVE_INT,
    "warmup_ratio": Number(float, minimum=0, maximum=1),
    "max_train_steps": OPTIONAL_POSITIVE_INT,
    "num_train_epochs": POSITIVE_INT,
    # 0 disables clipping.
    "max_grad_norm": NON_NEGATIVE,
    # The range numpy's and accelerate's `set_seed` accept.
    "seed": Number(int, minimum=0, maximum=2**32 - 1),
    "logging_steps": POSITIVE_INT,
    "eval_steps": OPTIONAL_POSITIVE_INT,
    "checkpointing_steps": OPTIONAL_POSITIVE_INT,
    # 0 keeps every checkpoint.
    "checkpoints_total_limit": NON_NEGATIVE_INT,
    "stop_after_step": OPTIONAL_POSITIVE_INT,
    "dataloader_num_workers": NON_NEGATIVE_INT,
    "max_train_samples": OPTIONAL_POSITIVE_INT,
    "max_eval_samples": OPTIONAL_POSITIVE_INT,
    "synthetic_train_size": POSITIVE_INT,
    "synthetic_eval_size": POSITIVE_INT,
    "synthetic_classes_per_split": POSITIVE_INT,
    "resolution": OPTIONAL_POSITIVE_INT,
    "torch_compile_backend": OneOf(COMPILE_BACKENDS),
}


def add_optimization_arguments(
    parser: argparse.ArgumentParser,
    *,
    batch_size: int = 64,
    learning_rate: float = 5e-4,
    weight_decay: float = 0.2,
    adam_beta2: float = 0.98,
    num_warmup_steps: int = 50,
    num_train_epochs: int = 10,
):
    """AdamW + warm-up/cosine flags; the defaults are the script's paper defaults."""
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--per_device_train_batch_size", type=int, default=batch_size, help="Batch size per process.")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimiser step.")
    optim.add_argument("--learning_rate", type=float, default=learning_rate, help="Peak learning rate.")
    optim.add_argument(
        "--weight_decay", type=float, default=weight_decay, help="AdamW weight decay (not on norms, biases, scales)."
    )
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1.")
    optim.add_argument("--adam_beta2", type=float, default=adam_beta2, help="AdamW beta2 (CLIP uses 0.98).")
    optim.add_argument("--adam_epsilon", type=float, default=1e-6, help="AdamW epsilon.")
    optim.add_argument("--lr_scheduler", choices=SCHEDULERS, default="cosine", help="Learning-rate schedule.")
    optim.add_argument("--num_warmup_steps", type=int, default=num_warmup_steps, help="Linear warm-up steps.")
    optim.add_argument("--max_train_steps", type=int, default=None, help="Total optimiser steps (overrides epochs).")
    optim.add_argument(
        "--num_train_epochs", type=int, default=num_train_epochs, help="Epochs when --max_train_steps is not set."
    )
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 disables).")
    optim.add_argument("--seed", type=int, default=0, help="Seed for data order, initialisation and the world.")
    return optim


def add_run_arguments(
    parser: argparse.ArgumentParser, *, output_dir: str, stoppable: bool = False, compilable: bool = False
):
    """Logging, evaluation, checkpointing, resuming, precision and Hub flags; `--stop_after_step` for the scripts
    whose loop implements it (`stoppable`), `--torch_compile` for those whose every save goes through
    `save_checkpoint` / `save_final_model`, which store the weights without the compile wrapper (`compilable`)."""
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default=output_dir, help="Where checkpoints, logs and the final model go.")
    run.add_argument("--logging_steps", type=int, default=10, help="Log the training loss every N steps.")
    run.add_argument("--eval_steps", type=int, default=None, help="Evaluate every N steps (default: at the end only).")
    run.add_argument(
        "--checkpointing_steps", type=int, default=None, help="Save a resumable checkpoint every N steps."
    )
    run.add_argument(
        "--checkpoints_total_limit", type=int, default=2, help="Keep at most this many checkpoints (0: keep all)."
    )
    run.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder.")
    if stoppable:
        run.add_argument(
            "--stop_after_step",
            type=int,
            default=None,
            help="Save a checkpoint at this optimiser step and exit without the final evaluation (the schedule still "
            "follows --max_train_steps): to split a run into sessions with --resume_from_checkpoint latest, or to "
            "reproduce a run's early checkpoint.",
        )
    run.add_argument("--report_to", default="jsonl", help="jsonl (always on), tensorboard, wandb or all.")
    run.add_argument(
        "--mixed_precision", choices=("no", "fp16", "bf16"), default=None, help="Overrides accelerate config."
    )
    if compilable:
        run.add_argument(
            "--torch_compile",
            action="store_true",
            help="torch.compile the model's forward (through accelerate's prepare); saved weights keep their names.",
        )
        run.add_argument(
            "--torch_compile_backend",
            default="inductor",
            help=f"Backend for --torch_compile: one of {COMPILE_BACKENDS}.",
        )
    run.add_argument("--push_to_hub", action="store_true", help="Upload the final model folder to the Hub.")
    run.add_argument("--hub_model_id", default=None, help="Repository id for --push_to_hub.")
    run.add_argument(
        "--model_name",
        default=None,
        help="Title and model-index name of the model card (default: the repository name of --hub_model_id, else "
        "<method>-<output_dir name>).",
    )
    run.add_argument("--hub_token", default=None, help="Token for --push_to_hub (default: the logged-in one).")
    return run


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, rules: Mapping[str, Any]) -> None:
    """`parser.error` naming the first flag whose value breaks its rule (`hf_clipzoo.validation`); flags the script
    does not define are skipped."""
    for name, rule in rules.items():
        if hasattr(args, name) and not rule.accepts(getattr(args, name)):
            parser.error(f"--{name} must be {rule.expected}, got {getattr(args, name)!r}.")


def check_shared_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject bad values of the shared flags, combinations that would fail late (after data loading or at the end
    of training), and model folders that cannot load (`check_model_path`: the error names the flag and the path).
    Every script in `training_scripts/` calls it right after parsing."""
    check_flags(parser, args, SHARED_FLAG_RULES)
    if getattr(args, "push_to_hub", False) and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id.")
    model_name = getattr(args, "model_name", None)
    if model_name is not None and (not model_name.strip() or "\n" in model_name):
        parser.error(f"--model_name must be a non-empty single-line name, got {model_name!r}.")
    stop, total = getattr(args, "stop_after_step", None), getattr(args, "max_train_steps", None)
    if stop is not None and total is not None and stop > total:
        parser.error(f"--stop_after_step must be at most --max_train_steps ({total}), got {stop}.")
    for name in ("model_name_or_path", "teacher_model_name_or_path"):
        if getattr(args, name, None):
            check_model_path(getattr(args, name), argument=f"--{name}")


def loggable_config(args: argparse.Namespace) -> dict:
    """The run's arguments for trackers and model cards: plain values through `scrub_secrets` (no Hub token or other
    credential, local paths as `<local>/<last component>`), as trackers such as W&B publish them too."""
    from ..hub.scrub import scrub_secrets

    return scrub_secrets({k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})


__all__ = [
    "COMPILE_BACKENDS",
    "SHARED_FLAG_RULES",
    "add_optimization_arguments",
    "add_run_arguments",
    "check_flags",
    "check_shared_arguments",
    "loggable_config",
]
