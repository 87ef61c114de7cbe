"""`hf-clipzoo --help` answers without torch or transformers; the commands still find every method when they run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_clipzoo import cli
from hf_clipzoo.options import PRESETS, TASKS

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("bench", "foundations", "report", "eval", "caption", "list")


def start_fresh(code: str) -> subprocess.Popen:
    """Start `code` in a fresh interpreter (nothing imported yet)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def report_of(process: subprocess.Popen) -> dict:
    """The JSON a `start_fresh` interpreter printed last."""
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-4000:]
    return json.loads(stdout.strip().splitlines()[-1])


def run_fresh(code: str) -> dict:
    return report_of(start_fresh(code))


def test_help_of_every_command_imports_neither_torch_nor_transformers():
    report = run_fresh(
        f"""
        import contextlib, io, json, runpy, sys
        exits = {{}}
        for argv in [["--help"], *[[name, "--help"] for name in {list(SUBCOMMANDS)!r}]]:
            sys.argv = ["hf-clipzoo", *argv]
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    runpy.run_module("hf_clipzoo.cli", run_name="__main__", alter_sys=True)
                except SystemExit as exit:
                    exits[" ".join(argv)] = exit.code
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "transformers"}})
        print(json.dumps({{"exits": exits, "heavy": heavy}}))
        """
    )
    assert report["exits"] == {"--help": 0, **{f"{name} --help": 0 for name in SUBCOMMANDS}}
    assert report["heavy"] == []


FIRST_IMPORTS = ["import hf_clipzoo", "from hf_clipzoo.models.clip import ZooCLIPModel"]  # a model module first


@pytest.fixture(scope="module")
def first_import_reports() -> dict[str, dict]:
    # Every first import in its own fresh interpreter, all at once: each is bound by one core's import time.
    processes = {
        first_import: start_fresh(
            f"""
            import json, sys
            {first_import}
            light = not any(m.split(".")[0] in {{"torch", "transformers"}} for m in sys.modules)
            from transformers import AutoConfig
            config = AutoConfig.for_model("clipzoo-fff")
            from hf_clipzoo.registry import METHOD_PACKAGES, list_methods
            from hf_clipzoo.bench import BENCH_ENTRIES
            print(json.dumps({{"light": light, "config": type(config).__name__, "packages": list(METHOD_PACKAGES),
                              "listed": [m["name"] for m in list_methods()], "bench": sorted(BENCH_ENTRIES)}}))
            """
        )
        for first_import in FIRST_IMPORTS
    }
    return {first_import: report_of(process) for first_import, process in processes.items()}


@pytest.mark.parametrize("first_import", FIRST_IMPORTS)
def test_any_first_import_then_auto_classes_find_the_zoo(first_import, first_import_reports):
    """The package is light to import, yet importing it still registers every method before an Auto class is used
    (no circular import whichever module comes first)."""
    report = first_import_reports[first_import]
    assert report["light"] == (first_import == "import hf_clipzoo")
    assert report["config"] == "FFFConfig"
    # What the bench runs: every registered method that has a @bench_entry.
    assert report["listed"] == report["packages"]
    assert set(report["packages"]) <= set(report["bench"])


def test_every_exported_name_still_imports():
    import hf_clipzoo

    for name in hf_clipzoo.__all__:
        assert getattr(hf_clipzoo, name) is not None, name
    from hf_clipzoo import DivaPipeline, ZooCLIPModel  # noqa: F401

    with pytest.raises(AttributeError, match="no attribute 'NotAModel'"):
        hf_clipzoo.NotAModel  # noqa: B018


def test_parser_choices_are_the_ones_that_run(capsys):
    from hf_clipzoo import bench
    from hf_clipzoo.eval import cli as eval_cli

    assert bench.PRESETS is PRESETS and eval_cli.TASKS is TASKS
    with pytest.raises(SystemExit):
        cli.main(["bench", "--preset", "huge"])
    assert f"choose from {', '.join(map(repr, PRESETS))}" in capsys.readouterr().err


def test_list_shows_every_method(capsys):
    assert cli.main(["list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    from hf_clipzoo.registry import METHOD_PACKAGES

    assert listed == list(METHOD_PACKAGES)
