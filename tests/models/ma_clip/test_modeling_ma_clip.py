"""MA-CLIP: the shared battery, zero-init identity, frozen base, PEFT adapter checkpoints, naive formula checks."""

from __future__ import annotations

import math

import pytest
import torch

from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.models.ma_clip import MACLIPConfig, MACLIPModel
from hf_clipzoo.models.ma_clip.peft_ma_clip import get_ma_clip_peft_model, load_ma_clip_adapter
from tests.testing_utils import TINY_TEXT_CONFIG, ClipZooModelTesterMixin, tiny_input_ids

NUM_FRAMES = 4
VISION = dict(
    image_size=16, patch_size=4, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4
)


def tiny_clip_config() -> ZooCLIPConfig:
    return ZooCLIPConfig(text_config=dict(TINY_TEXT_CONFIG), vision_config=dict(VISION), projection_dim=16)


def tiny_config(**kwargs) -> MACLIPConfig:
    return MACLIPConfig(clip_config=tiny_clip_config(), num_frames=NUM_FRAMES, **kwargs)


def episode(way=3, shot=2, query=2, seed=0, num_frames=NUM_FRAMES) -> dict:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    return dict(
        support_pixel_values=torch.randn(way * shot, num_frames, 3, 16, 16, generator=generator),
        support_labels=torch.arange(way).repeat_interleave(shot),
        query_pixel_values=torch.randn(way * query, num_frames, 3, 16, 16, generator=generator),
        input_ids=tiny_input_ids(way),
        query_labels=torch.arange(way).repeat_interleave(query),
    )


def randomize_adapters(model: MACLIPModel, seed: int = 1) -> None:
    """Non-zero adapters / TPCM so that the formulas are exercised (zero-init would hide mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("clip."):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


class TestMACLIPModel(ClipZooModelTesterMixin):
    model_class = MACLIPModel
    compared_outputs = ("probs", "logits_query_support", "logits_query_text", "logits_support_text")
    invalid_configs = (
        (dict(clip_config=tiny_clip_config(), adapter_ratio=0.01), "zero-width bottleneck"),
        (dict(clip_config=tiny_clip_config(), num_frames=1), "num_frames"),
        (dict(clip_config=tiny_clip_config(), loss_alpha=1.5), "loss_alpha"),
        (dict(clip_config=tiny_clip_config(), multimodal_mode="sideways"), "multimodal_mode"),
        (dict(clip_config=tiny_clip_config(), prototype_num_heads=5), "prototype_num_heads"),
        (dict(clip_config=tiny_clip_config(), otam_lambda=0.0), "otam_lambda"),
        (dict(clip_config=tiny_clip_config(), peft_method="lora"), "LoRA baseline"),
    )

    def get_config(self):
        return tiny_config()

    def _model(self, config=None):
        model = super()._model(config)
        randomize_adapters(model)
        return model

    def prepare_inputs(self, config):
        inputs = episode()
        return inputs


# --- zero-init identity, frozen base ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["parallel", "replace"])
def test_zero_init_frame_features_equal_frozen_clip(mode):
    torch.manual_seed(0)
    model = MACLIPModel(tiny_config(multimodal_mode=mode)).eval()
    inputs = episode()
    videos = inputs["support_pixel_values"]
    with torch.no_grad():
        frozen = model.clip.get_image_features(videos.flatten(0, 1)).pooler_output.unflatten(0, videos.shape[:2])
        text = model.get_text_features(inputs["input_ids"])[inputs["support_labels"]]
        without_text = model.get_video_features(videos)
        with_text = model.get_video_features(videos, text)
    torch.testing.assert_close(without_text, frozen, atol=0, rtol=0)
    if mode == "parallel":
        torch.testing.assert_close(with_text, frozen, atol=0, rtol=0)
    else:
        # AIM's literal wiring: the text token changes the spatial attention already at initialisation.
        assert not torch.allclose(with_text, frozen, atol=1e-4)
    with torch.no_grad():
        out = model(**inputs)
    # TPCM starts as the identity too: prototypes are the mean over shots of the frozen frame features.
    expected = frozen.reshape(3, 2, NUM_FRAMES, -1).mean(1) if mode == "parallel" else None
    if expected is not None:
        torch.testing.assert_close(out.prototype_embeds, expected, atol=1e-6, rtol=0)


def test_only_adapters_and_prototype_module_train_and_base_is_bit_identical():
    torch.manual_seed(0)
    model = MACLIPModel(tiny_config())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith("clip.") for n in trainable)
    assert all(
        n.split(".")[0] in ("adapters", "prototype_module", "text_to_vision", "temporal_embedding") for n in trainable
    )
    base_before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    inputs = episode()
    for _ in range(3):
        model(**inputs, return_loss=True).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for key, value in model.clip.state_dict().items():
        assert torch.equal(value, base_before[key]), key
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("up.weight"))


# --- PEFT ---------------------------------------------------------------------------------------------------


def _train_peft(peft_model, steps=2):
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    inputs = episode()
    for _ in range(steps):
        peft_model(**inputs, return_loss=True).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return inputs


def test_peft_adapter_checkpoint_reloads_on_fresh_base(tmp_path):
    torch.manual_seed(0)
    # The "world-micro" preset has the real 49,408-token vocabulary, so the size ratio is a realistic one (the tester's
    # 99-token towers would make the frozen model unrealistically small); 16 px frames keep it fast.
    clip = ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro", vision_config=dict(image_size=16)))
    clip.save_pretrained(tmp_path / "clip")
    clip_before = {k: v.clone() for k, v in clip.state_dict().items()}
    peft_model = get_ma_clip_peft_model(MACLIPModel.from_clip(clip, num_frames=NUM_FRAMES))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("modules_to_save" in n for n in trainable), trainable
    inputs = _train_peft(peft_model)
    # The anchor LoRA wraps `visual_projection` (its frozen weight becomes `visual_projection.base_layer.weight`).
    base = {k.replace(".base_layer", ""): v for k, v in peft_model.base_model.model.clip.state_dict().items()}
    for key, value in clip_before.items():
        assert torch.equal(base[key], value), key
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**inputs)
    peft_model.save_pretrained(tmp_path / "adapter")
    adapter_bytes = (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size
    full_bytes = sum(p.numel() * p.element_size() for p in peft_model.base_model.model.state_dict().values())
    assert adapter_bytes <= 0.15 * full_bytes, (adapter_bytes, full_bytes)

    fresh_clip = ZooCLIPModel.from_pretrained(tmp_path / "clip")
    reloaded = load_ma_clip_adapter(
        MACLIPModel.from_clip(fresh_clip, num_frames=NUM_FRAMES, seed=123), tmp_path / "adapter"
    )
    reloaded.eval()
    with torch.no_grad():
        got = reloaded(**inputs)
    for key in ("probs", "logits_query_support", "logits_query_text", "logits_support_text"):
        torch.testing.assert_close(got[key], expected[key], atol=0, rtol=0)
    # Plain peft API too (what a user without our helpers writes).
    from peft import PeftModel

    plain = PeftModel.from_pretrained(MACLIPModel.from_clip(fresh_clip, num_frames=NUM_FRAMES), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(**inputs).probs, expected.probs, atol=0, rtol=0)


def test_vit_b16_trainable_parameters_are_a_small_fraction():
    # Counted on the meta device (no memory): the paper's ViT-B/16 setting, ~10M adapter parameters (spec §2.1).
    with torch.device("meta"):
        model = MACLIPModel(MACLIPConfig(clip_config=ZooCLIPConfig.from_preset("vit-b-16")))
    adapters = sum(p.numel() for n, p in model.named_parameters() if n.startswith("adapters."))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert adapters == 12 * 3 * (768 * 192 + 192 + 192 * 768 + 768)
    assert trainable <= 0.15 * total, (trainable, total)


def test_peft_anchor_is_exact_identity_and_frozen():
    torch.manual_seed(0)
    model = MACLIPModel(tiny_config())
    inputs = episode()
    with torch.no_grad():
        before = model.eval()(**inputs).probs
    peft_model = get_ma_clip_peft_model(model)
    assert not any(p.requires_grad for n, p in peft_model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        torch.testing.assert_close(peft_model.eval()(**inputs).probs, before, atol=0, rtol=0)


def test_lora_baseline_through_peft():
    torch.manual_seed(0)
    config = tiny_config(
        peft_method="lora", use_temporal_adapter=False, use_multimodal_adapter=False, use_joint_adapter=False
    )
    peft_model = get_ma_clip_peft_model(MACLIPModel(config))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if "lora_" in n]
    assert lora and all("vision_model" in n and ("q_proj" in n or "v_proj" in n) for n in lora)
    assert all("lora_" in n or "prototype_module" in n for n in trainable)
    _train_peft(peft_model, steps=1)


# --- naive formulas -----------------------------------------------------------------------------------------


def naive_attention(attn, x):
    """Multi-head self-attention over the rows of x [L, D], one query at a time."""
    heads = attn.num_heads
    head_dim = x.shape[-1] // heads
    q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for h in range(heads):
            sl = slice(h * head_dim, (h + 1) * head_dim)
            scores = [float(q[i, sl] @ k[j, sl]) * head_dim**-0.5 for j in range(x.shape[0])]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            out[i, sl] = sum(w / total * v[j, sl] for j, w in enumerate(weights))
    return attn.out_proj(out)


def naive_adapter(adapter, x, skip):
    hidden = adapter.down(x)
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
    return x + adapter.up(hidden) if skip else adapter.up(hidden)


@pytest.mark.parametrize("mode", ["parallel", "replace"])
@pytest.mark.parametrize("with_text", [False, True])
def test_adapted_block_matches_naive_loop(mode, with_text):
    torch.manual_seed(0)
    model = MACLIPModel(tiny_config(multimodal_mode=mode))
    randomize_adapters(model)
    layer = model.clip.vision_model.encoder.layers[0]
    block = model.adapters[0]
    videos, frames, tokens, width = 2, NUM_FRAMES, 5, 32
    x = torch.randn(videos * frames, tokens, width)
    text = torch.randn(videos, width) if with_text else None
    text_tokens = text.repeat_interleave(frames, 0)[:, None] if with_text else None
    with torch.no_grad():
        got = block(x, text_tokens, layer=layer, num_frames=frames)
        expected = torch.empty_like(x)
        for b in range(videos):
            # 1. temporal: class tokens of the T frames, frozen attention along time, adapter without skip.
            cls = torch.stack([x[b * frames + t, 0] for t in range(frames)])
            temporal = naive_adapter(
                block.temporal_adapter, naive_attention(layer.self_attn, layer.layer_norm1(cls)), False
            )
            for t in range(frames):
                row = x[b * frames + t].clone()
                row[0] = row[0] + temporal[t]
                # 2. multimodal: spatial attention over [tokens; text], extra token dropped.
                frozen = naive_attention(layer.self_attn, layer.layer_norm1(row))
                if with_text:
                    joined = naive_attention(layer.self_attn, layer.layer_norm1(torch.cat([row, text[b][None]])))[
                        :tokens
                    ]
                else:
                    joined = frozen
                if mode == "parallel":
                    row = row + frozen + naive_adapter(block.multimodal_adapter, joined, False)
                else:
                    row = row + naive_adapter(block.multimodal_adapter, joined, True)
                # 3. joint: parallel MLP adapter scaled by s = 0.5.
                normed = layer.layer_norm2(row)
                row = row + layer.mlp(normed) + 0.5 * naive_adapter(block.joint_adapter, normed, False)
                expected[b * frames + t] = row
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def naive_cross_entropy(logits, labels):
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist()):
        top = max(row)
        total += -(row[label] - top - math.log(sum(math.exp(v - top) for v in row)))
    return total / len(row and labels.tolist())


def naive_softmax(row):
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_loss_and_fusion_match_naive_formulas(alpha):
    torch.manual_seed(0)
    model = MACLIPModel(tiny_config(loss_alpha=alpha))
    randomize_adapters(model)
    inputs = episode()
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    s2t = naive_cross_entropy(out.logits_support_text, inputs["support_labels"])
    q2t = naive_cross_entropy(out.logits_query_text, inputs["query_labels"])
    q2s = naive_cross_entropy(out.logits_query_support, inputs["query_labels"])
    assert out.loss.item() == pytest.approx(alpha * 0.5 * (s2t + q2t) + (1 - alpha) * q2s, rel=1e-5, abs=1e-6)
    for i, (text_row, support_row) in enumerate(
        zip(out.logits_query_text.tolist(), out.logits_query_support.tolist())
    ):
        fused = [alpha * a + (1 - alpha) * b for a, b in zip(naive_softmax(text_row), naive_softmax(support_row))]
        assert out.probs[i].tolist() == pytest.approx(fused, rel=1e-5, abs=1e-6)


def test_video_text_logits_and_prototypes_match_naive():
    torch.manual_seed(0)
    model = MACLIPModel(tiny_config(text_logit_scale=7.0))
    randomize_adapters(model)
    inputs = episode()
    # Shuffle the supports: prototypes group by label, not by position.
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = dict(
        inputs,
        support_pixel_values=inputs["support_pixel_values"][perm],
        support_labels=inputs["support_labels"][perm],
    )
    with torch.no_grad():
        out = model(**shuffled)
        text = model.get_text_features(inputs["input_ids"])
        queries = model.get_video_features(inputs["query_pixel_values"])
        supports = model.get_video_features(shuffled["support_pixel_values"], text[shuffled["support_labels"]])
        tpcm = model.prototype_module(supports, text[shuffled["support_labels"]])
    for i in range(queries.shape[0]):
        video = queries[i].mean(0)
        for c in range(3):
            cosine = float(video @ text[c]) / (float(video.norm()) * float(text[c].norm()))
            assert out.logits_query_text[i, c].item() == pytest.approx(7.0 * cosine, rel=1e-4, abs=1e-5)
    for c in range(3):
        members = [tpcm[j] for j in range(6) if shuffled["support_labels"][j] == c]
        torch.testing.assert_close(out.prototype_embeds[c], sum(members) / len(members), atol=1e-6, rtol=1e-6)


# --- bad inputs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return MACLIPModel(tiny_config()).eval()


def test_too_few_frames(small_model):
    inputs = episode()
    inputs["query_pixel_values"] = inputs["query_pixel_values"][:, :1]
    with pytest.raises(ValueError, match="too few frames"):
        small_model(**inputs)


def test_wrong_frame_count(small_model):
    inputs = episode()
    inputs["support_pixel_values"] = torch.cat([inputs["support_pixel_values"]] * 2, dim=1)
    with pytest.raises(ValueError, match="expected config.num_frames=4"):
        small_model(**inputs)


def test_not_a_video_batch(small_model):
    inputs = episode()
    inputs["query_pixel_values"] = inputs["query_pixel_values"][:, 0]
    with pytest.raises(ValueError, match=r"\(videos, frames, 3, height, width\)"):
        small_model(**inputs)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(support_labels=torch.tensor([0, 0, 0, 1, 2, 2])), "exactly 2 times"),
        (dict(support_labels=torch.tensor([0, 0, 1, 1, 2])), "6 support videos but 5"),
        (dict(support_labels=torch.tensor([0, 0, 1, 1, 3, 3])), "inconsistent episode"),
        (dict(query_labels=torch.tensor([0, 1, 2, 3, 0, 1])), r"query labels must lie in \[0, 3\)"),
        (dict(query_labels=torch.tensor([0, 1])), "6 query videos but 2"),
        (dict(input_ids=tiny_input_ids(4)), "cannot be split evenly|exactly"),
        (dict(support_labels=torch.tensor([0.0, 0, 1, 1, 2, 2])), "integer"),
    ],
)
def test_inconsistent_episode(small_model, change, message):
    inputs = dict(episode(), **change)
    with pytest.raises(ValueError, match=message):
        small_model(**inputs, return_loss=True)


def test_return_loss_needs_query_labels(small_model):
    inputs = episode()
    inputs.pop("query_labels")
    with pytest.raises(ValueError, match="needs `query_labels`"):
        small_model(**inputs, return_loss=True)


def test_from_clip_rejects_other_models():
    with pytest.raises(ValueError, match="ZooCLIPModel"):
        MACLIPModel.from_clip(torch.nn.Linear(2, 2))


def test_saved_adapter_names_its_base_and_needs_no_package_to_map(tmp_path):
    import json

    from hf_clipzoo.models.ma_clip import save_ma_clip_adapter

    peft_model = get_ma_clip_peft_model(MACLIPModel(tiny_config()))
    for missing in (None, "", "  "):
        with pytest.raises(ValueError, match="base_model_name_or_path"):
            save_ma_clip_adapter(peft_model, tmp_path / "rejected", missing)
    save_ma_clip_adapter(peft_model, tmp_path / "adapter", "org/ma-clip-base")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    # PEFT alone would write null and the auto mapping of hf_clipzoo's module (not importable without the package).
    assert config["base_model_name_or_path"] == "org/ma-clip-base"
    assert config["auto_mapping"] == {"base_model_class": "AutoModel", "parent_library": "transformers"}
