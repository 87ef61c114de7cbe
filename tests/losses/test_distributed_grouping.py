"""DreamLIP's losses keep the invariant of the loss package: 2 gloo processes × uneven local batches (3 + 2 images,
3 caption slots each), with DDP's gradient averaging, give the loss and gradients of one process on all 5 images.

The worker runs every case of `_distributed_grouping_cases.py` in one launch; this process computes the single-process
reference with the same code and compares loss and every parameter gradient at atol 1e-5.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_distributed_grouping_cases.py"


def _cases_module():
    name = "_clipzoo_distributed_grouping_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, WORKER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory) -> dict[str, torch.Tensor]:
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    out = tmp_path_factory.mktemp("distributed_grouping")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(WORKER), "--world-size", "2", "--port", str(port), "--out", str(out)]
    processes = [
        subprocess.Popen(command + ["--rank", str(rank)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        for rank in range(2)
    ]
    logs = []
    for process in processes:
        try:
            logs.append(process.communicate(timeout=120)[0].decode(errors="replace"))
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
    if any(process.returncode != 0 for process in processes):
        pytest.fail("distributed worker failed:\n" + "\n---\n".join(logs))
    return load_file(str(out / "results.safetensors"))


@pytest.mark.parametrize("case", _cases_module().CASES)
def test_two_processes_match_one_process(distributed_results, case):
    reference = _cases_module().run_case(case)  # not distributed here: one process, the global batch
    for key, expected in reference.items():
        actual = distributed_results[f"{case}.{key}"]
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5, msg=lambda m, key=key: f"{case} {key}: {m}")
    # Far-from-zero gradients: a distributed run that dropped the other rank's contributions would not match.
    assert reference["grad.text_proj.weight"].abs().max() > 1e-3
    if case.startswith("sgl"):
        assert reference["grad.patch_proj.weight"].abs().max() > 1e-3
        assert reference["grad.logit_scale_local"].abs() > 1e-4
    else:
        assert reference["grad.image_proj.weight"].abs().max() > 1e-3
