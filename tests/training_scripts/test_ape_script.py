"""`training_scripts/ape.py` end to end on tiny sizes: build, search on val, train APE-T, save, reload."""

import json

import datasets
import pytest
import torch
from transformers import AutoModel, AutoProcessor

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.synthetic import WorldConfig
from hf_clipzoo.data.synthetic.classification import make_classification
from hf_clipzoo.hub.model_card import card_rule_violations
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from tests.testing_utils import check_card_pipeline_tag
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch

NUM_CLASSES = 64


def save_encoder(folder):
    """A tiny random baseline CLIP saved like `training_scripts/clip.py` saves one."""
    torch.manual_seed(0)
    ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro")).save_pretrained(folder)
    build_clip_processor(32, 77).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save_encoder(tmp_path_factory.mktemp("encoder"))


def tiny_run(encoder_dir, out) -> list[str]:
    return [
        "--model_name_or_path", str(encoder_dir), "--output_dir", str(out),
        "--shots", "1", "--synthetic_val_per_class", "1", "--synthetic_test_per_class", "2",
        "--augment_epochs", "1", "--search_steps", "6", "4", "4",
        "--per_device_train_batch_size", "32", "--logging_steps", "1",
    ]  # fmt: skip


def test_builds_searches_on_val_trains_and_saves(tmp_path, encoder_dir, monkeypatch):
    script = load_training_script("ape")
    searched_rows = []
    real_search = script.search_hyperparameters

    def recording_search(model, val_embeds, val_labels, **kwargs):
        searched_rows.append(val_embeds.shape[0])
        return real_search(model, val_embeds, val_labels, **kwargs)

    monkeypatch.setattr(script, "search_hyperparameters", recording_search)
    out = tmp_path / "run"
    metrics = script.main(
        tiny_run(encoder_dir, out) + ["--train", "--num_train_epochs", "2", "--checkpointing_steps", "2"]
    )
    # Every search (Tip-Adapter, APE, APE-T) saw the 64 val rows, never the 128 test rows.
    assert searched_rows == [NUM_CLASSES] * 3
    for name in ("zero_shot", "tip_adapter", "ape", "ape_t"):
        assert 0.0 <= metrics[f"{name}/test_accuracy"] <= 1.0
    assert metrics["ape_t/trainable_parameters"] == NUM_CLASSES * 16 + NUM_CLASSES * 1  # C·Q + C·K, Q = D/2
    assert metrics["ape/trainable_parameters"] == 0 and 0.1 <= metrics["ape/beta"] <= 7.0
    assert torch.isfinite(torch.tensor(metrics["ape_t/train/loss"]))

    final = out / "final"
    for name in ("config.json", "model.safetensors", "processor_config.json", "results.json", "README.md"):
        assert (final / name).is_file(), name
    check_card_pipeline_tag(final)
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))
    assert sorted(p.name for p in (out / "ape_t").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    results = json.loads((final / "results.json").read_text())
    assert results["method"] == "ape_t" and results["ape_t/test_accuracy"] == metrics["ape_t/test_accuracy"]
    card = (final / "README.md").read_text()
    assert "model-index" in card and "APE-T" in card and "hub_token" not in card
    assert card_rule_violations(card) == []

    model = AutoModel.from_pretrained(final)
    processor = AutoProcessor.from_pretrained(final)
    assert type(model).__name__ == "APETModel" and len(model.config.class_names) == NUM_CLASSES
    assert model.alpha.item() == pytest.approx(metrics["ape_t/alpha"])
    # The saved model reproduces the reported test accuracy from images.
    test = make_classification(2, split="test", config=WorldConfig(seed=1))  # the script seeds the world with --seed
    with torch.no_grad():
        logits = model(**processor(images=list(test["image"]), return_tensors="pt")).logits
    accuracy = (logits.argmax(-1) == torch.tensor(test["label"])).float().mean().item()
    assert accuracy == pytest.approx(metrics["ape_t/test_accuracy"], abs=1e-6)

    # Resuming the finished run restores the checkpoint and ends with the same APE-T.
    again = script.main(
        tiny_run(encoder_dir, out) + ["--train", "--num_train_epochs", "2", "--resume_from_checkpoint", "latest"]
    )
    assert again["ape_t/test_accuracy"] == metrics["ape_t/test_accuracy"]


def test_missing_val_split_is_rejected(tmp_path, encoder_dir):
    script = load_training_script("ape")
    folder = tmp_path / "data"
    datasets.DatasetDict(
        {"train": make_classification(1, split="train"), "test": make_classification(1, split="test")}
    ).save_to_disk(folder)
    with pytest.raises(ValueError, match="val split 'val' is missing"):
        script.main(
            ["--model_name_or_path", str(encoder_dir), "--dataset", str(folder), "--output_dir", str(tmp_path)]
        )


def test_bad_arguments_are_rejected(tmp_path, encoder_dir):
    script = load_training_script("ape")
    for bad in (["--shots", "0"], ["--search_scale", "0.05", "7", "1"], ["--search_steps", "0", "20", "20"]):
        with pytest.raises(SystemExit):
            script.main(["--model_name_or_path", str(encoder_dir), "--output_dir", str(tmp_path), *bad])
    with pytest.raises(ValueError, match=r"100 shots per class"):
        script.main(["--model_name_or_path", str(encoder_dir), "--output_dir", str(tmp_path), "--shots", "100",
                     "--synthetic_train_per_class", "2"])  # fmt: skip


def _two_process_run(folder):
    encoder_dir = save_encoder(folder / "encoder")
    return "ape", [*tiny_run(encoder_dir, folder / "ddp"), "--train", "--num_train_epochs", "2"]


@in_shared_launch(_two_process_run)
def test_two_processes(shared_launch, tmp_path):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    single = load_training_script("ape").main(tiny_run(shared_launch.folder / "encoder", tmp_path / "one"))
    results = json.loads((shared_launch.folder / "ddp" / "final" / "results.json").read_text())
    # Feature extraction is sharded and gathered: the training-free numbers equal the one-process run's.
    for key in ("zero_shot/test_accuracy", "tip_adapter/test_accuracy", "ape/test_accuracy", "ape/alpha"):
        assert results[key] == pytest.approx(single[key], abs=1e-6), key


def test_killed_ape_t_run_resumes_to_the_same_result(tmp_path, encoder_dir):
    """A run resumed from a mid-training checkpoint (with nothing else of the first run left) ends where an
    uninterrupted run ends: weights, best epoch and searched hyper-parameters."""
    import shutil

    script = load_training_script("ape")
    train = ["--train", "--num_train_epochs", "4", "--checkpointing_steps", "1", "--checkpoints_total_limit", "10"]
    full = script.main(tiny_run(encoder_dir, tmp_path / "full") + train)

    # The "killed" run: only checkpoint-2 of the first run survives, in a fresh output folder.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "ape_t" / "checkpoint-2", resumed_dir / "ape_t" / "checkpoint-2")
    resumed = script.main(tiny_run(encoder_dir, resumed_dir) + train + ["--resume_from_checkpoint", "latest"])

    for key in ("ape_t/best_epoch", "ape_t/alpha", "ape_t/beta", "ape_t/val_accuracy", "ape_t/test_accuracy"):
        assert resumed[key] == full[key], key
    full_model = AutoModel.from_pretrained(tmp_path / "full" / "final")
    resumed_model = AutoModel.from_pretrained(resumed_dir / "final")
    for name in ("residual", "value_weights", "alpha", "beta"):
        torch.testing.assert_close(
            resumed_model.state_dict()[name], full_model.state_dict()[name], rtol=0, atol=0, msg=name
        )


def test_each_trained_adapter_gets_its_official_optimiser(tmp_path, encoder_dir, monkeypatch):
    """Tip-Adapter-F: the official `AdamW(lr=1e-3, eps=1e-4)` with torch's default weight decay; APE-T: the official
    `AdamW(lr=cfg lr, eps=cfg eps, weight_decay=0.1)`; both with a cosine schedule over all steps, no warm-up."""
    script = load_training_script("ape")
    built = {}
    real_build_optimizer, real_build_scheduler = script.build_optimizer, script.build_scheduler

    hyper_parameters = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")

    def recording_optimizer(model, **kwargs):
        optimizer = real_build_optimizer(model, **kwargs)
        # As built, before the schedule moves the learning rate.
        groups = [({k: group[k] for k in hyper_parameters}, len(group["params"])) for group in optimizer.param_groups]
        built.setdefault("optimizers", []).append((type(model).__name__, model, groups))
        return optimizer

    def recording_scheduler(optimizer, **kwargs):
        built.setdefault("schedulers", []).append(kwargs)
        return real_build_scheduler(optimizer, **kwargs)

    monkeypatch.setattr(script, "build_optimizer", recording_optimizer)
    monkeypatch.setattr(script, "build_scheduler", recording_scheduler)
    script.main(
        tiny_run(encoder_dir, tmp_path / "run") + ["--train", "--train_tip_adapter_f", "--num_train_epochs", "1"]
    )

    official = {
        # Tip-Adapter `main.py::run_tip_adapter_F`, lr from its configs (0.001 for every dataset).
        "TipAdapterFModel": lambda params: torch.optim.AdamW(params, lr=1e-3, eps=1e-4),
        # APE `main.py::APE_T` with the default `lr` / `eps` of its configs.
        "APETModel": lambda params: torch.optim.AdamW(params, lr=1e-3, eps=1e-3, weight_decay=1e-1),
    }
    assert sorted(name for name, _, _ in built["optimizers"]) == sorted(official)
    for name, model, groups in built["optimizers"]:
        trainable = [p for p in model.parameters() if p.requires_grad]
        expected = official[name](trainable).param_groups[0]
        assert sum(count for _, count in groups) == len(trainable), name
        for settings, _ in groups:  # every trainable tensor is decayed, as in the official code
            assert settings == {key: expected[key] for key in hyper_parameters}, name
    assert torch.optim.AdamW(trainable).defaults["weight_decay"] == script.TIP_ADAPTER_F_OPTIMIZER["weight_decay"]
    for schedule in built["schedulers"]:
        assert schedule["name"] == "cosine" and schedule["num_warmup_steps"] == 0


def test_cosine_schedule_equals_the_official_cosine_annealing():
    """The official `CosineAnnealingLR(optimizer, train_epoch * len(loader))`, stepped once per batch."""
    from hf_clipzoo.training import build_scheduler

    steps = 7
    ours = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    theirs = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = build_scheduler(ours, name="cosine", num_warmup_steps=0, num_training_steps=steps)
    official = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, steps)
    for _ in range(steps):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        ours.step()
        theirs.step()
        scheduler.step()
        official.step()
