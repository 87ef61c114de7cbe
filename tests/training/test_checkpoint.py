"""Pickle-free checkpoints: exact resume, atomicity, rotation, clear errors on corrupt folders."""

import json

import pytest
import torch
from accelerate import Accelerator

from hf_clipzoo.training import (
    CorruptCheckpointError,
    build_optimizer,
    build_scheduler,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)


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
