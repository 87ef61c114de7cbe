"""Building the few-shot adapters: prompt-ensemble text weights, the augmented cache, APE's prior refinement and the
hyper-parameter search.

The order of a run (Tip-Adapter §3.1, APE §3.2–3.3):

1. `sample_few_shot(train, K)`: K images per class from the training split;
2. `build_text_weights(encoder, tokenizer, class_names, templates, cupl_prompts)`: the zero-shot classifier `W`;
3. `build_cache(encoder, processor, few_shot)`: keys = mean over augmentation epochs of the raw image features,
   then L2-normalised (official `build_cache_model`); values = one-hot labels; rows class-major;
4. `build_adapter(APEModel, encoder, text_weights=W, cache_keys=keys, ...)`: selects APE's Q channels with the
   closed-form criterion and returns the model;
5. `search_hyperparameters(model, val_embeds, val_labels)`: β, α (and γ) on the validation split only.

This module is not part of the remote code of a saved model: a saved adapter only needs `modeling_ape.py`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...data.images import to_rgb_image
from ...eval.embeddings import encode_images, encode_texts, map_batches, model_device, require_columns
from ...eval.zero_shot import Template, format_prompts
from .configuration_ape import CACHE_KEY_AVERAGES, APEConfig, APETConfig
from .modeling_ape import APEModel, CacheAdapterPreTrainedModel, one_hot_cache_values

# Official search grids (APE `search_scale` / `search_step`; Tip-Adapter uses the first two).
DEFAULT_SEARCH_SCALE = (7.0, 7.0, 1.0)
DEFAULT_SEARCH_STEPS = (200, 20, 20)


# --- few-shot split --------------------------------------------------------------------------------------------
def sample_few_shot(
    dataset, shots: int, *, num_classes: int | None = None, seed: int = 1, label_column: str = "label"
):
    """K rows per class drawn without replacement (CoOp's `generate_fewshot_dataset`), ordered class-major.

    Raises a `ValueError` naming the classes that have fewer than `shots` rows (or none at all).
    """
    if shots < 1:
        raise ValueError(f"`shots` must be >= 1, got {shots}.")
    require_columns(dataset, [label_column], "sample_few_shot")
    labels = np.asarray(dataset[label_column])
    if num_classes is None:
        feature = getattr(dataset, "features", {}).get(label_column)
        num_classes = len(feature.names) if getattr(feature, "names", None) else int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    indices, short = [], []
    for label in range(num_classes):
        rows = np.flatnonzero(labels == label)
        if len(rows) < shots:
            short.append((label, len(rows)))
            continue
        indices.extend(sorted(rng.choice(rows, size=shots, replace=False).tolist()))
    if short:
        raise ValueError(
            f"{shots} shots per class requested but these (class, available rows) have fewer: {short[:10]}"
            f"{' ...' if len(short) > 10 else ''}. Use fewer shots or a larger training split."
        )
    return dataset.select(indices)


# --- text weights ----------------------------------------------------------------------------------------------
def load_cupl_prompts(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a CuPL-style prompt file: a JSON object `{class name: [prompt, ...]}` (APE's `gpt3_prompts/*.json`)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v) for k, v in data.items()
    ):
        raise ValueError(f"{path}: expected a JSON object mapping class names to lists of prompt strings.")
    return data


def class_prompts(
    class_names: Sequence[str],
    templates: Sequence[Template] = (),
    cupl_prompts: Mapping[str, Sequence[str]] | None = None,
) -> list[list[str]]:
    """Per class: the templates filled with its name, then its CuPL prompts. Every class must get >= 1 prompt."""
    cupl_prompts = cupl_prompts or {}
    unknown = sorted(set(cupl_prompts) - set(class_names))
    if unknown:
        raise ValueError(f"The CuPL prompts name classes that are not in `class_names`: {unknown[:10]}.")
    prompts = []
    for name in class_names:
        own = format_prompts(name, templates) + [str(p) for p in cupl_prompts.get(name, ())]
        if any(not p.strip() for p in own):
            raise ValueError(f"Class {name!r} has an empty prompt.")
        if not own:
            raise ValueError(f"Class {name!r} has no prompt: pass templates or CuPL prompts that cover every class.")
        prompts.append(own)
    return prompts


@torch.inference_mode()
def build_text_weights(
    encoder: torch.nn.Module,
    tokenizer: Callable,
    class_names: Sequence[str],
    templates: Sequence[Template] = ("a photo of a {}.",),
    cupl_prompts: Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """The text classifier `W` `(C, D)`: per class, the mean of its L2-normalised prompt embeddings, re-normalised.

    Args:
        encoder: a dual encoder with `get_text_features`.
        tokenizer: a tokenizer or a `CLIPProcessor`-like processor.
        class_names: the C classes in label order.
        templates: prompt templates (CoOp / CLIP style, `"a photo of a {}."`); may be empty when CuPL covers all.
        cupl_prompts: per-class prompts (CuPL), a dict or the path of a JSON file; APE uses templates + CuPL.
    """
    class_names = [str(name) for name in class_names]
    if not class_names:
        raise ValueError("`class_names` is empty.")
    if isinstance(cupl_prompts, (str, os.PathLike)):
        cupl_prompts = load_cupl_prompts(cupl_prompts)
    prompts = class_prompts(class_names, templates, cupl_prompts)
    flat = [p for own in prompts for p in own]
    device = model_device(encoder)
    encoder.eval()
    embeddings = torch.cat(
        [encode_texts(encoder, tokenizer, flat[i : i + batch_size], device) for i in range(0, len(flat), batch_size)]
    )
    counts = torch.tensor([len(own) for own in prompts], device=embeddings.device)
    owner = torch.arange(len(class_names), device=embeddings.device).repeat_interleave(counts)
    sums = torch.zeros(len(class_names), embeddings.shape[1], device=embeddings.device).index_add_(
        0, owner, embeddings
    )
    return F.normalize(sums / counts[:, None], dim=-1).cpu()


# --- the cache -------------------------------------------------------------------------------------------------
def random_resized_crop(
    image: Image.Image,
    rng: np.random.Generator,
    size: int,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """torchvision's `RandomResizedCrop(size, scale, ratio, bicubic)` in PIL: a random box covering `scale` of the
    area with log-uniform aspect `ratio` (10 tries, then the largest centred box of a valid aspect), resized to
    `size × size`."""
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"`scale` must satisfy 0 < low <= high <= 1, got {scale}.")
    width, height = image.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:
        in_ratio = width / height
        if in_ratio < ratio[0]:
            w, h = width, int(round(width / ratio[0]))
        elif in_ratio > ratio[1]:
            w, h = int(round(height * ratio[1])), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        box = (left, top, left + w, top + h)
    return image.crop(box).resize((size, size), Image.Resampling.BICUBIC)


def augment_image(image: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Tip-Adapter's cache / training augmentation: random-resized-crop (0.5–1) + horizontal flip (p = 0.5)."""
    image = random_resized_crop(to_rgb_image(image), rng, size)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def encoder_image_size(encoder: torch.nn.Module) -> int:
    vision = getattr(encoder.config, "vision_config", None)
    size = getattr(vision, "image_size", None)
    if not isinstance(size, int):
        raise ValueError(
            "Cannot read the encoder's image size (`config.vision_config.image_size`); pass `image_size`."
        )
    return size


@torch.inference_mode()
def build_cache(
    encoder: torch.nn.Module,
    processor: Callable,
    dataset,
    *,
    num_classes: int,
    augment_epochs: int = 10,
    image_size: int | None = None,
    seed: int = 1,
    batch_size: int = 64,
    image_column: str = "image",
    label_column: str = "label",
    accelerator: Any | None = None,
    key_average: str = "raw",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The key-value cache of a few-shot split: `(keys (C·K, D), values (C·K, C))`, class-major.

    Keys are the L2-normalised mean over `augment_epochs` passes of the encoder's features of augmented views
    (Tip-Adapter: 10 epochs, random-resized-crop 0.5–1 + flip); `augment_epochs=0` encodes each image once, without
    augmentation. Every class must have the same number K >= 1 of rows, else a `ValueError` names the offenders.

    `key_average` (see `TipAdapterConfig.cache_key_average`): `"raw"` averages the raw features and normalises the
    mean (official Tip-Adapter / APE `build_cache_model`, where views with larger features weigh more);
    `"normalized"` normalises every view first, so that every view weighs the same.
    """
    if augment_epochs < 0:
        raise ValueError(f"`augment_epochs` must be >= 0, got {augment_epochs}.")
    if key_average not in CACHE_KEY_AVERAGES:
        raise ValueError(f"`key_average` must be one of {CACHE_KEY_AVERAGES}, got {key_average!r}.")
    require_columns(dataset, [image_column, label_column], "build_cache")
    labels = torch.as_tensor(dataset[label_column], dtype=torch.long)
    if labels.numel() == 0:
        raise ValueError("The few-shot split is empty.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"Labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}].")
    counts = torch.bincount(labels, minlength=num_classes)
    shots = int(counts.max())
    if not bool((counts == shots).all()):
        uneven = {c: int(n) for c, n in enumerate(counts.tolist()) if n != shots}
        raise ValueError(
            f"Every class needs the same number of shots (the cache is class-major, C·K rows): most classes have "
            f"{shots} but these (class: rows) differ: {dict(list(uneven.items())[:10])}. Use `sample_few_shot`."
        )
    order = torch.argsort(labels, stable=True)
    images = list(dataset.select(order.tolist())[image_column])
    device = accelerator.device if accelerator is not None else model_device(encoder)
    encoder.eval()
    size = image_size or encoder_image_size(encoder)
    rng = np.random.default_rng(seed)

    normalize_views = key_average == "normalized"
    total = torch.zeros(len(images), 0)
    for epoch in range(max(augment_epochs, 1)):
        # Views are drawn for the whole epoch up front, so every process of a sharded run sees the same views.
        views = [augment_image(image, rng, size) for image in images] if augment_epochs else list(images)
        features = map_batches(
            len(views),
            batch_size,
            lambda idx, views=views: {
                "f": encode_images(encoder, processor, [views[i] for i in idx], device, normalize=normalize_views)
            },
            accelerator,
        )["f"]
        total = features if epoch == 0 else total + features
    keys = F.normalize(total / max(augment_epochs, 1), dim=-1)
    return keys, one_hot_cache_values(num_classes, shots)


@torch.inference_mode()
def encode_dataset(
    encoder: torch.nn.Module,
    processor: Callable,
    dataset,
    *,
    batch_size: int = 64,
    image_column: str = "image",
    label_column: str = "label",
    accelerator: Any | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised features `(N, D)` and labels `(N,)` of a split (no augmentation; for val / test)."""
    require_columns(dataset, [image_column, label_column], "encode_dataset")
    device = accelerator.device if accelerator is not None else model_device(encoder)
    encoder.eval()
    subset = dataset.select_columns([image_column, label_column])

    def encode(indices: list[int]) -> dict[str, torch.Tensor]:
        rows = subset[indices]
        return {
            "f": encode_images(encoder, processor, rows[image_column], device),
            "y": torch.as_tensor(rows[label_column], dtype=torch.long, device=device),
        }

    out = map_batches(len(subset), batch_size, encode, accelerator)
    return out["f"], out["y"]


# --- prior refinement (APE §3.2) -------------------------------------------------------------------------------
def refinement_criterion(
    text_weights: torch.Tensor,
    cache_keys: torch.Tensor | None = None,
    *,
    shots_per_class: int | None = None,
    weight: float = 0.7,
) -> torch.Tensor:
    """APE's per-channel criterion `J_k = −λ·sim_k + (1−λ)·var_k` `(D,)`, in closed form.

    `sim_k` is the mean inter-class product over the per-class feature sets `S_i = {w_i} ∪ {F_i1..F_iK}`
    (M = K + 1 vectors): `sim_k = Σ_{i≠j} Σ_{m,n} S_imk S_jnk / (C(C−1)M²) = ((Σ_i s_ik)² − Σ_i s_ik²) / (C(C−1)M²)`
    with `s_ik = Σ_m S_imk`. Without `cache_keys` it is the text-only variant (M = 1, the official `only_use_txt`).
    `var_k` is the unbiased variance of the text weights across classes.

    Args:
        text_weights: `(C, D)` normalised class weights (C >= 2: the criterion compares classes).
        cache_keys: `(C·K, D)` class-major cache keys, or `None` for the text-only variant.
        shots_per_class: K (inferred from the shapes when omitted).
        weight: λ in [0, 1].
    """
    if text_weights.ndim != 2:
        raise ValueError(f"`text_weights` must be (C, D), got {tuple(text_weights.shape)}.")
    num_classes, dim = text_weights.shape
    if num_classes < 2:
        raise ValueError(f"The criterion compares classes: need >= 2 classes, got {num_classes}.")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"`weight` (λ) must be in [0, 1], got {weight}.")
    text = text_weights.double()
    if cache_keys is None:
        sets = text[:, None, :]
    else:
        if cache_keys.ndim != 2 or cache_keys.shape[1] != dim:
            raise ValueError(
                f"`cache_keys` must be (C·K, {dim}) to match the text weights, got {tuple(cache_keys.shape)}."
            )
        shots = shots_per_class or cache_keys.shape[0] // num_classes
        if shots < 1 or cache_keys.shape[0] != num_classes * shots:
            raise ValueError(
                f"`cache_keys` has {cache_keys.shape[0]} rows, expected C·K = {num_classes}·{shots} (class-major)."
            )
        sets = torch.cat([text[:, None, :], cache_keys.double().view(num_classes, shots, dim)], dim=1)
    size = sets.shape[1]
    per_class = sets.sum(dim=1)  # s_ik, (C, D)
    sim = (per_class.sum(dim=0) ** 2 - (per_class**2).sum(dim=0)) / (num_classes * (num_classes - 1) * size**2)
    var = text.var(dim=0, unbiased=True)
    return (-weight * sim + (1.0 - weight) * var).to(text_weights.dtype)


def select_channels(criterion: torch.Tensor, num_channels: int) -> torch.Tensor:
    """The `num_channels` channels with the largest criterion (`torch.topk`, as the official code)."""
    if not 1 <= num_channels <= criterion.numel():
        raise ValueError(
            f"Q = {num_channels} refined channels requested but D = {criterion.numel()}: need 1 <= Q <= D."
        )
    return torch.topk(criterion, k=num_channels).indices


# --- assembling a model ----------------------------------------------------------------------------------------
def class_token_ids(tokenizer: Callable, class_names: Sequence[str]) -> list[list[int]]:
    """Each class name tokenised without special tokens (what `match_candidate_labels` looks for in prompts)."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps its tokenizer
    ids = [list(tokenizer(name, add_special_tokens=False)["input_ids"]) for name in class_names]
    empty = [name for name, row in zip(class_names, ids) if not row]
    if empty:
        raise ValueError(f"These class names tokenise to nothing: {empty}.")
    return ids


@torch.no_grad()
def build_adapter(
    model_class: type[CacheAdapterPreTrainedModel],
    encoder: torch.nn.Module,
    *,
    text_weights: torch.Tensor,
    cache_keys: torch.Tensor,
    class_names: Sequence[str],
    cache_values: torch.Tensor | None = None,
    tokenizer: Callable | None = None,
    channel_idx: torch.Tensor | None = None,
    criterion_use_cache: bool | None = None,
    **config_kwargs,
) -> CacheAdapterPreTrainedModel:
    """A ready adapter of `model_class` (Tip-Adapter, Tip-Adapter-F, APE, APE-T) around a copy of `encoder`.

    Args:
        model_class: `TipAdapterModel`, `TipAdapterFModel`, `APEModel` or `APETModel`.
        encoder: the frozen dual encoder (its config and weights are copied into the adapter).
        text_weights: `(C, D)` from `build_text_weights`.
        cache_keys: `(C·K, D)` class-major, from `build_cache`.
        class_names: the C class names.
        cache_values: `(C·K, C)`; defaults to the one-hot class-major values.
        tokenizer: tokenises the class names into `class_token_ids` (for the zero-shot pipeline); optional.
        channel_idx: APE's refined channels; computed with `refinement_criterion` when omitted (text + cache for
            APE, text only for APE-T as in the official `APE_Training`, unless `criterion_use_cache` says otherwise).
        config_kwargs: more config fields (`num_refined_channels`, `criterion_weight`, `init_alpha`, ...).
    """
    class_names = [str(name) for name in class_names]
    if text_weights.ndim != 2 or cache_keys.ndim != 2:
        raise ValueError(
            f"`text_weights` must be (C, D) and `cache_keys` (C·K, D); got {tuple(text_weights.shape)} and "
            f"{tuple(cache_keys.shape)}."
        )
    num_classes, dim = text_weights.shape
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} text weights.")
    if cache_keys.shape[1] != dim:
        raise ValueError(
            f"Text / cache dimension mismatch: text weights have D = {dim}, cache keys D = {cache_keys.shape[1]}; "
            "both must come from the same encoder."
        )
    if cache_keys.shape[0] % num_classes or cache_keys.shape[0] == 0:
        raise ValueError(
            f"The cache has {cache_keys.shape[0]} keys for {num_classes} classes: it must hold K >= 1 per class."
        )
    shots = cache_keys.shape[0] // num_classes
    config_class = model_class.config_class
    config_kwargs.setdefault("embed_dim", dim)
    if issubclass(config_class, APEConfig) and channel_idx is not None:
        config_kwargs.setdefault("num_refined_channels", int(channel_idx.numel()))
    config = config_class(
        encoder_config=encoder.config.to_dict(),
        class_names=class_names,
        class_token_ids=class_token_ids(tokenizer, class_names) if tokenizer is not None else None,
        shots_per_class=shots,
        **config_kwargs,
    )
    model = model_class(config)
    missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"The encoder's weights do not fit its config: missing {missing}, unexpected {unexpected}.")
    model.text_weights.copy_(text_weights)
    model.cache_keys.copy_(cache_keys)
    if cache_values is not None:
        if tuple(cache_values.shape) != tuple(model.cache_values.shape):
            raise ValueError(
                f"`cache_values` must be {tuple(model.cache_values.shape)}, got {tuple(cache_values.shape)}."
            )
        model.cache_values.copy_(cache_values)
    if isinstance(model, APEModel):
        if channel_idx is None:
            use_cache = criterion_use_cache if criterion_use_cache is not None else not isinstance(config, APETConfig)
            criterion = refinement_criterion(
                text_weights, cache_keys if use_cache else None, shots_per_class=shots, weight=config.criterion_weight
            )
            channel_idx = select_channels(criterion, config.num_refined_channels)
        if channel_idx.numel() != config.num_refined_channels or channel_idx.unique().numel() != channel_idx.numel():
            raise ValueError(f"`channel_idx` must hold {config.num_refined_channels} distinct channels.")
        if channel_idx.min() < 0 or channel_idx.max() >= dim:
            raise ValueError(f"`channel_idx` must lie in [0, {dim}).")
        model.channel_idx.copy_(channel_idx)
    return model.to(text_weights.device).eval()


# --- hyper-parameter search (Tip-Adapter §4.1, APE §4.1) -------------------------------------------------------
def search_grid(scale: float, steps: int, start: float = 0.1) -> torch.Tensor:
    """`start + i·(scale − start)/steps` for `i < steps` (the official lists; γ uses `start = 0`)."""
    if steps < 1:
        raise ValueError(f"A search grid needs >= 1 step, got {steps}.")
    if not scale > start:
        raise ValueError(f"A search scale must be > {start} (the first grid value), got {scale}.")
    return torch.tensor([start + i * (scale - start) / steps for i in range(steps)], dtype=torch.float64)


@torch.no_grad()
def search_hyperparameters(
    model: CacheAdapterPreTrainedModel,
    val_embeds: torch.Tensor,
    val_labels: torch.Tensor,
    *,
    search_scale: Sequence[float] = DEFAULT_SEARCH_SCALE,
    search_steps: Sequence[int] = DEFAULT_SEARCH_STEPS,
    max_elements: int = 1 << 24,
    update_model: bool = True,
) -> dict[str, float]:
    """Grid search of β, α (and γ for APE) maximising top-1 accuracy on the **validation** features.

    The grid is the official one (β from 0.1 to `search_scale[0]` in `search_steps[0]` steps, α likewise, γ from 0).
    The first best setting in (β, α, γ) loop order wins, as in the official loops with a strict `>`. Only the
    validation split is read; test features never enter (the official Tip-Adapter ImageNet script searched on them).
    The model's `alpha` / `beta` / `gamma` buffers are set to the result unless `update_model=False`.

    Returns:
        `{"alpha", "beta", "gamma" (APE only), "val_accuracy"}`.
    """
    if val_embeds is None or val_labels is None:
        raise ValueError("The search needs the validation split (features and labels); it never uses test data.")
    if val_embeds.ndim != 2 or val_labels.shape != (val_embeds.shape[0],) or val_embeds.shape[0] == 0:
        raise ValueError(
            f"Expected val features (N, D) and labels (N,) with N > 0, got {tuple(val_embeds.shape)} and "
            f"{tuple(val_labels.shape)}."
        )
    if len(search_scale) < 2 or len(search_steps) < 2:
        raise ValueError("`search_scale` / `search_steps` need at least the β and α entries.")
    device = model.text_weights.device
    was_training = model.training
    model.eval()
    terms = model.cache_terms(model._check_image_embeds(val_embeds.to(device)))
    model.train(was_training)
    labels = val_labels.to(device)
    betas = search_grid(search_scale[0], search_steps[0]).to(device, torch.float32)
    alphas = search_grid(search_scale[1], search_steps[1]).to(device, torch.float32)
    use_gamma = terms.divergence is not None
    if use_gamma:
        if len(search_scale) < 3 or len(search_steps) < 3:
            raise ValueError("APE's search needs a γ entry in `search_scale` / `search_steps`.")
        gammas = search_grid(search_scale[2], search_steps[2], start=0.0).to(device, torch.float32)
        # (G, C·K, C): the values re-weighted for every γ at once.
        values = terms.values[None] * torch.exp(gammas[:, None, None] * terms.divergence[None])
    else:
        gammas = torch.zeros(1, device=device)
        values = terms.values[None]
    num, num_classes = terms.zero_shot.shape
    chunk = max(1, max_elements // (len(alphas) * len(gammas) * num_classes))
    correct = torch.zeros(len(betas), len(alphas), len(gammas), dtype=torch.long, device=device)
    for b, beta in enumerate(betas):
        for start in range(0, num, chunk):
            rows = slice(start, start + chunk)
            affinity = torch.exp(-beta * (1.0 - terms.affinity[rows]))  # (n, C·K)
            cache = torch.einsum("nk,gkc->gnc", affinity, values)  # (G, n, C)
            logits = terms.zero_shot[rows][None, None] + alphas[:, None, None, None] * cache[None]  # (A, G, n, C)
            hits = logits.argmax(dim=-1) == labels[rows]
            correct[b] += hits.sum(dim=-1)
    best = int(torch.argmax(correct.flatten()))  # the first maximum in (β, α, γ) order
    b, rest = divmod(best, len(alphas) * len(gammas))
    a, g = divmod(rest, len(gammas))
    result = {
        "alpha": float(alphas[a]),
        "beta": float(betas[b]),
        "val_accuracy": float(correct.flatten()[best]) / num,
    }
    if use_gamma:
        result["gamma"] = float(gammas[g])
    if update_model:
        model.alpha.fill_(result["alpha"])
        model.beta.fill_(result["beta"])
        if use_gamma:
            model.gamma.fill_(result["gamma"])
    return result


@torch.no_grad()
def correct_predictions(
    model: CacheAdapterPreTrainedModel, embeds: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Per-sample top-1 hits (bool) of the adapter (stored α, β, γ) on precomputed features."""
    was_training = model.training
    model.eval()
    device = model.text_weights.device
    logits = model.compute_logits(model._check_image_embeds(embeds.to(device)))
    model.train(was_training)
    return logits.argmax(dim=-1) == labels.to(device)


def accuracy(model: CacheAdapterPreTrainedModel, embeds: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of the adapter (stored α, β, γ) on precomputed features."""
    return float(correct_predictions(model, embeds, labels).float().mean())


def zero_shot_correct(text_weights: torch.Tensor, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample top-1 hits (bool) of the zero-shot classifier `W` alone."""
    logits = F.normalize(embeds.float(), dim=-1) @ text_weights.to(embeds.device).t()
    return logits.argmax(dim=-1) == labels.to(embeds.device)


def zero_shot_accuracy(text_weights: torch.Tensor, embeds: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of the zero-shot classifier `W` alone."""
    return float(zero_shot_correct(text_weights, embeds, labels).float().mean())


__all__ = [
    "DEFAULT_SEARCH_SCALE",
    "DEFAULT_SEARCH_STEPS",
    "accuracy",
    "correct_predictions",
    "zero_shot_correct",
    "augment_image",
    "build_adapter",
    "build_cache",
    "build_text_weights",
    "class_prompts",
    "class_token_ids",
    "encode_dataset",
    "load_cupl_prompts",
    "random_resized_crop",
    "refinement_criterion",
    "sample_few_shot",
    "search_grid",
    "search_hyperparameters",
    "select_channels",
    "zero_shot_accuracy",
]
