"""Model-level evaluators on a tiny random `CLIPModel`, each against a naive one-sample-at-a-time recomputation."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from eval_testing_utils import random_images

from hf_clipzoo.eval import (
    build_zero_shot_classifier,
    evaluate_mmvp,
    evaluate_retrieval,
    evaluate_zero_shot,
)
from hf_clipzoo.eval.embeddings import embedding_from_output

CLASS_NAMES = ["red square", "blue circle", "green cat", "tiny dog", "big boat", "old car"]
TEMPLATES = ["a photo of a {}.", "a sketch of the {}", lambda c: f"itap of {c}"]


def naive_text_embedding(model, processor, text):
    inputs = processor(text=[text], return_tensors="pt")  # one prompt, no padding at all
    with torch.no_grad():
        output = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    return F.normalize(output.pooler_output[0], dim=-1)


def naive_image_embedding(model, processor, image):
    with torch.no_grad():
        output = model.get_image_features(pixel_values=processor(images=[image], return_tensors="pt")["pixel_values"])
    return F.normalize(output.pooler_output[0], dim=-1)


def classification_dataset(num_images=14, seed=0):
    labels = [i % len(CLASS_NAMES) for i in range(num_images)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASS_NAMES)})
    return datasets.Dataset.from_dict({"image": random_images(num_images, seed), "label": labels}, features=features)


def test_build_zero_shot_classifier_is_clips_recipe(clip_model, processor):
    weights = build_zero_shot_classifier(clip_model, processor, CLASS_NAMES, TEMPLATES, batch_size=4)
    assert weights.shape == (len(CLASS_NAMES), 16)
    for c, name in enumerate(CLASS_NAMES):
        prompts = [t.format(name) if isinstance(t, str) else t(name) for t in TEMPLATES]
        mean = torch.stack([naive_text_embedding(clip_model, processor, p) for p in prompts]).mean(dim=0)
        torch.testing.assert_close(weights[c], mean / mean.norm(), atol=1e-5, rtol=1e-5)
    # The tokenizer alone works as well as the processor.
    torch.testing.assert_close(
        build_zero_shot_classifier(clip_model, processor.tokenizer, CLASS_NAMES, TEMPLATES), weights, atol=1e-5, rtol=0
    )


def test_evaluate_zero_shot_equals_naive_recomputation(clip_model, processor):
    dataset = classification_dataset()
    result = evaluate_zero_shot(clip_model, processor, dataset, templates=TEMPLATES, batch_size=4)

    # Naive: one image and one prompt at a time, then sort the classes of each image.
    weights = []
    for name in CLASS_NAMES:
        prompts = [t.format(name) if isinstance(t, str) else t(name) for t in TEMPLATES]
        mean = torch.stack([naive_text_embedding(clip_model, processor, p) for p in prompts]).mean(dim=0)
        weights.append(mean / mean.norm())
    top1 = top5 = 0
    per_class = {c: [] for c in range(len(CLASS_NAMES))}
    for row in dataset:
        image = naive_image_embedding(clip_model, processor, row["image"])
        scores = [float(image @ w) for w in weights]
        ranking = sorted(range(len(CLASS_NAMES)), key=lambda c: -scores[c])
        top1 += ranking[0] == row["label"]
        top5 += row["label"] in ranking[:5]
        per_class[row["label"]].append(ranking[0] == row["label"])
    assert result["num_samples"] == len(dataset)
    assert result["top1_accuracy"] == pytest.approx(top1 / len(dataset))
    assert result["top5_accuracy"] == pytest.approx(top5 / len(dataset))
    assert result["per_class_accuracy"] == pytest.approx([np.mean(v) for v in per_class.values()])
    assert 0 < result["top5_accuracy"] < 1  # a random model: neither degenerate nor perfect


def test_evaluate_zero_shot_with_a_single_process_accelerator(clip_model, processor):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    dataset = classification_dataset(num_images=7)
    expected = evaluate_zero_shot(clip_model, processor, dataset, templates=TEMPLATES, batch_size=3)
    try:
        accelerator = Accelerator(cpu=True)
        got = evaluate_zero_shot(
            clip_model, processor, dataset, templates=TEMPLATES, batch_size=3, accelerator=accelerator
        )
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert got == expected  # same batches, same order: bit-identical


def test_evaluate_zero_shot_bad_input(clip_model, processor):
    dataset = classification_dataset(num_images=3)
    with pytest.raises(ValueError, match=r"no column\(s\) \['img'\]"):
        evaluate_zero_shot(clip_model, processor, dataset, image_column="img")
    with pytest.raises(ValueError, match="class_names"):
        evaluate_zero_shot(clip_model, processor, dataset.cast_column("label", datasets.Value("int64")))
    with pytest.raises(ValueError, match="outside"):
        evaluate_zero_shot(clip_model, processor, dataset, class_names=["a", "b"])
    with pytest.raises(ValueError, match="placeholder"):
        evaluate_zero_shot(clip_model, processor, dataset, templates=["a photo"])
    with pytest.raises(ValueError, match="empty"):
        evaluate_zero_shot(clip_model, processor, dataset.select([]))
    with pytest.raises(ValueError, match="map-style"):
        evaluate_zero_shot(clip_model, processor, dataset.to_iterable_dataset())


def test_evaluate_retrieval_equals_naive_recomputation(clip_model, processor):
    captions = [
        ["a red square", "red box on grass"],
        ["a blue circle"],
        ["two green cats", "cats", "green animals sitting"],
        ["a tiny dog"],
        ["boat", "a big boat on the sea"],
    ]
    dataset = datasets.Dataset.from_dict({"image": random_images(5, seed=1), "captions": captions})
    dataset = dataset.cast_column("image", datasets.Image())
    result = evaluate_retrieval(clip_model, processor, dataset, caption_column="captions", ks=(1, 2, 5), batch_size=2)

    texts = [c for image_captions in captions for c in image_captions]
    owner = [i for i, image_captions in enumerate(captions) for _ in image_captions]
    images = [naive_image_embedding(clip_model, processor, row["image"]) for row in dataset]
    text_embeddings = [naive_text_embedding(clip_model, processor, t) for t in texts]
    sim = [[float(im @ tx) for tx in text_embeddings] for im in images]
    i2t = [
        min(sorted(range(len(texts)), key=lambda t: -sim[i][t]).index(t) for t in range(len(texts)) if owner[t] == i)
        for i in range(5)
    ]
    t2i = [sorted(range(5), key=lambda i: -sim[i][t]).index(owner[t]) for t in range(len(texts))]
    for k in (1, 2, 5):
        assert result[f"image_to_text_R@{k}"] == pytest.approx(np.mean([r < k for r in i2t]))
        assert result[f"text_to_image_R@{k}"] == pytest.approx(np.mean([r < k for r in t2i]))
    assert result["num_images"] == 5 and result["num_texts"] == len(texts)
    assert result["text_to_image_R@5"] == 1.0  # only 5 images

    # A plain string column: one caption per image.
    single = dataset.map(lambda row: {"caption": row["captions"][0]}, remove_columns=["captions"])
    assert "image_to_text_R@1" in evaluate_retrieval(clip_model, processor, single)


def test_evaluate_retrieval_bad_input(clip_model, processor):
    dataset = datasets.Dataset.from_dict({"image": random_images(2, seed=2), "caption": [["a cat"], []]})
    with pytest.raises(ValueError, match="Image 1 has no caption"):
        evaluate_retrieval(clip_model, processor, dataset)
    dataset = datasets.Dataset.from_dict({"image": random_images(2, seed=2), "caption": ["a cat", "  "]})
    with pytest.raises(ValueError, match="empty"):
        evaluate_retrieval(clip_model, processor, dataset)
    with pytest.raises(ValueError, match="text"):
        evaluate_retrieval(clip_model, processor, dataset, caption_column="text")


STATEMENTS = ["the dog faces left", "one apple", "three apples", "a red car", "xyz", "a cat 9", "zebra stripes", "q"]
CATEGORIES = ["Orientation and Direction", "Quantity and Count", "Color and Appearance"]


def official_statement_logits(model, processor, image_a, image_b, statement):
    """What the official script computes per statement: `model(imgs, text)` -> logits_per_text over the 2 images."""
    pixel_values = processor(images=[image_a, image_b], return_tensors="pt")["pixel_values"]
    text = processor(text=["a photo of " + statement], return_tensors="pt")
    with torch.no_grad():
        return model(pixel_values=pixel_values, **text).logits_per_text[0]


def official_verdict(model, processor, row):
    """Image 1 iff softmax(logits_per_text)[0] > 0.5; correct iff statement a -> image 1 and b -> image 2."""
    preds = []
    for statement in (row["statement_a"], row["statement_b"]):
        logits = official_statement_logits(model, processor, row["image_a"], row["image_b"], statement)
        preds.append("img1" if logits.softmax(dim=-1)[0] > 0.5 else "img2")
    return preds == ["img1", "img2"]


def mmvp_dataset(model, processor, num_image_pairs=4):
    """Pairs whose statements are the ones a random model finds most / least image-a-like, in both orders.

    A random CLIP mostly prefers one image of a pair whatever the text says, so random statements give 0 accuracy;
    choosing the extreme statements per image pair yields both correct and wrong pairs to compare verdicts on.
    """
    images = random_images(2 * num_image_pairs, seed=3)
    rows = {key: [] for key in ("image_a", "image_b", "statement_a", "statement_b", "category")}
    for k in range(num_image_pairs):
        image_a, image_b = images[2 * k], images[2 * k + 1]
        margins = []
        for statement in STATEMENTS:
            logits = official_statement_logits(model, processor, image_a, image_b, statement)
            margins.append(float(logits[0] - logits[1]))
        most, least = STATEMENTS[int(np.argmax(margins))], STATEMENTS[int(np.argmin(margins))]
        for statement_a, statement_b in ((most, least), (least, most)):
            rows["image_a"].append(image_a)
            rows["image_b"].append(image_b)
            rows["statement_a"].append(statement_a)
            rows["statement_b"].append(statement_b)
            rows["category"].append(CATEGORIES[len(rows["category"]) % 3])
    dataset = datasets.Dataset.from_dict(rows)
    return dataset.cast_column("image_a", datasets.Image()).cast_column("image_b", datasets.Image())


def test_evaluate_mmvp_equals_the_official_loop(clip_model, processor):
    dataset = mmvp_dataset(clip_model, processor)
    result = evaluate_mmvp(clip_model, processor, dataset, batch_size=3, return_scores=True)

    correct = [official_verdict(clip_model, processor, row) for row in dataset]
    assert any(correct) and not all(correct)  # the comparison below can tell right from wrong
    per_category = {}
    for category, ok in zip(dataset["category"], correct):
        per_category.setdefault(category, []).append(ok)
    assert list(result["per_category_accuracy"]) == CATEGORIES  # the official order
    for category, values in per_category.items():
        assert result["per_category_accuracy"][category] == pytest.approx(np.mean(values))
    assert result["average_accuracy"] == pytest.approx(np.mean([np.mean(v) for v in per_category.values()]))
    assert result["pair_accuracy"] == pytest.approx(np.mean(correct))
    assert np.asarray(result["scores"]).shape == (len(dataset), 2, 2)

    # Swapping images and statements of every pair keeps each pair's verdict (no position bias in the protocol).
    swapped = dataset.rename_columns(
        {"image_a": "image_b", "image_b": "image_a", "statement_a": "statement_b", "statement_b": "statement_a"}
    )
    assert evaluate_mmvp(clip_model, processor, swapped)["pair_accuracy"] == pytest.approx(result["pair_accuracy"])


def test_evaluate_mmvp_identical_statements_are_always_wrong(clip_model, processor):
    dataset = mmvp_dataset(clip_model, processor, num_image_pairs=2)
    dataset = dataset.map(lambda row: {"statement_b": row["statement_a"]})
    assert evaluate_mmvp(clip_model, processor, dataset, statement_template="{}")["pair_accuracy"] == 0.0
    with pytest.raises(ValueError, match="placeholder"):
        evaluate_mmvp(clip_model, processor, dataset, statement_template="a photo")
    with pytest.raises(ValueError, match="category"):
        evaluate_mmvp(clip_model, processor, dataset.remove_columns("category"))


def test_embedding_from_output_accepts_tensor_and_rejects_others():
    tensor = torch.ones(2, 3)
    assert embedding_from_output(tensor) is tensor
    with pytest.raises(ValueError, match="pooler_output"):
        embedding_from_output({"image_embeds": tensor})
