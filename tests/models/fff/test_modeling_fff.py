"""FFF: the mined assignment matrix, the multi-positive losses against their naive formulas, processor, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModel, AutoProcessor, CLIPImageProcessorPil, pipeline

from hf_clipzoo import FFFConfig, FFFModel, FFFProcessor
from hf_clipzoo.losses import mine_positives
from tests.models.clip.test_processing_clip import tiny_tokenizer
from tests.testing_utils import TINY_TEXT_CONFIG, TINY_VISION_CONFIG, ClipZooModelTesterMixin, tiny_input_ids


def tiny_config(**kwargs) -> FFFConfig:
    return FFFConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16, **kwargs)


def tiny_inputs() -> dict:
    # 3 images with 2, 1 and 3 captions: the batch text augmentation layout.
    return {
        "input_ids": tiny_input_ids(6),
        "pixel_values": torch.randn(3, 3, 30, 30),
        "text_owner": torch.tensor([0, 0, 1, 2, 2, 2]),
    }


class TestFFFModel(ClipZooModelTesterMixin):
    model_class = FFFModel
    invalid_configs = (
        ({"mining_image_image_threshold": 1.5}, "in \\[-1, 1\\]"),
        ({"mining_text_text_threshold": -2.0}, "in \\[-1, 1\\]"),
        ({"mining_combination": "xor"}, "mining_combination"),
        ({"mining_text_text_reference": "min"}, "mining_text_text_reference"),
        ({"mining_source": "oracle"}, "mining_source"),
        ({"mining_image_image_threshold": None, "mining_text_text_threshold": None}, "at least one"),
        ({"loss_type": "hinge"}, "loss_type"),
    )

    def get_config(self):
        return tiny_config(mining_image_text_threshold=0.5)

    def prepare_inputs(self, config):
        torch.manual_seed(1)
        return tiny_inputs()


class TestFFFSoftmaxModel(TestFFFModel):
    def get_config(self):
        return tiny_config(loss_type="softmax", logit_scale_init_value=2.6592, mining_combination="all")


# --- mining -------------------------------------------------------------------------------------------------------
def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_duplicates_and_near_duplicates_become_positives_unrelated_pairs_do_not():
    # Images 0 and 1 are exact duplicates, 2 is a near-duplicate of 0 (cos 0.995), 3 is unrelated.
    images = unit([1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0])
    texts = unit([0.0, 1.0, 0.0], [0.5, 0.5, 0.7], [0.0, 0.3, 1.0], [1.0, 1.0, 1.0])  # unrelated to each other
    owner = torch.arange(4)
    mined = mine_positives(images, texts, owner, image_image_threshold=0.99)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        expected[a, b] = expected[b, a] = True
    assert torch.equal(mined, expected)
    assert torch.equal(mined, mined.t())  # one caption per image + image-image rule: symmetric

    # Identical alt-texts (texts 1 and 3) are mined by the text-text rule, in both directions.
    texts = unit([0.0, 1.0, 0.0], [0.2, 0.0, 1.0], [1.0, 1.0, 0.0], [0.2, 0.0, 1.0])
    mined = mine_positives(images, texts, owner, text_text_threshold=0.999)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1, 3] = expected[3, 1] = True
    assert torch.equal(mined, expected)
    # "all" needs both: images 1 and 3 are not alike, so nothing survives.
    both = mine_positives(
        images, texts, owner, image_image_threshold=0.99, text_text_threshold=0.999, combination="all"
    )
    assert not both.any()


def naive_mine(images, texts, owner, it, ii, tt, combination, reference):
    num_images, num_texts = images.shape[0], texts.shape[0]
    own_texts = [[j for j in range(num_texts) if owner[j] == i] for i in range(num_images)]
    mined = torch.zeros(num_images, num_texts, dtype=torch.bool)
    for i in range(num_images):
        for j in range(num_texts):
            if owner[j] == i:
                continue
            conditions = []
            if it is not None:
                conditions.append(float(images[i] @ texts[j]) > it)
            if ii is not None:
                conditions.append(float(images[i] @ images[owner[j]]) > ii)
            if tt is not None:
                sims = [float(texts[c] @ texts[j]) for c in own_texts[i]]
                value = {"first": sims[0], "max": max(sims), "mean": sum(sims) / len(sims)}[reference]
                conditions.append(value > tt)
            mined[i, j] = any(conditions) if combination == "any" else all(conditions)
    return mined


@pytest.mark.parametrize("combination", ["any", "all"])
@pytest.mark.parametrize("reference", ["first", "max", "mean"])
def test_mining_matches_naive_loops(combination, reference):
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(6, 3, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(13, 3, generator=generator), dim=-1)
    owner = torch.tensor([0, 1, 2, 3, 4, 5, 0, 0, 2, 5, 5, 3, 1])  # interleaved on purpose
    kwargs = dict(it=0.3, ii=0.2, tt=0.1)
    expected = naive_mine(images, texts, owner.tolist(), **kwargs, combination=combination, reference=reference)
    actual = mine_positives(
        images, texts, owner, image_text_threshold=0.3, image_image_threshold=0.2, text_text_threshold=0.1,
        combination=combination, text_text_reference=reference,
    )  # fmt: skip
    assert torch.equal(actual, expected)
    assert 0 < int(actual.sum()) < actual.numel()  # the case exercises both outcomes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_image_threshold": 1.2}, "\\[-1, 1\\]"),
        ({"combination": "xor", "image_image_threshold": 0.5}, "combination"),
        ({"text_text_reference": "min", "text_text_threshold": 0.5}, "text_text_reference"),
    ],
)
def test_mining_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mine_positives(torch.eye(2), torch.eye(2), torch.arange(2), **kwargs)
    with pytest.raises(ValueError, match="have none"):
        mine_positives(torch.eye(3), torch.eye(3)[:2], torch.tensor([0, 1]), image_image_threshold=0.5)


# --- losses -------------------------------------------------------------------------------------------------------
def naive_sigmoid(image_embeds, text_embeds, mask, scale, bias):
    total = 0.0
    for i in range(image_embeds.shape[0]):
        for j in range(text_embeds.shape[0]):
            z = 1.0 if mask[i, j] else -1.0
            logit = scale * float(image_embeds[i].detach() @ text_embeds[j].detach()) + bias
            total += -math.log(1 / (1 + math.exp(-z * logit)))
    return total / image_embeds.shape[0]


def naive_multi_positive_softmax(image_embeds, text_embeds, mask, scale):
    logits = (scale * image_embeds @ text_embeds.t()).double()
    mask = mask.double()
    rows = sum(
        -sum(mask[i, j] / mask[i].sum() * torch.log_softmax(logits[i], 0)[j] for j in range(logits.shape[1]))
        for i in range(logits.shape[0])
    )
    columns = sum(
        -sum(mask[i, j] / mask[:, j].sum() * torch.log_softmax(logits[:, j], 0)[i] for i in range(logits.shape[0]))
        for j in range(logits.shape[1])
    )
    return float((rows / logits.shape[0] + columns / logits.shape[1]).detach() / 2)


def trained_like_model(**kwargs):
    """A model whose mining finds some, not all, pairs: thresholds set between the observed similarities."""
    torch.manual_seed(0)
    return FFFModel(tiny_config(**kwargs)).eval()


def test_sigmoid_loss_equals_naive_double_sum_with_mined_mask():
    model = trained_like_model(mining_image_text_threshold=None, mining_image_image_threshold=None,
                               mining_text_text_threshold=0.0)  # fmt: skip
    inputs = tiny_inputs()
    inputs["input_ids"][3] = inputs["input_ids"][0]  # image 2's first caption repeats image 0's: a false negative
    out = model(**inputs, return_loss=True)
    mask = out.positive_mask
    assert mask[2, 0] and mask[0, 3] and mask[0, 0] and mask[2, 5]
    expected = naive_sigmoid(
        out.image_embeds, out.text_embeds, mask, model.logit_scale.exp().item(), model.logit_bias.item()
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.num_mined_positives.item() == int(mask.sum()) - 6


def test_softmax_variant_equals_naive_formula():
    model = trained_like_model(loss_type="softmax", logit_scale_init_value=2.0)
    out = model(**tiny_inputs(), return_loss=True)
    expected = naive_multi_positive_softmax(out.image_embeds, out.text_embeds, out.positive_mask, math.exp(2.0))
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_without_mining_only_own_captions_are_positive():
    model = trained_like_model(mining=False)
    out = model(**tiny_inputs(), return_loss=True)
    expected = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(out.positive_mask, expected) and out.num_mined_positives.item() == 0
    # `mine=` overrides the config per call (warm-up without mining from random initialisation).
    model_mining = trained_like_model()
    assert torch.equal(model_mining(**tiny_inputs(), return_loss=True, mine=False).positive_mask, expected)


def test_teacher_features_drive_the_mining():
    model = trained_like_model(
        mining_source="teacher", mining_image_image_threshold=0.99, mining_text_text_threshold=None
    )
    inputs = tiny_inputs()
    teacher_images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # the teacher sees images 0 and 1 as one
    teacher_texts = torch.randn(6, 2)
    out = model(**inputs, return_loss=True, mining_image_embeds=teacher_images, mining_text_embeds=teacher_texts)
    assert out.positive_mask[0, 2] and out.positive_mask[1, 0] and out.positive_mask[1, 1]
    assert not out.positive_mask[0, 3] and out.num_mined_positives.item() == 3
    with pytest.raises(ValueError, match="needs `mining_image_embeds`"):
        model(**inputs, return_loss=True)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: x.update(text_owner=torch.tensor([0, 0, 0, 2, 2, 2])), "images \\[1\\] have none"),
        (lambda x: x.update(text_owner=torch.tensor([0, 1, 2])), "one entry per text"),
        (lambda x: x.update(text_owner=torch.tensor([0, 0, 1, 2, 2, 7])), "must lie in"),
        (lambda x: x.pop("text_owner"), "without `text_owner`"),
    ],
)
def test_bad_inputs(change, message):
    inputs = tiny_inputs()
    change(inputs)
    with pytest.raises(ValueError, match=message):
        trained_like_model()(**inputs, return_loss=True)


# --- processor and pipelines --------------------------------------------------------------------------------------
def tiny_processor() -> FFFProcessor:
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    return FFFProcessor(image_processor=image_processor, tokenizer=tiny_tokenizer())


def test_processor_flattens_captions_per_image(tmp_path):
    processor = tiny_processor()
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    batch = processor(images=images, text=[["a red square", "red"], ["a blue one"]])
    assert batch["input_ids"].shape[0] == 3 and batch["text_owner"].tolist() == [0, 0, 1]
    out = trained_like_model()(**batch, return_loss=True)
    assert out.loss.isfinite()
    plain = processor(images=images, text=["a", "b"])
    assert "text_owner" not in plain  # flat captions behave like CLIP's processor
    with pytest.raises(ValueError, match="Image 1 has no captions"):
        processor(images=images, text=[["a"], []])
    with pytest.raises(ValueError, match="Image 0: Text 1 is empty"):
        processor(images=images, text=[["a", "  "], ["b"]])
    with pytest.raises(ValueError, match="one caption list per image"):
        processor(images=images, text=[["a"]])
    processor.save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)).__name__ == "FFFProcessor"


def test_auto_model_and_zero_shot_pipeline(tmp_path):
    model = trained_like_model()
    model.save_pretrained(tmp_path)
    assert type(AutoModel.from_pretrained(tmp_path)) is FFFModel
    processor = tiny_processor()
    classifier = pipeline(
        "zero-shot-image-classification", model=model, tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )  # fmt: skip
    result = classifier(
        Image.new("RGB", (40, 40), "red"), candidate_labels=["cat", "dog", "bird"], hypothesis_template="a {}."
    )
    assert sorted(r["label"] for r in result) == ["bird", "cat", "dog"]


def test_loads_a_baseline_clip_checkpoint(tmp_path):
    """FFF fine-tunes from a baseline: a ZooCLIP (softmax, no bias) folder loads, the bias starts at its init."""
    from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel

    clip = ZooCLIPModel(
        ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16)
    )
    clip.save_pretrained(tmp_path)
    config = FFFConfig.from_dict({**ZooCLIPConfig.from_pretrained(tmp_path).to_dict(), "loss_type": "sigmoid"})
    model, info = FFFModel.from_pretrained(tmp_path, config=config, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info  # the bias is new by design (declared)
    assert model.logit_bias.item() == -10.0
    torch.testing.assert_close(model.visual_projection.weight, clip.visual_projection.weight)
