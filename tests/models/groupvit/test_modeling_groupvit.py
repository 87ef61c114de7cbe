"""ZooGroupViTModel: the shared battery, parity with transformers' GroupViTModel, straight-through assignment, the
multi-label loss against a naive loop, SyncBN semantics and bad input."""

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers import GroupViTConfig, GroupViTModel

from hf_clipzoo.models.groupvit import (
    ZooGroupViTConfig,
    ZooGroupViTModel,
    gumbel_softmax_straight_through,
    hard_straight_through,
    multi_label_targets,
)
from tests.testing_utils import TINY_TEXT_CONFIG, ClipZooModelTesterMixin, tiny_input_ids

TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=4,
    depths=[2, 1, 1],
    num_group_tokens=[8, 4, 0],
    num_output_groups=[8, 4, 4],
    num_attention_heads=4,
    image_size=30,
    patch_size=2,
)


def tiny_kwargs(**overrides):
    return dict(
        text_config=dict(TINY_TEXT_CONFIG),
        vision_config=dict(TINY_VISION),
        projection_dim=16,
        projection_intermediate_dim=24,
        **overrides,
    )


def tiny_inputs(batch=3, prompts=3, image_size=30):
    torch.manual_seed(1)
    return dict(
        input_ids=tiny_input_ids(batch),
        pixel_values=torch.randn(batch, 3, image_size, image_size),
        prompt_input_ids=tiny_input_ids(batch * prompts, seq_len=5),
    )


class TestZooGroupViTModel(ClipZooModelTesterMixin):
    model_class = ZooGroupViTModel
    compared_outputs = ("logits_per_image", "image_embeds", "text_embeds")
    invalid_configs = (
        (dict(eval_assignment="gumbel"), "eval_assignment"),
        (dict(gumbel_tau=0.0), "gumbel_tau"),
        (dict(multi_label_loss_weight=-1.0), "multi_label_loss_weight"),
        (dict(vision_config=dict(TINY_VISION, hidden_size=30)), "divisible"),
        (dict(vision_config=dict(TINY_VISION, num_output_groups=[8, 16, 4])), "merge groups"),
        (dict(vision_config=dict(TINY_VISION, depths=[2, 2])), "one entry per stage"),
        (dict(vision_config=dict(TINY_VISION, image_size=31)), "multiple of"),
        (dict(vision_config=dict(TINY_VISION, num_group_tokens=[0, 4, 0])), "first stage"),
    )

    def get_config(self):
        return ZooGroupViTConfig(**tiny_kwargs())

    def prepare_inputs(self, config):
        return tiny_inputs()


def test_presets_build_and_run():
    config = ZooGroupViTConfig.from_preset("world-micro")
    model = ZooGroupViTModel(config).eval()
    size = config.vision_config.image_size
    out = model(
        input_ids=tiny_input_ids(2, vocab_size=1000, eos_token_id=999), pixel_values=torch.randn(2, 3, size, size)
    )
    assert out.logits_per_image.shape == (2, 2)
    with pytest.raises(ValueError, match="Unknown preset"):
        ZooGroupViTConfig.from_preset("nope")


# --- parity with transformers ----------------------------------------------------------------------------------------
def _parity(tmp_path, hf_config, image_size):
    torch.manual_seed(0)
    reference = GroupViTModel(hf_config).eval()
    # Non-trivial BatchNorm statistics, so that a wrong eval path would show.
    for bn in (reference.visual_projection[1], reference.text_projection[1]):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    reference.save_pretrained(tmp_path)
    model, info = ZooGroupViTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    model.eval()
    vocab, eos = hf_config.text_config.vocab_size, hf_config.text_config.eos_token_id
    ids = tiny_input_ids(3, vocab_size=vocab, eos_token_id=eos)
    pixels = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        expected = reference(input_ids=ids, pixel_values=pixels, output_segmentation=True)
        got = model(input_ids=ids, pixel_values=pixels, output_segmentation=True)
    torch.testing.assert_close(got.image_embeds, expected.image_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.text_embeds, expected.text_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.logits_per_image, expected.logits_per_image, atol=1e-4, rtol=0)
    # The soft assignment maps are transformers' `vision_model_output.attentions`.
    for a, b in zip(got.assignment_maps, expected.vision_model_output.attentions, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    return model


def test_parity_with_transformers_tiny_checkpoint(tmp_path):
    hf_config = GroupViTConfig(text_config=dict(TINY_TEXT_CONFIG), vision_config=dict(TINY_VISION), projection_dim=16,
                               projection_intermediate_dim=24)  # fmt: skip
    model = _parity(tmp_path, hf_config, 30)
    # The multi-label temperature is absent from the transformers layout and starts from the config value.
    assert model.multi_label_logit_scale.item() == pytest.approx(model.config.multi_label_logit_scale_init_value)


def test_parity_with_transformers_default_size(tmp_path):
    # The released architecture (nvidia/groupvit-gcc-yfcc), random weights: every shape and key of the real layout.
    _parity(tmp_path, GroupViTConfig(), 224)


def test_share_temperature_has_exact_transformers_layout():
    model = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs(share_temperature=True)))
    reference = GroupViTModel(GroupViTConfig(**tiny_kwargs()))
    assert set(model.state_dict()) == set(reference.state_dict())


# --- assignment ------------------------------------------------------------------------------------------------------
def test_hard_straight_through_forward_one_hot_backward_soft():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, requires_grad=True)
    weights = torch.randn(2, 5, 7)
    hard = hard_straight_through(logits.softmax(dim=-2), dim=-2)
    # Forward: exactly one-hot over the groups (dim -2), at the argmax.
    assert torch.equal(hard.sum(dim=-2), torch.ones(2, 7))
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.argmax(dim=-2), logits.argmax(dim=-2))
    (hard * weights).sum().backward()
    grad_hard = logits.grad.clone()
    logits.grad = None
    (logits.softmax(dim=-2) * weights).sum().backward()
    torch.testing.assert_close(grad_hard, logits.grad, atol=0, rtol=0)


def test_gumbel_straight_through():
    torch.manual_seed(0)
    logits = torch.randn(4, 6, 9, requires_grad=True)
    weights = torch.randn(4, 6, 9)
    state = torch.get_rng_state()
    out = gumbel_softmax_straight_through(logits, tau=0.5, dim=-2)
    assert torch.equal(out.sum(dim=-2), torch.ones(4, 9))
    (out * weights).sum().backward()
    # Same noise, written out: g = -log(E), E ~ Exp(1); soft = softmax((logits + g) / tau).
    torch.set_rng_state(state)
    gumbels = -torch.empty_like(logits).exponential_().log()
    leaf = logits.detach().clone().requires_grad_(True)
    soft = ((leaf + gumbels) / 0.5).softmax(dim=-2)
    assert torch.equal(out.detach().argmax(dim=-2), soft.argmax(dim=-2))
    (soft * weights).sum().backward()
    torch.testing.assert_close(logits.grad, leaf.grad, atol=1e-6, rtol=0)


def test_eval_assignment_hard_vs_soft_and_training_noise():
    config = ZooGroupViTConfig(**tiny_kwargs())
    model = ZooGroupViTModel(config)
    assign = model.vision_model.encoder.stages[0].downsample.assign
    raw = torch.randn(2, 8, 20)
    assign.eval()
    hard = assign.assign(raw)
    assert torch.equal(hard, F.one_hot(raw.argmax(dim=-2), 8).transpose(1, 2).float())
    assign.eval_assignment = "soft"
    torch.testing.assert_close(assign.assign(raw), raw.softmax(dim=-2))
    assign.train()
    torch.manual_seed(0)
    noisy = [assign.assign(raw).argmax(dim=-2) for _ in range(5)]
    assert any(not torch.equal(n, noisy[0]) for n in noisy), "training assignment must be stochastic (Gumbel)"


def test_interpolated_position_embeddings_other_sizes():
    model = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs())).eval()
    out = model(input_ids=tiny_input_ids(1), pixel_values=torch.randn(1, 3, 44, 36), output_segmentation=True)
    assert out.feature_grid == (22, 18)
    assert out.assignment_maps[0].shape == (1, 8, 22 * 18)
    assert out.group_embeds.shape == (1, 4, 16)
    # At the native size interpolation is the identity.
    pixels = torch.randn(1, 3, 30, 30)
    a = model(input_ids=tiny_input_ids(1), pixel_values=pixels, interpolate_pos_encoding=True).image_embeds
    b = model(input_ids=tiny_input_ids(1), pixel_values=pixels).image_embeds
    torch.testing.assert_close(a, b)


# --- losses ----------------------------------------------------------------------------------------------------------
def test_multi_label_targets_block_structure():
    mask = multi_label_targets(3, 3)
    targets = mask / mask.sum(dim=1, keepdim=True)
    for i in range(3):
        for j in range(9):
            assert targets[i, j] == (1 / 3 if j // 3 == i else 0.0)
    assert torch.equal(mask.sum(dim=0), torch.ones(9))


def _naive_ce(logits_row, target_row):
    log_probs = [logits_row[k] - torch.logsumexp(logits_row, dim=0) for k in range(len(logits_row))]
    return -sum(target_row[k] * log_probs[k] for k in range(len(logits_row)))


def test_losses_equal_naive_formula():
    model = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs(multi_label_loss_weight=0.7)))
    with torch.no_grad():
        model.logit_scale.fill_(1.3)
        model.multi_label_logit_scale.fill_(2.1)
    model.train()
    out = model(**tiny_inputs(batch=3, prompts=3), return_loss=True)
    img, txt, prm = out.image_embeds.detach(), out.text_embeds.detach(), out.prompt_embeds.detach()
    B, P = 3, 3
    # L_IT: CLIP InfoNCE, image i <-> caption i, scale exp(1.3).
    s = torch.tensor(1.3).exp()
    l_img = sum(_naive_ce(torch.stack([s * img[i] @ txt[j] for j in range(B)]), [float(i == j) for j in range(B)])
                for i in range(B)) / B  # fmt: skip
    l_txt = sum(_naive_ce(torch.stack([s * txt[j] @ img[i] for i in range(B)]), [float(i == j) for i in range(B)])
                for j in range(B)) / B  # fmt: skip
    expected_it = (l_img + l_txt) / 2
    # L_ML: image -> all prompts with 1/P on its own P prompts; prompt -> all images one-hot; scale exp(2.1).
    m = torch.tensor(2.1).exp()
    ml_img = sum(
        _naive_ce(torch.stack([m * img[i] @ prm[k] for k in range(B * P)]), [(1 / P if k // P == i else 0.0) for k in range(B * P)])
        for i in range(B)
    ) / B  # fmt: skip
    ml_txt = sum(
        _naive_ce(torch.stack([m * prm[k] @ img[i] for i in range(B)]), [float(k // P == i) for i in range(B)])
        for k in range(B * P)
    ) / (B * P)  # fmt: skip
    expected_ml = (ml_img + ml_txt) / 2
    torch.testing.assert_close(out.image_text_loss.detach(), expected_it, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.multi_label_loss.detach(), expected_ml, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss.detach(), expected_it + 0.7 * expected_ml, atol=1e-5, rtol=0)


def test_captions_and_prompts_share_one_text_pass():
    # Padding the captions to the prompts' length must not change the pooled EOS features (causal mask).
    model = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs())).eval()
    inputs = tiny_inputs(batch=2, prompts=3)
    inputs["prompt_input_ids"] = tiny_input_ids(6, seq_len=11)
    with torch.no_grad():
        joint = model(**inputs)
        alone = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    torch.testing.assert_close(joint.text_embeds, alone.text_embeds, atol=1e-6, rtol=0)


def test_process_group_batchnorm_is_batchnorm_on_one_process():
    model = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs()))
    reference = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs()))
    reference.load_state_dict(model.state_dict())
    model.convert_sync_batchnorm()
    assert type(model.visual_projection[1]).__name__ == "ProcessGroupBatchNorm1d"
    assert set(model.state_dict()) == set(reference.state_dict())
    model.train()
    reference.train()
    inputs = tiny_inputs()
    torch.manual_seed(3)
    a = model(**inputs, return_loss=True)
    torch.manual_seed(3)
    b = reference(**inputs, return_loss=True)
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(model.visual_projection[1].running_var, reference.visual_projection[1].running_var)


# --- bad input -------------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    model = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs())).eval()
    ids = tiny_input_ids(2)
    with pytest.raises(ValueError, match="smaller than one 2x2 patch"):
        model(input_ids=ids, pixel_values=torch.randn(2, 3, 1, 30))
    with pytest.raises(ValueError, match="does not divide"):
        model(input_ids=ids, pixel_values=torch.randn(2, 3, 30, 30), prompt_input_ids=tiny_input_ids(5))
    with pytest.raises(ValueError, match="batches must match"):
        model(input_ids=tiny_input_ids(3), pixel_values=torch.randn(2, 3, 30, 30), return_loss=True)
    with pytest.raises(ValueError, match="shape"):
        model(input_ids=ids, pixel_values=torch.randn(2, 30, 30))
    with pytest.raises(ValueError, match="needs both"):
        model(pixel_values=torch.randn(2, 3, 30, 30))


def test_auto_model_resolves_zoo_type(tmp_path):
    model = ZooGroupViTModel(ZooGroupViTConfig(**tiny_kwargs()))
    model.save_pretrained(tmp_path)
    assert type(transformers.AutoModel.from_pretrained(tmp_path)) is ZooGroupViTModel
