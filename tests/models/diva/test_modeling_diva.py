"""DIVA condition module: the shared battery, condition shapes and values against naive versions, the diffusion loss
against the written-out ε-prediction MSE, frozen components, bad input."""

import pytest
import torch

from hf_clipzoo.models.diva import DivaConfig, DivaModel
from hf_clipzoo.models.diva.configuration_diva import IMAGENET_MEAN, IMAGENET_STD
from hf_clipzoo.models.diva.diffusion import build_diffusion, check_prompt
from hf_clipzoo.models.diva.modeling_diva import encode_latents
from tests.testing_utils import ClipZooModelTesterMixin

# 16 px with patch 4: 16 patches; the micro diffusion model reduces 16 px images to 8 px latents.
VISION = dict(
    image_size=16, patch_size=4, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4
)
CROSS = 32


def tiny_config(**kwargs) -> DivaConfig:
    defaults = dict(
        vision_config=VISION, projection_dim=24, cross_attention_dim=CROSS, num_sampled_tokens=7, prompt_length=8
    )
    return DivaConfig(**{**defaults, **kwargs})


def tiny_diffusion():
    vae, unet, scheduler = build_diffusion("micro", CROSS, 16)
    return vae, unet, scheduler


def tiny_model(config=None, seed=0) -> DivaModel:
    torch.manual_seed(seed)
    model = DivaModel(config or tiny_config())
    model.set_prompt_embeds(torch.randn(model.config.prompt_length, CROSS))
    return model


class TestDivaModel(ClipZooModelTesterMixin):
    model_class = DivaModel
    compared_outputs = ("condition", "image_embeds")
    invalid_configs = (
        ({"token_selection": "topk"}, "token_selection"),
        ({"text_combination": "concat"}, "text_combination"),
        ({"vae_input_normalization": "none"}, "vae_input_normalization"),
        ({"diffusion_loss": "huber"}, "diffusion_loss"),
        ({"num_noise_draws": 0}, "num_noise_draws"),
        ({"condition_projection": False}, "no projection is configured"),
        ({"num_sampled_tokens": 10}, "lengths must match"),
        ({"token_selection": "avg_pool", "pool_kernel_size": 0, "text_combination": "mean_broadcast"}, "pool_kernel"),
        ({"vision_config": {**VISION, "image_size": 18}}, "multiple"),
        ({"clip_image_std": [0.1, 0.2]}, "clip_image_std"),
    )

    def get_config(self):
        return tiny_config()

    def prepare_inputs(self, config):
        torch.manual_seed(1)
        return {"pixel_values": torch.randn(2, 3, 16, 16)}

    def _model(self, config=None):
        model = super()._model(config)
        with torch.no_grad():
            model.prompt_embeds.normal_()
        model.attach_diffusion(*tiny_diffusion())
        return model

    def _outputs(self, model, inputs):
        model.eval()
        with torch.no_grad():
            out = model(**inputs)
        return {k: out[k] for k in self.compared_outputs}

    def test_invalid_config_raises(self):
        for kwargs, message in self.invalid_configs:
            with pytest.raises(ValueError, match=message):
                tiny_config(**kwargs)


class TestDivaAllTokensMeanBroadcast(TestDivaModel):
    def get_config(self):
        return tiny_config(token_selection="all", text_combination="mean_broadcast")


class TestDivaAvgPoolNoClipProjection(TestDivaModel):
    def get_config(self):
        return tiny_config(
            token_selection="avg_pool",
            pool_kernel_size=6,
            text_combination="mean_broadcast",
            use_clip_projection=False,
            diffusion_loss="l1",
        )


# --- condition --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, tokens",
    [
        (dict(), 8),  # CLS + 7 random
        (dict(token_selection="all", text_combination="mean_broadcast"), 17),  # CLS + 16 patches
        (dict(token_selection="avg_pool", pool_kernel_size=6, text_combination="mean_broadcast"), 3),  # 1 + 16 // 6
        (dict(token_selection="avg_pool", pool_kernel_size=4, prompt_length=5), 5),  # "add" with matching length
        (dict(use_clip_projection=False), 8),
        (dict(condition_projection=False, projection_dim=CROSS), 8),
        (dict(condition_projection=False, use_clip_projection=False), 8),  # hidden 32 == cross 32
    ],
)
def test_condition_shapes(kwargs, tokens):
    config = tiny_config(**kwargs)
    assert config.num_condition_tokens == tokens
    model = tiny_model(config)
    out = model(pixel_values=torch.randn(3, 3, 16, 16))
    assert out.condition.shape == (3, tokens, CROSS)
    assert out.visual_tokens.shape == (3, tokens, config.token_width)
    assert out.image_embeds.shape == (3, config.token_width)


def naive_condition(model: DivaModel, pixel_values, indices=None):
    """Per image: run the tower, pick [CLS] + tokens by hand, LayerNorm, projections, add the prompt token by token."""
    config = model.config
    hidden = model.vision_model(pixel_values=pixel_values).last_hidden_state
    results = []
    for b in range(hidden.shape[0]):
        rows = [hidden[b, 0]]
        patches = hidden[b, 1:]
        if config.token_selection == "random":
            rows += [patches[int(i)] for i in indices[b]]
        elif config.token_selection == "all":
            rows += [patches[i] for i in range(patches.shape[0])]
        else:
            k = config.pool_kernel_size
            for start in range(0, patches.shape[0] - k + 1, k):
                rows.append(sum(patches[start + j] for j in range(k)) / k)
        tokens = model.vision_model.post_layernorm(torch.stack(rows))
        if model.visual_projection is not None:
            tokens = tokens @ model.visual_projection.weight.T
        if model.condition_projection is not None:
            tokens = tokens @ model.condition_projection.weight.T + model.condition_projection.bias
        prompt = model.prompt_embeds
        if config.text_combination == "add":
            tokens = torch.stack([tokens[i] + prompt[i] for i in range(tokens.shape[0])])
        else:
            mean = sum(prompt[i] for i in range(prompt.shape[0])) / prompt.shape[0]
            tokens = torch.stack([tokens[i] + mean for i in range(tokens.shape[0])])
        results.append(tokens)
    return torch.stack(results)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(token_selection="all", text_combination="mean_broadcast"),
        dict(token_selection="avg_pool", pool_kernel_size=6, text_combination="mean_broadcast"),
    ],
)
def test_condition_equals_naive(kwargs):
    model = tiny_model(tiny_config(**kwargs)).eval()
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(pixel_values=pixel_values)
        expected = naive_condition(model, pixel_values, out.token_indices)
    torch.testing.assert_close(out.condition, expected, atol=1e-5, rtol=1e-5)


def test_random_tokens_are_drawn_with_replacement_per_image():
    # 100 draws from 16 patches: with replacement, duplicates are certain; without, the draw would be impossible.
    model = tiny_model(tiny_config(num_sampled_tokens=100, text_combination="mean_broadcast")).train()
    out = model(pixel_values=torch.randn(4, 3, 16, 16))
    indices = out.token_indices
    assert indices.shape == (4, 100) and indices.min() >= 0 and indices.max() < 16
    assert all(len(set(row.tolist())) < 100 for row in indices)
    assert not all(torch.equal(indices[0], indices[b]) for b in range(1, 4)), "each image draws its own tokens"
    # Training draws are fresh every call; eval draws are seeded (reproducible evaluation).
    assert not torch.equal(indices, model(pixel_values=torch.randn(4, 3, 16, 16)).token_indices)
    model.eval()
    pv = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(model(pixel_values=pv).condition, model(pixel_values=pv).condition, atol=0, rtol=0)


def test_prepare_pixel_values_exact_and_official_mismatch():
    images = torch.rand(2, 3, 16, 16)
    model = tiny_model()
    clip_pv, vae_pv = model.prepare_pixel_values(images)
    assert clip_pv.shape == (2, 3, 16, 16)
    torch.testing.assert_close(vae_pv, images * 2 - 1)
    torch.testing.assert_close(model.unnormalize(clip_pv), images, atol=1e-5, rtol=0)
    official = tiny_model(tiny_config(vae_input_normalization="imagenet_mismatch"))
    _, vae_official = official.prepare_pixel_values(images)
    for c in range(3):
        normalised = (images[:, c] - official.config.clip_image_mean[c]) / official.config.clip_image_std[c]
        expected = (normalised * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 2 - 1
        torch.testing.assert_close(vae_official[:, c], expected)
    # The CLIP branch is resized to the tower's resolution.
    clip_small, vae_big = model.prepare_pixel_values(torch.rand(1, 3, 64, 64))
    assert clip_small.shape == (1, 3, 16, 16) and vae_big.shape == (1, 3, 64, 64)


# --- loss -------------------------------------------------------------------------------------------------------
def test_loss_equals_written_out_epsilon_mse():
    model = tiny_model().eval()
    vae, unet, scheduler = tiny_diffusion()
    images = torch.rand(2, 3, 16, 16)
    clip_pv, vae_pv = model.prepare_pixel_values(images)
    timesteps = torch.tensor([[3, 950], [500, 0]])
    noise = torch.randn(2, 2, 4, 8, 8)
    with torch.no_grad():
        out = model.diffusion_loss(
            clip_pv, vae, unet, scheduler, vae_pixel_values=vae_pv, timesteps=timesteps, noise=noise
        )
        condition = model(pixel_values=clip_pv).condition
        x0 = vae.encode(vae_pv).latent_dist.mean * vae.config.scaling_factor
        # ᾱ_t of SD's scaled-linear schedule, written out.
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        total, count = 0.0, 0
        for k in range(2):
            for b in range(2):
                t = int(timesteps[k, b])
                alpha_bar = float(torch.prod(1 - betas[: t + 1]))
                x_t = alpha_bar**0.5 * x0[b] + (1 - alpha_bar) ** 0.5 * noise[k, b]
                prediction = unet(x_t[None], torch.tensor([t]), encoder_hidden_states=condition[b : b + 1]).sample[0]
                total += float(((prediction - noise[k, b]) ** 2).sum())
                count += prediction.numel()
    assert abs(out.loss.item() - total / count) < 1e-5 * max(1.0, total / count)


def test_velocity_target_and_l1():
    model = tiny_model(tiny_config(diffusion_loss="l1")).eval()
    vae, unet, _ = tiny_diffusion()
    from hf_clipzoo.models.diva.diffusion import build_scheduler

    scheduler = build_scheduler()
    scheduler.register_to_config(prediction_type="v_prediction")
    pv = torch.randn(1, 3, 16, 16)
    t, eps = torch.tensor([400]), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        out = model.diffusion_loss(pv, vae, unet, scheduler, timesteps=t, noise=eps)
        x0 = encode_latents(vae, model.unnormalize(pv) * 2 - 1)
        ab = scheduler.alphas_cumprod[400]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
        pred = unet(x_t, t, encoder_hidden_states=model(pixel_values=pv).condition).sample
    torch.testing.assert_close(out.loss, (pred - v).abs().mean(), atol=1e-6, rtol=1e-5)


def test_frozen_components_get_no_gradient_and_stay_bit_identical():
    model = tiny_model().train()
    vae, unet, scheduler = tiny_diffusion()
    model.attach_diffusion(vae, unet, scheduler)
    assert not any(p.requires_grad for p in [*vae.parameters(), *unet.parameters()])
    frozen_before = {f"vae.{k}": v.clone() for k, v in vae.state_dict().items()}
    frozen_before.update({f"unet.{k}": v.clone() for k, v in unet.state_dict().items()})
    clip_before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    images = torch.rand(2, 3, 16, 16)
    clip_pv, vae_pv = model.prepare_pixel_values(images)
    # The VAE runs without a graph.
    assert not encode_latents(vae, vae_pv).requires_grad
    for _ in range(2):
        optimizer.zero_grad()
        loss = model(pixel_values=clip_pv, vae_pixel_values=vae_pv, return_loss=True).loss
        loss.backward()
        assert all(p.grad is None for p in [*vae.parameters(), *unet.parameters()])
        assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
    for key, value in vae.state_dict().items():
        assert torch.equal(value, frozen_before[f"vae.{key}"]), key
    for key, value in unet.state_dict().items():
        assert torch.equal(value, frozen_before[f"unet.{key}"]), key
    after = model.state_dict()
    assert not torch.equal(after["visual_projection.weight"], clip_before["visual_projection.weight"])
    assert not torch.equal(
        after["vision_model.encoder.layers.0.self_attn.q_proj.weight"],
        clip_before["vision_model.encoder.layers.0.self_attn.q_proj.weight"],
    )
    # The prompt embedding is a buffer: fixed.
    assert torch.equal(after["prompt_embeds"], clip_before["prompt_embeds"])


def test_clip_vision_state_dict_loads_into_zoo_clip_with_zero_missing_vision_keys():
    from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel

    model = tiny_model()
    clip = ZooCLIPModel(ZooCLIPConfig(vision_config=VISION, projection_dim=24))
    result = clip.load_state_dict(model.clip_vision_state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(not k.startswith(("vision_model.", "visual_projection")) for k in result.missing_keys)


# --- bad input --------------------------------------------------------------------------------------------------
def test_images_that_do_not_fit_the_vae_raise():
    model = tiny_model()
    vae, unet, scheduler = tiny_diffusion()
    with pytest.raises(ValueError, match="do not fit the VAE"):
        model.diffusion_loss(
            torch.randn(1, 3, 16, 16), vae, unet, scheduler, vae_pixel_values=torch.randn(1, 3, 14, 14)
        )
    with pytest.raises(ValueError, match="channels"):
        model.diffusion_loss(
            torch.randn(1, 3, 16, 16), vae, unet, scheduler, vae_pixel_values=torch.randn(1, 1, 32, 32)
        )


def test_bad_clip_input_and_prompt_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match="for the CLIP tower"):
        model(pixel_values=torch.randn(1, 3, 14, 14))
    with pytest.raises(ValueError, match="needs `pixel_values`"):
        model()
    with pytest.raises(ValueError, match="attach_diffusion"):
        DivaModel(tiny_config())(pixel_values=torch.randn(1, 3, 16, 16), return_loss=True)
    with pytest.raises(ValueError, match="empty"):
        model.set_prompt_embeds(torch.zeros(0, CROSS))
    with pytest.raises(ValueError, match="must have shape"):
        model.set_prompt_embeds(torch.zeros(77, CROSS))
    with pytest.raises(ValueError, match="prompt is empty"):
        check_prompt("  ")
    assert check_prompt("", allow_empty=True) == ""
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.prepare_pixel_values(torch.full((1, 3, 16, 16), 2.0))
    vae, unet, scheduler = tiny_diffusion()
    with pytest.raises(ValueError, match="draws"):
        model.diffusion_loss(
            torch.randn(1, 3, 16, 16), vae, unet, scheduler, num_noise_draws=2, timesteps=torch.tensor([[1], [2], [3]])
        )
