"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for everything else.

`accelerator.save_state` writes the optimiser, scheduler and RNG states with `torch.save` (pickle), which the project
does not ship or load. A checkpoint here is a folder `checkpoint-<step>` holding

    model.safetensors            the unwrapped model's state dict (shared tensors stored once)
    optimizer.safetensors        every tensor of `optimizer.state_dict()["state"]`, keyed `<param index>/<name>`
    optimizer.json               the non-tensor rest: param groups, scalar state entries
    scheduler.json               `scheduler.state_dict()` (plain numbers; see `optim._Schedule`)
    rng-<rank>.safetensors/json  torch CPU/CUDA, NumPy and Python RNG states of every process
    trainer_state.json           step, world size, the script's extra state and the sha256 of every other file —
                                 written last

It is written under a temporary name and renamed when complete, so a run killed while saving leaves either the
previous checkpoint or a finished new one, never a half-written folder that `latest` would pick. Re-saving a step
renames the old folder aside before the new one takes its name, and `list_checkpoints` takes the aside folder while
the step has no other, so a kill between any two file-system operations still leaves a checkpoint for that step.
Bytes that change on disk later (a bad disk, a partial copy) load without any error from safetensors; the sha256
catch them: `resolve_checkpoint(..., "latest")` falls back to the newest checkpoint whose files all match, with a
warning, and `load_checkpoint` refuses a folder that does not. Assumes the output directory is on a file system every
process sees (true for one machine; for several nodes use shared storage).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from ..hub.folders import file_sha256

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
# Temporary folders, hidden from `list_checkpoints` except the aside one (see `_swap_in`).
_STAGING_SUFFIX, _ASIDE_SUFFIX, _DELETING_SUFFIX = ".incomplete", ".replaced", ".deleting"
_ASIDE_RE = re.compile(rf"^\.{CHECKPOINT_PREFIX}(\d+){re.escape(_ASIDE_SUFFIX)}$")
_STATE_FILE = "trainer_state.json"
_REQUIRED_FILES = ("model.safetensors", _STATE_FILE)


class CorruptCheckpointError(ValueError):
    """A checkpoint folder that is incomplete or cannot be read."""


# --- naming / discovery -----------------------------------------------------------------------------------------
def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest step first: one per step, `checkpoint-<step>`, or the old folder
    of a re-save killed before the new one took its name. Other temporary folders are excluded."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    final, aside = {}, {}
    for path in output_dir.iterdir():
        for pattern, found in ((_CHECKPOINT_RE, final), (_ASIDE_RE, aside)):
            match = pattern.match(path.name)
            if match and path.is_dir() and (path / _STATE_FILE).is_file():
                found[int(match.group(1))] = path
    by_step = {**aside, **final}
    return [by_step[step] for step in sorted(by_step)]


def verify_checkpoint(checkpoint_dir: str | os.PathLike) -> None:
    """Raise `CorruptCheckpointError` when a file of the checkpoint is missing or its sha256 differs from the one
    recorded at save time. Checkpoints of older versions, which recorded none, pass with a warning."""
    checkpoint = Path(checkpoint_dir)
    if not (checkpoint / _STATE_FILE).is_file():
        raise CorruptCheckpointError(f"Checkpoint {checkpoint} is incomplete: missing {_STATE_FILE}.")
    recorded = _read_json(checkpoint / _STATE_FILE, checkpoint)
    recorded = recorded.get("sha256") if isinstance(recorded, dict) else None
    if recorded is None:
        logger.warning(
            "Checkpoint %s records no sha256 (written by an older version): its files are not verified.", checkpoint
        )
        return
    for name, expected in sorted(recorded.items()):
        path = checkpoint / name
        if not path.is_file():
            raise CorruptCheckpointError(f"Checkpoint {checkpoint} is incomplete: missing {name}.")
        if file_sha256(path) != expected:
            raise CorruptCheckpointError(
                f"Checkpoint {checkpoint} is corrupt: {name} does not match the sha256 recorded when it was saved "
                "(its bytes changed on disk)."
            )


def resolve_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """Turn `--resume_from_checkpoint` into a folder: `None` → none, `"latest"` → the newest checkpoint in
    `output_dir` whose files match their sha256 (older ones after a warning naming what is wrong; none, with a log
    line, on a fresh run; `CorruptCheckpointError` when every one is damaged), anything else → that folder, which
    must exist."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.info("--resume_from_checkpoint latest: no checkpoint in %s yet, starting a fresh run.", output_dir)
            return None
        problems = []
        for checkpoint in reversed(checkpoints):
            try:
                verify_checkpoint(checkpoint)
            except CorruptCheckpointError as error:
                problems.append(str(error))
                continue
            if problems:
                logger.warning("%s Resuming from the newest valid checkpoint, %s.", " ".join(problems), checkpoint)
            return checkpoint
        raise CorruptCheckpointError(
            f"--resume_from_checkpoint latest: no valid checkpoint in {output_dir}. " + " ".join(problems)
            + " Delete the damaged folders to start a fresh run."
        )  # fmt: skip
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a folder; expected 'latest' or a "
            f"'{CHECKPOINT_PREFIX}<step>' folder written by a previous run."
        )
    return path


# --- flattening helpers -----------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for param_id, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}/{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(param_id), {})[key] = _jsonable(value)
    meta = {"param_groups": _jsonable(state_dict["param_groups"]), "scalar_state": scalars}
    return tensors, meta


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        param_id, key = name.split("/", 1)
        state.setdefault(int(param_id), {})[key] = tensor
    for param_id, entries in meta["scalar_state"].items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    meta = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [python_version, list(python_state), python_gauss],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")


def _read_json(path: Path, checkpoint: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(
            f"Checkpoint {checkpoint} is corrupt: cannot read {path.name} ({error})."
        ) from error


def _read_safetensors(path: Path, checkpoint: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise CorruptCheckpointError(
            f"Checkpoint {checkpoint} is corrupt: cannot read {path.name} ({error})."
        ) from error


# --- save / load ------------------------------------------------------------------------------------------------
def _plain_model(accelerator, model: torch.nn.Module) -> torch.nn.Module:
    # Without the `torch.compile` wrapper too: its state dict names every weight `_orig_mod.<name>`, so a checkpoint of
    # a `--torch_compile` run would not load into a run without it (or into `from_pretrained`).
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def _refuse_partitioned_optimizer(accelerator, optimizer) -> None:
    """This format holds one full optimiser state; under DeepSpeed (ZeRO-2 partitions it across processes) the main
    process's `state_dict()` is its partition only, so a resume would silently restart every other partition."""
    from accelerate.utils import DistributedType

    if optimizer is not None and accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise NotImplementedError(
            "Checkpoints of DeepSpeed runs are not supported: ZeRO partitions the optimiser state across processes "
            "and the project's pickle-free checkpoint holds one full state. Train without --checkpointing_steps / "
            "--stop_after_step / --resume_from_checkpoint under DeepSpeed (see examples/accelerate/README.md)."
        )


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra_state: dict | None = None,
    extra_files: list[str | os.PathLike] | None = None,
    total_limit: int | None = None,
) -> Path:
    """Write `output_dir/checkpoint-<step>` atomically; every process must call it. Keeps the newest `total_limit`.

    `extra_files` are copied into the checkpoint under their own names (run state kept outside the model, such as
    the best epoch's weights); `load_checkpoint` leaves them where they are for the script to read.
    """
    _refuse_partitioned_optimizer(accelerator, optimizer)
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    staging = output_dir / f".{final.name}{_STAGING_SUFFIX}"
    if accelerator.is_main_process:
        _remove_leftovers(output_dir)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()

    # Every process writes its own RNG state: dropout masks and augmentations differ per rank.
    rng_tensors, rng_meta = _rng_state()
    save_file(rng_tensors, str(staging / f"rng-{accelerator.process_index}.safetensors"))
    _write_json(staging / f"rng-{accelerator.process_index}.json", rng_meta)

    if accelerator.is_main_process:
        save_model(_plain_model(accelerator, model), str(staging / "model.safetensors"))
        if optimizer is not None:
            tensors, meta = _split_optimizer_state(optimizer.state_dict())
            save_file(tensors, str(staging / "optimizer.safetensors"))
            _write_json(staging / "optimizer.json", meta)
        if scheduler is not None:
            _write_json(staging / "scheduler.json", _jsonable(scheduler.state_dict()))
        for path in extra_files or ():
            shutil.copy2(path, staging / Path(path).name)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {
            "step": step,
            "world_size": accelerator.num_processes,
            "extra_state": _jsonable(extra_state or {}),
            "sha256": {path.name: file_sha256(path) for path in sorted(staging.iterdir()) if path.is_file()},
        }
        _write_json(staging / _STATE_FILE, state)
        _swap_in(staging, final)
        if total_limit is not None and total_limit > 0:
            for stale in list_checkpoints(output_dir)[:-total_limit]:
                _remove(stale)
        logger.info("Saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def _remove(folder: Path) -> None:
    """Delete `folder`, first renaming it to a name `list_checkpoints` ignores: a kill half-way through the deletion
    must not leave a checkpoint-looking folder with files missing."""
    if not folder.exists():
        return
    doomed = folder.with_name(f".{folder.name.lstrip('.')}{_DELETING_SUFFIX}")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(folder, doomed)
    shutil.rmtree(doomed)


def _swap_in(staging: Path, final: Path) -> None:
    """Give `staging` the name `final` with a checkpoint for the step on disk at every moment: the old folder is
    renamed aside (which `list_checkpoints` takes while `final` is missing), the new one renamed in, then the old one
    deleted."""
    aside = final.with_name(f".{final.name}{_ASIDE_SUFFIX}")
    if final.exists():
        _remove(aside)  # left by a kill after an earlier swap: `final` is the newer folder
        os.replace(final, aside)
    os.replace(staging, final)
    _remove(aside)


def _remove_leftovers(output_dir: Path) -> None:
    """Delete what interrupted saves left: staging and half-deleted folders, and aside folders whose step has a
    `checkpoint-<step>` again. An aside folder without one is that step's checkpoint and stays."""
    if not output_dir.is_dir():
        return
    for path in output_dir.iterdir():
        if not path.name.startswith(f".{CHECKPOINT_PREFIX}"):
            continue
        aside = _ASIDE_RE.match(path.name)
        if path.name.endswith((_STAGING_SUFFIX, _DELETING_SUFFIX)) or (
            aside and (output_dir / f"{CHECKPOINT_PREFIX}{aside.group(1)}").is_dir()
        ):
            shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(
    accelerator,
    checkpoint_dir: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
) -> dict:
    """Restore what `save_checkpoint` wrote; returns `{"step": ..., **extra_state}`.

    Raises `CorruptCheckpointError` (a `ValueError`) naming the file when the folder is incomplete or unreadable, when
    a file does not match the sha256 recorded at save time, and when the weights do not match the model (missing /
    unexpected keys).
    """
    _refuse_partitioned_optimizer(accelerator, optimizer)
    checkpoint = Path(checkpoint_dir)
    missing = [name for name in _REQUIRED_FILES if not (checkpoint / name).is_file()]
    if optimizer is not None and not (checkpoint / "optimizer.safetensors").is_file():
        missing.append("optimizer.safetensors")
    if missing:
        raise CorruptCheckpointError(
            f"Checkpoint {checkpoint} is incomplete: missing {missing}; expected a folder written by save_checkpoint."
        )
    state = _read_json(checkpoint / _STATE_FILE, checkpoint)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CorruptCheckpointError(f"Checkpoint {checkpoint}: {_STATE_FILE} has no integer 'step'.")
    verify_checkpoint(checkpoint)

    try:
        missing_keys, unexpected_keys = load_model(
            _plain_model(accelerator, model), str(checkpoint / "model.safetensors"), strict=False
        )
    except (OSError, SafetensorError) as error:
        raise CorruptCheckpointError(
            f"Checkpoint {checkpoint} is corrupt: cannot read model.safetensors ({error})."
        ) from error
    except RuntimeError as error:  # shape mismatches
        raise CorruptCheckpointError(f"Checkpoint {checkpoint} does not fit this model: {error}") from error
    if missing_keys or unexpected_keys:
        raise CorruptCheckpointError(
            f"Checkpoint {checkpoint} does not fit this model: missing keys {sorted(missing_keys)[:10]}, unexpected keys "
            f"{unexpected_keys[:10]}. Was it written by a run with a different model configuration?"
        )
    if optimizer is not None:
        tensors = _read_safetensors(checkpoint / "optimizer.safetensors", checkpoint)
        meta = _read_json(checkpoint / "optimizer.json", checkpoint)
        try:
            optimizer.load_state_dict(_join_optimizer_state(tensors, meta))
        except (ValueError, KeyError) as error:
            raise CorruptCheckpointError(
                f"Checkpoint {checkpoint}: optimizer state does not fit ({error})."
            ) from error
    if scheduler is not None:
        scheduler.load_state_dict(_read_json(checkpoint / "scheduler.json", checkpoint))

    rank = accelerator.process_index
    if state.get("world_size") == accelerator.num_processes and (checkpoint / f"rng-{rank}.safetensors").is_file():
        _set_rng_state(
            _read_safetensors(checkpoint / f"rng-{rank}.safetensors", checkpoint),
            _read_json(checkpoint / f"rng-{rank}.json", checkpoint),
        )
    else:
        logger.warning(
            "Checkpoint %s was written by %s processes, this run has %d: RNG states are not restored, so random "
            "augmentation differs from an uninterrupted run (the data order does not: it is a function of seed and epoch).",
            checkpoint, state.get("world_size"), accelerator.num_processes,
        )  # fmt: skip
    return {"step": state["step"], **state.get("extra_state", {})}


__all__ = [
    "CHECKPOINT_PREFIX",
    "CorruptCheckpointError",
    "list_checkpoints",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "verify_checkpoint",
]
