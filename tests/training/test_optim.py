import math

import pytest
import torch

from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.training import build_optimizer, build_scheduler, lr_multiplier, param_groups
from tests.testing_utils import TINY_TEXT_CONFIG, TINY_VISION_CONFIG


def tiny_clip():
    return ZooCLIPModel(
        ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16)
    )


def test_no_decay_on_norms_biases_scales_and_embeddings():
    model = tiny_clip()
    decay, no_decay = param_groups(model, 0.2)
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "logit_scale" in no_decay_names
    assert "vision_model.embeddings.class_embedding" in no_decay_names
    assert "text_model.embeddings.position_embedding.weight" in no_decay_names
    assert "vision_model.embeddings.position_embedding.weight" in no_decay_names
    assert all(not n.endswith("bias") for n in decay_names)
    assert all("layer_norm" not in n and "layernorm" not in n for n in decay_names)
    assert "visual_projection.weight" in decay_names
    assert "text_model.encoder.layers.0.self_attn.q_proj.weight" in decay_names
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out_and_all_frozen_is_an_error():
    model = tiny_clip()
    model.text_model.requires_grad_(False)
    groups = param_groups(model, 0.1)
    optimised = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) not in optimised for p in model.text_model.parameters())
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.1)


def test_build_optimizer_kinds_and_errors():
    model = tiny_clip()
    adamw = build_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.9, 0.98)
    sgd = build_optimizer(model, name="sgd", lr=0.1, momentum=0.9)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    groups = build_optimizer([{"params": list(model.text_model.parameters()), "lr": 1e-4}], lr=1e-3, weight_decay=0.05)
    assert groups.param_groups[0]["lr"] == 1e-4 and groups.param_groups[0]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="Unknown optimizer"):
        build_optimizer(model, name="lion", lr=1e-3)
    with pytest.raises(ValueError, match="lr must be > 0"):
        build_optimizer(model, lr=0)


def naive_cosine(step, warmup, total):
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))


@pytest.mark.parametrize("name", ["cosine", "linear", "constant", "constant_with_warmup"])
def test_schedule_values(name):
    warmup, total = 3, 13
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = build_scheduler(optimizer, name=name, num_warmup_steps=warmup, num_training_steps=total)
    lrs = []
    for _ in range(total + 2):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for step, lr in enumerate(lrs):
        if name == "cosine":
            expected = naive_cosine(step, warmup, total)
        elif name == "linear":
            expected = (step + 1) / (warmup + 1) if step < warmup else max(0.0, 1 - (step - warmup) / (total - warmup))
        elif name == "constant":
            expected = 1.0
        else:
            expected = (step + 1) / (warmup + 1) if step < warmup else 1.0
        assert lr == pytest.approx(2.0 * expected), (name, step)
    assert lrs[0] > 0  # the first step already trains
    if name in ("cosine", "linear"):
        assert lrs[total] == pytest.approx(0.0, abs=1e-12)
    assert lr_multiplier(5, name="cosine", num_warmup_steps=0, num_training_steps=10) == pytest.approx(0.5)


def test_schedule_errors():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="Unknown lr scheduler"):
        build_scheduler(optimizer, name="polynomial", num_training_steps=10)
    with pytest.raises(ValueError, match="num_training_steps > 0"):
        build_scheduler(optimizer, num_training_steps=0)
