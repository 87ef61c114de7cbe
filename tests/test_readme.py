"""The README and the model cards are a contract: every code block in them runs as pasted.

Python blocks run against the folders a `hf-clipzoo bench --preset smoke` run writes (the session's `smoke_bench`
fixture, reachable as `bench_out/` from the block's working directory, next to the shipped `foundations/`), each in
a fresh namespace and a temporary working directory, so a block that uses a name it never defines, loads a folder
the bench does not write or calls an API that changed fails here. Bash command lines run with a tiny budget: a
training script's arguments go through the script's own parser, `hf-clipzoo` commands answer `--help`. The two
set-up commands of the quick start (venv, install, bench / pytest) are what CI itself runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_clipzoo.bench import load_script
from hf_clipzoo.cli import main as cli_main
from hf_clipzoo.hub.model_card import available_templates

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(markdown) if lang == language]


def section(markdown: str, heading: str) -> str:
    """The text under `## heading`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    if match is None:
        raise AssertionError(f"No '## {heading}' section.")
    return match.group(1)


def command_lines(block: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


def run_python(code: str, name: str) -> None:
    exec(compile(code, name, "exec"), {"__name__": "__main__"})


README_TEXT = README.read_text()
README_PYTHON = fenced_blocks(README_TEXT, "python")
README_COMMANDS = [words for block in fenced_blocks(README_TEXT, "bash") for words in command_lines(block)]
# The quick start's two set-up commands (fresh venv, install, then the whole bench or the whole suite).
SETUP_COMMANDS = [words for words in README_COMMANDS if "venv" in words]
COMMANDS = [words for words in README_COMMANDS if words not in SETUP_COMMANDS]


def _first_line(code: str) -> str:
    return code.strip().splitlines()[0][:60]


def _block_id(code: str) -> str:
    """The folder a block loads (most blocks start with the same import), else its first line."""
    loaded = re.search(r'"((?:bench_out|foundations)/[^"]*)"', code)
    return loaded.group(1) if loaded else _first_line(code)


@pytest.fixture
def pasted_in(tmp_path, smoke_bench, monkeypatch):
    """A working directory where the README's relative paths resolve: `bench_out/` (the smoke run) and
    `foundations/` (the shipped folders); whatever a block writes stays in the temporary folder."""
    (tmp_path / "bench_out").symlink_to(smoke_bench, target_is_directory=True)
    (tmp_path / "foundations").symlink_to(REPO / "foundations", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_its_blocks():
    # The extraction itself must not silently find nothing (a renamed fence language, a moved section).
    assert len(README_PYTHON) >= 6, len(README_PYTHON)
    assert len(SETUP_COMMANDS) == 2, SETUP_COMMANDS
    assert len(COMMANDS) >= 10, COMMANDS


@pytest.mark.parametrize("code", README_PYTHON, ids=[_block_id(code) for code in README_PYTHON])
def test_readme_python_block_runs_as_pasted(code, pasted_in):
    run_python(code, f"README.md block starting {_first_line(code)!r}")


def _script_argv(words: list[str]) -> tuple[str, list[str]] | None:
    """`(script name, its arguments)` for `python training_scripts/x.py ...` or `accelerate launch ... x.py ...`."""
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # environment assignments
    for index, word in enumerate(words):
        if word.startswith("training_scripts/") and word.endswith(".py"):
            assert (REPO / word).is_file(), f"README runs {word}, which does not exist"
            return Path(word).stem, words[index + 1 :]
    return None


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(words)[:70] for words in COMMANDS])
def test_readme_command_line_is_accepted(words, capsys, tmp_path, monkeypatch):
    script = _script_argv(words)
    if script is not None:
        # The README's commands chain (clip.py writes runs/clip/final, the pre-training runs/sd-world) and the scripts
        # check that model folders exist: stand the shipped foundations in for what the earlier commands write.
        (tmp_path / "runs" / "clip").mkdir(parents=True)
        (tmp_path / "runs" / "clip" / "final").symlink_to(REPO / "foundations" / "clip", target_is_directory=True)
        (tmp_path / "runs" / "sd-world").symlink_to(REPO / "foundations" / "diffusion", target_is_directory=True)
        monkeypatch.chdir(tmp_path)
        name, argv = script
        # The script's own parser: a renamed or removed flag, a bad choice or a missing value fails here.
        load_script(name).parse_args(argv)
        return
    assert words[0] == "hf-clipzoo", f"a README command this test does not know how to check: {words}"
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*words[1:], "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


# A template renders different "How to use" sections for the folder kinds one run writes (MA-CLIP: the merged model,
# the PEFT adapter and its base); every kind is checked.
CARD_FOLDER_KINDS = ("adapter", "base")
CARDS = [*available_templates(), *(f"ma_clip:{kind}" for kind in CARD_FOLDER_KINDS)]


def card_folders(bench_out: Path) -> dict[str, Path]:
    """One folder per model card template and folder kind (`method` for a trained model, `method:adapter` /
    `method:base`), from the cards the smoke run's training scripts rendered."""
    folders = {}
    for readme in sorted(bench_out.rglob("README.md")):
        kind = readme.parent.name if readme.parent.name in CARD_FOLDER_KINDS else None
        for method in set(ModelCard.load(readme).data.tags or []) & set(available_templates()):
            folders.setdefault(method if kind is None else f"{method}:{kind}", readme.parent)
    return folders


def test_every_model_card_template_is_rendered_by_the_smoke_bench(smoke_bench):
    assert sorted(card_folders(smoke_bench)) == sorted(CARDS)


@pytest.mark.parametrize("method", CARDS)
def test_model_card_usage_runs_against_the_folder_it_describes(method, smoke_bench, tmp_path, monkeypatch):
    folder = card_folders(smoke_bench)[method]
    card = (folder / "README.md").read_text()
    blocks = fenced_blocks(section(card, "How to use"), "python")
    assert blocks, f"{method}'s card has no python block under 'How to use'"
    # The card names the model by its folder (or Hub id): the folder must be reachable under that name.
    # A card may name the folders written beside it (MA-CLIP's adapter names its base) by their folder names too.
    for sibling in folder.parent.iterdir():
        if sibling.is_dir():
            (tmp_path / sibling.name).symlink_to(sibling, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for index, code in enumerate(blocks):
        run_python(code, f"{method} card, block {index}")
