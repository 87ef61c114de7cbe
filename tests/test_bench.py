"""`hf-clipzoo bench --preset smoke`: the main job end to end, through the CLI, on the embedded world."""

import json

from hf_clipzoo import bench
from hf_clipzoo.cli import main as cli_main
from hf_clipzoo.registry import PLANNED_METHODS


def test_smoke_bench_through_the_cli(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--preset", "smoke", "--output_dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    methods = results["methods"]
    assert methods["clip"]["status"] == "ran" and methods["siglip"]["status"] == "ran"
    baseline = methods["clip"]["rows"]["CLIP (InfoNCE)"]
    for key in ("zero_shot/top1_accuracy", "train/loss"):
        assert key in baseline["metrics"], sorted(baseline["metrics"])
    assert any(k.startswith("retrieval/") for k in baseline["metrics"])
    assert (out / "clip" / "final" / "model.safetensors").is_file()
    # Every planned method is accounted for: it ran, failed visibly, or is listed as missing — never silently absent.
    for name in PLANNED_METHODS:
        assert name in methods, name
        assert methods[name]["status"] == "ran" or methods[name]["status"].startswith("missing"), methods[name][
            "status"
        ]
    report = (out / "results.md").read_text()
    assert "## clip" in report and "zero_shot/top1_accuracy" in report
    assert (out / "plots" / "learning_curves.png").stat().st_size > 1000
    assert "results.md" in capsys.readouterr().out


def test_a_failing_method_is_reported_and_the_cli_fails(tmp_path, monkeypatch):
    def broken(context):
        raise RuntimeError("boom")

    monkeypatch.setitem(bench.BENCH_ENTRIES, "siglip", broken)
    assert cli_main(["bench", "--preset", "smoke", "--output_dir", str(tmp_path), "--methods", "siglip"]) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["methods"]["siglip"]["status"] == "failed: RuntimeError: boom"
    assert results["methods"]["clip"]["status"] == "ran"
