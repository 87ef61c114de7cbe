"""Sentence splitting, K-subcaption sampling and the DreamLIP collator (`hf_clipzoo.data.subcaptions`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipzoo.data.subcaptions import (
    DREAMLIP_CSV_COLUMNS,
    SubcaptionCollator,
    SubcaptionSampler,
    rename_dreamlip_csv_columns,
    sample_subcaptions,
    sentence_pool,
    split_sentences,
)

LONG = "A red circle on the left. A blue square below it.\nThe square is large</s>Three shapes in all."


def test_split_sentences_follows_the_released_separators_and_drops_punctuation():
    assert split_sentences(LONG) == [
        "A red circle on the left",
        "A blue square below it",
        "The square is large",
        "Three shapes in all",
    ]
    assert split_sentences(" ... !? \n</s>. ") == []
    assert split_sentences("Ünïcode wörds. 42.") == ["Ünïcode wörds", "42"]
    assert sentence_pool(["One. Two", None, "Three"]) == ["One", "Two", "Three"]
    with pytest.raises(ValueError, match="expected a string"):
        split_sentences(None)


def test_sampling_is_deterministic_under_a_seed_and_never_empty():
    sentences = [f"sentence number {i}" for i in range(10)]
    first = sample_subcaptions(sentences, 6, np.random.default_rng(7))
    assert first == sample_subcaptions(sentences, 6, np.random.default_rng(7))
    assert first != sample_subcaptions(sentences, 6, np.random.default_rng(8))
    assert len(set(first)) == 6  # enough sentences: drawn without replacement
    assert all(s.strip() for s in first)
    # The last sentence can be drawn (the released code's range(len - 1) never draws it).
    draws = {s for seed in range(50) for s in sample_subcaptions(sentences, 3, np.random.default_rng(seed))}
    assert draws == set(sentences)


def test_fewer_sentences_than_k():
    sentences = ["only one", "and two"]
    auto = sample_subcaptions(sentences, 5, np.random.default_rng(0))  # documented: falls back to replacement
    assert len(auto) == 5 and set(auto) <= set(sentences)
    assert len(sample_subcaptions(sentences, 5, np.random.default_rng(0), replacement="always")) == 5
    with pytest.raises(ValueError, match="without replacement from 2 window"):
        sample_subcaptions(sentences, 5, np.random.default_rng(0), replacement="never")


def test_merging_consecutive_sentences():
    sentences = ["s0", "s1", "s2", "s3"]
    merged = sample_subcaptions(sentences, 3, np.random.default_rng(1), merge=2)
    windows = {"s0. s1", "s1. s2", "s2. s3"}
    assert set(merged) == windows  # 3 windows, K = 3, without replacement: each once
    assert sample_subcaptions(["a", "b"], 2, np.random.default_rng(0), merge=5) == ["a. b", "a. b"]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_subcaptions": 0}, "K"), ({"merge": 0}, "merge"), ({"replacement": "sometimes"}, "replacement")],
)
def test_bad_sampling_arguments(kwargs, message):
    args = {"num_subcaptions": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        sample_subcaptions(["a b"], args.pop("num_subcaptions"), np.random.default_rng(0), **args)
    with pytest.raises(ValueError, match=message):
        SubcaptionSampler(**{"num_subcaptions": 2, **kwargs})
    with pytest.raises(ValueError, match="only punctuation"):
        sample_subcaptions(["...", " ! "], 2, np.random.default_rng(0))


def _row(caption="a red circle", long=LONG, pseudo=("a circle", "red round shape")):
    return {"image": Image.new("RGB", (16, 16), "red"), "caption": caption, "long_caption": long,
            "pseudo_captions": list(pseudo)}  # fmt: skip


def test_sampler_layout_seed_and_epoch():
    sampler = SubcaptionSampler(num_subcaptions=4, seed=3)
    texts = sampler(_row())
    assert len(texts) == sampler.num_texts == 5 and texts[0] == "a red circle"
    assert texts == SubcaptionSampler(num_subcaptions=4, seed=3)(_row())  # a fresh sampler draws the same
    assert set(texts[1:]) <= set(sentence_pool([LONG, "a circle", "red round shape"]))
    different = [SubcaptionSampler(num_subcaptions=4, seed=3, epoch=e)(_row()) for e in range(1, 6)]
    assert any(d != texts for d in different)  # a new epoch draws new subcaptions
    no_raw = SubcaptionSampler(raw_caption_column=None, num_subcaptions=2)
    assert no_raw.num_texts == 2 and len(no_raw(_row())) == 2


def test_sampler_bad_rows():
    sampler = SubcaptionSampler(num_subcaptions=2)
    with pytest.raises(ValueError, match="no captions"):
        sampler(_row(long="", pseudo=()))
    with pytest.raises(ValueError, match="no captions"):
        sampler(_row(long="... !!!", pseudo=(". .",)))
    with pytest.raises(ValueError, match="raw caption"):
        sampler(_row(caption=" ?! "))
    with pytest.raises(ValueError, match="no column"):
        sampler({"caption": "x"})


class _FakeProcessor:
    """Stands in for the DreamLIP processor: records the caption lists and returns shaped tensors."""

    def __call__(self, images, text, **kwargs):
        self.text = text
        return {"pixel_values": torch.zeros(len(images), 3, 4, 4),
                "input_ids": torch.zeros(len(text), len(text[0]), 5, dtype=torch.long)}  # fmt: skip


def test_collator_skips_and_counts_bad_rows():
    processor = _FakeProcessor()
    collator = SubcaptionCollator(processor, SubcaptionSampler(num_subcaptions=3))
    rows = [_row(), _row(long="", pseudo=()), {**_row(), "image": b"not an image"}, _row(caption="a blue square")]
    batch = collator(rows)
    assert batch["num_skipped"] == 2
    assert batch["input_ids"].shape == (2, 4, 5)
    assert [texts[0] for texts in processor.text] == ["a red circle", "a blue square"]
    with pytest.raises(ValueError, match="Every sample"):
        collator([_row(long="", pseudo=())])


def test_rename_dreamlip_csv_columns(tmp_path):
    import datasets

    path = tmp_path / "cc3m_long.csv"
    header = "filepath,title,ib_s,ib_l,sv_s,sv_l,ll_s,ll_l"
    path.write_text(header + "\nimg/0.jpg,raw cap,short one.,long one. two.,s,l,s,l\n")
    data = rename_dreamlip_csv_columns(datasets.load_dataset("csv", data_files=str(path), split="train"))
    assert tuple(data.column_names) == DREAMLIP_CSV_COLUMNS
    assert data[0]["long_instructblip"] == "long one. two."
    with pytest.raises(ValueError, match="8 columns"):
        rename_dreamlip_csv_columns(data.remove_columns(["long_llava"]))
