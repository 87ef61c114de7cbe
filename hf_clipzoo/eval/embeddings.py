"""Model-generic embedding helpers shared by the evaluators.

The evaluators only rely on the dual-encoder API that transformers' `CLIPModel` and every hf-clipzoo model expose:
`model.get_image_features(pixel_values=...)` and `model.get_text_features(input_ids=..., attention_mask=...)`.
In transformers 5 these return an output object whose `pooler_output` is the *projected* embedding (older versions
and some custom models return the tensor itself); both are accepted. Embeddings are L2-normalised here, in float32,
so that every evaluator compares cosine similarities whatever dtype the model runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["embedding_from_output", "model_device", "encode_images", "encode_texts", "map_batches", "require_columns"]


def embedding_from_output(output: Any) -> torch.Tensor:
    """Returns the projected embedding from what `get_image_features` / `get_text_features` returned."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise ValueError(
        f"Expected `get_image_features` / `get_text_features` to return a tensor or an output with a "
        f"`pooler_output` tensor, got {type(output).__name__}."
    )


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-less module)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    parameter = next(model.parameters(), None)
    return parameter.dtype if parameter is not None else torch.float32


@torch.inference_mode()
def encode_images(
    model: torch.nn.Module,
    processor: Callable,
    images: Sequence[Any],
    device: torch.device | None = None,
    *,
    normalize: bool = True,
) -> torch.Tensor:
    """L2-normalised float32 image embeddings `(len(images), D)` (the raw projected features with `normalize=False`).

    `processor` is a `CLIPProcessor`-like processor or an image processor: it is called as
    `processor(images=images, return_tensors="pt")` and must return `pixel_values`.
    """
    if len(images) == 0:
        raise ValueError("`images` is empty: nothing to encode.")
    device = device if device is not None else model_device(model)
    inputs = processor(images=list(images), return_tensors="pt")
    if "pixel_values" not in inputs:
        raise ValueError(f"The processor returned {sorted(inputs.keys())}, expected `pixel_values`.")
    pixel_values = inputs["pixel_values"].to(device=device, dtype=_model_dtype(model))
    embeddings = embedding_from_output(model.get_image_features(pixel_values=pixel_values)).float()
    return F.normalize(embeddings, dim=-1) if normalize else embeddings


@torch.inference_mode()
def encode_texts(
    model: torch.nn.Module, tokenizer: Callable, texts: Sequence[str], device: torch.device | None = None
) -> torch.Tensor:
    """L2-normalised float32 text embeddings `(len(texts), D)`.

    `tokenizer` is a tokenizer or a `CLIPProcessor`-like processor, called as
    `tokenizer(text=texts, return_tensors="pt", padding=True, truncation=True)`.
    """
    if len(texts) == 0:
        raise ValueError("`texts` is empty: nothing to encode.")
    device = device if device is not None else model_device(model)
    inputs = tokenizer(text=list(texts), return_tensors="pt", padding=True, truncation=True)
    if "input_ids" not in inputs:
        raise ValueError(f"The tokenizer returned {sorted(inputs.keys())}, expected `input_ids`.")
    kwargs = {"input_ids": inputs["input_ids"].to(device)}
    if "attention_mask" in inputs:
        kwargs["attention_mask"] = inputs["attention_mask"].to(device)
    embeddings = embedding_from_output(model.get_text_features(**kwargs))
    return F.normalize(embeddings.float(), dim=-1)


class _IndexDataset(torch.utils.data.Dataset):
    """`range(n)` as a torch dataset, so that accelerate can shard indices across processes."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


def map_batches(
    num_items: int,
    batch_size: int,
    fn: Callable[[list[int]], dict[str, torch.Tensor]],
    accelerator: Any | None = None,
) -> dict[str, torch.Tensor]:
    """Runs `fn(indices)` on consecutive batches of `range(num_items)` and concatenates its tensors in item order.

    With an `accelerate.Accelerator`, each process runs its shard of the batches and the outputs are gathered with
    `accelerator.gather_for_metrics` (which drops the samples duplicated to even out the last batch); rows are then
    put back in item order, so the result is the same as a single-process run. Every tensor `fn` returns must have
    one row per index.
    """
    if num_items == 0:
        raise ValueError("Nothing to evaluate: the dataset is empty.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    loader = torch.utils.data.DataLoader(_IndexDataset(num_items), batch_size=batch_size, collate_fn=list)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
    outputs: dict[str, list[torch.Tensor]] = {}
    for indices in loader:
        indices = [int(i) for i in indices]
        batch = dict(fn(indices))
        batch["_index"] = torch.tensor(indices, dtype=torch.long)
        if accelerator is not None:
            batch = {key: value.to(accelerator.device) for key, value in batch.items()}
            batch = accelerator.gather_for_metrics(batch)
        for key, value in batch.items():
            outputs.setdefault(key, []).append(value.cpu())
    result = {key: torch.cat(values) for key, values in outputs.items()}
    index = result.pop("_index")
    order = torch.argsort(index)
    # A sanity check on the gather: exactly one row per item, none lost or duplicated.
    if not torch.equal(index[order], torch.arange(num_items)):
        raise RuntimeError(f"Gathered {index.numel()} rows that do not cover the {num_items} items exactly once.")
    return {key: value[order] for key, value in result.items()}


def require_columns(dataset: Any, columns: Sequence[str], what: str) -> None:
    """Raises a ValueError naming the missing columns when a map-style dataset lacks some of `columns`."""
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise ValueError(
            f"{what} needs a map-style `datasets.Dataset` (with len() and indexing), got {type(dataset).__name__}; "
            "materialise a streaming dataset first, e.g. `Dataset.from_generator(lambda: iter(streamed))`."
        )
    names = getattr(dataset, "column_names", None)
    if names is None:
        raise ValueError(f"{what} needs a `datasets.Dataset` with named columns, got {type(dataset).__name__}.")
    missing = [column for column in columns if column not in names]
    if missing:
        raise ValueError(f"{what}: the dataset has no column(s) {missing}; its columns are {list(names)}.")
