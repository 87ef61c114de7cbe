"""What every checkpoint converter shares: the safe checkpoint-file reader and the common command line.

Each method's converter lives next to its model (`hf_clipzoo.models.<method>.convert_<method>`, the OpenAI /
open_clip CLIP one in `hf_clipzoo.models.clip.convert_clip`); this module imports no model, so any converter can use
it without pulling in another method.
"""

from __future__ import annotations

import argparse
import logging
import pickle  # only for `pickle.UnpicklingError`, what torch.load(weights_only=True) raises
import zipfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def _is_torchscript_archive(path: Path) -> bool:
    # A TorchScript archive is a zip holding the model's code (`<name>/code/...`) next to its constants.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())


class _InertPickledObject:
    """Stands in for a class of a checkpoint's non-tensor entries (an OmegaConf config, numpy scalars, ...).

    It accepts whatever constructor arguments and state the pickle stream hands it and keeps them as data; it never
    imports or runs anything. Subclasses are created per allow-listed name, so each keeps the original name."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        self.pickled_args = args

    def __setstate__(self, state):
        self.pickled_state = state

    def __repr__(self) -> str:
        return f"<unread {self.pickled_name}>"


def _load_with_inert_classes(path: Path, first_error: Exception) -> object:
    """`torch.load(weights_only=True)` again with the file's non-tensor classes allow-listed as inert placeholders:
    torch's restricted unpickler still refuses everything else, and no code of the file runs."""
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as error:
        raise ValueError(f"{path} is not a readable torch checkpoint: {first_error}") from error
    if not names:
        raise ValueError(f"{path} is not a readable torch checkpoint: {first_error}") from first_error
    logger.info("Reading %s with %d non-tensor classes as inert placeholders: %s", path, len(names), names)
    placeholders = [
        (type(name.rsplit(".", 1)[-1], (_InertPickledObject,), {"pickled_name": name}), name) for name in names
    ]
    try:
        with torch.serialization.safe_globals(placeholders):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path} could not be read with torch.load(weights_only=True) even with its non-tensor classes "
            f"({names}) replaced by inert placeholders: {error}"
        ) from error


def load_state_dict_file(path: str | Path, *, inert_non_tensor_classes: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely: `.safetensors`, or a `torch.save` file with `weights_only=True`.

    `inert_non_tensor_classes`: for official training checkpoints that also pickle objects (e.g. GroupViT's
    OmegaConf config), read those objects as inert placeholders instead of refusing the file; the caller must then
    keep only the tensors it needs (and check that they are tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as error:
            raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    if _is_torchscript_archive(path):
        # Loading TorchScript runs code from the file; ask for the plain weights instead.
        raise ValueError(
            f"{path} is a TorchScript archive (e.g. OpenAI's downloaded `ViT-B-16.pt`), which cannot be read safely. "
            "In an environment you trust, re-save its weights with "
            "`torch.save(torch.jit.load(path, map_location='cpu').state_dict(), 'state_dict.pt')` "
            "(or `clip.load(name, jit=False)[0].state_dict()`) and convert that file."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if inert_non_tensor_classes:
            return _load_with_inert_classes(path, error)
        # torch's own message suggests weights_only=False; we never unpickle arbitrary objects, so say what to do.
        reason = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), None)
        if reason is None:
            raise ValueError(f"{path} is not a readable torch checkpoint (corrupt?): {error}") from error
        raise ValueError(
            f"{path} holds objects other than tensors, which torch.load(weights_only=True) refuses ({reason}). "
            "Re-save just the weights with `torch.save(model.state_dict(), path)` and convert that file."
        ) from error
    except Exception as error:
        raise ValueError(
            f"Could not read {path} with torch.load(weights_only=True): {error}. Expected a file written by "
            "`torch.save(model.state_dict(), ...)` (tensors and plain containers only)."
        ) from error


def _existing_file(value: str) -> str:
    # Checked while parsing, so a mistyped path is one usage line naming it, not a traceback after the imports.
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(
            f"no file at {value!r}; expected the released checkpoint file (.pt / .pth / .bin / .safetensors)"
        )
    return value


def converter_parser(doc: str, checkpoint_help: str) -> argparse.ArgumentParser:
    """The arguments every converter shares: `--checkpoint` (the released file) and `--output_dir` (the folder).

    Every `convert_*` module builds its parser here and adds its own extras, so the same command line shape
    (`python -m <module> --checkpoint FILE --output_dir DIR [extras]`) converts every method.
    """
    description = " ".join(doc.split("\n\n")[0].split())
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", required=True, type=_existing_file, help=checkpoint_help)
    parser.add_argument("--output_dir", required=True, help="Folder for the converted model (and its processor).")
    return parser


def add_num_heads_arguments(parser: argparse.ArgumentParser) -> None:
    """Attention heads cannot be read off a state dict; the default is the official width // 64."""
    parser.add_argument("--vision_num_heads", type=int, default=None, help="Vision heads (default width // 64).")
    parser.add_argument("--text_num_heads", type=int, default=None, help="Text heads (default width // 64).")


__all__ = ["add_num_heads_arguments", "converter_parser", "load_state_dict_file"]
