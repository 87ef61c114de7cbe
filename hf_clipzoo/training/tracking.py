"""Experiment tracking: a JSONL log that is always on, plus TensorBoard / W&B when installed and asked for."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from pathlib import Path

from accelerate.tracking import GeneralTracker

logger = logging.getLogger(__name__)

_OPTIONAL_TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}


class JsonlTracker(GeneralTracker):
    """Appends one JSON object per `accelerator.log` call to `<logging_dir>/metrics.jsonl`.

    The file is what the bench reads to draw learning curves, and it needs no extra dependency. Accelerate calls
    the tracker on the main process only; the file is opened lazily so other processes never create it.
    """

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, logging_dir: str | os.PathLike, run_name: str = "train"):
        super().__init__()
        self.logging_dir = Path(logging_dir)
        self.run_name = run_name
        self.path = self.logging_dir / "metrics.jsonl"

    @property
    def tracker(self):
        return self.path

    def _append(self, record: dict) -> None:
        self.logging_dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def store_init_configuration(self, values: dict) -> None:
        self._append({"event": "config", "run": self.run_name, "time": time.time(), "config": values})

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in values.items()}
        self._append({"event": "log", "step": step, "time": time.time(), **clean})

    def finish(self) -> None:  # nothing buffered: every line is flushed on write
        pass


def read_jsonl_log(path: str | os.PathLike) -> list[dict]:
    """The `log` records of a `metrics.jsonl` file (a run resumed several times appends to the same file)."""
    records = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("event") == "log":
                records.append(record)
    return records


def build_trackers(logging_dir: str | os.PathLike, report_to: str = "jsonl") -> list:
    """`Accelerator(log_with=...)` for `--report_to`: comma-separated `jsonl`, `tensorboard`, `wandb` or `all`.

    JSONL is always included. A requested tracker whose package is missing is skipped with a warning rather than
    failing a run several hours in.
    """
    requested = {name.strip() for name in report_to.split(",") if name.strip()}
    unknown = requested - {"jsonl", "all", "none", *_OPTIONAL_TRACKERS}
    if unknown:
        raise ValueError(f"Unknown --report_to {sorted(unknown)}; expected jsonl, tensorboard, wandb or all.")
    if "all" in requested:
        requested |= set(_OPTIONAL_TRACKERS)
    trackers: list = [JsonlTracker(logging_dir)]
    for name, modules in _OPTIONAL_TRACKERS.items():
        if name not in requested:
            continue
        if any(importlib.util.find_spec(module) is not None for module in modules):
            trackers.append(name)
        elif "all" not in requested:
            logger.warning("--report_to %s: the package is not installed, logging to JSONL only.", name)
    return trackers


__all__ = ["JsonlTracker", "build_trackers", "read_jsonl_log"]
