"""`hf-clipzoo bench --preset smoke`: the main job end to end, through the CLI, on the embedded world."""

import json
from pathlib import Path

import numpy as np
import pytest

from hf_clipzoo import bench
from hf_clipzoo.cli import main as cli_main
from hf_clipzoo.registry import PLANNED_METHODS


def test_smoke_bench_through_the_cli(smoke_bench):
    out = smoke_bench
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    methods = results["methods"]
    assert methods["clip"]["status"] == "ran"
    baseline = methods["clip"]["rows"]["CLIP (InfoNCE), shipped foundation"]
    assert "zero_shot/top1_accuracy" in baseline["metrics"], sorted(baseline["metrics"])
    assert any(k.startswith("retrieval/") for k in baseline["metrics"])
    # Every claim is in the table: measured with an interval, or marked as not measured — never silently absent.
    claims = results["claims"]
    assert {c["method"] for c in claims} == set(bench.CLAIMS)
    for claim in claims:
        assert claim["status"] == "measured", claim
        assert isinstance(claim["holds"], bool)
        if claim["low"] is not None:
            assert claim["low"] <= claim["difference"] <= claim["high"], claim
    # Every planned method is accounted for: it ran, failed visibly, or is listed as missing — never silently absent.
    for name in PLANNED_METHODS:
        assert name in methods, name
        assert methods[name]["status"] == "ran" or methods[name]["status"].startswith("missing"), methods[name][
            "status"
        ]
    report = (out / "results.md").read_text()
    assert "## Claims:" in report and "## clip" in report and "zero_shot/top1_accuracy" in report
    for plot in ("learning_curves.png", "claims.png", "fff_claims.png"):
        assert (out / "plots" / plot).stat().st_size > 1000, plot


def _without_timings(value):
    """results.json minus what a clock measures (seconds, step times, peak memory)."""
    timed = ("seconds", "total_seconds", "train/step_seconds", "train/peak_memory_mb")
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in timed and k != "curve"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _measured(results: dict, out: Path) -> str:
    """What a run measured, as comparable text: no timings, and its output folder's path replaced."""
    return json.dumps(_without_timings(results), sort_keys=True).replace(str(out), "OUT")


# Slow: a second full smoke run. By default `test_a_run_stopped_part_way...` re-runs the baseline and FFF and
# compares them with the session's run, which checks the same same-seed guarantee on two of its methods.
@pytest.mark.slow
def test_the_same_seed_gives_the_same_results(smoke_bench, tmp_path):
    # The shared run (tests/conftest.py) is the first; one more run is the second.
    again = tmp_path / "again"
    assert cli_main(["bench", "--preset", "smoke", "--output_dir", str(again)]) == 0
    first = json.loads((smoke_bench / "results.json").read_text())
    second = json.loads((again / "results.json").read_text())
    # Paths differ between the two output folders; everything measured must not.
    assert _measured(first, smoke_bench) == _measured(second, again)


def test_a_run_stopped_part_way_leaves_the_report_of_what_finished(smoke_bench, tmp_path, monkeypatch):
    def interrupted(context):
        raise KeyboardInterrupt

    (tmp_path / "results.md").write_text("a previous run's report")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "claims.png").write_bytes(b"a previous run's plot")
    monkeypatch.setitem(bench.BENCH_ENTRIES, "dreamlip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench("smoke", tmp_path, methods=["fff", "dreamlip"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["complete"] is False and results["methods"]["clip"]["status"] == "ran"
    assert results["methods"]["fff"]["status"] == "ran" and "dreamlip" not in results["methods"]
    assert "previous run" not in (tmp_path / "results.md").read_text()
    assert results["plots"] == [] and not (tmp_path / "plots").exists()  # plots come with the complete report
    # Same seed, same numbers: what finished equals the session's full run of the same methods.
    full = json.loads((smoke_bench / "results.json").read_text())
    for method in ("clip", "fff"):
        assert _measured(results["methods"][method], tmp_path) == _measured(full["methods"][method], smoke_bench)


def test_a_failing_method_is_reported_and_the_cli_fails(tmp_path, monkeypatch):
    def broken(context):
        raise RuntimeError("boom")

    monkeypatch.setitem(bench.BENCH_ENTRIES, "siglip", broken)
    assert cli_main(["bench", "--preset", "smoke", "--output_dir", str(tmp_path), "--methods", "siglip"]) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["methods"]["siglip"]["status"] == "failed: RuntimeError: boom"
    assert results["methods"]["clip"]["status"] == "ran"


def test_a_bench_entry_for_a_method_outside_planned_methods_is_an_error():
    # run_bench only runs the methods of PLANNED_METHODS: such an entry would silently never run.
    with pytest.raises(ValueError, match="PLANNED_METHODS"):
        bench.bench_entry("not_planned")
    assert "not_planned" not in bench.BENCH_ENTRIES
    assert set(bench.BENCH_ENTRIES) <= set(PLANNED_METHODS) | set(bench.BASELINES)


def test_every_folder_the_smoke_bench_writes_loads_without_the_package(smoke_bench, smoke_bench_walk):
    """Each kind of model folder of the smoke run, and the shipped foundations it starts from, through its library's
    standard entry point (Auto classes, `pipeline`, `PeftModel`, `DiffusionPipeline`) in one interpreter without
    hf_clipzoo (one folder per distinct kind: a method's variants differ only in their weights; the walk runs in the
    background after the bench, `BackgroundWalk`); every card of every folder follows the Hub metadata rules."""
    from huggingface_hub import ModelCard

    from hf_clipzoo.hub.model_card import card_rule_violations
    from tests.hub import standard_entry_points

    roots = [smoke_bench, Path(__file__).resolve().parents[1] / "foundations"]
    folders = standard_entry_points.model_folders(roots)
    kinds = {kind for kind in folders.values()}
    assert kinds == {"transformers", "peft", "diffusers"}, kinds
    for folder in folders:
        assert (folder / "README.md").is_file(), f"{folder} has no model card"
        assert card_rule_violations(ModelCard.load(folder / "README.md")) == [], folder
    report = smoke_bench_walk
    assert sorted(report) == sorted(map(str, standard_entry_points.distinct_folders(roots)))
    loaded = "\n".join(entry for entries in report.values() for entry in entries)
    for expected in ("pipeline('zero-shot-image-classification')", "pipeline('zero-shot-image-segmentation')",
                     "pipeline('few-shot-video-classification')", "PeftModel on MACLIPModel",
                     "DiffusionPipeline -> DivaPipeline", "DiffusionPipeline -> StableDiffusionPipeline"):  # fmt: skip
        assert expected in loaded, (expected, report)


def test_a_claim_whose_interval_starts_at_zero_is_still_drawn(tmp_path):
    # A lower bound of exactly 0.0 (DIVA's unchanged pairs, a tie at the interval's end) is a measurement, not a
    # missing one: its method figure must show it.
    claim = {
        "method": "diva", "claim": "after > before", "metric": "MMVP pair accuracy", "rule": ">", "chance": 0.25,
        "method_value": 0.26, "control_value": 0.26, "difference": 0.0, "low": 0.0, "high": 0.0, "holds": False,
    }  # fmt: skip
    assert bench.plot_method_claims("diva", [claim], tmp_path) == "plots/diva_claims.png"
    assert (tmp_path / "diva_claims.png").stat().st_size > 1000


def test_a_claim_over_several_seeds_pools_their_items_and_lists_each_seeds_difference(tmp_path):
    from hf_clipzoo.eval.outcomes import paired_bootstrap, save_outcomes

    rng = np.random.default_rng(0)
    hits = {seed: (rng.random((2, 50 + 10 * seed)) < [[0.6], [0.4]]).astype(int) for seed in range(3)}
    runs = []
    for seed, (method, control) in hits.items():
        save_outcomes(tmp_path / f"seed-{seed}", {"m/test_correct": method, "c/test_correct": control})
        runs.append({"run_dir": str(tmp_path / f"seed-{seed}")})
    row = bench.claim_row(
        "ape", "m > c", "top-1", runs, runs, method_outcome=lambda o: o["m/test_correct"],
        control_outcome=lambda o: o["c/test_correct"], unit="test images",
    )  # fmt: skip
    # Naively: every seed's items in one pool, and each seed's own mean difference.
    pooled_method = np.concatenate([hits[s][0] for s in range(3)])
    pooled_control = np.concatenate([hits[s][1] for s in range(3)])
    expected = paired_bootstrap(pooled_method, pooled_control, num_resamples=bench.NUM_RESAMPLES, seed=0)
    assert row["num_items"] == 50 + 60 + 70
    assert row["difference"] == pytest.approx(pooled_method.mean() - pooled_control.mean())
    assert (row["low"], row["high"]) == (expected["low"], expected["high"])
    assert row["per_seed_differences"] == pytest.approx([hits[s][0].mean() - hits[s][1].mean() for s in range(3)])
    assert "of 3 seeds pooled" in row["interval"]
    # A seed that did not run leaves the claim unmeasured, not measured on fewer seeds.
    missing = bench.claim_row("ape", "m > c", "top-1", [*runs[:2], None], runs[:2] + [None], method_outcome=len)
    assert missing["status"].startswith("not measured") and not missing["holds"]
    # Lists of different lengths cannot be paired.
    unpaired = bench.claim_row("ape", "m > c", "top-1", runs, runs[:2], method_outcome=len)
    assert unpaired["status"].startswith("not measured")
