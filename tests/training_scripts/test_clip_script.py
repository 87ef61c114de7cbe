"""`training_scripts/clip.py` end to end on tiny sizes (diffusers' pattern: run a few steps, check what it wrote)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.data.synthetic import WorldConfig, make_scenes
from hf_clipzoo.data.synthetic.writers import write_imagefolder
from hf_clipzoo.hub.model_card import card_rule_violations
from hf_clipzoo.training import read_jsonl_log
from tests.testing_utils import check_card_pipeline_tag
from tests.training_scripts.script_utils import SCRIPTS, free_port, load_training_script
from tests.training_scripts.shared_launch import in_shared_launch

TINY_RUN = [
    "--model_preset", "world-micro",
    "--synthetic_train_size", "64",
    "--synthetic_eval_size", "16",
    "--synthetic_classes_per_split", "1",
    "--per_device_train_batch_size", "16",
    "--num_warmup_steps", "1",
    "--logging_steps", "1",
]  # fmt: skip


def test_trains_evaluates_checkpoints_and_saves(tmp_path):
    script = load_training_script("clip")
    out = tmp_path / "run"
    metrics = script.main(
        TINY_RUN + ["--output_dir", str(out), "--max_train_steps", "4", "--checkpointing_steps", "2",
                    "--checkpoints_total_limit", "1", "--eval_steps", "2", "--eval_caption_column", "long_caption"]
    )  # fmt: skip
    for key in ("retrieval/image_to_text_R@1", "zero_shot/top1_accuracy", "train/loss"):
        assert any(k.startswith(key.split("_R@")[0]) for k in metrics), (key, sorted(metrics))
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))

    final = out / "final"
    for name in ("config.json", "model.safetensors", "processor_config.json", "results.json", "README.md"):
        assert (final / name).is_file(), name
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # rotation kept 1
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))
    results = json.loads((final / "results.json").read_text())
    assert results["step"] == 4 and results["train/loss"] == pytest.approx(metrics["train/loss"])
    card = (final / "README.md").read_text()
    check_card_pipeline_tag(final)
    assert "model-index" in card and "hub_token" not in card
    assert card_rule_violations(card) == [] and f"\n# clip-{out.name}\n" in card  # named after the run, not `final`
    steps = [r["step"] for r in read_jsonl_log(out / "logs" / "metrics.jsonl") if "train/loss" in r]
    assert steps[:4] == [1, 2, 3, 4]

    model = AutoModel.from_pretrained(final)
    processor = AutoProcessor.from_pretrained(final)
    assert type(model).__name__ == "ZooCLIPModel" and type(processor).__name__ == "ZooCLIPProcessor"

    # Resuming with a larger budget continues from step 4 instead of starting over.
    metrics = script.main(
        TINY_RUN + ["--output_dir", str(out), "--max_train_steps", "5", "--resume_from_checkpoint", "latest"]
    )
    assert json.loads((final / "results.json").read_text())["step"] == 5


def test_sigmoid_loss_on_an_image_folder(tmp_path):
    """The real-data path: an image folder with metadata.jsonl, as `datasets` reads it, with SigLIP's loss."""
    folder = write_imagefolder(make_scenes(48, config=WorldConfig(image_size=32, seed=3)), tmp_path / "data").parent
    script = load_training_script("clip")
    out = tmp_path / "run"
    metrics = script.main(
        ["--dataset", str(folder), "--model_preset", "world-micro", "--loss_type", "sigmoid", "--max_train_steps", "2",
         "--per_device_train_batch_size", "16", "--num_warmup_steps", "0", "--output_dir", str(out)]
    )  # fmt: skip
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    weights = load_file(str(out / "final" / "model.safetensors"))
    assert "logit_bias" in weights


def test_bad_arguments_are_rejected(tmp_path):
    script = load_training_script("clip")
    with pytest.raises(SystemExit):
        script.main(["--push_to_hub", "--output_dir", str(tmp_path)])  # needs --hub_model_id
    with pytest.raises(ValueError, match="smaller than one global batch"):
        script.main(
            TINY_RUN
            + ["--output_dir", str(tmp_path), "--per_device_train_batch_size", "128", "--max_train_steps", "1"]
        )


# --- two processes, killed and resumed ----------------------------------------------------------------------------
def _two_process_argv(out: Path, *extra: str) -> list[str]:
    return [
        *TINY_RUN, "--synthetic_train_size", "96", "--per_device_train_batch_size", "8",
        "--max_train_steps", "60", "--checkpointing_steps", "4", "--checkpoints_total_limit", "2",
        # 60 steps with an evaluation every 10 leave the killer ample time between checkpoint-8 and the end.
        "--synthetic_eval_size", "32", "--eval_steps", "10", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def _launch(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(SCRIPTS / "clip.py"), *_two_process_argv(out, *extra),
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _process_or_none(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _finish(process: subprocess.Popen) -> str:
    output = process.communicate(timeout=300)[0].decode(errors="replace")
    assert process.returncode == 0, output[-4000:]
    return output


def _uninterrupted_run(folder):
    return "clip", _two_process_argv(folder / "straight")


# The uninterrupted run joins the session's shared 2-process launch (one launcher and import fewer); the killed and
# the resumed runs need launches of their own.
@in_shared_launch(_uninterrupted_run)
def test_two_processes_killed_and_resumed_match_an_uninterrupted_run(shared_launch, tmp_path):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    straight_dir = shared_launch.folder / "straight"

    interrupted = _launch(tmp_path / "killed")
    deadline = time.time() + 240
    while not (tmp_path / "killed" / "checkpoint-8").exists():
        assert interrupted.poll() is None, interrupted.communicate()[0].decode(errors="replace")[-4000:]
        assert time.time() < deadline, "no checkpoint-8 after 240 s"
        time.sleep(0.05)
    # Kill the launcher and every worker at once, as a pre-empted job dies (torchrun starts workers in their own
    # sessions, so killing the launcher's process group alone would leave them running).
    family = [interrupted.pid] + [child.pid for child in psutil.Process(interrupted.pid).children(recursive=True)]
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    interrupted.wait()
    psutil.wait_procs([p for p in map(_process_or_none, family) if p is not None], timeout=30)
    assert not (tmp_path / "killed" / "final").exists(), "the run finished before it was killed"

    output = _finish(_launch(tmp_path / "killed", "--resume_from_checkpoint", "latest"))
    resumed_at = int(output.split("Resumed from")[1].split("at step ")[1].split()[0])
    assert 8 <= resumed_at < 60, resumed_at

    straight = json.loads((straight_dir / "final" / "results.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "final" / "results.json").read_text())
    assert resumed["step"] == straight["step"] == 60
    assert resumed["train/loss"] == pytest.approx(straight["train/loss"], rel=1e-5, abs=1e-6)
    a = load_file(str(straight_dir / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "final" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")


def test_push_to_hub_at_the_end(tmp_path, fake_hub):
    """`--push_to_hub` uploads the final folder to the (loopback) Hub; it loads back by repo id."""
    load_training_script("clip").main(
        TINY_RUN + ["--output_dir", str(tmp_path / "run"), "--max_train_steps", "1", "--push_to_hub",
                    "--hub_model_id", "org/clip-world-micro"]
    )  # fmt: skip
    files = fake_hub.files("org/clip-world-micro")
    assert {"config.json", "model.safetensors", "README.md", "processor_config.json"} <= set(files)
    assert b"model-index" in files["README.md"]
    model = AutoModel.from_pretrained("org/clip-world-micro")
    assert type(model).__name__ == "ZooCLIPModel"


def test_stop_after_step_then_resume_equals_one_uninterrupted_run(tmp_path):
    # The foundations' early checkpoint and split sessions rely on this: stopping at step 3 (schedule still set by
    # --max_train_steps) and resuming gives the weights of a run that never stopped.
    script = load_training_script("clip")
    straight, split = tmp_path / "straight", tmp_path / "split"
    script.main(TINY_RUN + ["--output_dir", str(straight), "--max_train_steps", "6"])
    stopped = script.main(TINY_RUN + ["--output_dir", str(split), "--max_train_steps", "6", "--stop_after_step", "3"])
    assert stopped["step"] == 3 and not (split / "final").exists()
    assert (split / "checkpoint-3" / "model.safetensors").is_file()
    script.main(
        TINY_RUN + ["--output_dir", str(split), "--max_train_steps", "6", "--resume_from_checkpoint", "latest"]
    )
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(split / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit):
        script.main(TINY_RUN + ["--output_dir", str(split), "--stop_after_step", "0"])
