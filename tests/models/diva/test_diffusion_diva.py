"""Loading a diffusion model folder in Stable Diffusion 2.1-base's layout (PNDM scheduler config, CLIP text encoder +
tokenizer) and encoding the fixed prompt; the world presets."""

import pytest
import torch
from diffusers import PNDMScheduler
from transformers import CLIPTextConfig, CLIPTextModel

from hf_clipzoo.backbones.tokenizer import load_clip_tokenizer
from hf_clipzoo.models.diva.diffusion import (
    build_diffusion,
    encode_prompt_with_text_encoder,
    load_diffusion_folder,
)


@pytest.fixture
def sd_like_folder(tmp_path):
    """The subfolders of `stable-diffusion-2-1-base`, with tiny modules and SD 2.1-base's scheduler settings."""
    torch.manual_seed(0)
    vae, unet, _ = build_diffusion("micro", 32, 16)
    vae.save_pretrained(tmp_path / "vae")
    unet.save_pretrained(tmp_path / "unet")
    PNDMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, prediction_type="epsilon",
    ).save_pretrained(tmp_path / "scheduler")  # fmt: skip
    tokenizer = load_clip_tokenizer(77)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    text_encoder = CLIPTextModel(text_config).eval()
    text_encoder.save_pretrained(tmp_path / "text_encoder")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    return tmp_path, text_encoder, tokenizer


def test_loads_an_sd_layout_folder_and_keeps_its_noise_schedule(sd_like_folder):
    folder, text_encoder, tokenizer = sd_like_folder
    vae, unet, scheduler, extras = load_diffusion_folder(folder)
    assert extras == {} and unet.config.cross_attention_dim == 32
    reference = PNDMScheduler.from_pretrained(folder / "scheduler")
    torch.testing.assert_close(scheduler.alphas_cumprod, reference.alphas_cumprod, atol=0, rtol=0)
    assert scheduler.config.num_train_timesteps == 1000 and scheduler.config.prediction_type == "epsilon"


def test_prompt_embedding_is_the_padded_last_hidden_state(sd_like_folder):
    folder, text_encoder, tokenizer = sd_like_folder
    embeds = encode_prompt_with_text_encoder(folder, "a photo of a .")
    ids = tokenizer("a photo of a .", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = text_encoder(ids).last_hidden_state[0]
    assert embeds.shape == (77, 32)
    torch.testing.assert_close(embeds, expected, atol=0, rtol=0)
    assert encode_prompt_with_text_encoder(folder, "", allow_empty=True).shape == (77, 32)
    with pytest.raises(ValueError, match="prompt is empty"):
        encode_prompt_with_text_encoder(folder, "")


def test_bad_folders_and_presets_raise(tmp_path):
    with pytest.raises(ValueError, match="not a diffusion model folder"):
        load_diffusion_folder(tmp_path)
    with pytest.raises(ValueError, match="Unknown diffusion preset"):
        build_diffusion("huge", 32, 32)
    with pytest.raises(ValueError, match="multiple of 4"):
        build_diffusion("micro", 32, 30)
