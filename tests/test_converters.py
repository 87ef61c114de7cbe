"""Every checkpoint converter takes the same command line: `--checkpoint FILE --output_dir DIR [extras]`."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "hf_clipzoo"
# Found on disk, so a converter added later is held to the same convention without editing this list.
CONVERTERS = sorted(
    f"hf_clipzoo.models.{path.parent.name}.{path.stem}" for path in PACKAGE_ROOT.glob("models/*/convert_*.py")
)


def test_every_method_converter_is_found():
    assert {name.rsplit(".", 1)[1] for name in CONVERTERS} >= {"convert_clip", "convert_diva",
                                                                  "convert_dreamlip", "convert_groupvit"}  # fmt: skip


@pytest.mark.parametrize("module_name", CONVERTERS)
def test_converter_parser_takes_the_shared_flags(module_name, tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    args = (
        importlib.import_module(module_name)
        .build_parser()
        .parse_args(["--checkpoint", str(weights), "--output_dir", "out"])
    )
    assert (args.checkpoint, args.output_dir) == (str(weights), "out")


@pytest.mark.parametrize("module_name", CONVERTERS)
def test_converter_with_a_missing_checkpoint_names_the_path(module_name, capsys, tmp_path):
    missing = tmp_path / "no.pth"
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module_name).main(["--checkpoint", str(missing), "--output_dir", "out"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--checkpoint" in error and f"no file at '{missing}'" in error, error


@pytest.mark.parametrize("module_name", CONVERTERS)
def test_converter_help_shows_the_shared_flags(module_name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module_name).main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert "--checkpoint CHECKPOINT" in usage and "--output_dir OUTPUT_DIR" in usage


@pytest.mark.parametrize("module_name", CONVERTERS)
def test_converter_without_checkpoint_names_the_flag(module_name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module_name).main(["--output_dir", "out"])
    assert exit_info.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_shared_converter_module_imports_no_model():
    # The shared reader / parser sits below every method; a model import here would make each converter load another
    # method (and the CLIP conversion belongs in models/clip/convert_clip.py like every other method's).
    tree = ast.parse((PACKAGE_ROOT / "backbones" / "convert.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]
    assert not [name for name in imported if "models" in name.split(".")], imported
