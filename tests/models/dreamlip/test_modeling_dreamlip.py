"""DreamLIP: the shared battery, the loss wiring against the naive formulas, projected patch tokens, position
interpolation for long captions, conversion of open_clip-layout checkpoints, and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModel, AutoProcessor, CLIPImageProcessorPil, pipeline

from hf_clipzoo.models.dreamlip import DreamLIPConfig, DreamLIPModel, DreamLIPProcessor
from hf_clipzoo.models.dreamlip.convert_dreamlip import (
    convert_dreamlip_state_dict,
    infer_dreamlip_config,
    load_dreamlip_checkpoint,
)
from tests.losses.test_grouping import naive_circle_loss, naive_grouping_loss, naive_per_slot, naive_soft_target
from tests.models.clip.test_convert_clip import (
    IMAGE_SIZE,
    PATCH,
    layer_norm,
    make_inputs,
    naive_encode_image,
    naive_encode_text,
    random_openai_state_dict,
    transformer,
)
from tests.models.clip.test_processing_clip import tiny_tokenizer
from tests.testing_utils import TINY_TEXT_CONFIG, TINY_VISION_CONFIG, ClipZooModelTesterMixin, tiny_input_ids

B, S = 3, 3  # images, caption slots (raw + K = 2 subcaptions); tests.losses.test_grouping uses B = 4, S = 3


def tiny_config(**kwargs) -> DreamLIPConfig:
    return DreamLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16, **kwargs)


def tiny_inputs(batch: int = B, slots: int = S) -> dict:
    return {
        "input_ids": tiny_input_ids(batch * slots).reshape(batch, slots, -1),
        "pixel_values": torch.randn(batch, 3, 30, 30),
    }


class TestDreamLIPModel(ClipZooModelTesterMixin):
    model_class = DreamLIPModel
    compared_outputs = ("logits_per_image", "patch_embeds")
    invalid_configs = (
        ({"contrastive_mode": "triplet"}, "contrastive_mode"),
        ({"grouping_norm": "sparsemax"}, "grouping_norm"),
        ({"grouping_negatives": "global"}, "grouping_negatives"),
        ({"grouping_threshold": 1.5}, "grouping_threshold"),
        ({"patch_tokens": "raw"}, "patch_tokens"),
        ({"local_logit_scale": "fixed"}, "local_logit_scale"),
        ({"grouping_loss_weight": -1.0}, "grouping_loss_weight"),
        ({"grouping_loss_weight": 0.0, "contrastive_loss_weight": 0.0}, "are all 0: there is no loss"),
        ({"loss_type": "sigmoid"}, "softmax"),
        ({"patch_tokens": "unprojected", "vision_config": {**TINY_VISION_CONFIG, "hidden_size": 64}}, "must be equal"),
        ({"text_position_interpolation": True, "max_text_length": 10}, "max_text_length"),
    )

    def get_config(self):
        return tiny_config()

    def prepare_inputs(self, config):
        torch.manual_seed(1)
        return tiny_inputs()


class TestDreamLIPPaperVariant(TestDreamLIPModel):
    """The paper's per-image grouping denominator, soft-target MPCL, shared temperature, long-text option on."""

    def get_config(self):
        return tiny_config(
            contrastive_mode="soft_target",
            grouping_negatives="image",
            local_logit_scale="shared",
            text_position_interpolation=True,
            max_text_length=32,
        )

    def prepare_inputs(self, config):
        torch.manual_seed(2)
        return tiny_inputs() | {"input_ids": tiny_input_ids(B * S, seq_len=24).reshape(B, S, -1)}  # > 16 positions


class TestDreamLIPUnprojectedPatches(TestDreamLIPModel):
    def get_config(self):
        return DreamLIPConfig(
            text_config=TINY_TEXT_CONFIG,
            vision_config=TINY_VISION_CONFIG,
            projection_dim=32,
            patch_tokens="unprojected",
        )


@pytest.mark.parametrize(
    "options, naive_contrastive",
    [({}, naive_per_slot), ({"contrastive_mode": "soft_target", "grouping_negatives": "image"}, naive_soft_target)],
)
def test_loss_is_the_weighted_sum_of_the_naive_formulas(options, naive_contrastive, monkeypatch):
    # The naive formulas of tests/losses/test_grouping.py are written for B = 4 images.
    monkeypatch.setattr("tests.losses.test_grouping.B", 4)
    model = DreamLIPModel(tiny_config(contrastive_loss_weight=0.5, grouping_loss_weight=2.0, **options)).double()
    with torch.no_grad():
        model.logit_scale_local.fill_(1.1)
        out = model(
            **(tiny_inputs(4) | {"pixel_values": torch.randn(4, 3, 30, 30, dtype=torch.float64)}), return_loss=True
        )
    texts = out.text_embeds.reshape(4, S, -1)
    # ... and for their own number of patches M: use the model's.
    monkeypatch.setattr("tests.losses.test_grouping.M", out.patch_embeds.shape[1])
    assert out.num_texts_per_image == S and out.logits_per_image.shape == (4, 4 * S)
    contrastive = naive_contrastive(out.image_embeds, texts, math.exp(model.logit_scale.item()))
    negatives = options.get("grouping_negatives", "batch")
    grouping = naive_grouping_loss(texts, out.patch_embeds, math.exp(1.1), negatives)
    assert out.contrastive_loss.item() == pytest.approx(contrastive, rel=1e-9)
    assert out.grouping_loss.item() == pytest.approx(grouping, rel=1e-9)
    assert out.loss.item() == pytest.approx(0.5 * contrastive + 2.0 * grouping, rel=1e-9)


def test_circle_loss_mode_adds_the_released_multi_positive_term():
    inputs = tiny_inputs(4) | {"pixel_values": torch.randn(4, 3, 30, 30, dtype=torch.float64)}
    torch.manual_seed(0)
    default = DreamLIPModel(tiny_config()).double()
    with torch.no_grad():
        out = default(**inputs, return_loss=True)
    assert default.config.circle_loss_weight == 0.0 and out.circle_loss is None  # the default is unchanged
    torch.manual_seed(0)
    config = tiny_config(circle_loss_weight=0.1, circle_loss_gamma=16.0, circle_loss_margin=0.3)
    model = DreamLIPModel(config).double()
    with torch.no_grad():
        circle_out = model(**inputs, return_loss=True)
    texts = circle_out.text_embeds.reshape(4, S, -1)
    circle = naive_circle_loss(circle_out.image_embeds, texts, 16.0, 0.3)
    assert circle_out.circle_loss.item() == pytest.approx(circle.item(), rel=1e-9)
    assert circle_out.loss.item() == pytest.approx(out.loss.item() + 0.1 * circle.item(), rel=1e-9)
    for bad, message in (
        ({"circle_loss_weight": -1.0}, "`circle_loss_weight` must be a finite number >= 0"),
        ({"circle_loss_gamma": 0.0}, "`circle_loss_gamma` must be a finite number > 0"),
        ({"circle_loss_margin": float("inf")}, "`circle_loss_margin` must be a finite number"),
    ):
        with pytest.raises(ValueError, match=message):
            tiny_config(**bad)
    # The circle loss alone is a loss.
    tiny_config(contrastive_loss_weight=0.0, grouping_loss_weight=0.0, circle_loss_weight=0.1)


def test_patch_embeds_are_projected_patch_tokens():
    model = DreamLIPModel(tiny_config()).eval()
    pixels = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=pixels).last_hidden_state
        expected = model.visual_projection(model.vision_model.post_layernorm(hidden[:, 1:]))
        out = model(input_ids=tiny_input_ids(2), pixel_values=pixels)
        torch.testing.assert_close(model.get_patch_features(pixels), expected)
    assert out.patch_embeds.shape == (2, (30 // 2) ** 2, 16)
    torch.testing.assert_close(out.patch_embeds, F.normalize(expected, dim=-1))


def test_grouping_weight_zero_skips_the_grouping_loss():
    model = DreamLIPModel(tiny_config(grouping_loss_weight=0.0))
    out = model(**tiny_inputs(), return_loss=True)
    assert out.grouping_loss is None
    torch.testing.assert_close(out.loss, out.contrastive_loss)


# --- longer text ------------------------------------------------------------------------------------------------------
def _text_embeds(model, input_ids):
    with torch.no_grad():
        return F.normalize(model.get_text_features(input_ids).pooler_output, dim=-1)


def test_position_interpolation_is_exactly_neutral_up_to_the_table_length():
    torch.manual_seed(0)
    stock = DreamLIPModel(tiny_config()).eval()
    extended = DreamLIPModel(tiny_config(text_position_interpolation=True, max_text_length=40)).eval()
    extended.load_state_dict(stock.state_dict())  # same parameters: the option adds none
    ids = tiny_input_ids(4, seq_len=16)  # exactly max_position_embeddings tokens (CLIP's 77)
    assert torch.equal(_text_embeds(stock, ids), _text_embeds(extended, ids))
    short = tiny_input_ids(2, seq_len=9)
    assert torch.equal(_text_embeds(stock, short), _text_embeds(extended, short))
    with pytest.raises(ValueError, match="Sequence length"):
        _text_embeds(stock, tiny_input_ids(2, seq_len=24))


def test_long_captions_read_the_interpolated_table():
    model = DreamLIPModel(tiny_config(text_position_interpolation=True, max_text_length=40)).eval()
    embeddings = model.text_model.embeddings
    table = embeddings.position_embedding.weight.detach()
    long = tiny_input_ids(1, seq_len=25)  # EOS at the end: length 25 > 16 rows
    with torch.no_grad():
        got = embeddings(input_ids=long) - embeddings.token_embedding(long)
    expected = []
    for p in range(25):  # naive linear interpolation at p * 15 / 24
        x = p * 15 / 24
        low = math.floor(x)
        high = min(low + 1, 15)
        expected.append(table[low] * (1 - (x - low)) + table[high] * (x - low))
    torch.testing.assert_close(got[0], torch.stack(expected), atol=1e-6, rtol=1e-6)
    # A caption's embedding does not depend on how far it is padded, nor on the other captions of the batch.
    short = tiny_input_ids(1, seq_len=9)
    padded_short = torch.cat([short, torch.full((1, 21), 98)], dim=1)
    padded_long = torch.cat([long, torch.full((1, 5), 98)], dim=1)
    batch = _text_embeds(model, torch.cat([padded_short, padded_long]))
    torch.testing.assert_close(batch[0], _text_embeds(model, short)[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(batch[1], _text_embeds(model, long)[0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="max_text_length"):
        _text_embeds(model, tiny_input_ids(1, seq_len=41))


# --- conversion -------------------------------------------------------------------------------------------------------
def naive_patch_embeds(sd, pixels, heads, act="gelu"):
    """The released model's `tokens` (ln_post, no projection), then `visual.proj`: written out on the raw weights."""
    batch, channels, size, _ = pixels.shape
    grid = size // PATCH
    patches = pixels.reshape(batch, channels, grid, PATCH, grid, PATCH).permute(0, 2, 4, 1, 3, 5)
    x = (
        patches.reshape(batch, grid * grid, -1)
        @ sd["visual.conv1.weight"].reshape(sd["visual.conv1.weight"].shape[0], -1).T
    )
    x = torch.cat([sd["visual.class_embedding"].expand(batch, 1, -1), x], dim=1) + sd["visual.positional_embedding"]
    x = transformer(
        layer_norm(x, sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"]), sd, "visual.", heads, False, act
    )
    return layer_norm(x[:, 1:], sd["visual.ln_post.weight"], sd["visual.ln_post.bias"]) @ sd["visual.proj"]


def released_checkpoint(with_local_scale: bool = False) -> dict:
    """A tiny open_clip *training* checkpoint with the released key names: wrapped, `module.`-prefixed, plus the
    noun-tagging head."""
    sd = random_openai_state_dict()
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    wrapped["module.multi_classifier.W"] = torch.randn(1, 10, 24)
    wrapped["module.multi_classifier.b"] = torch.randn(1, 10)
    if with_local_scale:
        wrapped["module.logit_scale_local"] = torch.tensor(3.0)
    return sd, {"epoch": 32, "name": "dreamlip", "state_dict": wrapped}


def test_conversion_matches_the_naive_open_clip_forward(tmp_path):
    sd, checkpoint = released_checkpoint()
    config = infer_dreamlip_config(checkpoint)
    assert config.vision_config.hidden_act == "gelu" and config.projection_dim == 24
    model = DreamLIPModel(config).eval()
    model.load_state_dict(convert_dreamlip_state_dict(checkpoint, config), strict=True)
    assert model.logit_scale_local.item() == pytest.approx(math.log(1 / 0.07))
    pixels, tokens = make_inputs(pad_id=98 if False else 0)
    heads = (64 // 64, 32 // 64 or 1)
    with torch.no_grad():
        out = model(input_ids=tokens, pixel_values=pixels)
        torch.testing.assert_close(
            out.patch_embeds, F.normalize(naive_patch_embeds(sd, pixels, heads[0]), dim=-1), atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(
            out.image_embeds,
            F.normalize(naive_encode_image(sd, pixels, heads[0], "gelu"), dim=-1),
            atol=1e-5,
            rtol=1e-4,
        )
        torch.testing.assert_close(
            out.text_embeds, F.normalize(naive_encode_text(sd, tokens, heads[1], "gelu"), dim=-1), atol=1e-5, rtol=1e-4
        )
    # From a file, with weights_only loading, and a checkpoint that does carry a local temperature.
    _, checkpoint = released_checkpoint(with_local_scale=True)
    torch.save(checkpoint, tmp_path / "dreamlip.pt")
    loaded = load_dreamlip_checkpoint(tmp_path / "dreamlip.pt")
    assert loaded.logit_scale_local.item() == pytest.approx(3.0)
    assert IMAGE_SIZE == loaded.config.vision_config.image_size


def test_conversion_names_bad_keys():
    _, checkpoint = released_checkpoint()
    config = infer_dreamlip_config(checkpoint)
    del checkpoint["state_dict"]["module.visual.proj"]
    with pytest.raises(ValueError, match="visual.proj"):
        convert_dreamlip_state_dict(checkpoint, config)


# --- bad input, Auto classes -----------------------------------------------------------------------------------------
def test_bad_forward_inputs():
    model = DreamLIPModel(tiny_config())
    with pytest.raises(ValueError, match="3 images"):
        model(input_ids=tiny_input_ids(4).reshape(2, 2, -1), pixel_values=torch.randn(3, 3, 30, 30))
    with pytest.raises(ValueError, match="pairs text i with image i"):
        model(input_ids=tiny_input_ids(4), pixel_values=torch.randn(3, 3, 30, 30), return_loss=True)
    with pytest.raises(ValueError, match=r"\(batch, 1 \+ K, length\)"):
        model(input_ids=tiny_input_ids(4).reshape(1, 2, 2, -1), pixel_values=torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match="needs both"):
        model(input_ids=tiny_input_ids(2))


def test_auto_model_and_processor_round_trip(tmp_path):
    model = DreamLIPModel(tiny_config())
    processor = DreamLIPProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30}),
        tokenizer=tiny_tokenizer(),
    )
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert type(AutoModel.from_pretrained(tmp_path)) is DreamLIPModel
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is DreamLIPProcessor
    batch = reloaded(images=[Image.new("RGB", (40, 30))] * 2, text=[["abc", "de", "f"], ["gh", "ij", "k"]])
    assert batch["input_ids"].ndim == 3 and batch["input_ids"].shape[:2] == (2, 3)
    out = model(**batch, return_loss=True)
    assert torch.isfinite(out.loss)
    classifier = pipeline(
        "zero-shot-image-classification", model=model, tokenizer=reloaded.tokenizer,
        image_processor=reloaded.image_processor,
    )  # fmt: skip
    result = classifier(
        Image.new("RGB", (40, 40), "red"), candidate_labels=["ab", "cd", "ef"], hypothesis_template="{}"
    )
    assert sorted(r["label"] for r in result) == ["ab", "cd", "ef"]
    with pytest.raises(ValueError, match="same number"):
        reloaded(images=[Image.new("RGB", (40, 30))] * 2, text=[["abc", "de"], ["gh"]])
    with pytest.raises(ValueError, match="no captions"):
        reloaded(images=[Image.new("RGB", (40, 30))] * 2, text=[["abc"], []])
