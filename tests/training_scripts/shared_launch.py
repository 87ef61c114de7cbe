"""Several training scripts' 2-process runs in ONE `accelerate launch` (each launch pays a launcher and two
torch + transformers + hf_clipzoo imports; the runs themselves are a few tiny steps).

A test declares its run with `@in_shared_launch(prepare)`: `prepare(folder)` writes what the run needs into `folder`
and returns `(script name, argv)`. Before the first test, the session launches every selected test's run in the
background, one after another in the same 2 processes and process group; those tests run last, and each reads its
own `LaunchOutcome`: the rank-0 log of its run (stdout, stderr and logging), whether it raised, and its folder. A run that raises ends the launch (the other rank
could otherwise wait forever in a collective), so the runs after it report that they never ran.

Run as a script, this file is the launched program: `shared_launch.py RUNS_JSON`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path


def in_shared_launch(prepare):
    """Mark a test whose 2-process run joins the session's shared launch (the `shared_launch` fixture)."""

    def mark(test):
        test.shared_launch_run = prepare
        return test

    return mark


@dataclasses.dataclass
class LaunchOutcome:
    folder: Path
    error: str | None  # the run's traceback (per rank that raised), or why the launch never finished it
    log: str  # rank 0's stdout, stderr and logging during the run


class SharedLaunch:
    """The `in_shared_launch` run of every collected item, prepared now and launched on 2 CPU processes in the
    background (the rest of the suite runs meanwhile); `outcomes()` waits for the launch and returns each test's
    outcome by node id."""

    def __init__(self, items, folder: Path, port: int):
        # Imported here: run as the launched script, this file has the repository on its path only in `_run_all`.
        from tests.background import BackgroundProcess

        self.folder, self.runs, self.background = folder, [], None
        self._outcomes = None
        for index, item in enumerate(items):
            prepare = getattr(getattr(item, "obj", None), "shared_launch_run", None)
            if prepare is None:
                continue
            run_folder = folder / f"run{index}"
            run_folder.mkdir()
            script, argv = prepare(run_folder)
            self.runs.append(
                {"nodeid": item.nodeid, "folder": str(run_folder), "script": script, "argv": [str(a) for a in argv]}
            )
        if not self.runs:
            return
        runs_file = folder / "runs.json"
        runs_file.write_text(json.dumps(self.runs))
        env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), __file__, str(runs_file),
        ]  # fmt: skip
        self.background = BackgroundProcess(command, folder / "launcher.log", env=env)

    def outcomes(self) -> dict[str, LaunchOutcome]:
        if self._outcomes is None:
            self._outcomes = self._collect() if self.background is not None else {}
        return self._outcomes

    def close(self) -> None:
        if self.background is not None:
            self.background.close()

    def _collect(self) -> dict[str, LaunchOutcome]:
        status = self.background.finish(timeout=300 + 120 * len(self.runs))
        crash = f"the shared launch {status}:\n{self.background.log()[-6000:]}"
        # A rank that died between runs (outside any run's log) left its traceback here.
        for path in sorted(self.folder.glob("launch.crash.rank*.txt")):
            crash += f"\n{path.name}:\n{path.read_text()}"
        outcomes, ended_at = {}, None
        for run in self.runs:
            run_folder = Path(run["folder"])
            log = (run_folder / "launch.log").read_text() if (run_folder / "launch.log").exists() else ""
            error = None
            if (run_folder / "launch.done").exists() and "Num processes: 2" not in log:
                # Both ranks would each have run the whole script alone, writing the same folder.
                error = "the run finished without setting up 2 processes:\n" + log[-3000:]
            elif not (run_folder / "launch.done").exists():
                raised = [path.read_text() for path in sorted(run_folder.glob("launch.error.rank*.txt"))]
                if raised:
                    ended_at = ended_at or run["nodeid"]
                else:
                    raised = [f"this run never finished; the launch ended at {ended_at or 'this run'}"]
                # Every rank's own log of the run: a rank can fail without raising (killed) and say why there.
                logs = [f"{path.name}:\n{path.read_text()[-3000:]}" for path in sorted(run_folder.glob("launch*.log"))]
                error = "\n".join([*raised, *logs, crash])
            outcomes[run["nodeid"]] = LaunchOutcome(run_folder, error, log)
        return outcomes


def _run_all(runs_file: Path) -> None:
    import traceback

    from accelerate.state import PartialState

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.training_scripts.script_utils import load_training_script

    # One torch process group for every run (the first script sets it up): each script's `end_training()` would
    # otherwise destroy it. Accelerate's state is reset between runs, since what it becomes (its device, e.g.)
    # depends on how the script first asks for it.
    PartialState.destroy_process_group = lambda self, group=None: None
    rank = int(os.environ["RANK"])
    try:
        _run_each(runs_file, rank, load_training_script)
    except BaseException:
        (runs_file.parent / f"launch.crash.rank{rank}.txt").write_text(traceback.format_exc())
        raise


def _run_each(runs_file: Path, rank: int, load_training_script) -> None:
    import contextlib
    import logging
    import traceback

    from accelerate.state import AcceleratorState, GradientState, PartialState

    root = logging.getLogger()
    for run in json.loads(runs_file.read_text()):
        folder = Path(run["folder"])
        # What a fresh process would start from: no accelerate state yet, the scripts' logging level not lowered.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        root.setLevel(logging.INFO)
        log_name = "launch.log" if rank == 0 else f"launch.rank{rank}.log"
        error = None
        with open(folder / log_name, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            handler = logging.StreamHandler(log)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
            try:
                load_training_script(run["script"]).main(run["argv"])
            except BaseException:
                error = traceback.format_exc()
                print(error)
            finally:
                root.removeHandler(handler)
        if error is not None:
            (folder / f"launch.error.rank{rank}.txt").write_text(error)
            # The other rank may be inside a collective: end the launch, the launcher stops both processes.
            os._exit(1)
        PartialState().wait_for_everyone()
        if rank == 0:
            (folder / "launch.done").touch()


if __name__ == "__main__":
    _run_all(Path(sys.argv[1]))
