"""`training_scripts/ma_clip.py` on tiny sizes: train a few episodes, select on val, test, save the merged model, the
PEFT adapter and its base; each loads through its library's entry point, with the package and without it."""

import json
import shutil

import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from transformers import AutoModel, AutoProcessor

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.hub.model_card import card_rule_violations
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.models.ma_clip import MACLIPModel, MACLIPProcessor
from hf_clipzoo.models.ma_clip.peft_ma_clip import load_ma_clip_adapter
from tests.testing_utils import checked_without_package
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch


def save_encoder(folder):
    torch.manual_seed(0)
    ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro", vision_config=dict(image_size=16))).save_pretrained(folder)
    build_clip_processor(16, 77).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save_encoder(tmp_path_factory.mktemp("encoder"))


def tiny_run(encoder_dir, out) -> list[str]:
    return [
        "--model_name_or_path", str(encoder_dir), "--output_dir", str(out), "--num_frames", "4",
        "--videos_per_class", "3", "--val_episodes", "2", "--test_episodes", "2", "--test_shots", "1", "2",
        "--max_train_steps", "4", "--eval_steps", "2", "--logging_steps", "1", "--num_warmup_steps", "1",
    ]  # fmt: skip


def episode(num_frames=4, size=16, way=2):
    torch.manual_seed(1)
    return dict(
        support_pixel_values=torch.randn(way, num_frames, 3, size, size),
        support_labels=torch.arange(way),
        query_pixel_values=torch.randn(way, num_frames, 3, size, size),
        input_ids=torch.tensor([[0, 5, 6, 2], [0, 7, 8, 2]]),
    )


def probs(model, inputs):
    with torch.no_grad():
        return model.eval()(**inputs).probs


_SESSION_RUN: dict = {}


def trained_run(root) -> dict:
    """One tiny training (4 steps, selection on val at steps 2 and 4) from a micro encoder, made once per session
    under the first `root` asked for: the package-less check prepares its files from it when the session's shared
    interpreter starts, the test below reads the same run."""
    if not _SESSION_RUN:
        encoder, out = save_encoder(root / "encoder"), root / "run"
        _SESSION_RUN.update(
            encoder=encoder, out=out, metrics=load_training_script("ma_clip").main(tiny_run(encoder, out))
        )
    return _SESSION_RUN


def test_trains_selects_and_saves_model_adapter_and_base(tmp_path_factory):
    run = trained_run(tmp_path_factory.mktemp("ma_clip"))
    encoder_dir, out, metrics = run["encoder"], run["out"], run["metrics"]
    for key in ("test/5way_1shot_accuracy", "test/5way_2shot_accuracy", "val/accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["val/best_step"] in (2, 4)
    assert metrics["train/trainable_parameters"] > 0 and metrics["train/peak_memory_mb"] > 0
    assert metrics["adapter_checkpoint_bytes"] <= 0.15 * metrics["full_model_bytes"]
    final, adapter, base = out / "final", out / "adapter", out / "base"
    for folder, names in (
        (final, ("config.json", "model.safetensors", "modeling_ma_clip.py", "processor_config.json", "results.json")),
        (adapter, ("adapter_model.safetensors", "adapter_config.json", "processor_config.json")),
        (base, ("config.json", "model.safetensors", "modeling_ma_clip.py", "processor_config.json")),
    ):
        for name in (*names, "README.md"):
            assert (folder / name).is_file(), folder / name
        assert not list(folder.glob("*.bin"))
    # The adapter names its base (PEFT would write null) and an auto mapping that needs no hf_clipzoo.
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base)
    assert adapter_config["auto_mapping"] == {"base_model_class": "AutoModel", "parent_library": "transformers"}
    cards = {kind: ModelCard.load(out / kind / "README.md") for kind in ("final", "adapter", "base")}
    assert cards["adapter"].data.library_name == "peft" and cards["final"].data.library_name == "transformers"
    # The card names the sibling folder (never the user's absolute path, which the card scrubber would mangle).
    assert "PeftModel.from_pretrained" in cards["adapter"].text and 'from_pretrained("base"' in cards["adapter"].text
    assert str(out) not in cards["adapter"].text
    for kind, card in cards.items():
        assert card_rule_violations(card) == [], kind
    # Without --hub_model_id the base is a local folder: the adapter's metadata has no base_model, its text does.
    assert cards["adapter"].data.base_model is None and cards["adapter"].data.model_name != "adapter"

    # Standard entry points with the package: the merged model equals the adapter on its base, which equals the
    # package's own route (adapter on a base rebuilt from the baseline CLIP).
    inputs = episode()
    merged = AutoModel.from_pretrained(final)
    assert type(merged) is MACLIPModel and merged.config.num_frames == 4
    on_base = PeftModel.from_pretrained(AutoModel.from_pretrained(base), adapter)
    kwargs = {k: merged.config.to_dict()[k] for k in ("num_frames", "adapter_ratio", "loss_alpha")}
    rebuilt = load_ma_clip_adapter(MACLIPModel.from_clip(ZooCLIPModel.from_pretrained(encoder_dir), **kwargs), adapter)
    expected = probs(merged, inputs)
    torch.testing.assert_close(probs(on_base, inputs), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(probs(rebuilt, inputs), expected, atol=1e-6, rtol=0)
    for folder in (final, adapter, base):
        assert isinstance(AutoProcessor.from_pretrained(folder), MACLIPProcessor)
        assert AutoProcessor.from_pretrained(folder).num_frames == 4


def _packageless_case(folder):
    # Without hf_clipzoo: remote code for the model folders, PEFT for the adapter (also AutoPeftModel, through the
    # auto mapping), all in the session's one fresh interpreter.
    out = trained_run(folder)["out"]
    final, adapter, base = out / "final", out / "adapter", out / "base"
    inputs = episode()
    torch.save({"inputs": inputs, "expected": probs(AutoModel.from_pretrained(final), inputs)}, folder / "case.pt")
    return f"""
        import torch
        from peft import AutoPeftModel, PeftModel
        from transformers import AutoModel, AutoProcessor
        case = torch.load("case.pt", weights_only=True)
        final, adapter, base = {str(final)!r}, {str(adapter)!r}, {str(base)!r}

        def probs(model):
            with torch.no_grad():
                return model.eval()(**case["inputs"]).probs

        merged = AutoModel.from_pretrained(final, trust_remote_code=True)
        assert type(merged).__module__.startswith("transformers_modules"), type(merged).__module__
        torch.testing.assert_close(probs(merged), case["expected"], atol=1e-6, rtol=0)
        on_base = PeftModel.from_pretrained(AutoModel.from_pretrained(base, trust_remote_code=True), adapter)
        torch.testing.assert_close(probs(on_base), case["expected"], atol=1e-6, rtol=0)
        auto = AutoPeftModel.from_pretrained(adapter, trust_remote_code=True)
        torch.testing.assert_close(probs(auto), case["expected"], atol=1e-6, rtol=0)
        for folder in (final, adapter, base):
            processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
            assert type(processor).__name__ == "MACLIPProcessor" and processor.num_frames == 4
        """


@checked_without_package(_packageless_case)
def test_saved_folders_load_without_the_package(without_package):
    assert without_package.error is None, without_package.error


def test_push_to_hub_uploads_model_adapter_and_base(tmp_path, encoder_dir, fake_hub):
    out = tmp_path / "run"
    argv = tiny_run(encoder_dir, out) + ["--max_train_steps", "1", "--test_shots", "1"]
    load_training_script("ma_clip").main(argv + ["--push_to_hub", "--hub_model_id", "org/ma-clip"])
    assert sorted(fake_hub.repo_ids()) == ["org/ma-clip", "org/ma-clip-adapter", "org/ma-clip-base"]
    adapter_config = json.loads(fake_hub.files("org/ma-clip-adapter")["adapter_config.json"])
    assert adapter_config["base_model_name_or_path"] == "org/ma-clip-base"
    card = ModelCard(fake_hub.files("org/ma-clip-adapter")["README.md"].decode())
    assert card.data.library_name == "peft" and card.data.base_model == "org/ma-clip-base"
    # Reloaded from the Hub by repository id alone: the adapter on its recorded base equals the merged model.
    inputs = episode()
    merged = AutoModel.from_pretrained("org/ma-clip")
    on_base = PeftModel.from_pretrained(
        AutoModel.from_pretrained(adapter_config["base_model_name_or_path"]), "org/ma-clip-adapter"
    )
    torch.testing.assert_close(probs(on_base, inputs), probs(merged, inputs), atol=1e-6, rtol=0)


def test_bad_arguments_are_rejected(tmp_path, encoder_dir):
    script = load_training_script("ma_clip")
    with pytest.raises(SystemExit):
        script.main(tiny_run(encoder_dir, tmp_path) + ["--num_frames", "1"])
    with pytest.raises(SystemExit):
        script.main(tiny_run(encoder_dir, tmp_path) + ["--test_shots", "5"])


def test_resume_reaches_the_same_result(tmp_path, encoder_dir):
    script = load_training_script("ma_clip")
    extra = ["--checkpointing_steps", "2", "--checkpoints_total_limit", "5"]
    full = script.main(tiny_run(encoder_dir, tmp_path / "full") + extra)
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = script.main(tiny_run(encoder_dir, resumed_dir) + extra + ["--resume_from_checkpoint", "latest"])
    for key in ("val/accuracy", "val/best_step", "test/5way_1shot_accuracy", "test/5way_2shot_accuracy"):
        assert resumed[key] == full[key], key


def _two_process_run(folder):
    return "ma_clip", tiny_run(save_encoder(folder / "encoder"), folder / "ddp")


@in_shared_launch(_two_process_run)
def test_two_processes(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    results = json.loads((shared_launch.folder / "ddp" / "final" / "results.json").read_text())
    assert 0.0 <= results["test/5way_1shot_accuracy"] <= 1.0


@pytest.mark.parametrize("use_text_in_support", [True, False])
def test_evaluation_from_cached_features_equals_scoring_each_episode(encoder_dir, use_text_in_support):
    """`evaluate` encodes every video once and scores episodes from the cache; it must give what the model's forward
    gives on each episode's own videos."""
    from hf_clipzoo.data.episodes import EpisodeSampler

    script = load_training_script("ma_clip")
    args = script.parse_args(tiny_run(encoder_dir, "unused"))
    clip_processor = AutoProcessor.from_pretrained(encoder_dir)
    processor = MACLIPProcessor(clip_processor.image_processor, clip_processor.tokenizer, num_frames=4)
    split = script.load_split("meta_val", args, processor)
    torch.manual_seed(0)
    model = MACLIPModel.from_clip(
        ZooCLIPModel.from_pretrained(encoder_dir), num_frames=4, use_text_in_support=use_text_in_support
    )
    with torch.no_grad():  # adapters start as the identity: perturb them so that the text path matters
        for name, parameter in model.named_parameters():
            if "adapter" in name or "prototype" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval()
    shot, episodes = 2, 5
    cached = script.evaluate(model, split, args, shot, episodes, seed=7, device=torch.device("cpu"))
    sampler = EpisodeSampler(split["labels"], args.way, shot, args.query_per_class, seed=7, num_episodes=episodes)
    features = script.encode_split(model, split, torch.device("cpu"))
    per_episode = []
    for episode in sampler:
        with torch.no_grad():
            direct = model(**script.episode_inputs(split, episode, torch.device("cpu")))
        support, query = torch.as_tensor(episode.support_indices), torch.as_tensor(episode.query_indices)
        from_cache = model.score_episode(
            features["support_frames"][support], features["support_tpcm"][support],
            torch.as_tensor(episode.support_labels), features["query_frames"][query], features["query_tpcm"][query],
            features["text_features"][torch.as_tensor(episode.class_ids)],
        )  # fmt: skip
        torch.testing.assert_close(from_cache.probs, direct.probs, atol=1e-5, rtol=1e-5)
        per_episode.append(float((direct.probs.argmax(-1).numpy() == episode.query_labels).mean()))
    assert cached["per_episode"] == per_episode
