"""MMVP-VLM: does a CLIP model tell apart two images that differ in one visual pattern?

Benchmark: Tong et al., "Eyes Wide Shut? Exploring the Visual Shortcomings of Multimodal LLMs" (CVPR 2024),
https://github.com/tsb0601/MMVP (`scripts/evaluate_vlm.py`); DIVA (arXiv 2407.20171) reports it with the same script.

The official layout (Hub dataset `MMVP/MMVP_VLM`)::

    MMVP_VLM/
      Questions.csv              # header `Question ID,Type,Statement`, 270 rows
      MLLM_VLM Images/<Type>/<Question ID>.jpg

Consecutive rows form a pair (rows 1-2, 3-4, ...). The statement of the odd question id describes the image of that
id, the even one the other image. The official script assigns categories by *position*: pairs 0-14 are the first of
the 9 patterns below, 15-29 the second, and so on; the `Type` column only names the image folder. Each statement is
prefixed with "a photo of " before being encoded. A pair is correct only when both statements pick their own image;
the score is the mean over the 9 categories of the per-category pair accuracy.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .embeddings import encode_images, encode_texts, map_batches, model_device, require_columns
from .metrics import mmvp_pair_accuracy

__all__ = [
    "MMVP_VLM_CATEGORIES",
    "MMVP_VLM_PAIRS_PER_CATEGORY",
    "MMVP_VLM_STATEMENT_TEMPLATE",
    "read_mmvp_vlm_questions",
    "load_mmvp_vlm",
    "evaluate_mmvp",
]

logger = logging.getLogger(__name__)

# The 9 visual patterns, in the order (and spelling) of the official `evaluate_vlm.py`.
MMVP_VLM_CATEGORIES: tuple[str, ...] = (
    "Orientation and Direction",
    "Presence of Specific Features",
    "State and Condition",
    "Quantity and Count",
    "Positional and Relational Context",
    "Color and Appearance",
    "Structural Characteristics",
    "Texts",
    "Viewpoint and Perspective",
)
MMVP_VLM_PAIRS_PER_CATEGORY = 15
# The official script encodes `'a photo of ' + statement`.
MMVP_VLM_STATEMENT_TEMPLATE = "a photo of {}"

_ID_HEADERS = ("question id", "question_id", "qid", "id", "index")
_TYPE_HEADERS = ("type", "question type", "qtype", "category")
_STATEMENT_HEADERS = ("statement", "text", "caption")
_IMAGE_FOLDERS = ("MLLM_VLM Images", "MLLM_VLM_Images")


def _column(header: list[str], candidates: Sequence[str], default: int) -> int:
    normalised = [name.strip().lower() for name in header]
    for candidate in candidates:
        if candidate in normalised:
            return normalised.index(candidate)
    return default


def read_mmvp_vlm_questions(csv_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads MMVP-VLM's `Questions.csv` into one dict per pair.

    Columns are found by header name (`Question ID`, `Type`, `Statement`, case-insensitive) and otherwise by
    position (id, type, statement), which is how the official script reads them. Rows are paired in file order.

    Returns:
        A list of `{"qid_a", "qid_b", "type", "category", "statement_a", "statement_b"}`; `statement_a` describes
        the image `<type>/<qid_a>.jpg`. For the full benchmark (135 pairs) `category` follows the official positional
        rule (15 consecutive pairs per pattern of `MMVP_VLM_CATEGORIES`); for any other number of pairs (a subset,
        a custom set in the same format) `category` is the `Type` value.

    Raises:
        ValueError: an odd number of rows, a pair whose ids are not `(odd, odd + 1)`, a pair whose rows have
            different types, a non-integer id, an empty statement or a row with fewer than 3 columns.
    """
    path = Path(csv_path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path} is empty; expected a header `Question ID,Type,Statement` and 2 rows per pair.")
    header, rows = rows[0], rows[1:]
    id_col = _column(header, _ID_HEADERS, 0)
    type_col = _column(header, _TYPE_HEADERS, 1)
    statement_col = _column(header, _STATEMENT_HEADERS, 2)
    if not rows or len(rows) % 2:
        raise ValueError(f"{path} has {len(rows)} question rows; MMVP-VLM needs a positive, even number (2 per pair).")

    questions = []
    for line, row in enumerate(rows, start=2):
        if len(row) <= max(id_col, type_col, statement_col):
            raise ValueError(f"{path}, line {line}: expected the columns id, type, statement, got {row}.")
        try:
            qid = int(row[id_col].strip())
        except ValueError:
            raise ValueError(f"{path}, line {line}: question id {row[id_col]!r} is not an integer.") from None
        statement = row[statement_col].strip()
        if not statement:
            raise ValueError(f"{path}, line {line}: empty statement.")
        questions.append((qid, row[type_col].strip(), statement))

    num_pairs = len(questions) // 2
    official = num_pairs == len(MMVP_VLM_CATEGORIES) * MMVP_VLM_PAIRS_PER_CATEGORY
    pairs = []
    for index in range(num_pairs):
        (qid_a, type_a, statement_a), (qid_b, type_b, statement_b) = questions[2 * index : 2 * index + 2]
        if qid_a % 2 != 1 or qid_b != qid_a + 1:
            raise ValueError(
                f"{path}: pair {index} has question ids ({qid_a}, {qid_b}); expected (odd, odd + 1), the official "
                "ground truth being 'the odd id's statement describes the odd id's image'."
            )
        if type_a != type_b:
            raise ValueError(f"{path}: pair {index} mixes types {type_a!r} and {type_b!r}.")
        category = MMVP_VLM_CATEGORIES[index // MMVP_VLM_PAIRS_PER_CATEGORY] if official else type_a
        pairs.append(
            {
                "qid_a": qid_a,
                "qid_b": qid_b,
                "type": type_a,
                "category": category,
                "statement_a": statement_a,
                "statement_b": statement_b,
            }
        )
    if official:
        # The positional rule only makes sense if each block of 15 pairs is one image folder; say so if not.
        size = MMVP_VLM_PAIRS_PER_CATEGORY
        for block, category in enumerate(MMVP_VLM_CATEGORIES):
            types = {pair["type"] for pair in pairs[block * size : (block + 1) * size]}
            if len(types) != 1:
                logger.warning(
                    "MMVP-VLM pairs %d-%d (category %r) span several types %s; categories follow the official "
                    "positional rule anyway.",
                    block * size,
                    (block + 1) * size - 1,
                    category,
                    sorted(types),
                )
    return pairs


def load_mmvp_vlm(benchmark_dir: str | os.PathLike, image_folder: str | None = None):
    """Loads an MMVP-VLM folder (see the module docstring) as a `datasets.Dataset` of pairs.

    Columns: `image_a`, `image_b` (`datasets.Image`), `statement_a`, `statement_b`, `category`, `type`, `qid_a`,
    `qid_b` — the input of :func:`evaluate_mmvp`.

    Args:
        benchmark_dir: the folder holding `Questions.csv` and the image folder.
        image_folder: the image folder's name inside `benchmark_dir`; by default `MLLM_VLM Images` (the Hub
            dataset) or `MLLM_VLM_Images` (DIVA's copy), whichever exists.
    """
    import datasets

    root = Path(benchmark_dir)
    csv_path = root / "Questions.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"No Questions.csv in {root}: expected the MMVP-VLM layout (see hf_clipzoo.eval.mmvp)."
        )
    folders = [image_folder] if image_folder is not None else list(_IMAGE_FOLDERS)
    image_root = next((root / name for name in folders if (root / name).is_dir()), None)
    if image_root is None:
        raise FileNotFoundError(f"No image folder {folders} in {root}.")
    pairs = read_mmvp_vlm_questions(csv_path)
    columns: dict[str, list] = {key: [] for key in ("image_a", "image_b", *pairs[0].keys())}
    for pair in pairs:
        for side in ("a", "b"):
            image_path = image_root / pair["type"] / f"{pair[f'qid_{side}']}.jpg"
            if not image_path.is_file():
                raise FileNotFoundError(f"MMVP-VLM image {image_path} is missing.")
            columns[f"image_{side}"].append(str(image_path))
        for key, value in pair.items():
            columns[key].append(value)
    dataset = datasets.Dataset.from_dict(columns)
    return dataset.cast_column("image_a", datasets.Image()).cast_column("image_b", datasets.Image())


def evaluate_mmvp(
    model: torch.nn.Module,
    processor: Callable,
    pairs_dataset: Any,
    statement_template: str = MMVP_VLM_STATEMENT_TEMPLATE,
    category_order: Sequence[str] | None = None,
    batch_size: int = 32,
    device: torch.device | None = None,
    accelerator: Any | None = None,
    tokenizer: Callable | None = None,
    return_scores: bool = False,
) -> dict[str, Any]:
    """MMVP-VLM pair accuracy of a dual encoder.

    Args:
        model: a dual encoder (`get_image_features` / `get_text_features`).
        processor: a `CLIPProcessor`-like processor; see `tokenizer`.
        pairs_dataset: a map-style `datasets.Dataset` with columns `image_a`, `image_b`, `statement_a`,
            `statement_b`, `category` (`statement_a` describes `image_a`), e.g. from :func:`load_mmvp_vlm` or the
            synthetic world's MMVP-style pairs.
        statement_template: how a statement becomes the encoded text; the official `"a photo of {}"` by default,
            `"{}"` to use statements as they are.
        category_order: order of the categories in the output; defaults to `MMVP_VLM_CATEGORIES` when all
            categories are official ones, else to their order of first appearance.
        batch_size: pairs per forward pass (twice as many images and texts).
        device: where to run; defaults to the model's device (or the accelerator's).
        accelerator: an optional `accelerate.Accelerator` to shard the pairs across processes.
        tokenizer: the text tokenizer when `processor` only handles images (defaults to `processor`).
        return_scores: also return the `(P, 2, 2)` cosine similarities `[pair, statement, image]` under `"scores"`.

    Returns:
        The dict of :func:`hf_clipzoo.eval.metrics.mmvp_pair_accuracy` (`per_category_accuracy`,
        `average_accuracy` — MMVP-VLM's headline number as a fraction —, `pair_accuracy`, `num_pairs`).

    Note that DIVA's OpenAI-CLIP evaluation adds the mean of (randomly sampled) patch tokens to the class token;
    this evaluator uses the model's own `get_image_features` embedding, which is the standard CLIP protocol.
    """
    columns = ["image_a", "image_b", "statement_a", "statement_b", "category"]
    require_columns(pairs_dataset, columns, "evaluate_mmvp")
    if "{}" not in statement_template:
        raise ValueError(f"`statement_template` {statement_template!r} has no '{{}}' placeholder.")
    if accelerator is not None and device is None:
        device = accelerator.device
    device = device if device is not None else model_device(model)
    model.eval()
    images = pairs_dataset.select_columns(["image_a", "image_b"])
    statements_a = pairs_dataset["statement_a"]
    statements_b = pairs_dataset["statement_b"]
    categories = [str(c) for c in pairs_dataset["category"]]

    def score_pairs(indices: list[int]) -> dict[str, torch.Tensor]:
        rows = images[indices]
        # Interleave as [a0, b0, a1, b1, ...] so that a reshape gives (pairs, 2, D).
        pair_images = [image for a, b in zip(rows["image_a"], rows["image_b"]) for image in (a, b)]
        texts = [statement_template.format(s) for i in indices for s in (statements_a[i], statements_b[i])]
        image_embeddings = encode_images(model, processor, pair_images, device).view(len(indices), 2, -1)
        text_embeddings = encode_texts(model, tokenizer or processor, texts, device).view(len(indices), 2, -1)
        # scores[p, s, i] = <text s of pair p, image i of pair p>
        return {"scores": torch.einsum("psd,pid->psi", text_embeddings, image_embeddings)}

    scores = map_batches(len(pairs_dataset), batch_size, score_pairs, accelerator)["scores"]
    if category_order is None and set(categories) <= set(MMVP_VLM_CATEGORIES):
        category_order = [c for c in MMVP_VLM_CATEGORIES if c in set(categories)]
    results = mmvp_pair_accuracy(scores, categories, category_order)
    if return_scores:
        results["scores"] = scores.tolist()
    return results
