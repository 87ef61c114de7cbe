"""Step time and peak memory of training steps, measured inside a script (the bench's cost columns).

`StepMeter.measure()` wraps one optimiser step (all its micro-batches); evaluation and data preparation outside the
block are not counted. Peak memory is the rise above what is in use when the block starts — activations, gradients,
optimizer state growth — not the weights already loaded:

- CUDA: `torch.cuda.max_memory_allocated()` (peak stats reset per block) minus `memory_allocated()` at the start;
- CPU on Linux: the rise of the resident-set high-water mark (`VmHWM`, reset per block through
  `/proc/self/clear_refs`) above the resident set at the start, like `benchmarks/_harness.py`;
- elsewhere: NaN (the process-wide `ru_maxrss` would include everything the process ever held).
"""

from __future__ import annotations

import ctypes
import gc
import math
import time
from contextlib import contextmanager

import torch

_MIB = 2**20


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise OSError(f"{field} not in /proc/self/status")


def _malloc_trim() -> None:
    # Memory freed by the previous step stays resident in glibc's heap and would be reused without raising the
    # high-water mark: hand it back first, so the next step's peak shows.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_cpu_peak() -> int | None:
    """Reset VmHWM to the current resident set; the resident set in bytes, or None where unsupported."""
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return _proc_status_bytes("VmRSS")
    except OSError:
        return None


class StepMeter:
    """Accumulates the wall time and the largest peak memory of the blocks it measures."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.seconds = 0.0
        self.steps = 0
        self.peak_mib = math.nan

    @contextmanager
    def measure(self):
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
        else:
            before = _reset_cpu_peak()
        start = time.perf_counter()
        yield
        if cuda:
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start
        self.steps += 1
        if cuda:
            peak = (torch.cuda.max_memory_allocated(self.device) - before) / _MIB
        elif before is not None:
            peak = max(_proc_status_bytes("VmHWM") - before, 0) / _MIB
        else:
            return
        self.peak_mib = peak if math.isnan(self.peak_mib) else max(self.peak_mib, peak)

    @property
    def step_seconds(self) -> float:
        return self.seconds / self.steps if self.steps else math.nan


__all__ = ["StepMeter"]
