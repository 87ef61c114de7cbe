"""Pickle-free checkpoints: exact resume, atomicity (also of re-saves), rotation, sha256 verification with fallback,
clear errors on corrupt folders."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from hf_clipzoo.training import (
    CorruptCheckpointError,
    build_optimizer,
    build_scheduler,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from hf_clipzoo.training import checkpoint as checkpoint_module


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Dropout(0.3))
        self.head = torch.nn.Linear(8, 1)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.head(self.body(x)).squeeze(-1) * self.logit_scale


def make(seed=0):
    torch.manual_seed(seed)
    model = Net()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1)
    scheduler = build_scheduler(optimizer, name="cosine", num_warmup_steps=2, num_training_steps=20)
    return model, optimizer, scheduler


def train_steps(model, optimizer, scheduler, steps):
    losses = []
    for _ in range(steps):
        x = torch.randn(4, 6)  # drawn from the global RNG: resuming must restore it
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def test_resume_equals_uninterrupted(tmp_path, accelerator):
    model, optimizer, scheduler = make()
    train_steps(model, optimizer, scheduler, 5)
    path = save_checkpoint(
        accelerator, tmp_path, 5, model=model, optimizer=optimizer, scheduler=scheduler, extra_state={"epoch": 1}
    )
    expected = train_steps(model, optimizer, scheduler, 5)

    fresh, fresh_optimizer, fresh_scheduler = make(seed=123)
    torch.manual_seed(999)  # a different RNG state, which loading must overwrite
    state = load_checkpoint(accelerator, path, model=fresh, optimizer=fresh_optimizer, scheduler=fresh_scheduler)
    assert state == {"step": 5, "epoch": 1}
    assert fresh_scheduler.last_epoch == 5
    assert train_steps(fresh, fresh_optimizer, fresh_scheduler, 5) == expected
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_pickle_files_and_rotation(tmp_path, accelerator):
    model, optimizer, scheduler = make()
    for step in (2, 4, 6):
        save_checkpoint(
            accelerator, tmp_path, step, model=model, optimizer=optimizer, scheduler=scheduler, total_limit=2
        )
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    suffixes = {f.suffix for f in (tmp_path / "checkpoint-6").iterdir()}
    assert suffixes <= {".safetensors", ".json"}, suffixes
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind


def test_resolve_latest_ignores_incomplete_saves(tmp_path, accelerator):
    assert resolve_checkpoint(tmp_path, None) is None
    assert resolve_checkpoint(tmp_path, "latest") is None  # fresh run
    model, optimizer, scheduler = make()
    save_checkpoint(accelerator, tmp_path, 3, model=model)
    (tmp_path / ".checkpoint-9.incomplete").mkdir()  # a save killed half-way
    (tmp_path / "checkpoint-7").mkdir()  # a folder without trainer_state.json
    assert resolve_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-3"
    assert resolve_checkpoint(tmp_path, str(tmp_path / "checkpoint-3")) == tmp_path / "checkpoint-3"
    with pytest.raises(FileNotFoundError, match="expected 'latest'"):
        resolve_checkpoint(tmp_path, str(tmp_path / "nope"))


def test_corrupt_checkpoints_give_clear_errors(tmp_path, accelerator):
    model, optimizer, scheduler = make()
    path = save_checkpoint(accelerator, tmp_path, 1, model=model, optimizer=optimizer, scheduler=scheduler)

    weights = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        load_checkpoint(accelerator, path, model=make()[0])
    (path / "model.safetensors").write_bytes(weights)

    (path / "optimizer.json").write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="optimizer.json"):
        load_checkpoint(accelerator, path, model=make()[0], optimizer=make()[1])

    (path / "trainer_state.json").unlink()
    with pytest.raises(CorruptCheckpointError, match="incomplete.*trainer_state.json"):
        load_checkpoint(accelerator, path, model=make()[0])


def test_checkpoint_of_another_model_is_rejected(tmp_path, accelerator):
    model, _, _ = make()
    path = save_checkpoint(accelerator, tmp_path, 1, model=model)
    other = torch.nn.Linear(6, 1)
    with pytest.raises(CorruptCheckpointError, match="does not fit this model"):
        load_checkpoint(accelerator, path, model=other)
    state = json.loads((path / "trainer_state.json").read_text())
    assert state["world_size"] == 1 and state["step"] == 1


# --- integrity: sha256 per file, fallback to the previous checkpoint ---------------------------------------------
def flip_tensor_bytes(weights):
    """Change bytes inside the tensor data, past the header: safetensors itself loads the result without a word."""
    data = bytearray(weights.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for i in range(start + 3, len(data), 17):
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))


def test_corrupt_tensor_bytes_fall_back_to_the_previous_checkpoint(tmp_path, accelerator, caplog):
    model, optimizer, scheduler = make()
    train_steps(model, optimizer, scheduler, 3)
    older = save_checkpoint(accelerator, tmp_path, 3, model=model, optimizer=optimizer, scheduler=scheduler)
    train_steps(model, optimizer, scheduler, 3)
    newest = save_checkpoint(accelerator, tmp_path, 6, model=model, optimizer=optimizer, scheduler=scheduler)
    flip_tensor_bytes(newest / "model.safetensors")
    load_file(newest / "model.safetensors")  # the damage is invisible to safetensors

    def resume(checkpoint):
        fresh, fresh_optimizer, fresh_scheduler = make(seed=5)
        state = load_checkpoint(
            accelerator, checkpoint, model=fresh, optimizer=fresh_optimizer, scheduler=fresh_scheduler
        )
        return state, train_steps(fresh, fresh_optimizer, fresh_scheduler, 4), fresh.state_dict()

    with caplog.at_level(logging.WARNING, logger="hf_clipzoo.training.checkpoint"):
        resolved = resolve_checkpoint(tmp_path, "latest")
    assert resolved == older
    assert "checkpoint-6 is corrupt: model.safetensors does not match the sha256" in caplog.text
    assert "Resuming from the newest valid checkpoint" in caplog.text and str(older) in caplog.text
    state, losses, weights = resume(resolved)
    direct_state, direct_losses, direct_weights = resume(older)
    assert state == direct_state == {"step": 3} and losses == direct_losses
    for name, value in weights.items():
        torch.testing.assert_close(value, direct_weights[name], rtol=0, atol=0)

    # Named explicitly, the damaged checkpoint is refused rather than loaded.
    with pytest.raises(CorruptCheckpointError, match="model.safetensors does not match the sha256"):
        load_checkpoint(accelerator, newest, model=make()[0])
    # With every checkpoint damaged there is nothing to fall back to: a clear error, not a fresh run.
    (older / "optimizer.safetensors").unlink()
    with pytest.raises(CorruptCheckpointError, match=r"no valid checkpoint in .*checkpoint-3 is incomplete: missing"):
        resolve_checkpoint(tmp_path, "latest")


def test_checkpoints_without_sha256_still_load(tmp_path, accelerator, caplog):
    """Folders written before checkpoints carried sha256 resume as before, with a warning."""
    model, _, _ = make()
    path = save_checkpoint(accelerator, tmp_path, 2, model=model)
    state = json.loads((path / "trainer_state.json").read_text())
    del state["sha256"]
    (path / "trainer_state.json").write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, logger="hf_clipzoo.training.checkpoint"):
        assert resolve_checkpoint(tmp_path, "latest") == path
    assert "records no sha256" in caplog.text
    assert load_checkpoint(accelerator, path, model=make()[0]) == {"step": 2}


# --- re-saving a step: a kill between any two file-system operations leaves a checkpoint for it -------------------
class Killed(BaseException):
    """The process dies here (a BaseException, so no `except OSError` / `ignore_errors` swallows it)."""


def kill_at(monkeypatch, target: int, *, mid_rmtree: bool):
    """Patch the file-system operations the swap uses so the `target`-th one (counted from 0) kills the save; with
    `mid_rmtree`, a killed `rmtree` first deletes one file, as a real kill half-way through would."""
    calls = {"n": 0}
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def tick(name, path):
        if calls["n"] == target:
            if mid_rmtree and name == "rmtree" and Path(path).is_dir():
                next(p for p in sorted(Path(path).iterdir()) if p.is_file()).unlink()
            raise Killed(f"{name}({path})")
        calls["n"] += 1

    def replace(src, dst):
        tick("replace", src)
        real_replace(src, dst)

    def rmtree(path, *args, **kwargs):
        if Path(path).exists():
            tick("rmtree", path)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    monkeypatch.setattr(checkpoint_module.shutil, "rmtree", rmtree)


@pytest.mark.parametrize("mid_rmtree", [False, True], ids=["between operations", "half-way through a deletion"])
def test_killed_re_save_always_leaves_a_checkpoint_for_the_step(tmp_path, accelerator, monkeypatch, mid_rmtree):
    model, optimizer, scheduler = make()
    killed_points = 0
    for target in range(50):
        run = tmp_path / f"kill-{target}"
        save_checkpoint(accelerator, run, 2, model=model, optimizer=optimizer)
        save_checkpoint(accelerator, run, 4, model=model, optimizer=optimizer, extra_state={"version": "old"})
        train_steps(model, optimizer, scheduler, 1)  # the re-save writes different weights
        with monkeypatch.context() as patch:
            kill_at(patch, target, mid_rmtree=mid_rmtree)
            try:
                save_checkpoint(
                    accelerator, run, 4, model=model, optimizer=optimizer, extra_state={"version": "new"},
                    total_limit=1,
                )  # fmt: skip
            except Killed:
                killed_points += 1
            else:
                break
        resumed = resolve_checkpoint(run, "latest")
        fresh, fresh_optimizer, _ = make()
        state = load_checkpoint(accelerator, resumed, model=fresh, optimizer=fresh_optimizer)  # sha256 verified
        assert state["step"] == 4 and state["version"] in ("old", "new"), (target, resumed, state)
        # The next save tidies what the kill left, and the run goes on from there.
        save_checkpoint(accelerator, run, 6, model=model, optimizer=optimizer, total_limit=1)
        assert [p.name for p in run.iterdir()] == ["checkpoint-6"], (target, sorted(run.iterdir()))
    else:
        raise AssertionError("the re-save never completed")
    assert killed_points >= 3  # the aside rename, the swap-in, and the deletions after it were all hit
