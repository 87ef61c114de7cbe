"""Zero-shot image classification with prompt ensembles (CLIP, Radford et al. 2021, Sec. 3.1.4).

Each class is described by several prompts ("a photo of a {}.", "a sketch of a {}.", ...). Its classifier weight is
the mean of the L2-normalised prompt embeddings, re-normalised, exactly as in OpenAI's
`notebooks/Prompt_Engineering_for_ImageNet.ipynb` (`zeroshot_classifier`). An image is assigned the class with the
highest cosine similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .embeddings import encode_images, encode_texts, map_batches, model_device, require_columns
from .metrics import zero_shot_accuracy

__all__ = [
    "DEFAULT_TEMPLATES",
    "OPENAI_IMAGENET_TEMPLATES",
    "format_prompts",
    "build_zero_shot_classifier",
    "zero_shot_logits",
    "evaluate_zero_shot",
]

Template = str | Callable[[str], str]

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

# The 80 ImageNet prompt templates of OpenAI's CLIP (MIT License),
# https://github.com/openai/CLIP/blob/main/notebooks/Prompt_Engineering_for_ImageNet.ipynb
OPENAI_IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)


def format_prompts(class_name: str, templates: Sequence[Template]) -> list[str]:
    """The prompts of one class: `template.format(class_name)` for strings, `template(class_name)` for callables."""
    prompts = []
    for template in templates:
        if callable(template):
            prompts.append(str(template(class_name)))
        elif isinstance(template, str):
            if "{}" not in template:
                raise ValueError(f"Template {template!r} has no '{{}}' placeholder for the class name.")
            prompts.append(template.format(class_name))
        else:
            raise ValueError(f"A template must be a str with '{{}}' or a callable, got {type(template).__name__}.")
    return prompts


@torch.inference_mode()
def build_zero_shot_classifier(
    model: torch.nn.Module,
    tokenizer: Callable,
    class_names: Sequence[str],
    templates: Sequence[Template] = DEFAULT_TEMPLATES,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Zero-shot classifier weights `(C, D)`: per class, the re-normalised mean of its normalised prompt embeddings.

    Args:
        model: a dual encoder with `get_text_features`.
        tokenizer: a tokenizer or a `CLIPProcessor`-like processor (called with `text=`).
        class_names: the `C` class names, in label order.
        templates: prompt templates (`"a photo of a {}."` strings or callables).
        batch_size: prompts encoded per forward pass.
        device: where to run; defaults to the model's device.
    """
    class_names = list(class_names)
    templates = list(templates)
    if not class_names:
        raise ValueError("`class_names` is empty: a zero-shot classifier needs at least one class.")
    if not templates:
        raise ValueError("`templates` is empty: pass at least one prompt template, e.g. 'a photo of a {}.'.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    empty = [name for name in class_names if not str(name).strip()]
    if empty:
        raise ValueError(f"`class_names` contains empty names: {empty!r}.")
    model.eval()
    device = device if device is not None else model_device(model)
    prompts = [prompt for name in class_names for prompt in format_prompts(str(name), templates)]
    embeddings = torch.cat(
        [
            encode_texts(model, tokenizer, prompts[i : i + batch_size], device)
            for i in range(0, len(prompts), batch_size)
        ]
    )
    # (C, T, D): each prompt embedding is already normalised; average per class, then normalise again.
    weights = embeddings.view(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(weights, dim=-1)


def zero_shot_logits(image_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Cosine similarities `(N, C)` between normalised image embeddings and classifier weights."""
    if image_embeddings.shape[-1] != classifier.shape[-1]:
        raise ValueError(
            f"Image embeddings have dimension {image_embeddings.shape[-1]} but the classifier has "
            f"{classifier.shape[-1]}: they must come from the same model."
        )
    return image_embeddings.float() @ classifier.float().to(image_embeddings.device).T


def evaluate_zero_shot(
    model: torch.nn.Module,
    processor: Callable,
    dataset: Any,
    class_names: Sequence[str] | None = None,
    templates: Sequence[Template] = DEFAULT_TEMPLATES,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 64,
    device: torch.device | None = None,
    accelerator: Any | None = None,
    tokenizer: Callable | None = None,
    return_per_sample: bool = False,
) -> dict[str, Any]:
    """Zero-shot top-1 / top-5 / mean-per-class accuracy of a dual encoder on an image classification dataset.

    Args:
        model: a dual encoder (`get_image_features` / `get_text_features`).
        processor: a `CLIPProcessor`-like processor (images and text); see `tokenizer`.
        dataset: a map-style `datasets.Dataset` with an image column and an integer label column.
        class_names: the class names in label order; defaults to the label column's `ClassLabel` names.
        templates: prompt templates; use `OPENAI_IMAGENET_TEMPLATES` for CLIP's 80-prompt ensemble.
        image_column, label_column: column names.
        batch_size: images per forward pass.
        device: where to run; defaults to the model's device (or the accelerator's).
        accelerator: an optional `accelerate.Accelerator`; the dataset is sharded over its processes and the
            logits gathered, giving the same numbers as one process.
        tokenizer: the text tokenizer when `processor` only handles images (defaults to `processor`).
        return_per_sample: also return the per-image hits `"top1_correct"` (for a paired bootstrap).

    Returns:
        The dict of :func:`hf_clipzoo.eval.metrics.zero_shot_accuracy` (`top1_accuracy`, `top5_accuracy` when there
        are at least 5 classes, `mean_per_class_accuracy`, `per_class_accuracy`, `num_samples`).
    """
    require_columns(dataset, [image_column, label_column], "evaluate_zero_shot")
    if class_names is None:
        feature = getattr(dataset, "features", {}).get(label_column)
        class_names = getattr(feature, "names", None)
        if class_names is None:
            raise ValueError(
                f"`class_names` is required: the column {label_column!r} is not a `ClassLabel` with names."
            )
    if accelerator is not None and device is None:
        device = accelerator.device
    device = device if device is not None else model_device(model)
    model.eval()
    classifier = build_zero_shot_classifier(model, tokenizer or processor, class_names, templates, device=device)
    subset = dataset.select_columns([image_column, label_column])

    def score_batch(indices: list[int]) -> dict[str, torch.Tensor]:
        rows = subset[indices]
        image_embeddings = encode_images(model, processor, rows[image_column], device)
        return {
            "logits": zero_shot_logits(image_embeddings, classifier),
            "labels": torch.as_tensor(rows[label_column], dtype=torch.long, device=device),
        }

    outputs = map_batches(len(subset), batch_size, score_batch, accelerator)
    return zero_shot_accuracy(
        outputs["logits"], outputs["labels"], num_classes=len(class_names), return_per_sample=return_per_sample
    )
