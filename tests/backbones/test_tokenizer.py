"""The offline CLIP tokenizer against the published ids and a naive re-implementation of OpenAI's BPE."""

import gzip

import pytest
import regex

from hf_clipzoo.backbones.tokenizer import BPE_PATH, bytes_to_unicode, load_clip_tokenizer

# OpenAI CLIP's pre-tokenisation pattern (clip/simple_tokenizer.py).
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


class NaiveCLIPBPE:
    """OpenAI's algorithm written out plainly: lower-case, split, byte-map, then merge the best-ranked pair until none."""

    def __init__(self):
        lines = gzip.open(BPE_PATH).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
        merges = [tuple(line.split()) for line in lines]
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.byte_map = bytes_to_unicode()
        symbols = list(self.byte_map.values())
        vocab = (
            symbols
            + [s + "</w>" for s in symbols]
            + ["".join(m) for m in merges]
            + ["<|startoftext|>", "<|endoftext|>"]
        )
        self.ids = {token: i for i, token in enumerate(vocab)}

    def bpe(self, token: str) -> list[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text: str) -> list[int]:
        text = " ".join(text.split()).lower()
        ids = [self.ids["<|startoftext|>"]]
        for piece in PATTERN.findall(text):
            mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.ids[t] for t in self.bpe(mapped))
        return ids + [self.ids["<|endoftext|>"]]


@pytest.fixture(scope="module")
def tokenizer():
    return load_clip_tokenizer()


def test_published_ids(tokenizer):
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer) == 49408
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (49406, 49407, 49407)


def test_lower_cases_and_collapses_whitespace(tokenizer):
    # CLIP's `whitespace_clean` + `lower()`: case and runs of spaces / tabs / newlines do not change the ids.
    reference = tokenizer("a photo of a cat")["input_ids"]
    assert tokenizer("  A PHOTO\tof   a\n Cat ")["input_ids"] == reference
    assert tokenizer("a photo of a cats")["input_ids"] != reference


@pytest.mark.parametrize(
    "text",
    [
        "A Photo Of   a CAT",
        "two red triangles, left of a big blue circle.",
        "it's 2024: don't panic!!! (really)",
        "naïve café — déjà vu",
        "x1y2z3 hyper-parameter e-mail 3.14159",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
    ],
)
def test_matches_naive_openai_bpe(tokenizer, text):
    assert tokenizer(text)["input_ids"] == NaiveCLIPBPE().encode(text)


def test_truncation_keeps_eos_and_padding(tokenizer):
    short = load_clip_tokenizer(model_max_length=8)
    ids = short("one two three four five six seven eight nine ten", truncation=True)["input_ids"]
    assert len(ids) == 8 and ids[0] == 49406 and ids[-1] == 49407
    batch = tokenizer(["a cat", "a photo of a dog"], padding=True)
    assert batch["input_ids"][0][-1] == 49407 and batch["attention_mask"][0][-1] == 0
    with pytest.raises(ValueError, match="model_max_length must be > 2"):
        load_clip_tokenizer(model_max_length=2)


def test_save_and_reload(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert reloaded.model_max_length == 77
