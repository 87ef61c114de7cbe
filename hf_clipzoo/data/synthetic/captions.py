"""Captions of the embedded world: noisy short alt-text, long descriptions, pseudo-captions, nouns.

Three kinds of text stand in for the three kinds of text the papers train on:

**Short alt-text** (`caption` column; what a web crawl gives). One of five kinds, drawn with
`WorldConfig.short_caption_probs` (default in brackets):

* ``generic`` (15%): an uninformative string from `GENERIC_CAPTIONS` ("image", "shapes", ...);
* ``shape`` (10%): one object's shape only, "a triangle";
* ``count`` (5%): "three shapes";
* ``one_object`` (45%): one object's colour and shape, "a red circle" (the others go unmentioned: incomplete);
* ``two_objects`` (25%): "a red circle and a blue star" (falls back to ``one_object`` for a single-object scene).

Then, with probability `WorldConfig.wrong_colour_prob` (10%), a caption that names a colour has its first colour word
replaced by a wrong one (noise). The first four kinds come from a set of only ~100 strings, so many images share an
identical short caption: in-batch false negatives exist as on the web (see `false_negative_rate`).

**Long caption** (`long_caption`; what an MLLM recaptioner gives, DreamLIP): one sentence for the scene and the
background, one per object (size, colour, shape, orientation, position) and one per pair of objects with their
spatial relation ("The red circle is above and to the left of the blue star."). Sentences end with "." so DreamLIP's
sub-caption splitter recovers them. Always correct and complete.

**Pseudo-captions** (`pseudo_captions`; K paraphrases from a captioner, FFF): each is correct but covers a subset of
the scene, from `PSEUDO_CAPTION_TEMPLATES` (distinct templates per image while enough apply), with the size / "shapes"
synonyms of `vocab.SYNONYMS`. Shape and colour words never change.

**Nouns**: the distinct shape nouns of the scene, in object order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import SHORT_CAPTION_KINDS, WorldConfig
from .spec import ObjectSpec, SceneSpec
from .vocab import COLOURS, NUMBER_WORDS, POSITION_PHRASES, SYNONYMS

GENERIC_CAPTIONS: tuple[str, ...] = (
    "image",
    "shapes",
    "a picture",
    "abstract art",
    "colorful shapes",
    "untitled",
    "pattern",
    "geometry",
)

PSEUDO_CAPTION_TEMPLATES: tuple[str, ...] = (
    "single",  # "a big red circle"
    "located",  # "a red circle in the top left corner"
    "relation",  # "a red circle to the left of a blue star"
    "count",  # "three objects on a striped background"
    "listing",  # "a red circle, a blue star and a green ring"
    "oriented",  # "a red arrow pointing up"
    "background",  # "a red circle on a grey background"
)


def article(phrase: str) -> str:
    """Prefix the right indefinite article: "an orange circle", "a red arrow"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def count_phrase(n: int, noun: str = "shapes") -> str:
    """ "one shape", "three shapes" (number words up to nine)."""
    return f"{NUMBER_WORDS[n]} {noun[:-1] if n == 1 else noun}"


def relation(a: ObjectSpec, b: ObjectSpec) -> str:
    """Spatial relation of `a` to `b` from their grid cells, e.g. "above and to the left of"."""
    vertical = "above" if a.row < b.row else "below" if a.row > b.row else ""
    horizontal = "to the left of" if a.col < b.col else "to the right of" if a.col > b.col else ""
    if vertical and horizontal:
        return f"{vertical} and {horizontal}"
    return vertical or horizontal


def short_caption(scene: SceneSpec, rng: np.random.Generator, config: WorldConfig) -> str:
    """A short, often incomplete and sometimes wrong alt-text caption (kinds and rates in the module docstring)."""
    objects = scene.objects
    kind = SHORT_CAPTION_KINDS[int(rng.choice(len(SHORT_CAPTION_KINDS), p=config.short_caption_probs))]
    if kind == "two_objects" and len(objects) < 2:
        kind = "one_object"
    if kind == "generic":
        return GENERIC_CAPTIONS[int(rng.integers(len(GENERIC_CAPTIONS)))]
    if kind == "count":
        return count_phrase(len(objects))
    if kind == "shape":
        return article(objects[int(rng.integers(len(objects)))].shape)
    if kind == "one_object":
        chosen = [objects[int(rng.integers(len(objects)))]]
    else:
        chosen = [objects[int(i)] for i in rng.choice(len(objects), size=2, replace=False)]
    colours = [obj.colour for obj in chosen]
    if rng.random() < config.wrong_colour_prob:
        wrong = [c for c in COLOURS if c != colours[0]]
        colours[0] = wrong[int(rng.integers(len(wrong)))]
    return " and ".join(article(f"{colour} {obj.shape}") for colour, obj in zip(colours, chosen))


def long_caption(scene: SceneSpec) -> str:
    """A complete multi-sentence description of every object and every pairwise relation."""
    objects = scene.objects
    background = scene.background
    sentences = [
        f"A picture of {count_phrase(len(objects))} on a {background.texture} {background.colour} background."
    ]
    for obj in objects:
        sentences.append(
            f"There is {article(obj.phrase(size=True, orientation=True))} {POSITION_PHRASES[obj.position]}."
        )
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            sentences.append(f"The {a.phrase()} is {relation(a, b)} the {b.phrase()}.")
    return " ".join(sentences)


def _synonym(word: str, rng: np.random.Generator) -> str:
    options = SYNONYMS.get(word, (word,))
    return options[int(rng.integers(len(options)))]


def _pseudo_caption(template: str, scene: SceneSpec, rng: np.random.Generator) -> str:
    objects = scene.objects
    obj = objects[int(rng.integers(len(objects)))]
    if template == "single":
        return article(f"{_synonym(obj.size, rng)} {obj.colour} {obj.shape}")
    if template == "located":
        return f"{article(obj.phrase())} {POSITION_PHRASES[obj.position]}"
    if template == "relation":
        i, j = (int(k) for k in rng.choice(len(objects), size=2, replace=False))
        return f"{article(objects[i].phrase())} {relation(objects[i], objects[j])} {article(objects[j].phrase())}"
    if template == "count":
        return f"{count_phrase(len(objects), _synonym('shapes', rng))} on a {scene.background.texture} background"
    if template == "listing":
        phrases = [article(o.phrase()) for o in objects]
        return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    if template == "oriented":
        oriented = [o for o in objects if o.orientation != "none"]
        o = oriented[int(rng.integers(len(oriented)))]
        return article(o.phrase(orientation=True))
    if template == "background":
        return f"{article(obj.phrase())} on {article(scene.background.colour)} background"
    raise ValueError(f"Unknown pseudo-caption template {template!r}; expected one of {PSEUDO_CAPTION_TEMPLATES}.")


def pseudo_captions(scene: SceneSpec, rng: np.random.Generator, k: int) -> list[str]:
    """K correct paraphrases, each covering a subset of the scene (distinct templates while enough apply)."""
    applicable = [
        t
        for t in PSEUDO_CAPTION_TEMPLATES
        if not (t == "relation" and len(scene.objects) < 2)
        and not (t == "oriented" and all(o.orientation == "none" for o in scene.objects))
    ]
    if k <= len(applicable):
        chosen = [applicable[int(i)] for i in rng.choice(len(applicable), size=k, replace=False)]
    else:
        chosen = [applicable[int(i)] for i in rng.integers(len(applicable), size=k)]
    return [_pseudo_caption(t, scene, rng) for t in chosen]


def nouns(scene: SceneSpec) -> list[str]:
    """The distinct shape nouns of the scene, in object order."""
    return list(dict.fromkeys(obj.shape for obj in scene.objects))


def false_negative_rate(captions: Sequence[str], batch_size: int = 256, seed: int = 0, unit: str = "image") -> float:
    """Fraction of in-batch false negatives when a contrastive loss treats identical captions as negatives.

    The captions are shuffled with `numpy.random.default_rng(seed)` and cut into consecutive batches of
    `batch_size`; the last incomplete batch is dropped (as `drop_last=True` training does) unless there is no full
    batch, in which case all captions form one batch.

    * ``unit="image"`` (default): the fraction of images whose batch holds at least one *other* image with an
      identical caption, i.e. images whose InfoNCE row contains at least one false negative.
    * ``unit="pair"``: the fraction of the off-diagonal entries (i != j) of the in-batch similarity matrices whose two
      captions are identical, i.e. false negatives among all negatives.

    Raises:
        ValueError: fewer than 2 captions, `batch_size` < 2, or an unknown `unit`.
    """
    if unit not in ("image", "pair"):
        raise ValueError(f"Unknown unit {unit!r}; expected 'image' or 'pair'.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}.")
    if len(captions) < 2:
        raise ValueError(f"false_negative_rate needs at least 2 captions, got {len(captions)}.")
    _, ids = np.unique(np.asarray(list(captions), dtype=object).astype(str), return_inverse=True)
    ids = ids[np.random.default_rng(seed).permutation(len(ids))]
    num_batches = len(ids) // batch_size
    batches = ids[: num_batches * batch_size].reshape(num_batches, batch_size) if num_batches else ids[None, :]
    hits = total = 0
    for batch in batches:
        _, inverse, counts = np.unique(batch, return_inverse=True, return_counts=True)
        if unit == "image":
            hits += int((counts[inverse] > 1).sum())
            total += len(batch)
        else:
            hits += int((counts * (counts - 1)).sum())
            total += len(batch) * (len(batch) - 1)
    return hits / total


_SIZE_WORDS = frozenset(word for key in ("small", "medium", "large") for word in SYNONYMS[key])


def caption_is_true(caption: str, objects: Sequence[dict], background: dict | None = None) -> bool:
    """Whether `caption` (any of the world's texts) is true of a scene given its `objects` / `background` columns.

    The world's ground truth for "which pairs really match", used to score FFF's mined positives. A caption is true
    when every object it names (colour + shape, or a shape alone) is in the scene, a count it states ("three shapes")
    equals the number of objects, and a background colour it names is the scene's. Generic alt-text ("image",
    "shapes", ...) is true of every scene. Sizes, positions, orientations and relations are not checked, so this is
    an upper bound on truth for the pseudo-captions that state them (the short alt-text never does).
    """
    from .vocab import BACKGROUND_COLOURS, SHAPES

    words = [w.strip(".,;:!?").lower() for w in caption.split()]
    present = {(o["colour"], o["shape"]) for o in objects}
    shapes = {o["shape"] for o in objects}
    for index, word in enumerate(words):
        stem = word[:-1] if word.endswith("s") and word[:-1] in SHAPES else word
        if stem in SHAPES:
            before = [w for w in words[max(0, index - 3) : index] if w not in _SIZE_WORDS]
            colour = before[-1] if before and before[-1] in COLOURS else None
            if (colour is not None and (colour, stem) not in present) or stem not in shapes:
                return False
        elif word in ("background", "backgrounds") and background is not None and index > 0:
            before = " ".join(words[max(0, index - 4) : index])
            named = [c for c in BACKGROUND_COLOURS if before == c or before.endswith(" " + c)]
            if named and max(named, key=len) != background.get("colour"):
                return False
        elif word in NUMBER_WORDS and index + 1 < len(words):
            noun = words[index + 1]
            if noun in SYNONYMS["shapes"] or noun in ("shape", "object"):
                if NUMBER_WORDS.index(word) != len(objects):
                    return False
    return True
