"""Building APE / Tip-Adapter: criterion, search, prompt ensembles, the augmented cache, few-shot sampling."""

import itertools
import json

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hf_clipzoo.eval.embeddings import encode_images, encode_texts
from hf_clipzoo.models.ape import (
    APEModel,
    APETModel,
    TipAdapterConfig,
    TipAdapterModel,
    build_adapter,
    build_cache,
    build_text_weights,
    random_resized_crop,
    refinement_criterion,
    sample_few_shot,
    search_hyperparameters,
    select_channels,
)
from hf_clipzoo.models.ape.building import augment_image, search_grid
from tests.models.ape.test_modeling_ape import CLASS_NAMES, C, D, K, Q, random_adapter, random_embeds, tiny_encoder
from tests.models.clip.test_processing_clip import tiny_processor


# --- the refinement criterion against the paper's quadruple sum ---------------------------------------------------
def naive_criterion(W, keys, shots, weight, use_cache):
    """`cal_criterion` of the official code, loop for loop (W as (C, D), keys (C·K, D) class-major)."""
    num_classes, dim = W.shape
    if use_cache:
        feats = torch.cat([W[:, None, :], keys.view(num_classes, shots, dim)], dim=1)
    else:
        feats = W[:, None, :]
    sim_sum, count = torch.zeros(dim, dtype=torch.float64), 0
    for i in range(num_classes):
        for j in range(num_classes):
            for m in range(feats.shape[1]):
                for n in range(feats.shape[1]):
                    if i != j:
                        sim_sum += feats[i, m] * feats[j, n]
                        count += 1
    sim = sim_sum / count
    var = torch.tensor([float(np.var(W[:, k].numpy(), ddof=1)) for k in range(dim)], dtype=torch.float64)
    return -weight * sim + (1 - weight) * var


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_criterion_equals_naive_quadruple_sum(use_cache, weight):
    generator = torch.Generator().manual_seed(0)
    num_classes, shots, dim = 5, 3, 7
    W = F.normalize(torch.randn(num_classes, dim, generator=generator, dtype=torch.float64), dim=-1)
    keys = F.normalize(torch.randn(num_classes * shots, dim, generator=generator, dtype=torch.float64), dim=-1)
    got = refinement_criterion(W, keys if use_cache else None, shots_per_class=shots, weight=weight)
    torch.testing.assert_close(got, naive_criterion(W, keys, shots, weight, use_cache), atol=1e-12, rtol=1e-10)


def test_select_channels_takes_top_q_and_rejects_q_above_d():
    criterion = torch.tensor([0.1, 0.9, -0.3, 0.5, 0.7])
    assert select_channels(criterion, 3).tolist() == [1, 4, 3]
    with pytest.raises(ValueError, match="1 <= Q <= D"):
        select_channels(criterion, 6)
    with pytest.raises(ValueError, match=">= 2 classes"):
        refinement_criterion(torch.randn(1, 5))
    with pytest.raises(ValueError, match=r"C·K"):
        refinement_criterion(torch.randn(3, 5), torch.randn(7, 5))
    with pytest.raises(ValueError, match="match the text weights"):
        refinement_criterion(torch.randn(3, 5), torch.randn(6, 4))


def test_build_adapter_uses_the_variant_of_each_method():
    ape = random_adapter(APEModel, criterion_weight=0.7)
    expected = select_channels(refinement_criterion(ape.text_weights, ape.cache_keys, weight=0.7), Q)
    assert torch.equal(ape.channel_idx, expected)
    ape_t = random_adapter(APETModel)  # official APE_Training: text-only criterion, λ = 0.2
    expected = select_channels(refinement_criterion(ape_t.text_weights, None, weight=0.2), Q)
    assert torch.equal(ape_t.channel_idx, expected)


# --- the search -------------------------------------------------------------------------------------------------------
def naive_search(model, f, labels, scale, steps, use_gamma):
    """The official search loops (strict `>`), scoring every setting with the model's own forward."""
    betas = [i * (scale[0] - 0.1) / steps[0] + 0.1 for i in range(steps[0])]
    alphas = [i * (scale[1] - 0.1) / steps[1] + 0.1 for i in range(steps[1])]
    gammas = [i * scale[2] / steps[2] for i in range(steps[2])] if use_gamma else [0.0]
    best, best_setting = -1, None
    for beta, alpha, gamma in itertools.product(betas, alphas, gammas):
        with torch.no_grad():
            model.alpha.fill_(alpha), model.beta.fill_(beta)
            if use_gamma:
                model.gamma.fill_(gamma)
            correct = int((model(image_embeds=f).logits.argmax(-1) == labels).sum())
        if correct > best:
            best, best_setting = correct, (alpha, beta, gamma)
    return best / len(labels), best_setting


@pytest.mark.parametrize("model_class", [TipAdapterModel, APEModel])
def test_search_returns_the_grid_optimum_of_the_official_loops(model_class):
    model = random_adapter(model_class)
    f = random_embeds(40, seed=3)
    labels = torch.randint(0, C, (40,), generator=torch.Generator().manual_seed(4))
    scale, steps = (9.0, 5.0, 2.0), (8, 5, 4)
    use_gamma = model_class is APEModel
    result = search_hyperparameters(model, f, labels, search_scale=scale, search_steps=steps, max_elements=500)
    accuracy, (alpha, beta, gamma) = naive_search(model, f, labels, scale, steps, use_gamma)
    assert result["val_accuracy"] == pytest.approx(accuracy)
    assert result["alpha"] == pytest.approx(alpha) and result["beta"] == pytest.approx(beta)
    assert result.get("gamma", 0.0) == pytest.approx(gamma)


def test_search_on_a_constructed_case_and_model_update():
    # Text weights that swap classes 0 and 1: only a large enough α lets the (correct) cache win.
    model = random_adapter(TipAdapterModel)
    with torch.no_grad():
        keys = model.cache_keys.view(C, K, D)
        keys.copy_(model.text_weights[:, None, :].expand(C, K, D))
        model.text_weights[[0, 1]] = model.text_weights[[1, 0]].clone()
    f = model.cache_keys[::K].clone()  # one image per class, exactly its keys' direction
    labels = torch.arange(C)
    result = search_hyperparameters(model, f, labels, search_scale=(2.0, 5000.0), search_steps=(1, 10))
    assert result["val_accuracy"] == 1.0
    # The first α (in grid order) that fixes classes 0 and 1, found by hand on the same grid.
    grid = search_grid(5000.0, 10).tolist()
    cache = torch.exp(-0.1 * (1 - f @ model.cache_keys.t())) @ model.cache_values
    first = next(a for a in grid if bool(((100 * f @ model.text_weights.t() + a * cache).argmax(-1) == labels).all()))
    assert result["alpha"] == pytest.approx(first) and first > grid[0]
    assert model.alpha.item() == pytest.approx(first) and model.beta.item() == pytest.approx(0.1)


def test_search_rejects_missing_val_and_bad_grids():
    model = random_adapter(APEModel)
    with pytest.raises(ValueError, match="validation split"):
        search_hyperparameters(model, None, None)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        search_hyperparameters(model, random_embeds(3), torch.arange(2))
    with pytest.raises(ValueError, match="must be > 0.1"):
        search_hyperparameters(model, random_embeds(3), torch.arange(3), search_scale=(0.05, 7, 1))
    with pytest.raises(ValueError, match=">= 1 step"):
        search_hyperparameters(model, random_embeds(3), torch.arange(3), search_steps=(0, 20, 20))
    with pytest.raises(ValueError, match="γ entry"):
        search_hyperparameters(model, random_embeds(3), torch.arange(3), search_scale=(7, 7), search_steps=(5, 5))


# --- text weights -----------------------------------------------------------------------------------------------------
def test_text_weights_with_templates_and_cupl_json(tmp_path):
    encoder, processor = tiny_encoder(), tiny_processor()
    cupl = {"red circle": ["a round red thing.", "red and round."], "red star": ["a star that is red."]}
    path = tmp_path / "cupl.json"
    path.write_text(json.dumps(cupl))
    templates = ("a photo of a {}.", "art of the {}.")
    weights = build_text_weights(encoder, processor, CLASS_NAMES, templates, cupl_prompts=path, batch_size=3)
    for c, name in enumerate(CLASS_NAMES):
        prompts = [t.format(name) for t in templates] + cupl.get(name, [])
        embeddings = encode_texts(encoder, processor, prompts)  # normalised per prompt
        expected = F.normalize(embeddings.mean(dim=0), dim=-1)
        torch.testing.assert_close(weights[c], expected, atol=1e-6, rtol=0)


def test_text_weights_reject_classes_without_prompts():
    encoder, processor = tiny_encoder(), tiny_processor()
    with pytest.raises(ValueError, match="'blue square' has no prompt"):
        build_text_weights(encoder, processor, CLASS_NAMES, templates=(), cupl_prompts={"red circle": ["a."]})
    with pytest.raises(ValueError, match="not in `class_names`"):
        build_text_weights(encoder, processor, CLASS_NAMES, cupl_prompts={"purple cat": ["a."]})
    with pytest.raises(ValueError, match="placeholder"):
        build_text_weights(encoder, processor, CLASS_NAMES, templates=("no placeholder",))


# --- the cache -------------------------------------------------------------------------------------------------------
def tiny_split(counts: dict[int, int], size: int = 36) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    rows = {"image": [], "label": []}
    for label, count in counts.items():
        for _ in range(count):
            rows["image"].append(Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)))
            rows["label"].append(label)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASS_NAMES)})
    return datasets.Dataset.from_dict(rows, features=features)


def official_cache_keys(encoder, processor, images, epochs, seed, size):
    """Tip-Adapter's `build_cache_model` written out: the raw features of every augmentation epoch stacked, their
    mean over the epochs, then each row divided by its norm (same views as `build_cache`: one rng, epoch by epoch)."""
    rng = np.random.default_rng(seed)
    per_epoch = []
    with torch.no_grad():
        for _ in range(epochs):
            views = [augment_image(image, rng, size) for image in images]
            pixel_values = processor(images=views, return_tensors="pt")["pixel_values"]
            output = encoder.get_image_features(pixel_values=pixel_values)
            per_epoch.append(output if isinstance(output, torch.Tensor) else output.pooler_output)
    mean = torch.stack(per_epoch).mean(dim=0)
    return mean / mean.norm(dim=-1, keepdim=True)


def test_cache_keys_follow_the_official_order_by_default():
    encoder, processor = tiny_encoder(), tiny_processor()
    # Feature norms that vary from view to view (as a real CLIP's do), so that the two orders differ clearly.
    plain_features = encoder.get_image_features

    def varying_norm_features(pixel_values, **kwargs):
        output = plain_features(pixel_values=pixel_values, **kwargs)
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        return features * torch.exp(pixel_values[:, 0, 0, 0])[:, None]  # one pixel of the view sets the norm

    encoder.get_image_features = varying_norm_features
    split = tiny_split({3: 2, 0: 2, 1: 2, 2: 2}).shuffle(seed=1)
    keys, _ = build_cache(encoder, processor, split, num_classes=C, augment_epochs=3, seed=7, batch_size=3)
    ordered = sorted(range(len(split)), key=lambda i: (split[i]["label"], i))
    images = [split[i]["image"] for i in ordered]
    expected = official_cache_keys(encoder, processor, images, epochs=3, seed=7, size=30)
    torch.testing.assert_close(keys, expected, atol=1e-6, rtol=0)
    # The other order is a different cache when feature norms vary across views.
    per_view, _ = build_cache(
        encoder, processor, split, num_classes=C, augment_epochs=3, seed=7, batch_size=3, key_average="normalized"
    )
    assert (per_view - keys).abs().max() > 1e-2
    with pytest.raises(ValueError, match="`key_average` must be one of"):
        build_cache(encoder, processor, split, num_classes=C, key_average="mean")
    with pytest.raises(ValueError, match="`cache_key_average` must be one of"):
        TipAdapterConfig(cache_key_average="mean")


def test_cache_normalized_is_the_normalised_mean_of_normalised_views():
    encoder, processor = tiny_encoder(), tiny_processor()
    split = tiny_split({3: 2, 0: 2, 1: 2, 2: 2}).shuffle(seed=1)
    keys, values = build_cache(
        encoder, processor, split, num_classes=C, augment_epochs=3, seed=7, batch_size=3, key_average="normalized"
    )
    # Written out: class-major order, the same random stream, views of one epoch drawn before encoding.
    ordered = sorted(range(len(split)), key=lambda i: (split[i]["label"], i))
    images = [split[i]["image"] for i in ordered]
    rng = np.random.default_rng(7)
    total = 0
    for _ in range(3):
        views = [augment_image(image, rng, 30) for image in images]
        total = total + encode_images(encoder, processor, views)
    torch.testing.assert_close(keys, F.normalize(total / 3, dim=-1), atol=1e-6, rtol=0)
    assert torch.equal(values, F.one_hot(torch.arange(C).repeat_interleave(2), C).float())
    plain, _ = build_cache(encoder, processor, split, num_classes=C, augment_epochs=0)
    torch.testing.assert_close(plain, encode_images(encoder, processor, images), atol=1e-6, rtol=0)


def test_cache_rejects_uneven_or_missing_shots():
    encoder, processor = tiny_encoder(), tiny_processor()
    with pytest.raises(ValueError, match=r"same number of shots.*\{2: 1\}"):
        build_cache(encoder, processor, tiny_split({0: 2, 1: 2, 2: 1, 3: 2}), num_classes=C)
    with pytest.raises(ValueError, match=r"same number of shots.*\{3: 0\}"):
        build_cache(encoder, processor, tiny_split({0: 1, 1: 1, 2: 1}), num_classes=C)


def test_sample_few_shot():
    split = tiny_split({0: 5, 1: 4, 2: 6, 3: 4}, size=8)
    few = sample_few_shot(split, 4, seed=3)
    assert few["label"] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert few["label"] == sample_few_shot(split, 4, seed=3)["label"]
    with pytest.raises(ValueError, match=r"5 shots per class.*\(1, 4\), \(3, 4\)"):
        sample_few_shot(split, 5)
    with pytest.raises(ValueError, match="shots` must be >= 1"):
        sample_few_shot(split, 0)
    with pytest.raises(ValueError, match=r"\(3, 0\)"):
        sample_few_shot(tiny_split({0: 2, 1: 2, 2: 2}, size=8), 1)


def test_random_resized_crop_covers_half_to_all_of_the_image():
    # Each pixel encodes its own coordinates, so the crop box can be read back from the output's corners.
    height, width = 60, 80
    ys, xs = np.mgrid[0:height, 0:width]
    image = Image.fromarray(np.stack([xs * 3, ys * 4, np.zeros_like(xs)], axis=-1).astype(np.uint8))
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = random_resized_crop(image, rng, 16)
        assert crop.size == (16, 16)
    crop = image.crop((0, 0, 10, 10))
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop(crop, rng, 8, scale=(0.0, 1.0))
    # torchvision's sampling written out on the same stream: up to 10 tries for a box that fits.
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(20):
        for _try in range(10):
            target = height * width * rng_b.uniform(0.5, 1.0)
            aspect = np.exp(rng_b.uniform(np.log(3 / 4), np.log(4 / 3)))
            w, h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
            if w <= width and h <= height:
                top, left = int(rng_b.integers(0, height - h + 1)), int(rng_b.integers(0, width - w + 1))
                break
        else:
            raise AssertionError("no box in 10 tries: the fallback is not exercised by this image")
        assert 0.5 * height * width * 0.97 <= w * h <= height * width
        expected = image.crop((left, top, left + w, top + h)).resize((16, 16), Image.Resampling.BICUBIC)
        assert np.array_equal(np.asarray(random_resized_crop(image, rng_a, 16)), np.asarray(expected))
    flipped = [augment_image(image, np.random.default_rng(s), 16) for s in range(12)]
    # Flips happen about half the time: a flipped crop has its x coordinates (red channel) decreasing.
    directions = {bool(np.asarray(view)[8, 0, 0] > np.asarray(view)[8, -1, 0]) for view in flipped}
    assert directions == {True, False}


def test_adapter_end_to_end_on_tiny_images():
    encoder, processor = tiny_encoder(), tiny_processor()
    split = tiny_split({0: 2, 1: 2, 2: 2, 3: 2})
    keys, values = build_cache(encoder, processor, split, num_classes=C, augment_epochs=1)
    weights = build_text_weights(encoder, processor, CLASS_NAMES)
    model = build_adapter(
        APEModel,
        encoder,
        text_weights=weights,
        cache_keys=keys,
        cache_values=values,
        class_names=CLASS_NAMES,
        tokenizer=processor,
        num_refined_channels=4,
    )
    assert model.config.shots_per_class == 2 and model.channel_idx.numel() == 4
    assert model(pixel_values=processor(images=list(split["image"]))["pixel_values"]).logits.shape == (8, C)
    assert K == 3  # the module-level sizes used elsewhere are unchanged
