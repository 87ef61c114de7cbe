"""Processor of GroupViT: CLIP tokenizer + PIL image processor (ImageNet mean/std, as the official DeiT pipeline), noun
prompt generation for the multi-label loss, and the official zero-shot segmentation protocol.

Segmentation (official `segmentation/evaluation/group_vit_seg.py:GroupViTSegInference`, spec §1.4):
1. the image is resized keeping its ratio so the short side is 448 (`img_scale=(2048, 448)`), then cut into 448 crops
   with stride 224 (mmseg `slide`); each crop is one forward pass;
2. per crop, the stages' *soft* assignment maps are multiplied (`A1 @ A2`: pixels → final groups), reshaped to the
   patch grid, bilinearly upsampled to the crop (align_corners=False) and turned into a one-hot map over groups;
3. class scores per group: `softmax(s·G·Tᵀ)`; classes outside the top-5 of the whole-crop embedding's class softmax are
   set to −inf, softmaxed again and multiplied by the unmasked softmax; `pred[c] = onehot @ aff`;
4. background (channel 0) is 1 where `max_c pred < min(bg_thresh, aff.max())`;
5. crop predictions are summed and divided by their overlap count, resized to the image and arg-maxed.
The reshape of the assignment maps uses the exact patch grid of the crop (the official code and the transformers port
both re-derive it from the aspect ratio, with slightly different rounding, spec §1.8 item 4); they agree for the
448 crops of the protocol.
"""

from __future__ import annotations

import numbers
import random
import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .clipzoo_models_clip_processing_clip import ZooCLIPProcessor, check_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# `datasets/imagenet_template.py` of the official repository: 'full' (CLIP's 80 ImageNet templates), 'subset' (the 7
# used for zero-shot classification) and 'simple' (segmentation class embeddings).
IMAGENET_TEMPLATES_FULL = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)  # fmt: skip
IMAGENET_TEMPLATES_SUBSET = (
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)  # fmt: skip
IMAGENET_TEMPLATES_SIMPLE = ("a photo of a {}.",)

# Penn tags the official `WordAugTokenizeWrapper` keeps: nouns *and* verbs.
KEPT_TAGS = ("NN", "NNS", "NNP", "VBG", "VB", "VBD", "VBN", "VBP", "VBZ")
# Built-in fallback when nltk (or its tagger data) is missing: words that are never nouns/verbs of interest.
STOPWORDS = frozenset(
    """a an the this that these those there here it its they them their he she his her him we us our you your i me my
    mine and or but nor so yet for of in on at to from by with without into onto over under above below between among
    near next behind beside besides inside outside up down off out around through across along against about after
    before during until while since as than then too very just also only not no yes all any some each every both few
    more most many much other another such own same one two three four five six seven eight nine ten is are was were
    be been being am do does did done have has had having can could will would shall should may might must left right
    top bottom middle center centre small large big tiny huge little red green blue yellow orange purple pink brown
    black white gray grey dark light bright""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _nltk_tagger():
    """nltk's tokenizer + POS tagger if nltk *and* its data are installed (never downloads), else None."""
    try:
        import nltk

        nltk.pos_tag(nltk.word_tokenize("a dog runs"))
        return lambda text: nltk.pos_tag(nltk.word_tokenize(text))
    except Exception:  # noqa: BLE001 - any missing package / resource means: use the fallback
        return None


_TAGGER = None
_TAGGER_CHECKED = False


def extract_prompt_words(caption: str, use_nltk: bool | None = None) -> list[str]:
    """Nouns and verbs of `caption`, in order, without duplicates (official: nltk tags NN, NNS, NNP, VB*).

    With `use_nltk=None` nltk is used when it is importable *with* its tokenizer and tagger data; otherwise (or with
    `use_nltk=False`) a built-in heuristic keeps every alphabetic word of 3+ letters that is not in `STOPWORDS`
    (articles, pronouns, prepositions, auxiliaries, numerals, and the colour / size / position adjectives that
    dominate synthetic and alt-text captions). The heuristic over-keeps adjectives it does not know; for the embedded
    world, whose rows carry a `nouns` column, pass those nouns to `build_prompts` instead.
    """
    global _TAGGER, _TAGGER_CHECKED
    if not isinstance(caption, str):
        raise ValueError(f"`caption` must be a string, got {type(caption).__name__}.")
    if use_nltk is not False and not _TAGGER_CHECKED:
        _TAGGER, _TAGGER_CHECKED = _nltk_tagger(), True
    if use_nltk is True and _TAGGER is None:
        raise ValueError("`use_nltk=True` but nltk or its 'punkt' / 'averaged_perceptron_tagger' data is missing.")
    words: list[str] = []
    if use_nltk is not False and _TAGGER is not None:
        words = [w for w, tag in _TAGGER(caption) if tag in KEPT_TAGS and _WORD.fullmatch(w)]
    else:
        words = [w for w in _WORD.findall(caption) if len(w) >= 3 and w.lower() not in STOPWORDS]
    seen, unique = set(), []
    for word in words:
        if word.lower() not in seen:
            seen.add(word.lower())
            unique.append(word)
    return unique


def build_prompts(
    captions: Sequence[str],
    words: Sequence[Sequence[str]] | None = None,
    num_prompts: int = 3,
    templates: Sequence[str] = IMAGENET_TEMPLATES_FULL,
    rng: random.Random | None = None,
) -> list[str]:
    """The multi-label prompts of a batch, image-major: `num_prompts` sentences per caption (official
    `WordAugTokenizeWrapper`): sample `min(P, n)` distinct words without replacement, fill each into a random template;
    pad with the raw caption when fewer than P words exist. `words[i]` (e.g. the world's `nouns` column) replaces the
    extraction from `captions[i]`."""
    if num_prompts < 1:
        raise ValueError(f"`num_prompts` must be >= 1, got {num_prompts}.")
    if words is not None and len(words) != len(captions):
        raise ValueError(f"Got {len(words)} word lists for {len(captions)} captions; expected one per caption.")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("`templates` must be a non-empty list of strings with a '{}' placeholder.")
    rng = rng or random.Random()
    prompts: list[str] = []
    for i, caption in enumerate(captions):
        candidates = list(dict.fromkeys(words[i])) if words is not None else extract_prompt_words(caption)
        chosen = rng.sample(candidates, min(num_prompts, len(candidates)))
        prompts += [rng.choice(templates).format(w) for w in chosen]
        prompts += [caption] * (num_prompts - len(chosen))
    return prompts


def check_labels(labels) -> list[str]:
    """Candidate class names: a non-empty list of distinct, non-empty strings."""
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, (list, tuple)) or len(labels) == 0:
        raise ValueError("`candidate_labels` must be a non-empty list of class names.")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"Candidate label {i} is {label!r}; expected a non-empty string.")
    if len({label.strip().lower() for label in labels}) != len(labels):
        duplicates = sorted({x for x in labels if [y.strip().lower() for y in labels].count(x.strip().lower()) > 1})
        raise ValueError(f"`candidate_labels` contains duplicates {duplicates}; every class needs its own name.")
    return [label.strip() for label in labels]


# --- segmentation protocol -------------------------------------------------------------------------------------------
def group_assignment_map(assignment_maps: Sequence[torch.Tensor], feature_grid: tuple[int, int], size) -> torch.Tensor:
    """`(B, G, H, W)` soft pixel→group map: the product of the stages' soft assignments, bilinearly upsampled."""
    combined = None
    for stage_map in assignment_maps:
        stage_map = stage_map.transpose(1, 2)  # [B, inputs, groups]
        combined = stage_map if combined is None else combined @ stage_map
    batch, tokens, groups = combined.shape
    height, width = feature_grid
    if height * width != tokens:
        raise ValueError(f"The first assignment map covers {tokens} patches, not the {height}x{width} grid given.")
    grid = combined.transpose(1, 2).reshape(batch, groups, height, width)
    return F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)


def check_segmentation_options(bg_thresh, top_k) -> None:
    """`bg_thresh` in [0, 1] (it is compared with products of softmaxes; NaN would silently disable the background)
    and `top_k` a positive integer (0 would mask every class, and the scores would be NaN)."""
    if isinstance(bg_thresh, bool) or not isinstance(bg_thresh, numbers.Real) or not 0.0 <= bg_thresh <= 1.0:
        raise ValueError(f"`bg_thresh` must be a number in [0, 1] (a class probability), got {bg_thresh!r}.")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer (classes kept per image), got {top_k!r}.")


def groups_to_class_scores(
    soft_map: torch.Tensor,
    group_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    class_embeds: torch.Tensor,
    logit_scale: float,
    bg_thresh: float = 0.95,
    top_k: int = 5,
) -> torch.Tensor:
    """Official `encode_decode` for a batch: `(B, 1 + C, H, W)` scores, channel 0 = background.

    Args:
        soft_map: `(B, G, H, W)` pixel→group map (`group_assignment_map`).
        group_embeds: `(B, G, D)` normalised group embeddings; image_embeds `(B, D)`; class_embeds `(C, D)`.
        logit_scale: the *exponentiated* temperature (official: `clamp(exp(logit_scale), max=100)`).
    """
    check_segmentation_options(bg_thresh, top_k)
    groups = soft_map.shape[1]
    onehot = F.one_hot(soft_map.argmax(dim=1), groups).permute(0, 3, 1, 2).to(group_embeds.dtype)
    group_logits = logit_scale * group_embeds @ class_embeds.t()  # [B, G, C]
    pre_affinity = group_logits.softmax(dim=-1)
    image_affinity = (logit_scale * image_embeds @ class_embeds.t()).softmax(dim=-1)  # [B, C]
    keep = torch.zeros_like(image_affinity, dtype=torch.bool)
    keep.scatter_(1, image_affinity.topk(min(top_k, class_embeds.shape[0]), dim=-1).indices, True)
    affinity = group_logits.masked_fill(~keep[:, None, :], float("-inf")).softmax(dim=-1) * pre_affinity
    foreground = torch.einsum("bghw,bgc->bchw", onehot, affinity)
    threshold = torch.clamp(affinity.flatten(1).max(dim=1).values, max=bg_thresh)  # min(bg_thresh, aff.max())
    background = (foreground.max(dim=1).values < threshold[:, None, None]).to(foreground.dtype)
    return torch.cat([background[:, None], foreground], dim=1)


def sliding_windows(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """mmseg `slide_inference` windows `(y1, y2, x1, x2)`: stride steps, the last window flush with the border."""
    if crop <= 0 or stride <= 0:
        raise ValueError(f"`crop_size` and `stride` must be positive, got {crop} and {stride}.")
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    windows = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, height), min(c * stride + crop, width)
            windows.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return windows


class ZooGroupViTProcessor(ZooCLIPProcessor):
    r"""
    [`ZooCLIPProcessor`] for GroupViT: same call (`input_ids`, `attention_mask`, `pixel_values`), plus

    - `build_prompts(captions, words=None)`: the multi-label noun prompts (tokenise them with `self(text=...)` and
      pass them as `prompt_input_ids`);
    - `preprocess_for_segmentation(image)`: keep-ratio resize to a short side of 448 (no crop) and normalisation;
    - `encode_labels(model, labels)`: class embeddings with the template "a photo of a {}.";
    - `segment(model, image, labels)`: the official sliding-window zero-shot segmentation, a label map;
    - `post_process_semantic_segmentation(outputs, class_embeds)`: the protocol for one forward pass (mode "whole").
    """

    def build_prompts(self, captions, words=None, num_prompts: int = 3, rng=None) -> list[str]:
        return build_prompts(list(captions), words, num_prompts=num_prompts, rng=rng)

    def preprocess_for_segmentation(self, image, short_side: int = 448, long_side_max: int = 2048) -> torch.Tensor:
        """`(1, 3, H, W)` pixel values resized so that the short side is `short_side` (the long side at most
        `long_side_max`, mmseg `Resize(keep_ratio=True)`), bilinear, normalised with the image processor's mean/std."""
        image = check_images(image)
        if len(image) != 1:
            raise ValueError(f"Segment one image at a time, got {len(image)}.")
        image = image[0]
        width, height = image.size
        scale = min(long_side_max / max(width, height), short_side / min(width, height))
        size = (max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5)))
        array = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32) / 255.0
        mean = np.asarray(self.image_processor.image_mean, dtype=np.float32)
        std = np.asarray(self.image_processor.image_std, dtype=np.float32)
        return torch.from_numpy((array - mean) / std).permute(2, 0, 1)[None].contiguous()

    @torch.no_grad()
    def encode_labels(self, model, labels, templates: Sequence[str] = IMAGENET_TEMPLATES_SIMPLE) -> torch.Tensor:
        """`(C, D)` normalised class embeddings: each label in every template, averaged, re-normalised."""
        labels = check_labels(labels)
        texts = [t.format(label) for label in labels for t in templates]
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(model.device)
        embeds = F.normalize(model.get_text_features(**batch).pooler_output, dim=-1)
        embeds = embeds.reshape(len(labels), len(templates), -1).mean(dim=1)
        return F.normalize(embeds, dim=-1)

    def post_process_semantic_segmentation(
        self, outputs, class_embeds: torch.Tensor, logit_scale: float | None = None, size=None, bg_thresh: float = 0.95,
        top_k: int = 5, return_scores: bool = False,
    ):  # fmt: skip
        """The protocol on one forward pass of `model(..., output_segmentation=True)` (mode "whole").

        Returns `(B, H, W)` label maps (0 = background, c + 1 = class c), or `(B, 1 + C, H, W)` scores with
        `return_scores=True`. `size`: the output resolution, e.g. `pixel_values.shape[-2:]` (default: the patch grid)."""
        if outputs.assignment_maps is None or outputs.group_embeds is None:
            raise ValueError("Call the model with `output_segmentation=True` to post-process its outputs.")
        if logit_scale is None:
            logit_scale = min(float(outputs.logit_scale.detach().exp()), 100.0)
        if size is None:
            size = outputs.feature_grid
        soft_map = group_assignment_map(outputs.assignment_maps, outputs.feature_grid, size)
        scores = groups_to_class_scores(
            soft_map, outputs.group_embeds, outputs.image_embeds, class_embeds.to(soft_map.dtype), logit_scale,
            bg_thresh=bg_thresh, top_k=top_k,
        )  # fmt: skip
        return scores if return_scores else scores.argmax(dim=1)

    @torch.no_grad()
    def segment(
        self, model, image, labels, crop_size: int = 448, stride: int = 224, short_side: int = 448,
        bg_thresh: float = 0.95, top_k: int = 5, return_scores: bool = False,
    ):  # fmt: skip
        """Official sliding-window zero-shot segmentation of one image: an `(H, W)` label map at the image's size
        (0 = background, c + 1 = `labels[c]`), or the `(1 + C, H, W)` averaged scores with `return_scores=True`."""
        labels = check_labels(labels)
        check_segmentation_options(bg_thresh, top_k)
        image = check_images(image)
        if len(image) != 1:
            raise ValueError(f"Segment one image at a time, got {len(image)}.")
        image = image[0]
        out_size = (image.height, image.width)
        was_training = model.training
        model.eval()
        class_embeds = self.encode_labels(model, labels)
        pixel_values = self.preprocess_for_segmentation(image, short_side=short_side).to(model.device)
        scores = self.slide_scores(model, pixel_values, class_embeds, crop_size, stride, bg_thresh, top_k)
        model.train(was_training)
        scores = F.interpolate(scores[None], size=out_size, mode="bilinear", align_corners=False)[0]
        return scores if return_scores else scores.argmax(dim=0)

    def slide_scores(self, model, pixel_values, class_embeds, crop_size=448, stride=224, bg_thresh=0.95, top_k=5):
        """`(1 + C, H, W)` scores of one preprocessed image: crops scored independently, summed, divided by counts."""
        _, _, height, width = pixel_values.shape
        dummy = torch.full((1, 1), int(self.tokenizer.eos_token_id), device=pixel_values.device)
        total = pixel_values.new_zeros((1 + class_embeds.shape[0], height, width))
        count = pixel_values.new_zeros((1, height, width))
        for y1, y2, x1, x2 in sliding_windows(height, width, crop_size, stride):
            crop = pixel_values[:, :, y1:y2, x1:x2]
            outputs = model(input_ids=dummy, pixel_values=crop, output_segmentation=True)
            total[:, y1:y2, x1:x2] += self.post_process_semantic_segmentation(
                outputs, class_embeds, size=crop.shape[-2:], bg_thresh=bg_thresh, top_k=top_k, return_scores=True
            )[0]
            count[:, y1:y2, x1:x2] += 1
        return total / count


def overlay_masks(image, label_map, alpha: float = 0.5, palette: np.ndarray | None = None) -> Image.Image:
    """RGB PNG-ready overlay of a label map (0 = background, left unpainted) on the image."""
    image = check_images(image)[0]
    labels = np.asarray(label_map.cpu() if isinstance(label_map, torch.Tensor) else label_map)
    if labels.shape != (image.height, image.width):
        raise ValueError(f"`label_map` has shape {labels.shape}; expected the image's {(image.height, image.width)}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}.")
    if palette is None:
        palette = np.random.default_rng(0).integers(0, 256, size=(int(labels.max()) + 1, 3))
    base = np.asarray(image, dtype=np.float32)
    color = np.asarray(palette, dtype=np.float32)[labels]
    painted = labels > 0
    base[painted] = (1 - alpha) * base[painted] + alpha * color[painted]
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGENET_TEMPLATES_FULL",
    "IMAGENET_TEMPLATES_SIMPLE",
    "IMAGENET_TEMPLATES_SUBSET",
    "ZooGroupViTProcessor",
    "build_prompts",
    "check_labels",
    "check_segmentation_options",
    "extract_prompt_words",
    "group_assignment_map",
    "groups_to_class_scores",
    "overlay_masks",
    "sliding_windows",
]


def build_groupvit_processor(image_size: int = 224, model_max_length: int = 77) -> ZooGroupViTProcessor:
    """GroupViT preprocessing (resize shortest edge, centre crop, ImageNet mean/std; official eval transform resizes to
    256/224·size first, a detail that does not matter for the square world images) + the CLIP BPE tokenizer."""
    from transformers import CLIPImageProcessorPil

    from .clipzoo_backbones_tokenizer import load_clip_tokenizer

    if image_size <= 0 or model_max_length <= 2:
        raise ValueError(f"Need image_size > 0 and model_max_length > 2, got {image_size} and {model_max_length}.")
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    return ZooGroupViTProcessor(image_processor=image_processor, tokenizer=load_clip_tokenizer(model_max_length))


__all__ += ["build_groupvit_processor"]
