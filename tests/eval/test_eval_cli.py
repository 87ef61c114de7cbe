"""`run_eval`: a saved model + a dataset on disk -> metrics, the same as calling the evaluators directly."""

from __future__ import annotations

import json
import math

import datasets
import pytest
from eval_testing_utils import make_benchmark, random_images

from hf_clipzoo.eval import evaluate_mmvp, evaluate_retrieval, evaluate_zero_shot, load_mmvp_vlm
from hf_clipzoo.eval.cli import load_eval_dataset, main, run_eval

CLASS_NAMES = ["cat", "dog", "car", "boat", "tree", "never seen"]


def assert_same(got, expected):
    """Equal up to float rounding (the reloaded model computes the same numbers), NaN equal to NaN."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, clip_model, processor):
    path = tmp_path_factory.mktemp("model")
    clip_model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASS_NAMES)})
    test = datasets.Dataset.from_dict(
        {"image": random_images(10, seed=5), "label": [i % 5 for i in range(10)]}, features=features
    )
    splits = datasets.DatasetDict({"train": test.select(range(2)), "test": test})
    path = tmp_path_factory.mktemp("data") / "classification"
    splits.save_to_disk(str(path))
    return path, test


def test_zero_shot_from_disk_equals_direct_call(saved_model, classification, clip_model, processor, tmp_path):
    path, test = classification
    output_file = tmp_path / "out" / "zero_shot.json"
    results = run_eval(saved_model, path, "zero-shot", output_file=output_file, batch_size=4, device="cpu")
    assert results["task"] == "zero-shot" and results["num_samples"] == 10  # the "test" split by default
    direct = evaluate_zero_shot(clip_model, processor, test)
    assert_same(results["metrics"], direct)
    # Strict JSON: the NaN of the class without samples is written as null.
    written = json.loads(output_file.read_text())
    assert written["metrics"]["per_class_accuracy"][5] is None
    assert math.isnan(results["metrics"]["per_class_accuracy"][5])
    assert written["metrics"]["top1_accuracy"] == pytest.approx(direct["top1_accuracy"])


def test_retrieval_and_options(saved_model, clip_model, processor):
    data = datasets.Dataset.from_dict(
        {"picture": random_images(4, seed=6), "text": [["a cat"], ["a dog", "dogs"], ["a car"], ["a tree"]]}
    ).cast_column("picture", datasets.Image())
    results = run_eval(
        saved_model,
        datasets.DatasetDict({"validation": data}),
        "retrieval",
        image_column="picture",
        caption_column="text",
        max_samples=3,
    )
    direct = evaluate_retrieval(
        clip_model, processor, data.select(range(3)), image_column="picture", caption_column="text"
    )
    assert_same(results["metrics"], direct)
    assert results["num_samples"] == 3 and results["dataset"] == "DatasetDict"


def test_mmvp_folder(saved_model, clip_model, processor, tmp_path):
    root = make_benchmark(tmp_path / "MMVP_VLM")
    results = run_eval(saved_model, root, "mmvp_vlm")
    assert_same(results["metrics"], evaluate_mmvp(clip_model, processor, load_mmvp_vlm(root)))
    assert list(results["metrics"]["per_category_accuracy"]) == ["Color", "Text"]


def test_command_line(saved_model, classification, capsys):
    path, _ = classification
    results = main(
        [str(saved_model), str(path), "zero-shot", "--split", "train", "--templates", "a {} photo", "itap of {}"]
    )
    assert results["split"] == "train" and results["num_samples"] == 2
    assert json.loads(capsys.readouterr().out)["top1_accuracy"] == results["metrics"]["top1_accuracy"]


def test_bad_input(saved_model, classification):
    path, _ = classification
    with pytest.raises(ValueError, match="Unknown task 'segmentation'"):
        run_eval(saved_model, path, "segmentation")
    with pytest.raises(ValueError, match=r"Split 'validation' not found; the dataset has splits \['train', 'test'\]"):
        run_eval(saved_model, path, "zero-shot", split="validation")
    with pytest.raises(ValueError, match=r"no column\(s\) \['caption'\]"):
        run_eval(saved_model, path, "retrieval")
    with pytest.raises(ValueError, match="max_samples"):
        run_eval(saved_model, path, "zero-shot", max_samples=0)
    with pytest.raises(ValueError, match="Pass `split=`"):
        load_eval_dataset(
            datasets.DatasetDict(
                {"a": datasets.Dataset.from_dict({"x": [1]}), "b": datasets.Dataset.from_dict({"x": [1]})}
            )
        )
