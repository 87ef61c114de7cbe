"""Reading MMVP-VLM's `Questions.csv` and image folders (the official layout, rebuilt in miniature)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from eval_testing_utils import make_benchmark, write_questions

from hf_clipzoo.eval.mmvp import MMVP_VLM_CATEGORIES, load_mmvp_vlm, read_mmvp_vlm_questions

# Image folder names of the Hub dataset differ from the category names; the reader must not care.
TYPES = [
    "Orientation",
    "Presence",
    "State",
    "Quantity",
    "Spatial",
    "Color",
    "Structural Character",
    "Text",
    "Camera_Perspective",
]


def test_reads_pairs_in_file_order(tmp_path):
    rows = [
        (1, "Color", "The flower is red, not blue"),  # a comma inside a quoted field
        (2, "Color", "The flower is blue"),
        (3, "Text", "The sign says stop"),
        (4, "Text", "The sign says go"),
    ]
    pairs = read_mmvp_vlm_questions(write_questions(tmp_path / "Questions.csv", rows))
    assert pairs == [
        {
            "qid_a": 1,
            "qid_b": 2,
            "type": "Color",
            "category": "Color",  # not the full benchmark: the type is the category
            "statement_a": "The flower is red, not blue",
            "statement_b": "The flower is blue",
        },
        {
            "qid_a": 3,
            "qid_b": 4,
            "type": "Text",
            "category": "Text",
            "statement_a": "The sign says stop",
            "statement_b": "The sign says go",
        },
    ]


def test_full_benchmark_uses_the_official_positional_categories(tmp_path, caplog):
    rows = [(q, TYPES[(q - 1) // 30], f"statement {q}") for q in range(1, 271)]
    pairs = read_mmvp_vlm_questions(write_questions(tmp_path / "Questions.csv", rows))
    assert len(pairs) == 135
    assert [p["category"] for p in pairs] == [MMVP_VLM_CATEGORIES[i // 15] for i in range(135)]
    assert pairs[15]["type"] == "Presence" and pairs[15]["category"] == "Presence of Specific Features"
    assert not caplog.records
    # A block of 15 pairs spanning two folders is suspicious: the positional rule is kept, with a warning.
    rows[0:2] = [(1, "Texts", "statement 1"), (2, "Texts", "statement 2")]
    with caplog.at_level(logging.WARNING):
        pairs = read_mmvp_vlm_questions(write_questions(tmp_path / "Questions.csv", rows))
    assert pairs[0]["category"] == "Orientation and Direction"
    assert "span several types" in caplog.text


def test_columns_by_name_or_position(tmp_path):
    rows = [("The dog faces left", 1, "Orientation"), ("The dog faces right", 2, "Orientation")]
    path = write_questions(tmp_path / "q.csv", rows, header=("Statement", "Question ID", "Type"))
    assert read_mmvp_vlm_questions(path)[0]["statement_a"] == "The dog faces left"
    rows = [(1, "Orientation", "left"), (2, "Orientation", "right")]
    path = write_questions(tmp_path / "q2.csv", rows, header=("a", "b", "c"))  # unknown names: official positions
    assert read_mmvp_vlm_questions(path)[0]["statement_b"] == "right"


@pytest.mark.parametrize(
    "rows, match",
    [
        ([(1, "Color", "red")], "even number"),
        ([], "even number"),
        ([(2, "Color", "red"), (3, "Color", "blue")], r"\(odd, odd \+ 1\)"),
        ([(1, "Color", "red"), (3, "Color", "blue")], r"\(odd, odd \+ 1\)"),
        ([(1, "Color", "red"), (2, "Text", "blue")], "mixes types"),
        ([("one", "Color", "red"), (2, "Color", "blue")], "not an integer"),
        ([(1, "Color", " "), (2, "Color", "blue")], "empty statement"),
        ([(1, "Color"), (2, "Color")], "expected the columns"),
    ],
)
def test_bad_questions_file(tmp_path, rows, match):
    with pytest.raises(ValueError, match=match):
        read_mmvp_vlm_questions(write_questions(tmp_path / "Questions.csv", rows))


@pytest.mark.parametrize("folder", ["MLLM_VLM Images", "MLLM_VLM_Images"])
def test_load_mmvp_vlm(tmp_path, folder):
    dataset = load_mmvp_vlm(make_benchmark(tmp_path, folder))
    assert len(dataset) == 2
    assert set(dataset.column_names) == {
        "image_a",
        "image_b",
        "statement_a",
        "statement_b",
        "category",
        "type",
        "qid_a",
        "qid_b",
    }
    row = dataset[1]
    assert (row["statement_a"], row["statement_b"], row["category"]) == ("stop", "go", "Text")
    red = [np.asarray(row[key])[0, 0, 0] for key in ("image_a", "image_b")]
    assert red == pytest.approx([120, 160], abs=3)  # image_a is 3.jpg, image_b is 4.jpg (JPEG rounding)


def test_load_mmvp_vlm_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="Questions.csv"):
        load_mmvp_vlm(tmp_path)
    root = make_benchmark(tmp_path)
    (root / "MLLM_VLM Images" / "Text" / "4.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="4.jpg"):
        load_mmvp_vlm(root)
    with pytest.raises(FileNotFoundError, match="image folder"):
        load_mmvp_vlm(root, image_folder="images")
