"""Launching 2 gloo processes that run loss cases, for the distributed-invariant tests.

A cases module (`_distributed_*cases.py`) defines `CASES`, `run_case(name) -> {key: tensor}` and optionally
`before_cases()` (checks of its own, e.g. of the gathers). This file, run as

    python tests/losses/distributed_utils.py --rank R --world-size 2 --out DIR CASES_MODULE...

runs every case of every module under `torch.distributed` and writes `DIR/results.safetensors` with keys
`"<module stem>/<case>.<key>"`: one launch for all modules, since each launch pays two torch imports. The test
computes `run_case` in its own (non-distributed) process on the global batch and compares.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def load_cases_module(worker: Path):
    """Import a worker by path (independent of pytest's import mode and sys.path)."""
    name = f"_clipzoo_{worker.stem.lstrip('_')}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, worker)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_two_processes(workers: list[Path], out: Path, timeout: float = 120) -> dict[str, dict[str, torch.Tensor]]:
    """Run the cases of every module in `workers` on 2 gloo processes, in one launch; each module's results by its
    file stem, or a test failure with both processes' logs."""
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    command = [sys.executable, __file__, "--world-size", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            command + ["--rank", str(rank), *map(str, workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        for rank in range(2)
    ]
    logs = []
    for process in processes:
        try:
            logs.append(process.communicate(timeout=timeout)[0].decode(errors="replace"))
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
    failed = [rank for rank, process in enumerate(processes) if process.returncode != 0]
    # A rank that aborts after both ranks passed the final barrier (its marker is written there) has computed and
    # exchanged everything the test compares; what failed is gloo's teardown ("terminate called without an active
    # exception": once in several CI runs, never in 40 runs here beside 3 busy processes on 2 cores). Earlier fails.
    if any(not (out / f"rank{rank}.done").exists() for rank in failed) or not (out / "results.safetensors").exists():
        pytest.fail(
            "distributed worker failed:\n"
            + "\n---\n".join(
                f"rank {rank} (exit code {p.returncode}):\n{log}" for rank, (p, log) in enumerate(zip(processes, logs))
            )
        )
    for rank in failed:
        warnings.warn(
            f"distributed worker rank {rank} exited with code {processes[rank].returncode} in gloo's teardown, after "
            f"its cases were done:\n{logs[rank]}",
            stacklevel=2,
        )
    results = {worker.stem: {} for worker in workers}
    for key, value in load_file(str(out / "results.safetensors")).items():
        stem, name = key.split("/", 1)
        results[stem][name] = value
    return results


def assert_cases_match(distributed: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], case: str) -> None:
    """Every tensor of the single-process reference equals the distributed run's (atol / rtol 1e-5)."""
    for key, expected in reference.items():
        actual = distributed[f"{case}.{key}"]
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5, msg=lambda m, key=key: f"{case} {key}: {m}")


def _worker_main() -> None:
    """One rank: join the gloo group, run every module's `before_cases()` and cases, and let rank 0 write
    `results.safetensors`."""
    import argparse
    import faulthandler

    from safetensors.torch import save_file

    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--out", required=True, help="folder where rank 0 writes results.safetensors")
    parser.add_argument("workers", nargs="+", type=Path, help="the cases modules")
    args = parser.parse_args()
    faulthandler.enable()  # an abort in C++ prints every thread's Python stack: where it happened, for the test log
    torch.set_num_threads(1)
    modules = [load_cases_module(worker) for worker in args.workers]
    # A file in the run's fresh folder as the rendezvous, not a TCP port: a port picked free can be taken by another
    # distributed run of the suite (the shared launch runs in the background) before this one binds it.
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{Path(args.out).resolve()}/rendezvous", rank=args.rank, world_size=args.world_size
    )
    try:
        results = {}
        for worker, module in zip(args.workers, modules):
            if hasattr(module, "before_cases"):
                module.before_cases()
            for case in module.CASES:
                results.update({f"{worker.stem}/{case}.{key}": value for key, value in module.run_case(case).items()})
        if args.rank == 0:
            save_file(
                {key: value.contiguous() for key, value in results.items()},
                str(Path(args.out) / "results.safetensors"),
            )
        # Both ranks leave together: a rank tearing gloo down while its peer still talks to it can abort in C++
        # ("terminate called without an active exception"), seen once on a loaded machine.
        torch.distributed.barrier()
        (Path(args.out) / f"rank{args.rank}.done").touch()
    finally:
        torch.distributed.destroy_process_group()
    # Skip the interpreter's finalisation: gloo objects it would destroy late are one known source of that abort
    # (pytorch/pytorch#179291); everything this process had to write is written and closed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    # Run as a script: the repository root may not be on sys.path.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    _worker_main()
