"""GroupViT processor: noun prompts, the official segmentation protocol against hand-computed cases, the pipeline."""

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipzoo.models.groupvit import ZooGroupViTConfig, ZooGroupViTModel, build_groupvit_processor
from hf_clipzoo.models.groupvit.processing_groupvit import (
    IMAGENET_TEMPLATES_FULL,
    build_prompts,
    check_labels,
    extract_prompt_words,
    group_assignment_map,
    groups_to_class_scores,
    sliding_windows,
)
from hf_clipzoo.pipelines.zero_shot_segmentation import ZeroShotSegmentationPipeline


@pytest.fixture(scope="module")
def processor():
    return build_groupvit_processor(32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ZooGroupViTModel(ZooGroupViTConfig.from_preset("world-micro")).eval()


def test_prompt_words_fallback_keeps_nouns():
    words = extract_prompt_words("A red circle to the left of two small blue squares.", use_nltk=False)
    assert words == ["circle", "squares"]


def test_build_prompts_structure():
    rng = random.Random(0)
    prompts = build_prompts(["a star", "a red circle"], [["star"], ["circle", "disk", "ring", "loop"]], rng=rng)
    assert len(prompts) == 6
    # One word only: one template sentence, then padded with the raw caption (official).
    assert prompts[1:3] == ["a star", "a star"]
    assert "star" in prompts[0] and any(prompts[0] == t.format("star") for t in IMAGENET_TEMPLATES_FULL)
    used = [next(w for w in ["circle", "disk", "ring", "loop"] if w in p) for p in prompts[3:]]
    assert len(set(used)) == 3, "words are sampled without replacement"
    with pytest.raises(ValueError, match="one per caption"):
        build_prompts(["a"], [["x"], ["y"]])


def test_check_labels_rejects_duplicates_and_empty():
    with pytest.raises(ValueError, match="duplicates"):
        check_labels(["cat", "Cat "])
    with pytest.raises(ValueError, match="non-empty string"):
        check_labels(["cat", " "])
    with pytest.raises(ValueError, match="non-empty list"):
        check_labels([])


def test_group_assignment_map_is_product_of_stages():
    torch.manual_seed(0)
    a1 = torch.rand(1, 3, 4).softmax(dim=1)  # 3 groups over 2x2 patches
    a2 = torch.rand(1, 2, 3).softmax(dim=1)  # 2 groups over the 3
    out = group_assignment_map([a1, a2], (2, 2), (2, 2))
    for g in range(2):
        for p in range(4):
            expected = sum(a1[0, k, p] * a2[0, g, k] for k in range(3))
            assert out[0, g, p // 2, p % 2].item() == pytest.approx(expected.item(), abs=1e-6)


def test_segmentation_scores_hand_computed():
    # Two pixels, two groups: pixel 0 -> group 0, pixel 1 -> group 1. Classes = unit vectors; s = 1.
    maps = [torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])]
    soft = group_assignment_map(maps, (1, 2), (1, 2))
    r = 1 / math.sqrt(2)
    groups = torch.tensor([[[1.0, 0.0, 0.0], [0.0, r, r]]])
    image = torch.tensor([[0.0, 1.0, 0.0]])  # top-1 class of the whole image: class 1
    classes = torch.eye(3)
    e = math.e
    pre0_1 = 1 / (e + 2)  # softmax([1, 0, 0])[1]
    pre1_1 = math.exp(r) / (1 + 2 * math.exp(r))  # softmax([0, r, r])[1]
    # top_k=1: only class 1 survives the filter -> masked softmax is one-hot on class 1, times the unmasked softmax.
    scores = groups_to_class_scores(soft, groups, image, classes, 1.0, bg_thresh=0.3, top_k=1)
    assert scores.shape == (1, 4, 1, 2)
    expected_fg = torch.tensor([[[0.0, 0.0], [pre0_1, pre1_1], [0.0, 0.0]]])
    torch.testing.assert_close(scores[0, 1:, 0], expected_fg[0], atol=1e-6, rtol=0)
    # threshold min(0.3, max aff = pre1_1 = 0.401): pixel 0 (0.198) is background, pixel 1 is class 1.
    assert scores[0, 0, 0].tolist() == [1.0, 0.0]
    assert scores.argmax(dim=1)[0, 0].tolist() == [0, 2]
    # bg_thresh 0.95 > aff.max(): the threshold becomes aff.max(), so the best pixel stays foreground.
    scores = groups_to_class_scores(soft, groups, image, classes, 1.0, bg_thresh=0.95, top_k=1)
    assert scores[0, 0, 0].tolist() == [1.0, 0.0]
    # top_k=3 (no filter): masked softmax = plain softmax, squared.
    scores = groups_to_class_scores(soft, groups, image, classes, 1.0, bg_thresh=0.0, top_k=3)
    assert scores[0, 1, 0, 0].item() == pytest.approx((e / (e + 2)) ** 2, abs=1e-6)
    assert scores[0, 0].sum().item() == 0.0


def test_sliding_windows_like_mmseg():
    assert sliding_windows(5, 7, 4, 2) == [
        (0, 4, 0, 4), (0, 4, 2, 6), (0, 4, 3, 7), (1, 5, 0, 4), (1, 5, 2, 6), (1, 5, 3, 7),
    ]  # fmt: skip
    assert sliding_windows(3, 3, 4, 2) == [(0, 3, 0, 3)]


def test_segment_and_post_process(processor, model):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    pixel_values = processor.preprocess_for_segmentation(image, short_side=32)
    assert pixel_values.shape == (1, 3, 32, 45)
    label_map = processor.segment(model, image, ["circle", "square"], crop_size=32, stride=16, short_side=32)
    assert label_map.shape == (40, 56) and int(label_map.max()) <= 2
    # One window covering the whole (square) input == the whole-image post-processing.
    square = torch.randn(1, 3, 32, 32)
    class_embeds = processor.encode_labels(model, ["circle", "square", "star"])
    slide = processor.slide_scores(model, square, class_embeds, crop_size=32, stride=16)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[49407]]), pixel_values=square, output_segmentation=True)
    whole = processor.post_process_semantic_segmentation(out, class_embeds, size=(32, 32), return_scores=True)[0]
    torch.testing.assert_close(slide, whole)
    with pytest.raises(ValueError, match="output_segmentation=True"):
        processor.post_process_semantic_segmentation(model(input_ids=torch.tensor([[49407]]), pixel_values=square),
                                                     class_embeds)  # fmt: skip


def test_pipeline_one_mask_per_label_and_overlay(processor, model, tmp_path):
    segmenter = ZeroShotSegmentationPipeline(model, processor, crop_size=32, stride=16, short_side=32)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    results = segmenter(image, candidate_labels=["circle", "square"], bg_thresh=0.0)
    assert [r["label"] for r in results] == ["circle", "square"]
    assert all(r["mask"].size == (32, 32) and r["mask"].mode == "L" for r in results)
    # bg_thresh 0: no background, so the masks partition the image.
    assert sum(r["score"] for r in results) == pytest.approx(1.0)
    overlay = segmenter.overlay(image, results)
    overlay.save(tmp_path / "overlay.png")
    assert Image.open(tmp_path / "overlay.png").size == (32, 32)
    with pytest.raises(ValueError, match="duplicates"):
        segmenter(image, candidate_labels=["circle", "circle"])
    with pytest.raises(ValueError, match="Unknown options"):
        segmenter(image, candidate_labels=["circle"], bogus=1)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"bg_thresh": float("nan")}, r"`bg_thresh` must be a number in \[0, 1\].*got nan"),
        ({"bg_thresh": float("inf")}, r"`bg_thresh` must be a number in \[0, 1\].*got inf"),
        ({"bg_thresh": -0.1}, r"`bg_thresh` must be a number in \[0, 1\].*got -0.1"),
        ({"bg_thresh": 1.5}, r"`bg_thresh` must be a number in \[0, 1\].*got 1.5"),
        ({"bg_thresh": "0.9"}, r"`bg_thresh` must be a number in \[0, 1\].*got '0.9'"),
        ({"top_k": 0}, r"`top_k` must be a positive integer.*got 0"),
    ],
)
def test_segmentation_options_are_validated_everywhere(processor, model, options, message):
    image = Image.new("RGB", (32, 32), "red")
    with pytest.raises(ValueError, match=message):
        ZeroShotSegmentationPipeline(model, processor, crop_size=32, stride=16, short_side=32, **options)
    segmenter = ZeroShotSegmentationPipeline(model, processor, crop_size=32, stride=16, short_side=32)
    with pytest.raises(ValueError, match=message):
        segmenter(image, candidate_labels=["circle", "square"], **options)
    with pytest.raises(ValueError, match=message):
        processor.segment(model, image, ["circle"], crop_size=32, stride=16, short_side=32, **options)
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor([[49407]]), pixel_values=torch.randn(1, 3, 32, 32), output_segmentation=True
        )
    with pytest.raises(ValueError, match=message):
        processor.post_process_semantic_segmentation(out, processor.encode_labels(model, ["circle"]), **options)


def test_segmentation_accepts_numpy_scalars_and_the_range_ends(processor, model):
    image = Image.new("RGB", (32, 32), "red")
    for bg_thresh in (0.0, 1.0, np.float32(0.5)):
        label_map = processor.segment(model, image, ["circle"], crop_size=32, stride=16, short_side=32,
                                      bg_thresh=bg_thresh, top_k=np.int64(1))  # fmt: skip
        assert label_map.shape == (32, 32)


def test_segmentation_pipeline_takes_float_images_as_scaled_and_refuses_nan(processor, model):
    segmenter = ZeroShotSegmentationPipeline(model, processor, crop_size=32, stride=16, short_side=32)
    pixels = np.random.default_rng(2).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    expected = segmenter(Image.fromarray(pixels), candidate_labels=["circle", "square"])
    scaled = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    got = segmenter(scaled, candidate_labels=["circle", "square"])
    for a, b in zip(got, expected):
        assert a["score"] == b["score"] and np.array_equal(np.asarray(a["mask"]), np.asarray(b["mask"]))
    with pytest.raises(ValueError, match="Image 0 contains NaN or infinite values"):
        segmenter(np.full((32, 32, 3), np.nan, dtype=np.float32), candidate_labels=["circle"])
