"""Clear errors for model folders that cannot load, before transformers gives a misleading one.

Left alone, transformers reports a truncated `model.safetensors` as `SafetensorError: Error while deserializing
header` (no file name), a folder without `config.json` as a size mismatch against a default-sized model, and a local
path that does not exist as a malformed Hub repo id. `check_model_path` names the path and what was expected instead.
It reads only the safetensors headers, so it costs nothing next to the load itself.

This module is bundled into every saved model folder (through `RemoteCodeModelMixin`), so it imports only what a user
without `hf_clipzoo` has.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError, safe_open

SAVED_FOLDER = "a model folder saved with save_pretrained (config.json, model.safetensors)"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def corrupt_safetensors_error(file: str | os.PathLike, error: Exception) -> OSError:
    return OSError(
        f"{file} is not a valid safetensors file (truncated or corrupt?): {error}. Save or download the model again."
    )


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files a load of `folder` reads: the shards of the index, else `model.safetensors`."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise OSError(f"{index} is not a valid safetensors index (no readable 'weight_map'): {error}.") from error
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} lists shards missing from {folder}: {missing}.")
        return [folder / name for name in shards]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def check_safetensors_file(file: str | os.PathLike) -> None:
    """Raise an `OSError` naming `file` when its header is unreadable or does not cover the file exactly."""
    try:
        with safe_open(str(file), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise corrupt_safetensors_error(file, error) from error


def check_model_path(
    name_or_path: str | os.PathLike,
    *,
    argument: str = "pretrained_model_name_or_path",
    subfolder: str = "",
    needs_config: bool = True,
) -> None:
    """Check what `from_pretrained(name_or_path)` is about to read; raise an error naming `argument` and the path.

    A local folder must hold `config.json` (unless `needs_config=False`: the caller passes a config object) and its
    safetensors weights must have valid headers. A path that does not exist must at least be a well-formed Hub repo
    id, or it is a typo of a local path. Hub ids are left to transformers (download, cache and offline errors).
    """
    path = Path(name_or_path, subfolder)
    if path.is_dir():
        if needs_config and not (path / "config.json").is_file():
            raise FileNotFoundError(f"{argument}: folder {path} has no config.json: expected {SAVED_FOLDER}.")
        for file in _weight_files(path):
            check_safetensors_file(file)
        return
    if path.exists():
        raise NotADirectoryError(f"{argument}: {path} is a file; expected {SAVED_FOLDER} or a Hub repo id.")
    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError:
        raise FileNotFoundError(
            f"{argument}: {str(name_or_path)!r} is neither an existing local folder nor a Hub repo id ('name' or "
            f"'namespace/name'); expected {SAVED_FOLDER}."
        ) from None


__all__ = ["check_model_path", "check_safetensors_file", "corrupt_safetensors_error", "file_sha256"]
