"""Upload a finished model folder to the Hub (or any endpoint that speaks its API, e.g. a local mirror)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import HfApi

logger = logging.getLogger(__name__)


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload `folder` (weights, config, processor, bundled code, model card).

    Checkpoint folders and logs are not in `folder` (the scripts push `<output_dir>/final`). Returns the commit URL.
    """
    folder = Path(folder)
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a Hub repository id such as 'you/clip-world', got {repo_id!r}.")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json; expected a folder written by save_pretrained.")
    api = HfApi(token=token, endpoint=endpoint)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message or f"Upload {folder.name} with hf-clipzoo",
        # Weights go up as safetensors only: pickles (optimizer states, stray .bin/.pt files) and checkpoints stay local.
        ignore_patterns=["*.pt", "*.pth", "*.bin", "*.pkl", "*.pickle", "*.ckpt", "checkpoint-*/**"],
    )
    logger.info("Pushed %s to %s", folder, commit.commit_url)
    return commit.commit_url


__all__ = ["push_folder_to_hub"]
