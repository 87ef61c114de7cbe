"""Argument groups every training script shares (optimisation and run control), so their flags mean one thing."""

from __future__ import annotations

import argparse

from ..hub.folders import check_model_path


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
    optim.add_argument("--lr_scheduler", default="cosine", help="cosine | linear | constant | constant_with_warmup.")
    optim.add_argument("--num_warmup_steps", type=int, default=num_warmup_steps, help="Linear warm-up steps.")
    optim.add_argument("--max_train_steps", type=int, default=None, help="Total optimiser steps (overrides epochs).")
    optim.add_argument(
        "--num_train_epochs", type=int, default=num_train_epochs, help="Epochs when --max_train_steps is not set."
    )
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 disables).")
    optim.add_argument("--seed", type=int, default=0, help="Seed for data order, initialisation and the world.")
    return optim


def add_run_arguments(parser: argparse.ArgumentParser, *, output_dir: str, stoppable: bool = False):
    """Logging, evaluation, checkpointing, resuming, precision and Hub flags; `--stop_after_step` for the scripts
    whose loop implements it (`stoppable`)."""
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default=output_dir, help="Where checkpoints, logs and the final model go.")
    run.add_argument("--logging_steps", type=int, default=10, help="Log the training loss every N steps.")
    run.add_argument("--eval_steps", type=int, default=None, help="Evaluate every N steps (default: at the end only).")
    run.add_argument(
        "--checkpointing_steps", type=int, default=None, help="Save a resumable checkpoint every N steps."
    )
    run.add_argument("--checkpoints_total_limit", type=int, default=2, help="Keep at most this many checkpoints.")
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
    run.add_argument("--push_to_hub", action="store_true", help="Upload the final model folder to the Hub.")
    run.add_argument("--hub_model_id", default=None, help="Repository id for --push_to_hub.")
    run.add_argument("--hub_token", default=None, help="Token for --push_to_hub (default: the logged-in one).")
    return run


def check_shared_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject flag combinations that would fail late (after data loading or at the end of training), and model folders
    that cannot load (`check_model_path`: the error names the flag and the path)."""
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id.")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "logging_steps"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}.")
    for name in ("max_train_steps", "eval_steps", "checkpointing_steps", "stop_after_step"):
        if getattr(args, name, None) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive when given, got {getattr(args, name)}.")
    if args.learning_rate <= 0:
        parser.error(f"--learning_rate must be positive, got {args.learning_rate}.")
    for name in ("model_name_or_path", "teacher_model_name_or_path"):
        if getattr(args, name, None):
            check_model_path(getattr(args, name), argument=f"--{name}")


def loggable_config(args: argparse.Namespace) -> dict:
    """The run's arguments for trackers and model cards: plain values, never the Hub token."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) and k != "hub_token"}


__all__ = ["add_optimization_arguments", "add_run_arguments", "check_shared_arguments", "loggable_config"]
