"""The shared test battery every model class of the zoo runs (DESIGN.md §6), plus tiny-config helpers.

A model's test module defines a small tester (tiny config + inputs) and a test class:

    class ZooCLIPModelTest(ClipZooModelTesterMixin):
        model_class = ZooCLIPModel
        def get_config(self): ...
        def prepare_inputs(self, config): ...  # kwargs for forward(), without return_loss

The battery checks what users rely on: config round-trip, save/load with equal outputs, the Auto classes,
remote-code loading in a fresh interpreter where `hf_clipzoo` cannot be imported, backward reaching every parameter
(DDP would otherwise hang or error), gradient checkpointing equivalence, eval determinism, `return_loss`
finite and differentiable, and invalid configs rejected.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers

from tests.background import BackgroundProcess
from tests.hub.standard_entry_points import run_on_tiny_input

REPO_ROOT = Path(__file__).resolve().parents[1]

# Kept as the transformers CLIP tester's sizes, with special token ids inside the tiny vocabulary.
TINY_TEXT_CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,
    bos_token_id=97,
    eos_token_id=98,
    pad_token_id=98,
)
TINY_VISION_CONFIG = dict(
    image_size=30, patch_size=2, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4
)

# Run in a fresh interpreter: make `hf_clipzoo` unimportable, as for a user who never installed it.
BLOCK_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_clipzoo" or name.startswith("hf_clipzoo."):
                raise ImportError("hf_clipzoo is not installed in this interpreter")
    sys.meta_path.insert(0, _Block())
    """
)


def tiny_input_ids(batch_size: int, seq_len: int = 7, vocab_size: int = 99, eos_token_id: int = 98) -> torch.Tensor:
    """Random ids in [0, eos) ending with EOS, which the CLIP text tower pools at."""
    ids = torch.randint(0, eos_token_id - 1, (batch_size, seq_len))
    ids[:, -1] = eos_token_id
    return ids


def packageless_env(extra: dict) -> dict:
    """The environment of a fresh interpreter without `hf_clipzoo`: offline, the repository not on the path."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **extra}
    env.pop("PYTHONPATH", None)
    return env


def run_without_package(
    code: str, cwd: Path, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter in which `import hf_clipzoo` fails.

    Each call pays a full torch + transformers import; a check that needs nothing of the calling test but files is
    cheaper as a `checked_without_package` case, which shares one interpreter with every other such case."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_PACKAGE + textwrap.dedent(code)],
        cwd=cwd,
        env=packageless_env(env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr[-4000:]}")
    return result


# --- checks shared by one fresh interpreter ----------------------------------------------------------------------
def checked_without_package(prepare):
    """Mark a test whose check runs as code in a fresh interpreter without `hf_clipzoo`, shared with every other such
    test of the session (one torch + transformers import instead of one per test).

    `prepare(folder)` (`prepare(self, folder)` on a test class) writes what the check needs into `folder` and returns
    the code, which runs with `folder` as working directory. The test takes the `without_package` fixture, this
    case's `PackagelessOutcome`, and asserts on it; a failing case names its own test."""

    def mark(test):
        test.without_package_case = prepare
        return test

    return mark


@dataclasses.dataclass
class PackagelessOutcome:
    error: str | None  # the traceback of the case's code, or why the shared interpreter never finished it
    stdout: str


_CASE_RUNNER = """
import contextlib, io, json, os, sys, traceback
cases = json.load(open(sys.argv[1]))
outcomes = {}
for nodeid, (folder, code) in cases.items():
    os.chdir(folder)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            exec(compile(code, nodeid, "exec"), {"__name__": "__main__"})
        error = None
    except Exception:
        error = traceback.format_exc()
    outcomes[nodeid] = {"error": error, "stdout": stdout.getvalue()}
    # Written after every case, so a crash of the interpreter still reports the cases before it.
    with open(sys.argv[2], "w") as file:
        json.dump(outcomes, file)
"""


class PackagelessRun:
    """Every `checked_without_package` case among the collected `items`, prepared now and run in ONE fresh
    interpreter where `import hf_clipzoo` fails, started in the background: the rest of the suite runs while it
    imports torch and transformers. `outcomes()` waits for it and returns each test's outcome by node id."""

    def __init__(self, items, folder: Path):
        self.cases = {}
        for index, item in enumerate(items):
            prepare = getattr(getattr(item, "obj", None), "without_package_case", None)
            if prepare is None:
                continue
            case_folder = folder / f"case{index}"
            case_folder.mkdir()
            code = prepare(item.instance, case_folder) if item.instance is not None else prepare(case_folder)
            self.cases[item.nodeid] = (str(case_folder), textwrap.dedent(code))
        self.outcomes_file = folder / "outcomes.json"
        self.background = None
        self._outcomes = None
        if not self.cases:
            return
        (folder / "cases.json").write_text(json.dumps(self.cases))
        env = packageless_env({"HF_HOME": str(folder / "hf_home"), "HF_MODULES_CACHE": str(folder / "modules")})
        command = [
            sys.executable,
            "-c",
            BLOCK_PACKAGE + _CASE_RUNNER,
            str(folder / "cases.json"),
            str(self.outcomes_file),
        ]
        self.background = BackgroundProcess(command, folder / "interpreter.log", cwd=folder, env=env)

    def outcomes(self) -> dict[str, PackagelessOutcome]:
        if self._outcomes is None:
            self._outcomes = self._collect() if self.background is not None else {}
        return self._outcomes

    def close(self) -> None:
        if self.background is not None:
            self.background.close()

    def _collect(self) -> dict[str, PackagelessOutcome]:
        status = self.background.finish(timeout=120 + 30 * len(self.cases))
        crash = f"the shared interpreter {status}:\n{self.background.log()[-4000:]}"
        done = json.loads(self.outcomes_file.read_text()) if self.outcomes_file.exists() else {}
        return {
            nodeid: PackagelessOutcome(**done[nodeid]) if nodeid in done else PackagelessOutcome(crash, "")
            for nodeid in self.cases
        }


class BackgroundWalk:
    """The package-less walk over every kind of folder under `roots` (`tests/hub/standard_entry_points.py`), started
    in the background: the suite goes on while it imports torch and loads each folder. One torch thread, so that it
    never oversubscribes the machine's cores with the suite's own (it only checks that each folder loads and runs)."""

    def __init__(self, roots: list[Path], folder: Path):
        from tests.hub import standard_entry_points

        code = Path(standard_entry_points.__file__).read_text()
        code += f"\nimport json\nprint('REPORT', json.dumps(walk({[str(root) for root in roots]!r})))\n"
        env = packageless_env({"HF_MODULES_CACHE": str(folder / "modules"), "OMP_NUM_THREADS": "1"})
        self.background = BackgroundProcess(
            [sys.executable, "-c", BLOCK_PACKAGE + code], folder / "walk.log", cwd=folder, env=env
        )
        self._report = None

    def report(self) -> dict[str, list[str]]:
        """Folder -> the entry points that loaded it."""
        if self._report is None:
            status = self.background.finish(timeout=600)
            log = self.background.log()
            if self.background.returncode != 0:
                raise AssertionError(f"the walk {status}:\n{log[-6000:]}")
            report = next(line for line in log.splitlines() if line.startswith("REPORT "))
            self._report = json.loads(report.split("REPORT ", 1)[1])
        return self._report

    def close(self) -> None:
        self.background.close()


def check_card_pipeline_tag(folder) -> None:
    """The card's `pipeline_tag` is a task `pipeline(tag, model=folder)` serves; a card without one names the
    folder's custom pipelines, and each of those loads with `trust_remote_code=True`."""
    from huggingface_hub import ModelCard

    folder = Path(folder)
    card = ModelCard.load(folder / "README.md")
    custom = json.loads((folder / "config.json").read_text()).get("custom_pipelines", {})
    tag = card.data.pipeline_tag
    if tag is None:
        assert custom, f"{folder}: the card has no pipeline_tag and the folder no custom pipeline"
    else:
        # With the package installed the card's task needs no remote code.
        outputs = run_on_tiny_input(tag, transformers.pipeline(tag, model=str(folder)))
        assert outputs, (tag, outputs)
    for task in custom:
        assert task in card.text, f"{folder}: the card does not name the custom task {task!r}"
        pipe = transformers.pipeline(task, model=str(folder), trust_remote_code=True)
        assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__


class ClipZooModelTesterMixin:
    model_class: type
    # Output fields compared across save/load, remote code and checkpointing.
    compared_outputs: tuple[str, ...] = ("logits_per_image",)
    # Config kwargs that must be rejected with a ValueError mentioning the given text.
    invalid_configs: tuple[tuple[dict, str], ...] = ()

    def get_config(self):
        raise NotImplementedError

    def prepare_inputs(self, config) -> dict:
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------------------------
    def _model(self, config=None):
        torch.manual_seed(0)
        return self.model_class(config or self.get_config())

    def _outputs(self, model, inputs) -> dict[str, torch.Tensor]:
        model.eval()
        with torch.no_grad():
            out = model(**inputs)
        return {k: out[k] for k in self.compared_outputs}

    def _assert_close(self, a: dict, b: dict, atol=1e-5):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=lambda m, k=key: f"{k}: {m}")

    # --- the battery ---------------------------------------------------------------------------------------
    def test_config_round_trip(self, tmp_path):
        config = self.get_config()
        config.save_pretrained(tmp_path)
        reloaded = type(config).from_pretrained(tmp_path)
        assert reloaded.to_dict() == config.to_dict()
        assert json.loads((tmp_path / "config.json").read_text())["model_type"] == type(config).model_type

    def test_invalid_config_raises(self):
        for kwargs, message in self.invalid_configs:
            with pytest.raises(ValueError, match=message):
                type(self.get_config())(**kwargs)

    def test_save_load_equal_outputs(self, tmp_path):
        model = self._model()
        inputs = self.prepare_inputs(model.config)
        before = self._outputs(model, inputs)
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").exists()
        assert not list(tmp_path.glob("*.bin")), "weights must be saved as safetensors only"
        reloaded, info = self.model_class.from_pretrained(tmp_path, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        self._assert_close(before, self._outputs(reloaded, inputs), atol=0)

    def test_auto_classes(self, tmp_path):
        model = self._model()
        model.save_pretrained(tmp_path)
        inputs = self.prepare_inputs(model.config)
        for auto_name in self.model_class._remote_auto_classes:
            loaded = getattr(transformers, auto_name).from_pretrained(tmp_path)
            assert type(loaded) is self.model_class, (auto_name, type(loaded))
            self._assert_close(self._outputs(model, inputs), self._outputs(loaded, inputs), atol=0)
        assert type(transformers.AutoConfig.from_pretrained(tmp_path)) is type(model.config)

    def _remote_code_case(self, folder: Path) -> str:
        model = self._model()
        model.save_pretrained(folder / "model")
        inputs = self.prepare_inputs(model.config)
        torch.save(inputs, folder / "inputs.pt")
        torch.save(self._outputs(model, inputs), folder / "expected.pt")
        return f"""
            import torch, transformers, warnings
            # The config's checks travel with the bundled code, and its own saved keys must not warn there.
            warnings.filterwarnings("error", message=".*unknown key")
            inputs = torch.load("inputs.pt", weights_only=True)
            expected = torch.load("expected.pt", weights_only=True)
            for auto_name in {list(self.model_class._remote_auto_classes)!r}:
                auto_class = getattr(transformers, auto_name)
                model = auto_class.from_pretrained("model", trust_remote_code=True).eval()
                assert type(model).__module__.startswith("transformers_modules"), (auto_name, type(model).__module__)
                with torch.no_grad():
                    out = model(**inputs)
                for key, value in expected.items():
                    torch.testing.assert_close(out[key], value, atol=0, rtol=0, msg=lambda m: f"{{auto_name}} {{key}}: {{m}}")
                # A model loaded as remote code saves a folder that is again loadable as remote code.
                model.save_pretrained(f"resaved-{{auto_name}}")
                again = auto_class.from_pretrained(f"resaved-{{auto_name}}", trust_remote_code=True).eval()
                with torch.no_grad():
                    out = again(**inputs)
                for key, value in expected.items():
                    torch.testing.assert_close(out[key], value, atol=0, rtol=0, msg=lambda m: f"{{auto_name}} resaved {{key}}: {{m}}")
            """

    @checked_without_package(_remote_code_case)
    def test_remote_code_fresh_interpreter(self, without_package):
        assert without_package.error is None, without_package.error

    def test_backward_reaches_every_parameter(self):
        model = self._model()
        model.train()
        out = model(**self.prepare_inputs(model.config), return_loss=True)
        assert torch.isfinite(out.loss), out.loss
        out.loss.backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, f"parameters without gradient (DDP would fail): {unused}"

    def test_gradient_checkpointing_equivalence(self):
        inputs = self.prepare_inputs(self.get_config())
        grads = []
        for checkpointing in (False, True):
            model = self._model()
            model.train()
            if checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model(**inputs, return_loss=True).loss.backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)

    def test_eval_determinism(self):
        model = self._model()
        inputs = self.prepare_inputs(model.config)
        self._assert_close(self._outputs(model, inputs), self._outputs(model, inputs), atol=0)

    def test_return_loss_finite_and_differentiable(self):
        model = self._model()
        out = model(**self.prepare_inputs(model.config), return_loss=True)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert out.loss.requires_grad
