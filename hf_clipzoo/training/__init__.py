"""The shared pieces of the training scripts; the training loops themselves stay visible in `training_scripts/`."""

from .checkpoint import CorruptCheckpointError, list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint
from .guards import across_processes, check_finite
from .hub import push_folder_to_hub, save_final_model, write_model_folder
from .memory import StepMeter
from .optim import build_optimizer, build_scheduler, lr_multiplier, param_groups
from .setup import build_accelerator
from .tracking import JsonlTracker, build_trackers, read_jsonl_log

__all__ = [
    "StepMeter",
    "build_accelerator",
    "CorruptCheckpointError",
    "JsonlTracker",
    "across_processes",
    "build_optimizer",
    "build_scheduler",
    "build_trackers",
    "check_finite",
    "list_checkpoints",
    "load_checkpoint",
    "lr_multiplier",
    "param_groups",
    "push_folder_to_hub",
    "save_final_model",
    "write_model_folder",
    "read_jsonl_log",
    "resolve_checkpoint",
    "save_checkpoint",
]
