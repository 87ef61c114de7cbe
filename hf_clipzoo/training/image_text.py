"""Data and evaluation shared by the image-text training scripts (CLIP / SigLIP baseline, FFF, DreamLIP, ...).

Each script keeps its own loop; what is identical across them — the `--dataset` arguments, loading the embedded world
or a real image-text source, and the periodic retrieval + zero-shot evaluation — lives here once.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

import datasets
import numpy as np

from ..data.loading import load_image_text_dataset
from ..eval.outcomes import save_outcomes
from ..eval.retrieval import evaluate_retrieval
from ..eval.zero_shot import evaluate_zero_shot

logger = logging.getLogger(__name__)


def add_image_text_data_arguments(parser: argparse.ArgumentParser, *, caption_column: str = "caption"):
    """The `data` argument group every image-text script shares."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", default="synthetic", help="'synthetic' (the embedded world) or a dataset path / Hub id."
    )
    data.add_argument("--dataset_config_name", default=None, help="Config name of a Hub dataset.")
    data.add_argument("--train_split", default="train", help="Split to train on.")
    data.add_argument(
        "--eval_split", default=None, help="Split for retrieval evaluation (default: none for real data)."
    )
    data.add_argument("--image_column", default="image", help="Column holding the images.")
    data.add_argument("--caption_column", default=caption_column, help="Column holding the training captions.")
    data.add_argument(
        "--eval_caption_column", default=None, help="Caption column for retrieval eval (default: --caption_column)."
    )
    data.add_argument("--max_train_samples", type=int, default=None, help="Truncate the training set (debugging).")
    data.add_argument("--max_eval_samples", type=int, default=512, help="Truncate the evaluation sets.")
    data.add_argument("--synthetic_train_size", type=int, default=4096, help="Images in the synthetic training split.")
    data.add_argument("--synthetic_eval_size", type=int, default=512, help="Images in the synthetic evaluation split.")
    data.add_argument(
        "--synthetic_classes_per_split", type=int, default=10, help="Images per class for zero-shot eval."
    )
    data.add_argument(
        "--synthetic_eval_split",
        choices=("val", "test"),
        default="test",
        help="Held-out split of the embedded world to evaluate on: 'val' while choosing hyper-parameters, 'test' once.",
    )
    data.add_argument("--resolution", type=int, default=None, help="Image size (default: the model's).")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")
    data.add_argument(
        "--streaming",
        action="store_true",
        help="Read --dataset as a stream (datasets.IterableDataset) instead of preparing it on disk first; needs "
        "--max_train_steps (a stream has no length).",
    )
    data.add_argument(
        "--shuffle_buffer_size",
        type=int,
        default=1000,
        help="With --streaming: examples held in the seeded shuffle buffer (0: the stream's order).",
    )
    return data


def check_image_text_data_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject data flags that cannot work together, before anything is loaded."""
    if args.streaming and args.dataset == "synthetic":
        parser.error(
            "--streaming reads a --dataset path or Hub id; the embedded 'synthetic' world is built in memory."
        )
    if args.streaming and args.max_train_steps is None:
        parser.error("--streaming needs --max_train_steps: a streamed dataset has no length to count epochs by.")
    if args.streaming and args.dataloader_num_workers:
        parser.error(
            "--streaming reads the stream in the main process (its position is what a checkpoint stores); "
            f"use --dataloader_num_workers 0, got {args.dataloader_num_workers}."
        )
    if args.shuffle_buffer_size < 0:
        parser.error(f"--shuffle_buffer_size must be >= 0, got {args.shuffle_buffer_size}.")


@dataclass
class ImageTextData:
    """A training split, an optional retrieval split, and (embedded world only) a zero-shot classification task."""

    train: datasets.Dataset | datasets.IterableDataset
    evaluation: datasets.Dataset | None
    zero_shot: dict | None


def load_image_text_data(
    args: argparse.Namespace, accelerator, *, extra_columns: tuple[str, ...] = ()
) -> ImageTextData:
    """Load what `add_image_text_data_arguments` describes. `args.resolution` must be set (the model's image size).

    `extra_columns` are columns the script needs besides image and caption (e.g. `pseudo_captions`); for real data
    they must exist, or a `ValueError` names them.
    """
    zero_shot = None
    if args.dataset == "synthetic":
        from ..data.synthetic import CLASSIFICATION_TEMPLATES, WorldConfig, make_classification, make_scenes

        world = WorldConfig(seed=args.seed, image_size=args.resolution)
        # Every process builds the same (deterministic) world; the main process first so any caching happens once.
        with accelerator.main_process_first():
            train = make_scenes(args.synthetic_train_size, split="train", config=world)
            eval_split = getattr(args, "synthetic_eval_split", "test")
            evaluation = make_scenes(args.synthetic_eval_size, split=eval_split, config=world)
            classification = make_classification(args.synthetic_classes_per_split, split=eval_split, config=world)
        zero_shot = {
            "dataset": classification,
            "class_names": classification.features["label"].names,
            "templates": CLASSIFICATION_TEMPLATES,
        }
    else:
        streaming = getattr(args, "streaming", False)
        train = load_image_text_dataset(
            args.dataset, split=args.train_split, name=args.dataset_config_name,
            image_column=args.image_column, caption_column=args.caption_column, streaming=streaming,
        )  # fmt: skip
        evaluation = None
        if args.eval_split:  # evaluation sets are small and need a length: never streamed
            evaluation = load_image_text_dataset(
                args.dataset, split=args.eval_split, name=args.dataset_config_name,
                image_column=args.image_column, caption_column=args.eval_caption_column or args.caption_column,
            ).cast_column(args.image_column, datasets.Image())  # fmt: skip
    missing = [column for column in extra_columns if column not in train.column_names]
    if missing:
        raise ValueError(
            f"The training data has no column(s) {missing}; it has {train.column_names}. Add them, or disable the "
            "option that needs them."
        )
    if isinstance(train, datasets.IterableDataset):
        train = _stream_for_this_process(train, args, accelerator)
    elif args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if evaluation is not None and args.max_eval_samples:
        evaluation = evaluation.select(range(min(args.max_eval_samples, len(evaluation))))
    return ImageTextData(train=train, evaluation=evaluation, zero_shot=zero_shot)


def _stream_for_this_process(train: datasets.IterableDataset, args, accelerator) -> datasets.IterableDataset:
    from datasets.distributed import split_dataset_by_node

    if args.max_train_samples:
        train = train.take(args.max_train_samples)
    if args.shuffle_buffer_size:
        # The same seed on every process: the shard order must agree for the split below to be a partition.
        train = train.shuffle(seed=args.seed, buffer_size=args.shuffle_buffer_size)
    # Each process reads its own part of the stream (whole shards when they divide evenly, else every n-th example);
    # accelerate's alternative, one process reading and dispatching batches, would need equal-shaped batches.
    return split_dataset_by_node(train, rank=accelerator.process_index, world_size=accelerator.num_processes)


class StreamedBatches:
    """Collated batches of this process's part of a streamed training set, resumable where a checkpoint left it.

    Takes the place of the `DataLoader` (and of `accelerator.prepare` for it, which would re-shard or dispatch the
    stream): rows are read in the main process, `batch_size` at a time (a short last batch is dropped), collated and
    moved to `device`. An epoch is one pass over the stream, reshuffled per epoch by `set_epoch`.

    `state_dict()` is the position after the last batch handed out: the epoch, the rows consumed in it and datasets'
    own `IterableDataset.state_dict()`. `load_state_dict` resumes there; datasets restores a position without the
    content of a shuffle buffer, so with `shuffled=True` the consumed rows of the epoch are read again and dropped
    instead (undecoded rows, no collation), which gives the batches of an uninterrupted run.
    """

    def __init__(self, dataset: datasets.IterableDataset, *, collate_fn, batch_size: int, device, shuffled: bool):
        self.dataset, self.collate_fn, self.batch_size, self.device = dataset, collate_fn, batch_size, device
        self.shuffled = shuffled
        self.epoch, self._consumed, self._dataset_state = 0, 0, dataset.state_dict()
        self._replay = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._consumed, self._replay = epoch, 0, 0
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "examples": self._consumed, "dataset": self._dataset_state}

    def load_state_dict(self, state: dict) -> None:
        self.set_epoch(state["epoch"])
        self._consumed = state["examples"]
        if self.shuffled:
            self._replay = state["examples"]
        else:
            self.dataset.load_state_dict(state["dataset"])

    def __iter__(self):
        from accelerate.utils import send_to_device

        rows, yielded = [], False
        for row in self.dataset:
            if self._replay:
                self._replay -= 1
                continue
            rows.append(row)
            if len(rows) < self.batch_size:
                continue
            self._consumed += len(rows)
            self._dataset_state = self.dataset.state_dict()
            batch = self.collate_fn(rows)
            rows, yielded = [], True
            yield send_to_device(batch, self.device)
        if not yielded and not self._consumed:
            raise ValueError(
                f"The streamed training set gave this process fewer than one batch ({self.batch_size} rows) in a "
                "whole pass; use a smaller --per_device_train_batch_size or more data."
            )


def build_train_batches(args, accelerator, train, collate_fn):
    """What the scripts iterate: a `DataLoader` over a map-style training set (for `accelerator.prepare`), or
    `StreamedBatches` over a streamed one (which `prepare` passes through unchanged)."""
    from torch.utils.data import DataLoader

    if isinstance(train, datasets.IterableDataset):
        return StreamedBatches(
            train, collate_fn=collate_fn, batch_size=args.per_device_train_batch_size, device=accelerator.device,
            shuffled=bool(args.shuffle_buffer_size),
        )  # fmt: skip
    return DataLoader(
        train,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate_fn,
        num_workers=args.dataloader_num_workers,
    )


def stream_checkpoint_state(accelerator, train_batches) -> dict:
    """The `extra_state` entry that lets a streamed run resume: every process's stream position (all processes must
    call it; it gathers). Empty for a map-style run, whose position follows from the step."""
    if not isinstance(train_batches, StreamedBatches):
        return {}
    from accelerate.utils import gather_object

    return {"stream": gather_object([train_batches.state_dict()])}


def resume_stream(accelerator, train_batches: StreamedBatches, state: dict, checkpoint) -> int:
    """Put `train_batches` where `stream_checkpoint_state` left it; returns the epoch to continue."""
    positions = state.get("stream")
    if not positions or len(positions) != accelerator.num_processes:
        raise ValueError(
            f"Checkpoint {checkpoint} holds no stream position for {accelerator.num_processes} process(es) "
            f"(found {len(positions) if positions else 'none'}): resume a --streaming run with the number of "
            "processes it was started with, from a checkpoint it wrote."
        )
    train_batches.load_state_dict(positions[accelerator.process_index])
    return train_batches.epoch


def evaluate_image_text(
    args, accelerator, model, processor, data: ImageTextData, outcomes_prefix: str = ""
) -> dict[str, float]:
    """Retrieval on the held-out captions and, on the embedded world, zero-shot classification.

    The per-item outcomes (retrieval ranks, zero-shot hits) go to `<output_dir>/eval_outcomes.json`, so that the
    bench can compare two runs on the same items with a paired bootstrap; `outcomes_prefix` keeps several
    evaluations of one run apart (`zero_shot/<prefix>/top1_correct`).
    """
    tag = f"/{outcomes_prefix}" if outcomes_prefix else ""
    model.eval()
    metrics: dict[str, float] = {}
    outcomes: dict[str, list] = {}
    unwrapped = accelerator.unwrap_model(model)
    if data.evaluation is not None:
        result = evaluate_retrieval(
            unwrapped, processor, data.evaluation, image_column=args.image_column,
            caption_column=args.eval_caption_column or args.caption_column, accelerator=accelerator,
            return_ranks=True,
        )  # fmt: skip
        metrics.update({f"retrieval/{k}": v for k, v in result.items() if isinstance(v, (int, float))})
        outcomes[f"retrieval{tag}/image_to_text_ranks"] = result["image_to_text_ranks"]
        outcomes[f"retrieval{tag}/text_to_image_ranks"] = result["text_to_image_ranks"]
    if data.zero_shot is not None:
        result = evaluate_zero_shot(
            unwrapped, processor, data.zero_shot["dataset"], class_names=data.zero_shot["class_names"],
            templates=data.zero_shot["templates"], accelerator=accelerator, return_per_sample=True,
        )  # fmt: skip
        metrics.update({f"zero_shot/{k}": v for k, v in result.items() if isinstance(v, (int, float))})
        outcomes[f"zero_shot{tag}/top1_correct"] = result["top1_correct"]
    if outcomes and accelerator.is_main_process:
        save_outcomes(args.output_dir, outcomes)
    model.train()
    return metrics


def evaluate_world_image_text(
    model_dir, *, split: str, seed: int, eval_size: int, classes_per_split: int, output_dir=None
) -> dict[str, float]:
    """Zero-shot on the world's 64 classes and retrieval against the long descriptions of a saved dual encoder, on
    one held-out split of the embedded world (the evaluation the image-text scripts run at their end). With
    `output_dir`, the per-item outcomes are saved there as `evaluate_image_text` saves them."""
    import torch
    from transformers import AutoModel, AutoProcessor

    from ..data.synthetic import CLASSIFICATION_TEMPLATES, WorldConfig, make_classification, make_scenes
    from ..data.synthetic.vocab import SHAPES

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    world = WorldConfig(seed=seed, image_size=model.config.vision_config.image_size)
    retrieval = evaluate_retrieval(
        model,
        processor,
        make_scenes(eval_size, split=split, config=world),
        caption_column="long_caption",
        return_ranks=True,
    )
    classification = make_classification(classes_per_split, split=split, config=world)
    zero_shot = evaluate_zero_shot(
        model, processor, classification,
        templates=CLASSIFICATION_TEMPLATES, return_per_sample=True,
    )  # fmt: skip
    metrics = {f"retrieval/{k}": v for k, v in retrieval.items() if isinstance(v, (int, float))}
    metrics.update({f"zero_shot/{k}": v for k, v in zero_shot.items() if isinstance(v, (int, float))})
    # The world's classes are colour x shape (label = 8 * colour + shape): which of the two the model gets right.
    labels = np.asarray(classification["label"])
    predictions = np.asarray(zero_shot["top1_prediction"])
    num_shapes = len(SHAPES)
    metrics["zero_shot/colour_accuracy"] = float(np.mean(predictions // num_shapes == labels // num_shapes))
    metrics["zero_shot/shape_accuracy"] = float(np.mean(predictions % num_shapes == labels % num_shapes))
    if output_dir is not None:
        save_outcomes(
            output_dir,
            {
                "retrieval/image_to_text_ranks": retrieval["image_to_text_ranks"],
                "retrieval/text_to_image_ranks": retrieval["text_to_image_ranks"],
                "zero_shot/top1_correct": zero_shot["top1_correct"],
            },
        )
    return metrics


__all__ = [
    "ImageTextData",
    "StreamedBatches",
    "add_image_text_data_arguments",
    "build_train_batches",
    "check_image_text_data_arguments",
    "evaluate_image_text",
    "evaluate_world_image_text",
    "load_image_text_data",
    "resume_stream",
    "stream_checkpoint_state",
]
