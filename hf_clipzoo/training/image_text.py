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
    return data


@dataclass
class ImageTextData:
    """A training split, an optional retrieval split, and (embedded world only) a zero-shot classification task."""

    train: datasets.Dataset
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
        train = load_image_text_dataset(
            args.dataset, split=args.train_split, name=args.dataset_config_name,
            image_column=args.image_column, caption_column=args.caption_column,
        )  # fmt: skip
        evaluation = None
        if args.eval_split:
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
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if evaluation is not None and args.max_eval_samples:
        evaluation = evaluation.select(range(min(args.max_eval_samples, len(evaluation))))
    return ImageTextData(train=train, evaluation=evaluation, zero_shot=zero_shot)


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
    "add_image_text_data_arguments",
    "evaluate_image_text",
    "evaluate_world_image_text",
    "load_image_text_data",
]
