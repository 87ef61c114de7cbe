"""APE / APE-T / Tip-Adapter / Tip-Adapter-F: formulas against written-out versions, save/load, pipeline, bad input."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModel, AutoModelForZeroShotImageClassification, pipeline

from hf_clipzoo.models.ape import (
    APEConfig,
    APEModel,
    APETConfig,
    APETModel,
    TipAdapterConfig,
    TipAdapterFModel,
    TipAdapterModel,
    build_adapter,
)
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from tests.models.clip.test_processing_clip import tiny_processor
from tests.testing_utils import TINY_TEXT_CONFIG, TINY_VISION_CONFIG, ClipZooModelTesterMixin

D, Q = 16, 8
CLASS_NAMES = ["red circle", "blue square", "green star", "red star"]
C, K = len(CLASS_NAMES), 3


def tiny_encoder_config() -> ZooCLIPConfig:
    return ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=D)


def tiny_encoder(seed: int = 0) -> ZooCLIPModel:
    torch.manual_seed(seed)
    return ZooCLIPModel(tiny_encoder_config()).eval()


def random_state(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "text_weights": F.normalize(torch.randn(C, D, generator=generator), dim=-1),
        "cache_keys": F.normalize(torch.randn(C * K, D, generator=generator), dim=-1),
    }


def random_adapter(model_class, seed: int = 0, **kwargs):
    kwargs.setdefault("tokenizer", tiny_processor().tokenizer)
    if issubclass(model_class, APEModel):
        kwargs.setdefault("num_refined_channels", Q)
    return build_adapter(model_class, tiny_encoder(), class_names=CLASS_NAMES, **random_state(seed), **kwargs)


def random_embeds(n: int = 5, seed: int = 1) -> torch.Tensor:
    return F.normalize(torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), dim=-1)


# --- the shared battery --------------------------------------------------------------------------------------------
class _AdapterTester(ClipZooModelTesterMixin):
    compared_outputs = ("logits", "logits_per_image")
    invalid_configs = (
        ({"encoder_config": tiny_encoder_config(), "init_alpha": -1.0}, "init_alpha"),
        ({"encoder_config": tiny_encoder_config(), "init_beta": 0.0}, "init_beta"),
        ({"encoder_config": tiny_encoder_config(), "shots_per_class": 0}, "shots_per_class"),
        ({"encoder_config": tiny_encoder_config(), "class_names": []}, "class_names"),
        ({"encoder_config": {"model_type": "no-such-encoder"}}, "Unknown encoder"),
    )

    def get_config(self):
        return self.model_class.config_class(
            encoder_config=tiny_encoder_config(),
            class_names=CLASS_NAMES,
            shots_per_class=K,
            **({"num_refined_channels": Q} if issubclass(self.model_class, APEModel) else {}),
        )

    def _model(self, config=None):
        # A built adapter (random text weights and cache), so outputs are not trivially equal.
        torch.manual_seed(0)
        model = self.model_class(config or self.get_config())
        state = random_state()
        with torch.no_grad():
            model.text_weights.copy_(state["text_weights"])
            model.cache_keys.copy_(state["cache_keys"])
            if isinstance(model, APEModel):
                model.channel_idx.copy_(torch.randperm(D)[:Q])
        return model

    def prepare_inputs(self, config):
        torch.manual_seed(1)
        return {"pixel_values": torch.randn(3, 3, 30, 30), "labels": torch.tensor([0, 3, 1])}


class _TrainingFreeTester(_AdapterTester):
    def test_gradient_checkpointing_equivalence(self):
        model = self._model().eval()
        inputs = self.prepare_inputs(model.config)
        before = self._outputs(model, inputs)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._assert_close(before, self._outputs(model, inputs), atol=1e-6)

    # Nothing is trainable (the encoder is frozen): the loss is a metric, not something to back-propagate.
    def test_backward_reaches_every_parameter(self):
        model = self._model()
        assert not [n for n, p in model.named_parameters() if p.requires_grad]
        assert torch.isfinite(model(**self.prepare_inputs(model.config)).loss)

    def test_return_loss_finite_and_differentiable(self):
        model = self._model()
        out = model(**self.prepare_inputs(model.config), return_loss=True)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss) and not out.loss.requires_grad


class TestTipAdapterModel(_TrainingFreeTester):
    model_class = TipAdapterModel


class TestTipAdapterFModel(_AdapterTester):
    model_class = TipAdapterFModel


class TestAPEModel(_TrainingFreeTester):
    model_class = APEModel
    invalid_configs = _AdapterTester.invalid_configs + (
        ({"encoder_config": tiny_encoder_config(), "num_refined_channels": D + 1}, "num_refined_channels"),
        ({"encoder_config": tiny_encoder_config(), "criterion_weight": 1.5}, "criterion_weight"),
        ({"encoder_config": tiny_encoder_config(), "init_gamma": -0.1}, "init_gamma"),
    )


class TestAPETModel(_AdapterTester):
    model_class = APETModel
    invalid_configs = TestAPEModel.invalid_configs + (
        ({"encoder_config": tiny_encoder_config(), "channel_mode": "replace"}, "channel_mode"),
    )

    def _model(self, config=None):
        model = super()._model(config)
        with torch.no_grad():  # a trained-looking state, so save/load compares non-trivial parameters
            model.residual.normal_(std=0.1)
            model.value_weights.uniform_(0.5, 1.5)
        return model


# --- formulas against written-out versions -----------------------------------------------------------------------
def test_tip_adapter_logits_match_formula():
    model = random_adapter(TipAdapterModel, init_alpha=1.7, init_beta=5.5)
    f = random_embeds()
    W, Fk, L = model.text_weights, model.cache_keys, model.cache_values
    expected = 100.0 * f @ W.t() + 1.7 * torch.exp(-5.5 * (1 - f @ Fk.t())) @ L
    torch.testing.assert_close(model(image_embeds=f).logits, expected)
    # The affinity itself, entry by entry: exp(−β (1 − cos)).
    A = torch.empty(f.shape[0], C * K)
    for n in range(f.shape[0]):
        for k in range(C * K):
            A[n, k] = torch.exp(torch.tensor(-5.5 * (1 - float(f[n] @ Fk[k]))))
    for n in range(f.shape[0]):
        for c in range(C):
            value = 100.0 * float(f[n] @ W[c]) + 1.7 * float(A[n, c * K : (c + 1) * K].sum())
            assert abs(float(model(image_embeds=f).logits[n, c]) - value) < 1e-3


def test_tip_adapter_f_uses_its_trained_keys():
    model = random_adapter(TipAdapterFModel, init_alpha=2.0, init_beta=3.0)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["cache_keys"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == C * K * D
    with torch.no_grad():
        model.cache_keys.add_(0.3 * torch.randn_like(model.cache_keys))  # fine-tuned keys are not re-normalised
    f = random_embeds()
    expected = 100.0 * f @ model.text_weights.t() + 2.0 * torch.exp(-3.0 * (1 - f @ model.cache_keys.t())) @ (
        model.cache_values
    )
    torch.testing.assert_close(model(image_embeds=f).logits, expected)


def official_ape_logits(f, W, Fk, L, idx, alpha, beta, gamma):
    """APE's training-free logits written as the official `main.py::APE` (W as (D, C), keys (C·K, D))."""
    W = W.t()
    new_W = W[idx, :]
    new_W = new_W / new_W.norm(dim=0, keepdim=True)
    new_keys = Fk[:, idx]
    new_keys = new_keys / new_keys.norm(dim=-1, keepdim=True)
    new_f = f[:, idx]
    new_f = new_f / new_f.norm(dim=-1, keepdim=True)
    R_fW = 100.0 * f @ W
    R_fF = new_f @ new_keys.t()
    key_logits = (new_keys @ new_W).softmax(1)
    cache_div = torch.sum(L * torch.log2((L + 1e-6) / (key_logits + 1e-6)), dim=1)[:, None]
    soft_values = L * (cache_div * gamma).exp()
    return R_fW + ((-1) * (beta - beta * R_fF)).exp() @ soft_values * alpha


def test_ape_logits_match_official_formula():
    model = random_adapter(APEModel, init_alpha=2.0, init_beta=4.0, init_gamma=0.3)
    f = random_embeds()
    expected = official_ape_logits(
        f, model.text_weights, model.cache_keys, model.cache_values, model.channel_idx, 2.0, 4.0, 0.3
    )
    torch.testing.assert_close(model(image_embeds=f).logits, expected, atol=1e-4, rtol=1e-5)
    # The refined-cache memo follows in-place changes of the buffers.
    with torch.no_grad():
        model.cache_keys.copy_(random_state(seed=5)["cache_keys"])
    expected = official_ape_logits(
        f, model.text_weights, model.cache_keys, model.cache_values, model.channel_idx, 2.0, 4.0, 0.3
    )
    torch.testing.assert_close(model(image_embeds=f).logits, expected, atol=1e-4, rtol=1e-5)


def test_ape_t_modify_mode_matches_official_training_forward():
    model = random_adapter(APETModel, channel_mode="modify", renormalize=False, init_alpha=1.5, init_beta=2.0)
    with torch.no_grad():
        model.residual.normal_(std=0.1)
        model.value_weights.uniform_(0.5, 1.5)
    f = random_embeds()
    # `utils.py::APE_Training.forward` + `main.py::APE_T` written out (keys (C·K, D), W (D, C)).
    idx, res = model.channel_idx, model.residual
    res_keys = res.unsqueeze(1).repeat(1, K, 1).reshape(-1, Q)
    new_keys = model.cache_keys.clone()
    new_keys[:, idx] = new_keys[:, idx] + res_keys
    new_W = model.text_weights.t().clone()
    new_W[idx, :] = model.text_weights.t()[idx, :] + res.t()
    new_values = model.cache_values * model.value_weights
    expected = 100.0 * f @ new_W + ((-1) * (2.0 - 2.0 * f @ new_keys.t())).exp() @ new_values * 1.5
    torch.testing.assert_close(model(image_embeds=f).logits, expected, atol=1e-4, rtol=1e-5)


def test_ape_t_extract_mode_matches_written_formula():
    model = random_adapter(APETModel, init_alpha=1.5, init_beta=2.0)
    with torch.no_grad():
        model.residual.normal_(std=0.1)
        model.value_weights.uniform_(0.5, 1.5)
    f = random_embeds()
    idx, res = model.channel_idx, model.residual
    rows = []  # entry by entry: key i of class i // K gets residual row i // K
    for i in range(C * K):
        rows.append(F.normalize(F.normalize(model.cache_keys[i, idx], dim=0) + res[i // K], dim=0))
    keys = torch.stack(rows)
    W = model.text_weights.clone()
    W[:, idx] += res
    W = F.normalize(W, dim=-1)
    f_r = F.normalize(f[:, idx], dim=-1)
    expected = 100.0 * f @ W.t() + 1.5 * torch.exp(-2.0 * (1 - f_r @ keys.t())) @ (
        model.cache_values * model.value_weights
    )
    torch.testing.assert_close(model(image_embeds=f).logits, expected, atol=1e-4, rtol=1e-5)


def test_fresh_ape_t_equals_ape_with_same_alpha_beta():
    state = random_state()
    idx = torch.randperm(D)[:Q]
    common = dict(class_names=CLASS_NAMES, channel_idx=idx, init_alpha=3.0, init_beta=6.0, **state)
    ape = build_adapter(APEModel, tiny_encoder(), init_gamma=0.0, **common)
    ape_t = build_adapter(APETModel, tiny_encoder(), **common)
    f = random_embeds(7)
    torch.testing.assert_close(ape_t(image_embeds=f).logits, ape(image_embeds=f).logits, atol=1e-4, rtol=1e-6)
    trainable = {n: p.numel() for n, p in ape_t.named_parameters() if p.requires_grad}
    assert trainable == {"residual": C * Q, "value_weights": C * K}
    assert sum(trainable.values()) == C * Q + C * K
    assert not [n for n, p in ape.named_parameters() if p.requires_grad]


def test_pixel_values_and_image_embeds_paths_agree():
    model = random_adapter(APEModel)
    pixel_values = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        embeds = model.encoder.get_image_features(pixel_values=pixel_values).pooler_output
        torch.testing.assert_close(
            model(pixel_values=pixel_values).logits, model(image_embeds=embeds).logits, atol=1e-5, rtol=0
        )


def test_loss_is_cross_entropy_and_trains_ape_t():
    model = random_adapter(APETModel).train()
    f, labels = random_embeds(8), torch.arange(8) % C
    out = model(image_embeds=f, labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    out.loss.backward()
    assert model.residual.grad is not None and model.value_weights.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())


# --- save / load -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class", [TipAdapterModel, TipAdapterFModel, APEModel, APETModel])
def test_buffers_survive_save_load_bit_exactly(tmp_path, model_class):
    model = random_adapter(model_class)
    with torch.no_grad():
        model.alpha.fill_(1.2345678), model.beta.fill_(6.54321)
        if isinstance(model, APEModel):
            model.gamma.fill_(0.777)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is model_class
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    for key, value in state.items():
        assert torch.equal(value, loaded_state[key]) and value.dtype == loaded_state[key].dtype, key
    assert loaded.config.class_names == CLASS_NAMES
    assert loaded.config.class_token_ids == model.config.class_token_ids
    f = random_embeds()
    assert torch.equal(model(image_embeds=f).logits, loaded.eval()(image_embeds=f).logits)


def test_wraps_a_transformers_clip_model(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    encoder = CLIPModel(
        CLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=D)
    ).eval()
    model = build_adapter(APEModel, encoder, class_names=CLASS_NAMES, num_refined_channels=Q, **random_state())
    assert type(model.encoder) is CLIPModel
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    pixel_values = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        expected = F.normalize(encoder.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
        torch.testing.assert_close(loaded(pixel_values=pixel_values).image_embeds, expected, atol=1e-6, rtol=0)


# --- the zero-shot-image-classification pipeline -----------------------------------------------------------------
def test_zero_shot_pipeline_scores_built_classes(tmp_path):
    processor = tiny_processor()
    model = random_adapter(APEModel)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForZeroShotImageClassification.from_pretrained(tmp_path)
    classifier = pipeline(
        "zero-shot-image-classification",
        model=loaded,
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )
    image = Image.new("RGB", (40, 40), "red")
    labels = ["green star", "red circle", "red star"]
    result = classifier(image, candidate_labels=labels)
    assert sorted(r["label"] for r in result) == sorted(labels)
    # The scores are the softmax of the adapter's logits of those classes.
    pixel_values = processor(images=[image])["pixel_values"]
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits[0, [CLASS_NAMES.index(name) for name in labels]]
    expected = dict(zip(labels, logits.softmax(-1).tolist()))
    for row in result:
        assert abs(row["score"] - expected[row["label"]]) < 1e-5
    # "red star" contains "red" and "star" but only one class name matches it whole; the template is irrelevant.
    other = classifier(image, candidate_labels=["red star", "blue square"], hypothesis_template="{} drawn here.")
    assert sorted(r["label"] for r in other) == ["blue square", "red star"]
    with pytest.raises(ValueError, match="names none of the 4 classes"):
        classifier(image, candidate_labels=["purple hexagon"])


def test_prompts_without_token_ids_raise():
    model = random_adapter(TipAdapterModel, tokenizer=None)
    with pytest.raises(ValueError, match="class_token_ids"):
        model(image_embeds=random_embeds(1), input_ids=torch.tensor([[97, 1, 98]]))


# --- bad input -----------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    model = random_adapter(APEModel)
    with pytest.raises(ValueError, match="exactly one of"):
        model()
    with pytest.raises(ValueError, match=r"\(batch, 16\)"):
        model(image_embeds=torch.randn(2, 7))
    with pytest.raises(ValueError, match="channels, height, width"):
        model(pixel_values=torch.randn(3, 30, 30))
    with pytest.raises(ValueError, match="needs `labels`"):
        model(image_embeds=random_embeds(2), return_loss=True)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\)"):
        model(image_embeds=random_embeds(2), labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="needs `config.class_names`"):
        APEModel(APEConfig(encoder_config=tiny_encoder_config(), num_refined_channels=Q))


def test_build_adapter_rejects_inconsistent_state():
    state = random_state()
    with pytest.raises(ValueError, match="dimension mismatch"):
        build_adapter(
            TipAdapterModel,
            tiny_encoder(),
            class_names=CLASS_NAMES,
            text_weights=state["text_weights"],
            cache_keys=torch.randn(C * K, D + 2),
        )
    with pytest.raises(ValueError, match="K >= 1 per class"):
        build_adapter(
            TipAdapterModel,
            tiny_encoder(),
            class_names=CLASS_NAMES,
            text_weights=state["text_weights"],
            cache_keys=state["cache_keys"][:-1],
        )
    with pytest.raises(ValueError, match="num_refined_channels"):
        build_adapter(APEModel, tiny_encoder(), class_names=CLASS_NAMES, num_refined_channels=D + 1, **state)
    with pytest.raises(ValueError, match="3 class names for 4"):
        build_adapter(TipAdapterModel, tiny_encoder(), class_names=CLASS_NAMES[:3], **state)


def test_config_embed_dim_defaults_to_encoder_projection():
    config = TipAdapterConfig(encoder_config=tiny_encoder_config().to_dict(), class_names=["a"])
    assert config.embed_dim == D and type(config.encoder_config) is ZooCLIPConfig
    assert APETConfig(encoder_config=tiny_encoder_config(), num_refined_channels=4).criterion_weight == 0.2
