"""Scale-out pieces of the image-text scripts: the accelerate configs in `examples/accelerate/`, `--torch_compile`,
bf16 autocast on CPU and the fused-AdamW choice."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from hf_clipzoo.training.checkpoint import save_checkpoint
from hf_clipzoo.training.optim import build_optimizer, use_fused_adamw
from hf_clipzoo.training.setup import check_sharding
from tests.training_scripts.script_utils import SCRIPTS, free_port, load_training_script
from tests.training_scripts.test_clip_script import TINY_RUN

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "accelerate"


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED")])
def test_configs_load_as_accelerate_reads_them(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.distributed_type == kind
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2 and config.fsdp_config["fsdp_activation_checkpointing"]
    if name == "deepspeed_zero2":
        assert config.deepspeed_config["zero_stage"] == 2


def test_fsdp_config_on_cpu_is_refused_instead_of_training_unsharded(tmp_path):
    # accelerate sets up no FSDP on CPU: both processes would train on their own (DistributedType.NO), unsharded.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "fsdp.yaml"),
        "--main_process_port", str(free_port()), str(SCRIPTS / "clip.py"), *TINY_RUN, "--max_train_steps", "1",
        "--output_dir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "asks for FSDP, but accelerate set up" in result.stdout + result.stderr
    assert not list(tmp_path.glob("checkpoint-*")) and not (tmp_path / "final").exists()


def test_fsdp_is_refused_while_the_models_hold_0_dim_parameters():
    with pytest.raises(ValueError, match="0-dim parameters"):
        check_sharding(SimpleNamespace(distributed_type=DistributedType.FSDP))
    check_sharding(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))  # data-parallel passes


def test_checkpoints_of_deepspeed_runs_are_refused(tmp_path):
    model = torch.nn.Linear(2, 2)
    accelerator = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, is_main_process=True)
    with pytest.raises(NotImplementedError, match="DeepSpeed"):
        save_checkpoint(accelerator, tmp_path, 1, model=model, optimizer=torch.optim.AdamW(model.parameters()))
    assert not list(tmp_path.iterdir())


# --- fused AdamW -------------------------------------------------------------------------------------------------
def _on(device: str, dtype=torch.float32):
    return SimpleNamespace(device=torch.device(device), is_floating_point=lambda: dtype.is_floating_point)


def test_fused_adamw_only_when_every_parameter_is_on_cuda():
    assert use_fused_adamw([_on("cuda"), _on("cuda")])
    assert not use_fused_adamw([_on("cuda"), _on("cpu")])
    assert not use_fused_adamw([_on("cuda", torch.int64)])
    assert not use_fused_adamw([])
    model = torch.nn.Linear(3, 3)
    assert build_optimizer(model, lr=1e-3).defaults["fused"] is False  # CPU parameters: torch's foreach path
    assert build_optimizer(model, lr=1e-3, fused=True).defaults["fused"] is True  # an explicit choice wins


# --- bf16 autocast and torch.compile on CPU ------------------------------------------------------------------------
def _run(out: Path, *extra: str) -> dict:
    from accelerate.state import AcceleratorState

    # accelerate's state is one per process and refuses a second precision / compile setting: start each run afresh.
    AcceleratorState._reset_state()
    return load_training_script("clip").main(
        TINY_RUN + ["--output_dir", str(out), "--max_train_steps", "3", "--checkpointing_steps", "3", *extra]
    )


def test_bf16_autocast_on_cpu_trains_close_to_fp32(tmp_path):
    fp32 = _run(tmp_path / "fp32", "--mixed_precision", "no")
    bf16 = _run(tmp_path / "bf16", "--mixed_precision", "bf16")
    assert torch.isfinite(torch.tensor(bf16["train/loss"]))
    assert bf16["train/loss"] != fp32["train/loss"]  # autocast did run: bf16 matmuls round differently
    assert bf16["train/loss"] == pytest.approx(fp32["train/loss"], rel=0.02)
    # autocast changes the compute, not the stored weights: the final model stays float32.
    weights = load_file(str(tmp_path / "bf16" / "final" / "model.safetensors"))
    assert {tensor.dtype for tensor in weights.values()} == {torch.float32}


def test_torch_compile_is_applied_and_saved_weights_keep_their_names(tmp_path, monkeypatch):
    import accelerate

    prepared = []
    original_prepare = accelerate.Accelerator.prepare

    def recording_prepare(self, *objects, **kwargs):
        result = original_prepare(self, *objects, **kwargs)
        prepared.extend(result if isinstance(result, tuple) else (result,))
        return result

    monkeypatch.setattr(accelerate.Accelerator, "prepare", recording_prepare)
    plain = _run(tmp_path / "plain")
    compiled = _run(tmp_path / "compiled", "--torch_compile", "--torch_compile_backend", "eager")
    assert any(isinstance(obj, torch._dynamo.eval_frame.OptimizedModule) for obj in prepared)
    # The eager backend runs the same operations: the same loss, and weights under the same names.
    assert compiled["train/loss"] == pytest.approx(plain["train/loss"], rel=1e-5)
    for name in ("final/model.safetensors", "checkpoint-3/model.safetensors"):
        a, b = load_file(str(tmp_path / "plain" / name)), load_file(str(tmp_path / "compiled" / name))
        assert a.keys() == b.keys(), name
        assert not any("_orig_mod" in key for key in b)
    # A checkpoint of a compiled run resumes in a run without --torch_compile.
    _run(tmp_path / "compiled", "--max_train_steps", "4", "--resume_from_checkpoint", "latest")


def test_bad_compile_backend_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _run(tmp_path, "--torch_compile", "--torch_compile_backend", "tensorrt")
    assert "--torch_compile_backend must be one of" in capsys.readouterr().err


@pytest.mark.slow
def test_torch_compile_with_inductor_on_cpu(tmp_path):
    # Inductor generates C++ on CPU (needs gcc): minutes on a small machine, hence slow.
    plain = _run(tmp_path / "plain")
    compiled = _run(tmp_path / "compiled", "--torch_compile")
    assert compiled["train/loss"] == pytest.approx(plain["train/loss"], rel=1e-3)


# --- on GPUs ---------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["ddp", "deepspeed_zero2"])
def test_configs_train_clip_on_gpus(tmp_path, name):
    if name == "deepspeed_zero2":
        pytest.importorskip("deepspeed")
    gpus = torch.cuda.device_count()
    if gpus < 1:
        pytest.skip("needs a CUDA device")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{name}.yaml"),
        "--num_processes", str(min(gpus, 2)), "--main_process_port", str(free_port()), str(SCRIPTS / "clip.py"),
        *TINY_RUN, "--max_train_steps", "4", "--output_dir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    weights = load_file(str(tmp_path / "final" / "model.safetensors"))
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
