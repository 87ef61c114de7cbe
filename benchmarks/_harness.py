"""A small side-by-side benchmark harness: a candidate and its reference, in one process, interleaved.

    from _harness import compare, markdown_table, parse_args

    args = parse_args("what this benchmark measures")
    results = [compare("sigmoid loss fwd+bwd", candidate_fn, reference_fn, device=args.device)]
    print(markdown_table(results))

Both callables take no arguments and do the whole measured work (e.g. forward + backward); build their inputs
outside them. What is reported and how:

- **Time**: median wall-clock milliseconds per call over `repeats` calls of each, after `warmup` calls of each.
  Calls alternate between candidate and reference, and the order flips every round (AB BA AB ...), so machine
  load, CPU frequency and cache effects hit both alike. On CUDA every call is bracketed by `torch.cuda.synchronize`.
- **Peak memory**: how far memory rises above what is live just before one call, measured on separate calls after
  the timing (median of `memory_repeats` calls each, interleaved too):
  - CUDA: `torch.cuda.max_memory_allocated()` minus `torch.cuda.memory_allocated()` before the call (peak stats
    reset first): tensors allocated through PyTorch's caching allocator.
  - CPU (Linux): the rise of the process's resident-set high-water mark (`VmHWM` in `/proc/self/status`, reset by
    writing `5` to `/proc/self/clear_refs`) above the resident set just before the call, after `gc.collect()` and
    glibc's `malloc_trim(0)` so that memory freed by earlier calls is handed back and cannot hide the peak. It
    counts every allocation of the process (torch's CPU allocator has no cache), at page granularity. Elsewhere
    the column says `n/a`. `python benchmarks/_harness.py --self-check` checks it on a known allocation.
- **Ratios**: candidate / reference, so < 1 means the candidate is faster / lighter.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

_MIB = 2**20


@dataclass
class Comparison:
    """One row of the table: medians of the candidate and the reference."""

    name: str
    candidate_ms: float
    reference_ms: float
    candidate_peak_mib: float | None
    reference_peak_mib: float | None

    @property
    def time_ratio(self) -> float:
        return self.candidate_ms / self.reference_ms

    @property
    def memory_ratio(self) -> float | None:
        if self.candidate_peak_mib is None or self.reference_peak_mib is None or self.reference_peak_mib <= 0:
            return None
        return self.candidate_peak_mib / self.reference_peak_mib


def parse_args(description: str, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The options every benchmark shares (`--device`, `--repeats`, `--warmup`, `--threads`); pass a parser to add more."""
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="`cpu` or `cuda` (default: cpu).")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of each variant (default: 10).")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each variant first (default: 2).")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's choice)."
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda was requested but CUDA is not available")
    return args


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _time_call(fn: Callable[[], object], device: str) -> float:
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return (time.perf_counter() - start) * 1e3


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise KeyError(key)


def _cpu_peak_supported() -> bool:
    try:
        _proc_status_bytes("VmHWM")
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def peak_memory_mib(fn: Callable[[], object], device: str = "cpu") -> float | None:
    """Peak memory (MiB) one call of `fn` adds on top of what is live before it; `None` if it cannot be measured."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / _MIB
    if not _cpu_peak_supported():
        return None
    _malloc_trim()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current resident set
    before = _proc_status_bytes("VmRSS")
    fn()
    return max(_proc_status_bytes("VmHWM") - before, 0) / _MIB


def compare(
    name: str,
    candidate_fn: Callable[[], object],
    reference_fn: Callable[[], object],
    *,
    repeats: int = 10,
    warmup: int = 2,
    memory_repeats: int = 3,
    device: str = "cpu",
) -> Comparison:
    """Time and measure `candidate_fn` against `reference_fn`, interleaved in this process (see the module doc)."""
    if repeats < 1 or warmup < 0 or memory_repeats < 1:
        raise ValueError(
            f"need repeats >= 1, warmup >= 0, memory_repeats >= 1; got {repeats}, {warmup}, {memory_repeats}"
        )
    for _ in range(warmup):
        candidate_fn()
        reference_fn()
    times: dict[str, list[float]] = {"candidate": [], "reference": []}
    variants = [("candidate", candidate_fn), ("reference", reference_fn)]
    for round_index in range(repeats):
        for label, fn in variants if round_index % 2 == 0 else variants[::-1]:
            times[label].append(_time_call(fn, device))
    peaks: dict[str, list[float | None]] = {"candidate": [], "reference": []}
    for round_index in range(memory_repeats):
        for label, fn in variants if round_index % 2 == 0 else variants[::-1]:
            peaks[label].append(peak_memory_mib(fn, device))

    def median_peak(values):
        return None if any(value is None for value in values) else statistics.median(values)

    return Comparison(
        name=name,
        candidate_ms=statistics.median(times["candidate"]),
        reference_ms=statistics.median(times["reference"]),
        candidate_peak_mib=median_peak(peaks["candidate"]),
        reference_peak_mib=median_peak(peaks["reference"]),
    )


def _format(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(results: list[Comparison], title: str | None = None) -> str:
    """The comparisons as a markdown table (candidate / reference ratios in the last columns)."""
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| benchmark | candidate ms | reference ms | time ratio | candidate peak MiB | reference peak MiB | memory ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {_format(r.candidate_ms)} | {_format(r.reference_ms)} | {r.time_ratio:.2f} | "
            f"{_format(r.candidate_peak_mib)} | {_format(r.reference_peak_mib)} | {_format(r.memory_ratio, 3)} |"
        )
    return "\n".join(lines)


def describe_machine(device: str) -> str:
    """One line naming what the numbers were measured on."""
    if device.startswith("cuda"):
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible"
    return f"torch {torch.__version__}, {where}"


def _self_check() -> None:
    """Measure known allocations: 64 MiB, then 64 MiB plus a 64 MiB temporary (peak 128 MiB)."""
    rows = 64 * _MIB // 4

    def one_tensor():
        torch.ones(rows)

    def two_tensors():
        x = torch.ones(rows)
        return (x * 2).sum()

    print(f"expected ~64 MiB, measured {_format(peak_memory_mib(one_tensor))} MiB")
    print(f"expected ~128 MiB, measured {_format(peak_memory_mib(two_tensors))} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Check the harness's CPU peak-memory measurement.")
    parser.add_argument("--self-check", action="store_true", help="measure known allocations and print them.")
    if parser.parse_args().self_check:
        _self_check()
    else:
        parser.print_help()
