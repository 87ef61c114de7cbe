"""`training_scripts/diva.py` (and the world diffusion pre-training it needs) on tiny sizes: outputs, frozen diffusion
model, plain `CLIPVisionModel` export, resume, 2 processes from a transformers `CLIPModel` folder."""

import json
import shutil

import pytest
import torch
from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import (
    AutoImageProcessor,
    AutoProcessor,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPVisionModel,
)

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.hub.model_card import card_rule_violations
from hf_clipzoo.models.diva import DivaModel, DivaPipeline
from tests.testing_utils import checked_without_package
from tests.training_scripts.script_utils import load_training_script
from tests.training_scripts.shared_launch import in_shared_launch

TINY_RUN = [
    "--synthetic_train_size", "32",
    "--synthetic_eval_size", "8",
    "--synthetic_classes_per_split", "1",
    "--per_device_train_batch_size", "8",
    "--mmvp_pairs", "5",
    "--logging_steps", "1",
    "--learning_rate", "0.05",
]  # fmt: skip


def pretrain_diffusion(folder) -> dict:
    return load_training_script("diva_pretrain_diffusion").main(
        ["--output_dir", str(folder), "--resolution", "32", "--preset", "micro", "--train_size", "16",
         "--eval_size", "8", "--batch_size", "8", "--vae_train_steps", "2", "--max_train_steps", "2",
         "--text_hidden_size", "32", "--text_max_length", "16", "--logging_steps", "1"]
    )  # fmt: skip


def run_args(baseline, diffusion_dir, out, *extra):
    return TINY_RUN + [
        "--model_name_or_path", str(baseline), "--diffusion_model_name_or_path", str(diffusion_dir),
        "--output_dir", str(out), *extra,
    ]  # fmt: skip


_SESSION_RUN: dict = {}


def post_trained_run(root) -> dict:
    """The module's baseline CLIP, world diffusion model and one tiny post-training (3 steps, a checkpoint at step 2),
    made once per session under the first `root` asked for: the package-less check prepares its files from this run
    when the session's shared interpreter starts, the tests below read the same run."""
    if not _SESSION_RUN:
        baseline, diffusion, full = root / "baseline", root / "diffusion", root / "full"
        torch.manual_seed(0)
        config = ZooCLIPConfig.from_preset("world-micro")
        ZooCLIPModel(config).save_pretrained(baseline)
        build_clip_processor(32, config.text_config.max_position_embeddings).save_pretrained(baseline)
        pretrain_metrics = pretrain_diffusion(diffusion)
        unet_before = load_file(diffusion / "unet" / "diffusion_pytorch_model.safetensors")
        metrics = load_training_script("diva").main(
            run_args(baseline, diffusion, full, "--max_train_steps", "3", "--checkpointing_steps", "2")
        )
        _SESSION_RUN.update(
            baseline=baseline, diffusion_dir=diffusion, pretrain_metrics=pretrain_metrics, unet_before=unet_before,
            full=full, metrics=metrics,
        )  # fmt: skip
    return _SESSION_RUN


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return post_trained_run(tmp_path_factory.mktemp("diva"))


@pytest.fixture(scope="module")
def diffusion_dir(run):
    folder = run["diffusion_dir"]
    assert set(run["pretrain_metrics"]) >= {
        "diffusion/val_loss", "diffusion/val_loss_shuffled_text", "diffusion/train_loss"
    }  # fmt: skip
    for sub in ("vae", "unet", "scheduler", "text_encoder", "tokenizer"):
        assert (folder / sub).is_dir(), sub
    assert json.loads((folder / "diva_diffusion.json").read_text())["image_size"] == 32
    return folder


@pytest.fixture(scope="module")
def baseline(run):
    return run["baseline"]


def test_post_trains_the_tower_only_and_resumes_exactly(run, baseline, diffusion_dir, tmp_path):
    script = load_training_script("diva")
    unet_before, full, metrics = run["unet_before"], run["full"], run["metrics"]
    for key in ("mmvp/before/average_accuracy", "mmvp/after/average_accuracy", "zero_shot/before/top1_accuracy",
                "zero_shot/after/top1_accuracy", "zero_shot/delta/top1_accuracy", "diva/before/feedback_loss",
                "diva/after/feedback_loss", "train/loss"):  # fmt: skip
        assert key in metrics and torch.isfinite(torch.tensor(metrics[key])), key
    final = full / "final"
    assert json.loads((final / "results.json").read_text())["step"] == 3
    assert (final / "clip" / "README.md").is_file() and (full / "checkpoint-2").is_dir()

    # Only the vision side moved; the text tower and the frozen diffusion model did not.
    base = ZooCLIPModel.from_pretrained(baseline).state_dict()
    tuned = ZooCLIPModel.from_pretrained(final / "clip").state_dict()
    assert not torch.equal(
        tuned["vision_model.encoder.layers.0.mlp.fc1.weight"], base["vision_model.encoder.layers.0.mlp.fc1.weight"]
    )
    assert not torch.equal(tuned["visual_projection.weight"], base["visual_projection.weight"])
    for key in [k for k in base if k.startswith(("text_model.", "text_projection", "logit_scale"))]:
        assert torch.equal(tuned[key], base[key]), key
    for key, value in load_file(diffusion_dir / "unet" / "diffusion_pytorch_model.safetensors").items():
        assert torch.equal(value, unet_before[key]), key
    condition = DivaModel.from_pretrained(final / "condition_model")
    torch.testing.assert_close(condition.visual_projection.weight, tuned["visual_projection.weight"], atol=0, rtol=0)

    # `final/` is a DivaPipeline folder; every folder has a card, the vision-only ones their image processor.
    for folder in (final, final / "clip", final / "condition_model", final / "clip_vision", diffusion_dir):
        assert (folder / "README.md").is_file(), folder
    assert ModelCard.load(final / "README.md").data.library_name == "diffusers"
    assert ModelCard.load(diffusion_dir / "README.md").data.pipeline_tag == "text-to-image"
    for folder in (final, final / "clip", final / "condition_model", final / "clip_vision", diffusion_dir):
        assert card_rule_violations(ModelCard.load(folder / "README.md")) == [], folder
    for folder in ("clip_vision", "condition_model"):
        assert isinstance(AutoImageProcessor.from_pretrained(final / folder), CLIPImageProcessorPil), folder
        assert isinstance(AutoProcessor.from_pretrained(final / folder), CLIPImageProcessorPil), folder
    pipe = DivaPipeline.from_pretrained(final)
    torch.testing.assert_close(
        pipe.condition_model.visual_projection.weight, tuned["visual_projection.weight"], atol=0, rtol=0
    )
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feedback = pipe(images, generator=torch.Generator().manual_seed(1)).loss
    remote = DiffusionPipeline.from_pretrained(final, trust_remote_code=True)
    torch.testing.assert_close(remote(images, generator=torch.Generator().manual_seed(1)).loss, feedback)
    assert type(DiffusionPipeline.from_pretrained(diffusion_dir)).__name__ == "StableDiffusionPipeline"

    # The "killed" run: only checkpoint-2 survives, in a fresh folder; it ends where the full run ended.
    resumed = tmp_path / "resumed"
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")
    again = script.main(
        run_args(baseline, diffusion_dir, resumed, "--max_train_steps", "3", "--resume_from_checkpoint", "latest")
    )
    assert again["mmvp/before/average_accuracy"] == metrics["mmvp/before/average_accuracy"]
    resumed_state = load_file(resumed / "final" / "clip_vision" / "model.safetensors")
    for key, value in load_file(final / "clip_vision" / "model.safetensors").items():
        torch.testing.assert_close(resumed_state[key], value, atol=1e-6, rtol=0, msg=key)


def _packageless_case(folder):
    # Without hf_clipzoo: the pipeline (remote code), the plain CLIPVisionModel (equal to the tuned CLIP's tower), the
    # image processors and the world diffusion model as a StableDiffusionPipeline.
    run = post_trained_run(folder)
    final = run["full"] / "final"
    pixel_values = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pooled = ZooCLIPModel.from_pretrained(final / "clip").vision_model(pixel_values=pixel_values).pooler_output
    feedback = DivaPipeline.from_pretrained(final)(images, generator=torch.Generator().manual_seed(1)).loss
    torch.save({"pixel_values": pixel_values}, folder / "inputs.pt")
    torch.save({"pooled": pooled, "images": images, "feedback": feedback}, folder / "expected.pt")
    return f"""
        import torch
        from diffusers import DiffusionPipeline
        from transformers import AutoImageProcessor, AutoProcessor, CLIPVisionModel
        final = {str(final)!r}
        model = CLIPVisionModel.from_pretrained(final + "/clip_vision").eval()
        inputs = torch.load("inputs.pt", weights_only=True)
        expected = torch.load("expected.pt", weights_only=True)
        with torch.no_grad():
            torch.testing.assert_close(model(**inputs).pooler_output, expected["pooled"], atol=1e-6, rtol=0)
        pipe = DiffusionPipeline.from_pretrained(final, trust_remote_code=True)
        assert type(pipe).__name__ == "DivaPipeline" and type(pipe).__module__.startswith("diffusers_modules")
        feedback = pipe(expected["images"], generator=torch.Generator().manual_seed(1)).loss
        torch.testing.assert_close(feedback, expected["feedback"])
        for folder in ("clip_vision", "condition_model"):
            assert type(AutoImageProcessor.from_pretrained(final + "/" + folder)).__name__ == "CLIPImageProcessorPil"
            assert type(AutoProcessor.from_pretrained(final + "/" + folder)).__name__ == "CLIPImageProcessorPil"
        sd = DiffusionPipeline.from_pretrained({str(run["diffusion_dir"])!r})
        assert type(sd).__name__ == "StableDiffusionPipeline", type(sd).__name__
        """


@checked_without_package(_packageless_case)
def test_post_trained_folders_load_without_the_package(without_package):
    assert without_package.error is None, without_package.error


def test_bad_arguments_are_rejected(baseline, diffusion_dir, tmp_path):
    script = load_training_script("diva")
    with pytest.raises(SystemExit):
        script.main(run_args(baseline, diffusion_dir, tmp_path, "--prompt", " "))
    with pytest.raises(SystemExit):
        script.main(run_args(baseline, diffusion_dir, tmp_path, "--num_noise_draws", "0"))
    with pytest.raises(ValueError, match="not a diffusion model folder"):
        script.main(run_args(baseline, baseline, tmp_path))
    with pytest.raises(ValueError, match="do not fit the VAE"):
        script.main(
            run_args(baseline, diffusion_dir, tmp_path, "--diffusion_resolution", "30", "--max_train_steps", "1")
        )


def _two_process_run(folder):
    pretrain_diffusion(folder / "diffusion")
    torch.manual_seed(0)
    micro = ZooCLIPConfig.from_preset("world-micro")
    config = CLIPConfig(
        text_config=micro.text_config.to_dict(), vision_config=micro.vision_config.to_dict(), projection_dim=32
    )
    CLIPModel(config).save_pretrained(folder / "openai")
    build_clip_processor(32, 77).save_pretrained(folder / "openai")
    return "diva", [*run_args(folder / "openai", folder / "diffusion", folder / "ddp"), "--max_train_steps", "2",
                    "--per_device_train_batch_size", "4", "--mmvp_image_feature", "cls_plus_tokens"]  # fmt: skip


@in_shared_launch(_two_process_run)
def test_two_processes_from_a_transformers_clip(shared_launch):
    assert shared_launch.error is None, shared_launch.log[-3000:] + shared_launch.error
    assert "processes = 2" in shared_launch.log
    final = shared_launch.folder / "ddp" / "final"
    assert json.loads((final / "results.json").read_text())["step"] == 2
    tuned = CLIPModel.from_pretrained(final / "clip")  # same class as the input
    assert type(tuned) is CLIPModel
    assert type(CLIPVisionModel.from_pretrained(final / "clip_vision")) is CLIPVisionModel


def test_official_mmvp_feature_is_class_token_plus_mean_of_sampled_tokens():
    from hf_clipzoo.models.diva import DivaConfig

    script = load_training_script("diva")
    torch.manual_seed(0)
    micro = ZooCLIPConfig.from_preset("world-micro")
    clip = ZooCLIPModel(micro).eval()
    condition = DivaModel(
        DivaConfig(vision_config=micro.vision_config.to_dict(), projection_dim=32, cross_attention_dim=32,
                   num_sampled_tokens=5, prompt_length=6)
    ).eval()  # fmt: skip
    features = script.OfficialMMVPFeatures(clip, condition)
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = condition(pixel_values=pixel_values)
        hidden = condition.vision_model(pixel_values=pixel_values).last_hidden_state
        for b in range(2):
            rows = [hidden[b, 0]] + [hidden[b, 1 + int(i)] for i in out.token_indices[b]]
            tokens = condition.vision_model.post_layernorm(torch.stack(rows)) @ condition.visual_projection.weight.T
            expected = tokens[0] + sum(tokens[1:]) / len(rows[1:])
            torch.testing.assert_close(features.get_image_features(pixel_values)[b], expected, atol=1e-5, rtol=1e-5)
