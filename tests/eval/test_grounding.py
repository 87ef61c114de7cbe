"""Patch-level grounding (`hf_clipzoo.eval.grounding`): a hand-computed case, an oracle model, a random model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.synthetic import WorldConfig, make_scenes
from hf_clipzoo.data.synthetic.vocab import SEGMENTATION_CLASSES
from hf_clipzoo.eval import grounding
from hf_clipzoo.eval.grounding import evaluate_patch_grounding, ground_with_labels
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel

SHAPES = SEGMENTATION_CLASSES[1:]


def test_ground_with_labels_hand_computed():
    # Two classes present (ids 1 and 3) of three; 1x3 image. Class 2's map must be ignored (not present).
    maps = np.array(
        [
            [[0.9, 0.5, 0.1]],  # class 1: min-max -> [1, 0.5, 0]
            [[5.0, 5.0, 5.0]],  # class 2: absent, huge similarities must not matter
            [[0.2, 0.3, 0.7]],  # class 3: min-max -> [0, 0.2, 1]
        ]
    )
    prediction, argmax = ground_with_labels(maps, [3, 1], background_threshold=0.6)
    # pixel 0: class 1 (1.0); pixel 1: best is 0.5 (class 1) < 0.6 -> background; pixel 2: class 3 (1.0).
    assert prediction.tolist() == [[1, 0, 3]]
    assert argmax == {1: 0, 3: 2}
    prediction, _ = ground_with_labels(maps, [3, 1], background_threshold=0.0)
    assert prediction.tolist() == [[1, 1, 3]]
    assert ground_with_labels(maps, [], 0.5)[0].tolist() == [[0, 0, 0]]


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(6, split="test", config=WorldConfig(seed=1, image_size=32))


def _oracle(monkeypatch, shuffle: bool = False):
    """Text embeddings = the class basis; patch embeddings = the one-hot class at each patch centre."""
    num_classes = len(SHAPES)
    monkeypatch.setattr(grounding, "encode_texts", lambda model, processor, texts, device=None: torch.eye(num_classes))
    masks = []

    def fake_patches(model, pixel_values):
        batch = masks[: pixel_values.shape[0]]
        del masks[: pixel_values.shape[0]]
        grid = 8
        features = []
        for mask in batch:
            centres = mask[2::4, 2::4][:grid, :grid].reshape(-1)  # patch 4 on a 32x32 image
            if shuffle:
                centres = np.random.default_rng(0).permutation(centres)
            one_hot = torch.zeros(grid * grid, num_classes)
            for p, c in enumerate(centres):
                if c > 0:
                    one_hot[p, c - 1] = 1.0
            features.append(F.normalize(one_hot + 1e-3, dim=-1))
        return torch.stack(features)

    monkeypatch.setattr(grounding, "patch_embeddings", fake_patches)
    return masks


def test_oracle_patches_point_at_every_object(monkeypatch, scenes):
    masks = _oracle(monkeypatch)
    masks.extend(np.asarray(m, dtype=np.int64) for m in scenes["semantic_mask"])
    model = ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro"))
    result = evaluate_patch_grounding(model, build_clip_processor(32, 77), scenes, class_names=SHAPES, batch_size=4)
    assert result["num_objects"] >= len(scenes) and result["pointing_accuracy"] > 0.9
    # 8x8 patches on 32x32 images: the coarse grid caps the IoU of small shapes well below 1.
    assert result["mean_iou"] > 0.4


def test_shuffled_patches_ground_worse(monkeypatch, scenes):
    masks = _oracle(monkeypatch, shuffle=True)
    masks.extend(np.asarray(m, dtype=np.int64) for m in scenes["semantic_mask"])
    model = ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro"))
    result = evaluate_patch_grounding(model, build_clip_processor(32, 77), scenes, class_names=SHAPES, batch_size=4)
    assert result["pointing_accuracy"] < 0.6 and result["mean_iou"] < 0.3


def test_real_model_and_bad_input(scenes):
    model = ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro"))
    processor = build_clip_processor(32, 77)
    result = evaluate_patch_grounding(model, processor, scenes, class_names=SHAPES)
    assert 0.0 <= result["pointing_accuracy"] <= 1.0 and 0.0 <= result["mean_iou"] <= 1.0
    with pytest.raises(ValueError, match="background_threshold"):
        evaluate_patch_grounding(model, processor, scenes, class_names=SHAPES, background_threshold=2.0)
    with pytest.raises(ValueError, match="no class name"):
        evaluate_patch_grounding(model, processor, scenes, class_names=SHAPES[:1])
    with pytest.raises(ValueError, match="no column"):
        evaluate_patch_grounding(model, processor, scenes, class_names=SHAPES, mask_column="masks")
    with pytest.raises(ValueError, match="neither"):
        grounding.patch_embeddings(torch.nn.Linear(2, 2), torch.zeros(1, 3, 32, 32))
