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


# Fixtures that wait for a background run: the package-less interpreter, the shared 2-process launch, the walk over
# the smoke bench's folders, and the distributed-loss runs (which wait for the shared launch to end).
BACKGROUND_RUNS = {"without_package", "shared_launch", "smoke_bench_walk", "two_process_results"}


def pytest_collection_modifyitems(items):
    # Tests that wait for a background run run last, so that those runs overlap the rest of the suite (a stable sort:
    # every other test keeps its order).
    items.sort(key=lambda item: bool(BACKGROUND_RUNS & set(getattr(item, "fixturenames", ()))))


@pytest.fixture(scope="session")
def _session_hf_home(tmp_path_factory):
    # What session fixtures prepare writes no cache of the user's either (tests get the same folder per test).
    home = tmp_path_factory.getbasetemp() / "hf_home"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HF_HOME", str(home))
        monkeypatch.setenv("HF_MODULES_CACHE", str(home / "modules"))
        yield home


@pytest.fixture(scope="session", autouse=True)
def _without_package_run(request, tmp_path_factory, _session_hf_home):
    from tests.testing_utils import PackagelessRun

    # Every selected case at once, started before the first test: one fresh interpreter for the session, in the
    # background, not one per test.
    run = PackagelessRun(request.session.items, tmp_path_factory.mktemp("without_package"))
    yield run
    run.close()


@pytest.fixture
def without_package(request, _without_package_run):
    """This test's outcome in the session's one fresh interpreter without `hf_clipzoo` (`checked_without_package`)."""
    return _without_package_run.outcomes()[request.node.nodeid]


@pytest.fixture(scope="session", autouse=True)
def _shared_launch(request, tmp_path_factory, _session_hf_home):
    from tests.training_scripts.script_utils import free_port
    from tests.training_scripts.shared_launch import SharedLaunch

    # Every selected test's 2-process run, started before the first test: one `accelerate launch` for the session.
    launch = SharedLaunch(request.session.items, tmp_path_factory.mktemp("shared_launch"), free_port())
    yield launch
    launch.close()


@pytest.fixture
def shared_launch(request, _shared_launch):
    """This test's run in the session's one 2-process launch (`in_shared_launch`)."""
    return _shared_launch.outcomes()[request.node.nodeid]


@pytest.fixture(scope="session")
def _smoke_bench_run(request, tmp_path_factory, _session_hf_home):
    from hf_clipzoo.cli import main as cli_main
    from tests.testing_utils import REPO_ROOT, BackgroundWalk

    out = tmp_path_factory.mktemp("smoke") / "bench_out"
    assert cli_main(["bench", "--preset", "smoke", "--output_dir", str(out)]) == 0
    # The package-less walk over what it wrote starts at once, when a selected test reads it (that test runs last).
    wanted = any("smoke_bench_walk" in getattr(item, "fixturenames", ()) for item in request.session.items)
    walk = BackgroundWalk([out, REPO_ROOT / "foundations"], tmp_path_factory.mktemp("walk")) if wanted else None
    yield out, walk
    if walk is not None:
        walk.close()


@pytest.fixture(scope="session")
def smoke_bench(_smoke_bench_run):
    """The output folder of one `hf-clipzoo bench --preset smoke` run, shared by every test that reads a bench run
    (the bench's own checks, its determinism test, the README's snippets): the run takes a minute, so it runs once.
    In-process and in the foreground: in the background its torch threads would oversubscribe the suite's."""
    return _smoke_bench_run[0]


@pytest.fixture
def smoke_bench_walk(_smoke_bench_run):
    """Folder -> entry points that loaded it, from the package-less walk (`BackgroundWalk`) over the smoke run's
    folders and the shipped foundations."""
    return _smoke_bench_run[1].report()


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"hf-clipzoo suite duration: {time.perf_counter() - _SUITE_START:.1f} s")
