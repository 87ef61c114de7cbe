"""CLIP-FSAR: shared battery, paper formulas against naive loops, text isolation, merge-before, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.eval.few_shot import cosine_frame_distances, otam_distance
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.models.clip_fsar import CLIPFSARConfig, CLIPFSARModel
from tests.testing_utils import TINY_TEXT_CONFIG, TINY_VISION_CONFIG, ClipZooModelTesterMixin, tiny_input_ids

T = 4
D = 32
TINY_VISION = {**TINY_VISION_CONFIG, "image_size": 8, "patch_size": 2}


def tiny_config(**kwargs) -> CLIPFSARConfig:
    defaults = dict(
        text_config=TINY_TEXT_CONFIG,
        vision_config=TINY_VISION,
        projection_dim=D,
        num_frames=T,
        temporal_mlp_dim=37,
    )
    return CLIPFSARConfig(**{**defaults, **kwargs})


def episode(way=2, shot=1, query=1, num_train=5, image=8, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    support_labels = torch.arange(way).repeat_interleave(shot)
    query_labels = torch.arange(way).repeat_interleave(query)
    class_ids = torch.randperm(num_train, generator=g)[:way]
    return {
        "support_pixel_values": torch.randn(way * shot, T, 3, image, image, generator=g),
        "support_labels": support_labels,
        "query_pixel_values": torch.randn(way * query, T, 3, image, image, generator=g),
        "query_labels": query_labels,
        "class_input_ids": tiny_input_ids(way),
        "train_input_ids": tiny_input_ids(num_train),
        "support_class_ids": class_ids[support_labels],
        "query_class_ids": class_ids[query_labels],
    }


class TestCLIPFSARModel(ClipZooModelTesterMixin):
    model_class = CLIPFSARModel
    compared_outputs = ("logits", "prototype_embeds", "query_embeds", "class_logits")
    invalid_configs = (
        ({"num_frames": 0}, "num_frames"),
        ({"temporal_heads": 5, "projection_dim": 32}, "must divide"),
        ({"attention_dropout": 1.0}, "attention_dropout"),
        ({"otam_lambda": 0.0}, "otam_lambda"),
        ({"cos_eps": -1.0}, "cos_eps"),
        ({"text_loss_weight": -0.5}, "text_loss_weight"),
        ({"video_text_scale_init_value": 0.0}, "video_text_scale_init_value"),
        ({"temporal_mlp_dim": 0}, "temporal_mlp_dim"),
    )

    def get_config(self):
        return tiny_config()

    def prepare_inputs(self, config):
        torch.manual_seed(1)
        return episode()


class TestCLIPFSARWithoutText(TestCLIPFSARModel):
    compared_outputs = ("logits", "prototype_embeds", "query_embeds")

    def get_config(self):
        return tiny_config(use_text=False)

    def prepare_inputs(self, config):
        inputs = episode()
        for key in ("class_input_ids", "train_input_ids", "support_class_ids", "query_class_ids"):
            inputs.pop(key)
        return inputs


# --- helpers ---------------------------------------------------------------------------------------------------
def model_and_features(way=3, shot=1, query=2, seed=0, **config_kwargs):
    torch.manual_seed(seed)
    model = CLIPFSARModel(tiny_config(**config_kwargs)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    support = torch.randn(way * shot, T, D, generator=g)
    queries = torch.randn(way * query, T, D, generator=g)
    text = torch.randn(way, D, generator=g)
    labels = torch.arange(way).repeat_interleave(shot)
    return model, support, labels, queries, text


def naive_attention_layer(layer, x):
    """Transformer_v1 written out: per head and position, softmax(q·k / sqrt(d)) v; `+ q`; then FFN(x) + x."""
    attn = layer.attention
    batch, length, dim = x.shape
    heads, head_dim = attn.heads, attn.head_dim
    normed = F.layer_norm(x, (dim,), attn.norm.weight, attn.norm.bias, attn.norm.eps)
    q, k, v = normed @ attn.to_q.weight.t(), normed @ attn.to_k.weight.t(), normed @ attn.to_v.weight.t()
    out = torch.zeros(batch, length, dim)
    for b in range(batch):
        for h in range(heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            for i in range(length):
                scores = [float(q[b, i, cols] @ k[b, j, cols]) / math.sqrt(head_dim) for j in range(length)]
                top = max(scores)
                weights = [math.exp(s - top) for s in scores]
                total = sum(weights)
                for j in range(length):
                    out[b, i, cols] += weights[j] / total * v[b, j, cols]
    if attn.to_out is not None:
        out = out @ attn.to_out.weight.t() + attn.to_out.bias
    y = out + x  # residual to the *un-normalised* q
    ff = layer.feed_forward
    hidden = F.gelu(y @ ff.fc1.weight.t() + ff.fc1.bias) @ ff.fc2.weight.t() + ff.fc2.bias
    return hidden + y  # no LayerNorm before the FFN


# --- formulas --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("heads", [8, 1])
def test_temporal_transformer_matches_naive_loop(heads):
    model, support, *_ = model_and_features(temporal_heads=heads)
    # One full-width head has no output projection (official `project_out`).
    assert (model.temporal_transformer.layers[0].attention.to_out is None) == (heads == 1)
    x = torch.randn(3, T + 1, D)
    with torch.no_grad():
        expected = naive_attention_layer(model.temporal_transformer.layers[0], x)
        got = model.temporal_transformer(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_temporal_transformer_has_no_positional_encoding():
    model, *_ = model_and_features()
    x = torch.randn(2, T, D)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(model.temporal_transformer(x[:, perm]), model.temporal_transformer(x)[:, perm])


def test_video_text_loss_matches_naive_loop():
    torch.manual_seed(0)
    model = CLIPFSARModel(tiny_config(video_text_scale_init_value=1.7)).eval()
    inputs = episode(way=2, shot=1, query=2, num_train=5)
    with torch.no_grad():
        out = model(**inputs)
        text = model.get_text_features(inputs["train_input_ids"])
    videos = torch.cat([out.support_frame_embeds, out.query_frame_embeds])
    ids = torch.cat([inputs["support_class_ids"], inputs["query_class_ids"]]).tolist()
    total = 0.0
    for i in range(videos.shape[0]):
        mean = [sum(float(videos[i, t, d]) for t in range(T)) / T for d in range(D)]
        row = []
        for c in range(text.shape[0]):
            dot = sum(mean[d] * float(text[c, d]) for d in range(D))
            norm_v = math.sqrt(sum(m * m for m in mean))
            norm_t = math.sqrt(sum(float(text[c, d]) ** 2 for d in range(D)))
            row.append(1.7 * dot / (norm_v * norm_t + 0.01))  # eps outside the product of norms
        torch.testing.assert_close(out.class_logits[i], torch.tensor(row), atol=1e-5, rtol=1e-5)
        top = max(row)
        total += -(row[ids[i]] - top - math.log(sum(math.exp(r - top) for r in row)))
    assert out.text_loss.item() == pytest.approx(total / len(ids), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.otam_loss.item() + 3.0 * out.text_loss.item(), rel=1e-6)
    assert out.otam_loss.item() == pytest.approx(F.cross_entropy(out.logits, inputs["query_labels"]).item())


def test_logits_are_negative_otam_of_modulated_features():
    model, support, labels, queries, text = model_and_features(way=3, shot=1, query=2)
    with torch.no_grad():
        logits, protos, q = model.compute_episode_logits(support, labels, queries, text)
        seq = torch.cat([support, text[:, None]], dim=1)
        expected_protos = model.temporal_transformer(seq)[:, :T]
        expected_q = model.temporal_transformer(queries)
        dists = cosine_frame_distances(expected_q, expected_protos, eps=0.01)
        expected = -otam_distance(dists, lam=0.5)
    torch.testing.assert_close(protos, expected_protos)
    torch.testing.assert_close(q, expected_q)
    torch.testing.assert_close(logits, expected)


def test_class_text_never_reaches_the_queries():
    model, support, labels, queries, text = model_and_features(way=3, shot=2, query=2)
    with torch.no_grad():
        logits, protos, q = model.compute_episode_logits(support, labels, queries, text)
        logits2, protos2, q2 = model.compute_episode_logits(
            support, labels, queries, text + 5 * torch.randn_like(text)
        )
    torch.testing.assert_close(q2, q, atol=0, rtol=0)
    assert not torch.allclose(protos2, protos) and not torch.allclose(logits2, logits)
    # Also through forward with token ids: a different class prompt changes nothing on the query side.
    torch.manual_seed(0)
    model = CLIPFSARModel(tiny_config()).eval()
    inputs = episode(way=2, shot=1, query=2)
    with torch.no_grad():
        a = model(**inputs)
        b = model(**{**inputs, "class_input_ids": tiny_input_ids(2)})
    torch.testing.assert_close(a.query_embeds, b.query_embeds, atol=0, rtol=0)
    assert not torch.allclose(a.prototype_embeds, b.prototype_embeds)


def test_merge_before_equals_manual_mean_and_after_differs():
    way, shot = 3, 3
    model, support, labels, queries, text = model_and_features(way=way, shot=shot, query=1)
    # Shuffle the supports: grouping is by label, not by position.
    perm = torch.randperm(way * shot, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        protos = model.compute_prototypes(support[perm], labels[perm], way, text)
        seq = torch.cat([support.reshape(way, shot, T, D).mean(1), text[:, None]], dim=1)
        torch.testing.assert_close(protos, model.temporal_transformer(seq)[:, :T])
        model.config.merge_before = False
        after = model.compute_prototypes(support[perm], labels[perm], way, text)
        per_shot = torch.cat([support, text.repeat_interleave(shot, 0)[:, None]], dim=1)
        manual = model.temporal_transformer(per_shot)[:, :T].reshape(way, shot, T, D).mean(1)
        torch.testing.assert_close(after, manual)
    assert not torch.allclose(after, protos)


def test_one_shot_merge_before_makes_no_difference():
    model, support, labels, queries, text = model_and_features(way=3, shot=1)
    with torch.no_grad():
        before = model.compute_prototypes(support, labels, 3, text)
        model.config.merge_before = False
        torch.testing.assert_close(model.compute_prototypes(support, labels, 3, text), before)


def test_shapes_one_and_five_shot():
    torch.manual_seed(0)
    model = CLIPFSARModel(tiny_config()).eval()
    for shot in (1, 5):
        inputs = episode(way=5, shot=shot, query=1, num_train=6)
        with torch.no_grad():
            out = model(**inputs)
        assert out.logits.shape == (5, 5) and out.prototype_embeds.shape == (5, T, D)
        assert out.query_embeds.shape == (5, T, D) and out.class_logits.shape == (5 * shot + 5, 6)


def test_without_text_ignores_text_and_has_no_scale():
    torch.manual_seed(0)
    model = CLIPFSARModel(tiny_config(use_text=False)).eval()
    assert model.video_text_scale is None
    inputs = episode(way=2, shot=1, query=1)
    with torch.no_grad():
        a = model(**inputs)
        b = model(**{**inputs, "class_input_ids": tiny_input_ids(2)})
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    assert a.class_logits is None and a.text_loss is None
    assert a.loss.item() == pytest.approx(F.cross_entropy(a.logits, inputs["query_labels"]).item())


def test_text_tower_is_frozen_and_vision_trainable():
    model = CLIPFSARModel(tiny_config())
    assert not any(p.requires_grad for p in model.text_model.parameters())
    assert not model.text_projection.weight.requires_grad
    assert all(p.requires_grad for p in model.vision_model.parameters())
    assert model.video_text_scale.item() == 1.0


def test_zoo_clip_folder_loads_towers(tmp_path):
    torch.manual_seed(0)
    clip = ZooCLIPModel(ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION, projection_dim=D))
    clip.save_pretrained(tmp_path)
    base = ZooCLIPConfig.from_pretrained(tmp_path).to_dict()
    config = CLIPFSARConfig(**{**base, "num_frames": T, "temporal_mlp_dim": 37})
    model, info = CLIPFSARModel.from_pretrained(tmp_path, config=config, output_loading_info=True)
    # The temporal transformer and the video-text scale are new, CLIP's logit_scale unused: all declared.
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.video_text_scale.item() == config.video_text_scale_init_value
    pixels = torch.randn(2, T, 3, 8, 8)
    with torch.no_grad():
        expected = clip.get_image_features(pixels.flatten(0, 1)).pooler_output.reshape(2, T, D)
        torch.testing.assert_close(model.get_frame_features(pixels), expected)
    assert type(AutoModel.from_config(config)) is CLIPFSARModel


# --- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: x.update(support_pixel_values=x["support_pixel_values"][:, : T - 1]), "expects exactly T=4"),
        (lambda x: x.update(query_pixel_values=x["query_pixel_values"][:, :, 0]), "query_pixel_values"),
        (lambda x: x.update(support_labels=torch.tensor([0, 0, 0, 1])), "same number K"),
        (lambda x: x.update(support_labels=torch.tensor([0, 0, 1])), r"shape \(4,\)"),
        (lambda x: x.update(support_labels=torch.tensor([0, 0, 1, 2])), "must lie in 0..1"),
        (lambda x: x.update(query_labels=torch.tensor([0, 5])), "must lie in 0..1"),
        (lambda x: x.update(query_labels=torch.tensor([0])), r"shape \(2,\)"),
        (lambda x: x.update(class_input_ids=tiny_input_ids(3)), "must lie in 0..2|same number K"),
        (lambda x: x.pop("class_input_ids"), "class_text_embeds"),
        (lambda x: x.pop("train_input_ids"), "video-text term"),
        (lambda x: x.pop("query_class_ids"), "query_class_ids"),
        (lambda x: x.update(support_class_ids=torch.tensor([0, 9, 0, 1])), "support_class_ids"),
        (lambda x: x.update(support_labels=torch.tensor([0.0, 0.0, 1.0, 1.0])), "integer"),
    ],
)
def test_bad_episodes_raise_clear_errors(change, message):
    torch.manual_seed(0)
    model = CLIPFSARModel(tiny_config())
    inputs = episode(way=2, shot=2, query=1)
    change(inputs)
    with pytest.raises(ValueError, match=message):
        model(**inputs, return_loss=True)


def test_missing_inputs_raise():
    model = CLIPFSARModel(tiny_config())
    inputs = episode()
    with pytest.raises(ValueError, match="exactly one of `support_pixel_values`"):
        model(**{k: v for k, v in inputs.items() if k != "support_pixel_values"})
    with pytest.raises(ValueError, match="not both"):
        model(**inputs, class_text_embeds=torch.randn(2, D))
    with pytest.raises(ValueError, match="needs `query_labels`"):
        model(**{k: v for k, v in inputs.items() if k != "query_labels"}, return_loss=True)
    with pytest.raises(ValueError, match=r"class_text_embeds` must have shape \(C, 32\)"):
        model(**{k: v for k, v in inputs.items() if k != "class_input_ids"}, class_text_embeds=torch.randn(2, 7))
