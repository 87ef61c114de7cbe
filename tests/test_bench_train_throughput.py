"""`benchmarks/bench_train_throughput.py` runs every image-text script's own set-up and step, and its reference."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# clip runs by default; the other scripts (~15 s each on a loaded CPU) with the slow tests.
@pytest.mark.parametrize(
    "script", ["clip", *(pytest.param(name, marks=pytest.mark.slow) for name in ("fff", "dreamlip", "groupvit"))]
)
def test_one_script_step_and_pipeline_run_and_report_throughput(bench, script, tmp_path):
    results = bench.benchmark(
        (script,), shape="world-micro", batch=2, repeats=1, warmup=1, num_images=4, workdir=tmp_path
    )
    assert [len(results["steps"]), len(results["pipeline"])] == [1, 1]
    for row in results["steps"] + results["pipeline"]:
        assert row.images_per_call == 2
        assert row.candidate_images_per_s > 0 and row.reference_images_per_s > 0
        assert row.comparison.candidate_ms > 0 and row.comparison.reference_ms > 0
    assert script in results["steps"][0].comparison.name
    assert "| training step" in bench.images_table(results["steps"])


def test_script_step_trains_the_scripts_model(bench, tmp_path):
    dataset = bench.write_jpeg_folder(tmp_path / "jpegs", 4)
    setup = bench.setup_script("clip", dataset, tmp_path / "run", shape="world-micro", batch=2)
    before = {name: p.detach().clone() for name, p in setup.model.named_parameters()}
    loss = bench.script_step(setup)()
    assert loss == loss  # finite number, not NaN
    changed = [name for name, p in setup.model.named_parameters() if not (p.detach() == before[name]).all()]
    assert changed, "the step left every parameter unchanged"


def test_unknown_script_is_named(bench, tmp_path):
    with pytest.raises(ValueError, match="script must be one of"):
        bench.setup_script("ape", tmp_path, tmp_path / "run", shape="world-micro", batch=2)
