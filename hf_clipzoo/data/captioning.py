"""`hf-clipzoo caption`: pseudo-captions for FFF's batch text augmentation (and DreamLIP's extra captions).

Runs any transformers image-to-text model (`AutoModelForImageTextToText`: BLIP, BLIP-2, vision-encoder-decoder, ...)
over an image column with beam search and keeps the top-K beams of each image as a list in a new column. Work is
written shard by shard (`<output_dir>/shards/shard-<start>.json`, each written atomically), so a killed run resumes
where it stopped; the finished dataset is saved with `save_to_disk` to `<output_dir>/dataset`.

    hf-clipzoo caption --model Salesforce/blip2-opt-2.7b --dataset my_images --output_dir captioned --num_captions 5

Unreadable images get an empty list and are counted, as in the training collators.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm

from .collate import UnreadableSample, decode_image

logger = logging.getLogger(__name__)


def _load_dataset(dataset: str | datasets.Dataset, split: str, image_column: str) -> datasets.Dataset:
    if isinstance(dataset, datasets.DatasetDict):
        return dataset[split]
    if isinstance(dataset, datasets.Dataset):
        return dataset
    from .loading import load_image_text_dataset

    return load_image_text_dataset(str(dataset), split=split, image_column=image_column)


def _write_atomic(path: Path, payload: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(payload)
    os.replace(partial, path)


@torch.no_grad()
def caption_dataset(
    model_name_or_path: str,
    dataset: str | datasets.Dataset,
    output_dir: str | os.PathLike,
    *,
    split: str = "train",
    image_column: str = "image",
    output_column: str = "pseudo_captions",
    num_captions: int = 5,
    num_beams: int | None = None,
    max_new_tokens: int = 30,
    batch_size: int = 16,
    shard_size: int = 256,
    prompt: str | None = None,
    device: str | None = None,
    model=None,
    processor=None,
) -> datasets.Dataset:
    """Add `output_column` (a list of `num_captions` captions per image) to `dataset` and save it.

    Args:
        model_name_or_path: a local folder or Hub id (the Hub only when online) of an image-to-text model.
        dataset: a `datasets.Dataset`, a `save_to_disk` folder, or anything `load_image_text_dataset` reads.
        output_dir: where shards (for resuming) and the final `dataset/` go.
        num_captions: K, the beams kept per image (FFF uses up to 5).
        num_beams: beam width (default: `num_captions`; must be >= `num_captions`).
        prompt: an optional text prefix for conditional captioners (e.g. "a photo of").
        model / processor: already-loaded objects, used instead of loading `model_name_or_path`.
    """
    if num_captions < 1:
        raise ValueError(f"num_captions must be >= 1, got {num_captions}.")
    num_beams = num_beams or num_captions
    if num_beams < num_captions:
        raise ValueError(f"num_beams ({num_beams}) must be >= num_captions ({num_captions}): K beams are kept.")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}.")
    if model is None or processor is None:
        from ..hub.folders import check_model_path

        check_model_path(model_name_or_path, argument="model_name_or_path")
    data = _load_dataset(dataset, split, image_column)
    if image_column not in data.column_names:
        raise ValueError(f"The dataset has no image column {image_column!r}; it has {data.column_names}.")
    if output_column in data.column_names:
        raise ValueError(f"The dataset already has a column {output_column!r}; choose another --output_column.")
    if model is None or processor is None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = processor or AutoProcessor.from_pretrained(model_name_or_path)
        model = model or AutoModelForImageTextToText.from_pretrained(model_name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()

    output_dir = Path(output_dir)
    shards_dir = output_dir / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    # Images are decoded here, so one corrupt file costs one row rather than the run.
    raw = (
        data.cast_column(image_column, datasets.Image(decode=False))
        if isinstance(data.features.get(image_column), datasets.Image)
        else data
    )
    unreadable = 0
    progress = tqdm(total=len(data), desc="captioning", unit="img")
    for start in range(0, len(data), shard_size):
        shard_path = shards_dir / f"shard-{start:09d}.json"
        stop = min(start + shard_size, len(data))
        if shard_path.exists():  # finished by a previous run
            progress.update(stop - start)
            continue
        captions: list[list[str]] = []
        for batch_start in range(start, stop, batch_size):
            rows = raw[batch_start : min(batch_start + batch_size, stop)][image_column]
            images, slots = [], []
            for value in rows:
                try:
                    images.append(decode_image(value))
                    slots.append(True)
                except UnreadableSample:
                    slots.append(False)
                    unreadable += 1
            generated = iter(
                _generate(model, processor, images, prompt, num_captions, num_beams, max_new_tokens, device)
            )
            captions.extend(next(generated) if ok else [] for ok in slots)
            progress.update(len(rows))
        _write_atomic(shard_path, json.dumps({"start": start, "stop": stop, "captions": captions}))
    progress.close()

    column: list[list[str]] = []
    for start in range(0, len(data), shard_size):
        shard = json.loads((shards_dir / f"shard-{start:09d}.json").read_text())
        if shard["stop"] - shard["start"] != len(shard["captions"]):
            raise ValueError(f"{shards_dir}/shard-{start:09d}.json is inconsistent; delete it to recompute it.")
        column.extend(shard["captions"])
    if unreadable:
        logger.warning("%d unreadable image(s) got no captions.", unreadable)
    result = data.add_column(output_column, column)
    result.save_to_disk(str(output_dir / "dataset"))
    return result


def _generate(model, processor, images, prompt, num_captions, num_beams, max_new_tokens, device) -> list[list[str]]:
    if not images:
        return []
    kwargs = {"images": images, "return_tensors": "pt"}
    if prompt:
        kwargs["text"] = [prompt] * len(images)
    inputs = processor(**kwargs).to(device)
    sequences = model.generate(
        **inputs,
        num_beams=num_beams,
        num_return_sequences=num_captions,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        early_stopping=True,
    )
    texts = [text.strip() for text in processor.batch_decode(sequences, skip_special_tokens=True)]
    if prompt:  # decoder-only captioners echo the prompt
        texts = [text[len(prompt) :].strip() if text.startswith(prompt) else text for text in texts]
    return [texts[i * num_captions : (i + 1) * num_captions] for i in range(len(images))]


__all__ = ["caption_dataset"]
