"""Shared pytest set-up: offline Hub, CPU-only, deterministic seeds, and the suite's own duration."""

import os
import time

# No test may reach the network: everything the project needs is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

_SUITE_START = time.perf_counter()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    # Remote-code modules and datasets caches go to a per-session folder, never to the user's cache.
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_MODULES_CACHE", str(home / "modules"))


def pytest_collection_modifyitems(items):
    # Tests that only read the background interpreter's outcome run last, so that it overlaps the rest of the suite
    # (a stable sort: every other test keeps its order).
    items.sort(key=lambda item: hasattr(getattr(item, "obj", None), "without_package_case"))


@pytest.fixture(scope="session", autouse=True)
def _without_package_run(request, tmp_path_factory):
    from tests.testing_utils import PackagelessRun

    # Every selected case at once, started before the first test: one fresh interpreter for the session, in the
    # background, not one per test.
    home = tmp_path_factory.getbasetemp() / "hf_home"
    with pytest.MonkeyPatch.context() as monkeypatch:  # the cases' preparation writes no cache of the user's either
        monkeypatch.setenv("HF_HOME", str(home))
        monkeypatch.setenv("HF_MODULES_CACHE", str(home / "modules"))
        run = PackagelessRun(request.session.items, tmp_path_factory.mktemp("without_package"))
    yield run
    run.close()


@pytest.fixture
def without_package(request, _without_package_run):
    """This test's outcome in the session's one fresh interpreter without `hf_clipzoo` (`checked_without_package`)."""
    return _without_package_run.outcomes()[request.node.nodeid]


@pytest.fixture(scope="session")
def smoke_bench(tmp_path_factory):
    """The output folder of one `hf-clipzoo bench --preset smoke` run, shared by every test that reads a bench run
    (the bench's own checks, its determinism test, the README's snippets): the run takes minutes, so it runs once."""
    from hf_clipzoo.cli import main as cli_main

    out = tmp_path_factory.mktemp("smoke") / "bench_out"
    assert cli_main(["bench", "--preset", "smoke", "--output_dir", str(out)]) == 0
    return out


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"hf-clipzoo suite duration: {time.perf_counter() - _SUITE_START:.1f} s")
