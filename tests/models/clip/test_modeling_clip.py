import pytest
import torch
from transformers import AutoModel, CLIPConfig, CLIPModel, pipeline

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel
from tests.testing_utils import TINY_TEXT_CONFIG, TINY_VISION_CONFIG, ClipZooModelTesterMixin, tiny_input_ids


def tiny_config(**kwargs) -> ZooCLIPConfig:
    return ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16, **kwargs)


def tiny_inputs(batch_size: int = 3) -> dict:
    return {"input_ids": tiny_input_ids(batch_size), "pixel_values": torch.randn(batch_size, 3, 30, 30)}


class TestZooCLIPModel(ClipZooModelTesterMixin):
    model_class = ZooCLIPModel
    invalid_configs = (
        ({"loss_type": "hinge"}, "loss_type"),
        ({"sigmoid_chunk_size": 0}, "sigmoid_chunk_size"),
        ({"projection_dim": -1}, "projection_dim"),
        ({"vision_config": {**TINY_VISION_CONFIG, "patch_size": 4}}, "multiple of"),
        ({"text_config": {**TINY_TEXT_CONFIG, "num_attention_heads": 5}}, "multiple of the number of attention heads"),
    )

    def get_config(self):
        return tiny_config()

    def prepare_inputs(self, config):
        return tiny_inputs()


class TestZooSigLIPModel(TestZooCLIPModel):
    def get_config(self):
        return tiny_config(loss_type="sigmoid", logit_scale_init_value=2.3026, sigmoid_chunk_size=2)


def test_transformers_checkpoint_loads_exactly(tmp_path):
    """A CLIPModel folder written by transformers loads with 0 missing / unexpected keys and equal embeddings."""
    reference = CLIPModel(
        CLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16)
    )
    reference.save_pretrained(tmp_path)
    model, info = ZooCLIPModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    inputs = tiny_inputs(4)
    reference.eval(), model.eval()
    with torch.no_grad():
        expected, got = reference(**inputs), model(**inputs)
    for key in ("image_embeds", "text_embeds", "logits_per_image"):
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=0)
    # ...and the zoo's weights go back into transformers' CLIPModel just as cleanly.
    missing, unexpected = CLIPModel(reference.config).load_state_dict(model.state_dict(), strict=True)
    assert not missing and not unexpected


def test_loss_matches_naive_infonce():
    model = ZooCLIPModel(tiny_config())
    out = model(**tiny_inputs(4), return_loss=True)
    logits = out.logits_per_image
    labels = torch.arange(4)
    naive = 0.5 * (
        torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.t(), labels)
    )
    torch.testing.assert_close(out.loss, naive, atol=1e-6, rtol=0)


def test_sigmoid_loss_matches_naive_formula():
    model = ZooCLIPModel(tiny_config(loss_type="sigmoid"))
    out = model(**tiny_inputs(4), return_loss=True)
    logits = out.logits_per_image  # already scale * cos + bias
    signs = 2 * torch.eye(4) - 1
    naive = -torch.nn.functional.logsigmoid(signs * logits).sum() / 4
    torch.testing.assert_close(out.loss, naive, atol=1e-5, rtol=0)
    assert model.logit_bias.item() == pytest.approx(-10.0)


def test_sdpa_and_eager_agree():
    torch.manual_seed(0)
    model = ZooCLIPModel(tiny_config()).eval()
    inputs = tiny_inputs()
    with torch.no_grad():
        sdpa = model(**inputs).logits_per_image
        model.set_attn_implementation("eager")
        eager = model(**inputs).logits_per_image
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=0)


def test_get_features_follow_transformers_api():
    model = ZooCLIPModel(tiny_config()).eval()
    inputs = tiny_inputs(2)
    image = model.get_image_features(pixel_values=inputs["pixel_values"])
    text = model.get_text_features(input_ids=inputs["input_ids"])
    assert image.pooler_output.shape == (2, 16) and text.pooler_output.shape == (2, 16)
    out = model(**inputs)
    torch.testing.assert_close(out.image_embeds, torch.nn.functional.normalize(image.pooler_output, dim=-1))


def test_interpolated_resolution():
    model = ZooCLIPModel(tiny_config()).eval()
    out = model(input_ids=tiny_input_ids(2), pixel_values=torch.randn(2, 3, 40, 40), interpolate_pos_encoding=True)
    assert out.logits_per_image.shape == (2, 2)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"input_ids": tiny_input_ids(2), "pixel_values": torch.randn(2, 30, 30)}, r"\(batch, 3, height, width\)"),
        ({"input_ids": tiny_input_ids(2), "pixel_values": torch.randn(2, 1, 30, 30)}, r"\(batch, 3, height, width\)"),
        ({"input_ids": tiny_input_ids(2)[:, :0], "pixel_values": torch.randn(2, 3, 30, 30)}, "both > 0"),
        ({"input_ids": tiny_input_ids(2) + 200, "pixel_values": torch.randn(2, 3, 30, 30)}, r"\[0, 99\)"),
        ({"input_ids": tiny_input_ids(2).float(), "pixel_values": torch.randn(2, 3, 30, 30)}, "integer"),
        ({"input_ids": tiny_input_ids(2)}, "both `input_ids` and `pixel_values`"),
    ],
)
def test_bad_inputs_raise_clear_errors(inputs, message):
    model = ZooCLIPModel(tiny_config())
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_mismatched_batches_with_loss():
    model = ZooCLIPModel(tiny_config())
    with pytest.raises(ValueError, match="3 images and 2 texts"):
        model(input_ids=tiny_input_ids(2), pixel_values=torch.randn(3, 3, 30, 30), return_loss=True)


def test_corrupt_checkpoint_raises(tmp_path):
    ZooCLIPModel(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ|incomplete|corrupt"):
        AutoModel.from_pretrained(tmp_path)


def test_return_dict_false_gives_tuple():
    model = ZooCLIPModel(tiny_config()).eval()
    out = model(**tiny_inputs(2), return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (2, 2)


def test_zero_shot_pipeline(tmp_path):
    from tests.models.clip.test_processing_clip import tiny_processor

    model = ZooCLIPModel(tiny_config()).eval()
    processor = tiny_processor()
    classifier = pipeline(
        "zero-shot-image-classification",
        model=model,
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )
    from PIL import Image

    result = classifier(
        Image.new("RGB", (40, 40), "red"), candidate_labels=["cat", "dog"], hypothesis_template="a {}."
    )
    assert sorted(r["label"] for r in result) == ["cat", "dog"]
    assert abs(sum(r["score"] for r in result) - 1) < 1e-5
