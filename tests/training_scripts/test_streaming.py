"""`--streaming` in the image-text scripts: a streamed CSV trains, a stopped streamed run resumes to the weights of an
uninterrupted one (with and without a shuffle buffer), and the flags that cannot work are refused up front."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.synthetic import WorldConfig, make_scenes
from hf_clipzoo.data.synthetic.writers import write_csv
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch


@pytest.fixture(scope="module")
def streamed_csv(tmp_path_factory):
    # 20 rows in batches of 4: 5 batches per pass, so 7 steps cross into a second (reshuffled) pass.
    return write_csv(make_scenes(20, config=WorldConfig(seed=5, image_size=32)), tmp_path_factory.mktemp("csv"))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("baseline")
    torch.manual_seed(0)
    config = ZooCLIPConfig.from_preset("world-micro")
    ZooCLIPModel(config).save_pretrained(folder)
    processor = build_clip_processor(config.vision_config.image_size, config.text_config.max_position_embeddings)
    processor.save_pretrained(folder)
    return folder


def _clip_run(csv, out, *extra):
    return [
        "--dataset", str(csv), "--streaming", "--model_preset", "world-micro", "--per_device_train_batch_size", "4",
        "--num_warmup_steps", "1", "--logging_steps", "1", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def test_clip_trains_on_a_streamed_csv_and_checkpoints_the_stream_position(streamed_csv, tmp_path):
    out = tmp_path / "run"
    metrics = load_training_script("clip").main(
        _clip_run(streamed_csv, out, "--max_train_steps", "3", "--checkpointing_steps", "3")
    )
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert (out / "final" / "model.safetensors").is_file()
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["extra_state"]
    (position,) = state["stream"]  # one process
    assert position["epoch"] == 0 and position["examples"] == 12


@pytest.mark.parametrize("shuffle_buffer_size", ["0", "8"], ids=["stream-order", "shuffle-buffer"])
def test_stopped_streamed_run_resumes_to_the_uninterrupted_weights(streamed_csv, tmp_path, shuffle_buffer_size):
    # Without a buffer datasets' own state_dict restores the position; with one the consumed rows are replayed.
    script = load_training_script("clip")
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ("--max_train_steps", "7", "--shuffle_buffer_size", shuffle_buffer_size)
    script.main(_clip_run(streamed_csv, straight, *common))
    script.main(_clip_run(streamed_csv, split, *common, "--stop_after_step", "3"))
    assert not (split / "final").exists()
    script.main(_clip_run(streamed_csv, split, *common, "--resume_from_checkpoint", "latest"))
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(split / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("script_name", ["fff", "dreamlip", "groupvit"])
def test_every_image_text_script_trains_on_a_stream(streamed_csv, baseline, tmp_path, script_name):
    extra = {
        "fff": ["--model_name_or_path", str(baseline), "--num_pseudo_captions", "1"],
        "dreamlip": ["--model_name_or_path", str(baseline), "--num_subcaptions", "2"],
        "groupvit": ["--num_segmentation_eval_images", "0"],
    }[script_name]
    argv = _clip_run(streamed_csv, tmp_path / "run", "--max_train_steps", "2", "--checkpointing_steps", "1", *extra)
    if script_name != "groupvit":  # fine-tuned from the baseline folder instead
        argv[argv.index("--model_preset") : argv.index("--model_preset") + 2] = []
    metrics = load_training_script(script_name).main(argv)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    state = json.loads((tmp_path / "run" / "checkpoint-2" / "trainer_state.json").read_text())["extra_state"]
    assert state["stream"][0]["examples"] == 8


def test_streaming_flags_are_checked_before_anything_loads(streamed_csv, tmp_path, capsys):
    script = load_training_script("clip")
    for argv, message in (
        (_clip_run(streamed_csv, tmp_path), "--streaming needs --max_train_steps"),
        (_clip_run(streamed_csv, tmp_path, "--max_train_steps", "1", "--dataloader_num_workers", "2"),
         "use --dataloader_num_workers 0"),
        (_clip_run(streamed_csv, tmp_path, "--max_train_steps", "1", "--shuffle_buffer_size", "-1"),
         "--shuffle_buffer_size must be >= 0"),
        (["--streaming", "--max_train_steps", "1"], "--streaming reads a --dataset path"),
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            script.main(argv)
        assert message in capsys.readouterr().err


def test_a_stream_shorter_than_one_batch_is_refused(streamed_csv, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        load_training_script("clip").main(
            _clip_run(streamed_csv, tmp_path, "--max_train_steps", "1", "--per_device_train_batch_size", "32")
        )


def _two_process_streamed_run(folder):
    csv = write_csv(make_scenes(20, config=WorldConfig(seed=5, image_size=32)), folder / "csv")
    return "clip", _clip_run(csv, folder / "ddp", "--max_train_steps", "3", "--checkpointing_steps", "3")


@in_shared_launch(_two_process_streamed_run)
def test_two_processes_each_read_their_part_of_the_stream(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    out = shared_launch.folder / "ddp"
    assert (out / "final" / "model.safetensors").is_file()
    # One position per process: 20 rows split between 2 readers are 10 each, 2 batches of 4 per pass, so step 3 is
    # the first batch of each reader's second pass.
    positions = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["extra_state"]["stream"]
    assert [(p["epoch"], p["examples"]) for p in positions] == [(1, 4), (1, 4)], positions
