import json

import pytest
import torch
from accelerate import Accelerator

from hf_clipzoo.training import JsonlTracker, build_trackers, check_finite, read_jsonl_log


def test_check_finite():
    check_finite(torch.tensor(1.5), step=3)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match="step 7"):
            check_finite(torch.tensor(bad), step=7)


def test_build_trackers(caplog):
    trackers = build_trackers("logs")
    assert len(trackers) == 1 and isinstance(trackers[0], JsonlTracker)
    with caplog.at_level("WARNING"):
        trackers = build_trackers("logs", "jsonl,tensorboard")
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        assert len(trackers) == 1 and "not installed" in caplog.text
    with pytest.raises(ValueError, match="Unknown --report_to"):
        build_trackers("logs", "mlflowz")


def test_jsonl_tracker_through_accelerate(tmp_path):
    accelerator = Accelerator(cpu=True, log_with=build_trackers(tmp_path / "logs"), project_dir=str(tmp_path))
    accelerator.init_trackers("run", config={"lr": 1e-3, "name": "x"})
    accelerator.log({"train/loss": 1.25, "bad": float("nan")}, step=1)
    accelerator.log({"train/loss": 0.5}, step=2)
    accelerator.end_training()
    lines = [json.loads(x) for x in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "config" and lines[0]["config"]["lr"] == 1e-3
    records = read_jsonl_log(tmp_path / "logs" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["train/loss"] == 1.25 and records[0]["bad"] == "nan"
