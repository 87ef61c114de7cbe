"""THE invariant of the loss package: N processes × local batches, with DDP's gradient averaging, give the same loss
and the same gradients as one process on the concatenated batch.

Two CPU processes (gloo) run every case of `_distributed_cases.py` in one launch (a few seconds); this process
computes the single-process reference with the very same code and compares loss and gradients of every parameter
upstream of the embeddings (two Linears, log temperature, bias) at atol 1e-5. Most cases use uneven per-rank
batches (3 + 2 rows), and the masked cases have positives that cross ranks.
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
WORKER = HERE / "_distributed_cases.py"


def _load_cases_module():
    # Loaded by path so the test does not depend on pytest's import mode / sys.path.
    name = "_clipzoo_distributed_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, WORKER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
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
    out = tmp_path_factory.mktemp("distributed_losses")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "--rank",
                str(rank),
                "--world-size",
                "2",
                "--port",
                str(port),
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
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


@pytest.mark.parametrize("case", _load_cases_module().CASES)
def test_two_processes_match_one_process(distributed_results, case):
    cases = _load_cases_module()
    reference = cases.run_case(case)  # torch.distributed is not initialised here: one process, global batch
    for key, expected in reference.items():
        actual = distributed_results[f"{case}.{key}"]
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5, msg=lambda m, key=key: f"{case} {key}: {m}")
    if "num_mined" in reference:  # FFF: the cross-rank duplicates were mined (4 image-image + 2 text-text pairs)
        assert reference["num_mined"].item() >= 6
    # The comparison would fail if the distributed run dropped gradients: they are far from zero.
    assert reference["grad.image_proj.weight"].abs().max() > 1e-3
    assert reference["grad.text_proj.weight"].abs().max() > 1e-3
