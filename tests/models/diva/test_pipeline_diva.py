"""DivaPipeline: save/load round trips (package installed; code in the folder + trust_remote_code in a fresh
interpreter without hf_clipzoo), the feedback it returns, reconstruction, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipzoo.models.diva import DivaConfig, DivaModel, DivaPipeline
from hf_clipzoo.models.diva.diffusion import build_diffusion
from hf_clipzoo.models.diva.pipeline_diva import images_to_tensor
from tests.testing_utils import checked_without_package

VISION = dict(
    image_size=16, patch_size=4, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4
)


def tiny_pipeline(cross=32) -> DivaPipeline:
    torch.manual_seed(0)
    config = DivaConfig(
        vision_config=VISION, projection_dim=24, cross_attention_dim=32, num_sampled_tokens=7, prompt_length=8
    )
    model = DivaModel(config).eval()
    model.set_prompt_embeds(torch.randn(8, 32))
    vae, unet, scheduler = build_diffusion("micro", cross, 16)
    return DivaPipeline(vae=vae, unet=unet, scheduler=scheduler, condition_model=model)


def fixed_draws():
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 16, 16, generator=generator)
    timesteps = torch.randint(0, 1000, (2, 2), generator=generator)
    noise = torch.randn(2, 2, 4, 8, 8, generator=generator)
    return images, timesteps, noise


def test_round_trip_with_package(tmp_path):
    pipe = tiny_pipeline()
    images, timesteps, noise = fixed_draws()
    expected = pipe(images, timesteps=timesteps, noise=noise).loss
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_diva", "DivaPipeline"]
    assert index["condition_model"] == ["modeling_diva", "DivaModel"]
    assert (tmp_path / "pipeline_diva.py").exists() and (tmp_path / "condition_model" / "modeling_diva.py").exists()
    assert not list(tmp_path.rglob("*.bin")), "safetensors only"
    loaded = DivaPipeline.from_pretrained(tmp_path)
    assert type(loaded.condition_model) is DivaModel
    torch.testing.assert_close(
        loaded.condition_model.prompt_embeds, pipe.condition_model.prompt_embeds, atol=0, rtol=0
    )
    torch.testing.assert_close(loaded(images, timesteps=timesteps, noise=noise).loss, expected, atol=0, rtol=0)
    assert not any(p.requires_grad for p in [*loaded.vae.parameters(), *loaded.unet.parameters()])


def test_a_reloaded_pipeline_saves_no_local_path(tmp_path):
    # diffusers records the folder each component came from as `_name_or_path`; a pushed folder must not carry it.
    tiny_pipeline().save_pretrained(tmp_path / "first")
    DivaPipeline.from_pretrained(tmp_path / "first").save_pretrained(tmp_path / "second")
    for config_file in (tmp_path / "second").glob("*/config.json"):
        assert str(tmp_path) not in config_file.read_text(), config_file


def _remote_code_round_trip_case(folder):
    pipe = tiny_pipeline()
    images, timesteps, noise = fixed_draws()
    expected = pipe(images, timesteps=timesteps, noise=noise).loss
    pipe.save_pretrained(folder / "pipe")
    torch.save({"images": images, "timesteps": timesteps, "noise": noise, "loss": expected}, folder / "case.pt")
    return """
        import torch
        from diffusers import DiffusionPipeline
        case = torch.load("case.pt", weights_only=True)
        pipe = DiffusionPipeline.from_pretrained("pipe", trust_remote_code=True)
        assert type(pipe).__name__ == "DivaPipeline" and type(pipe).__module__.startswith("diffusers_modules")
        assert type(pipe.condition_model).__module__.startswith("diffusers_modules")
        loss = pipe(case["images"], timesteps=case["timesteps"], noise=case["noise"]).loss
        torch.testing.assert_close(loss, case["loss"], atol=0, rtol=0)
        # A pipeline loaded as remote code saves a folder that is again loadable as remote code.
        pipe.save_pretrained("resaved")
        again = DiffusionPipeline.from_pretrained("resaved", trust_remote_code=True)
        torch.testing.assert_close(
            again(case["images"], timesteps=case["timesteps"], noise=case["noise"]).loss, case["loss"], atol=0, rtol=0
        )
        """


@checked_without_package(_remote_code_round_trip_case)
def test_round_trip_remote_code_fresh_interpreter(without_package):
    assert without_package.error is None, without_package.error


def test_diffusion_loss_keeps_graph_only_for_the_condition_model():
    pipe = tiny_pipeline()
    pipe.condition_model.train()
    images, timesteps, noise = fixed_draws()
    out = pipe.diffusion_loss(images, timesteps=timesteps, noise=noise)
    out.loss.backward()
    assert all(p.grad is not None for p in pipe.condition_model.parameters())
    assert all(p.grad is None for p in [*pipe.vae.parameters(), *pipe.unet.parameters()])
    assert not pipe(images).loss.requires_grad


def test_reconstruct_and_pil_input():
    pipe = tiny_pipeline()
    pil = [Image.fromarray(np.random.RandomState(i).randint(0, 255, (16, 16, 3), dtype=np.uint8)) for i in range(2)]
    tensor = images_to_tensor(pil)
    assert tensor.shape == (2, 3, 16, 16) and 0 <= tensor.min() and tensor.max() <= 1
    out = pipe.reconstruct(pil, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 3, 16, 16) and out.images.min() >= 0 and out.images.max() <= 1
    assert pipe(pil).condition.shape == (2, 8, 32)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="cross_attention_dim"):
        tiny_pipeline(cross=64)
    with pytest.raises(ValueError, match="same size"):
        images_to_tensor([np.zeros((16, 16, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)])
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="do not fit the VAE"):
        pipe(torch.rand(1, 3, 18, 18))
