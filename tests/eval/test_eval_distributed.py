"""Two CPU processes (gloo): sharded evaluation gathers to exactly the single-process result."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from accelerate import Accelerator
    sys.path.insert(0, {tests_dir!r})
    from eval_testing_utils import random_images, tiny_clip_config, tiny_processor
    import datasets
    from transformers import CLIPModel
    from hf_clipzoo.eval import evaluate_zero_shot
    from hf_clipzoo.eval.embeddings import map_batches

    accelerator = Accelerator(cpu=True)
    # 7 items in batches of 2 over 2 processes: the last step is padded with duplicates that must be dropped.
    rows = map_batches(7, 2, lambda idx: {{"value": torch.tensor(idx) * 10, "rank": torch.full((len(idx),), accelerator.process_index)}}, accelerator)
    torch.manual_seed(0)
    model = CLIPModel(tiny_clip_config()).eval()
    names = ["a", "b", "c", "d", "e"]
    features = datasets.Features({{"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}})
    data = datasets.Dataset.from_dict({{"image": random_images(9, 7), "label": [i % 5 for i in range(9)]}}, features=features)
    metrics = evaluate_zero_shot(model, tiny_processor(), data, batch_size=2, accelerator=accelerator)
    single = evaluate_zero_shot(model, tiny_processor(), data, batch_size=2)
    if accelerator.is_main_process:
        print("RESULT" + json.dumps({{"values": rows["value"].tolist(), "ranks": rows["rank"].tolist(),
                                     "world": accelerator.num_processes, "metrics": metrics, "single": single}}))
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_gather_in_order(tmp_path):
    script = tmp_path / "dist_eval.py"
    script.write_text(SCRIPT.format(tests_dir=str(Path(__file__).parent)))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(script),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    assert out["world"] == 2
    assert out["values"] == [10 * i for i in range(7)]  # every item once, in order
    assert set(out["ranks"]) == {0, 1}  # both processes did part of the work
    assert out["metrics"] == out["single"]
