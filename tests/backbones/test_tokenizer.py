"""The offline CLIP tokenizer against the published ids and a naive re-implementation of OpenAI's BPE."""

import gzip
import html

import ftfy
import pytest
import regex

from hf_clipzoo.backbones.tokenizer import BPE_PATH, ZooCLIPTokenizer, bytes_to_unicode, load_clip_tokenizer
from tests.testing_utils import checked_without_package

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

    @staticmethod
    def clean(text: str) -> str:
        """OpenAI's `whitespace_clean(basic_clean(text)).lower()`, restated."""
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        return regex.sub(r"\s+", " ", text).strip().lower()

    def encode(self, text: str) -> list[int]:
        text = self.clean(text)
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


# Where OpenAI's cleaning changes the ids: HTML entities (also double-escaped), mojibake, ligatures, curly quotes,
# full-width letters, decomposed accents written as entities, unusual whitespace.
CLEANING_CASES = [
    "fish &amp; chips",
    "&lt;b&gt;bold&lt;/b&gt;",
    "tom &amp;amp; jerry &amp;lt;3",
    "a cafÃ© in Paris",
    "ﬁsh and ﬂowers",
    "“quoted” ‘words’",
    "ＣＬＩＰ ｍｏｄｅｌ",
    "cafe&#769; au lait",
    "a\u3000wide\u00a0space\u2003here  ",
]


@pytest.mark.parametrize("text", CLEANING_CASES)
def test_official_cleaning_matches_naive_openai(tokenizer, text):
    assert tokenizer(text)["input_ids"] == NaiveCLIPBPE().encode(text)
    assert tokenizer.tokenize(text) == tokenizer.convert_ids_to_tokens(NaiveCLIPBPE().encode(text)[1:-1])


def test_cleaning_applies_to_batches_and_pairs(tokenizer):
    naive = NaiveCLIPBPE()
    batch = tokenizer(CLEANING_CASES[:3], padding=False)["input_ids"]
    assert batch == [naive.encode(text) for text in CLEANING_CASES[:3]]
    pair = tokenizer("fish &amp; chips", "a cafÃ©")["input_ids"]
    assert pair == load_clip_tokenizer(text_cleaning="none")("fish & chips", "a café")["input_ids"]


def test_text_cleaning_none_is_transformers_clip_tokenizer(tokenizer):
    from transformers import CLIPTokenizer

    from hf_clipzoo.backbones.tokenizer import clip_vocab_and_merges

    vocab, merges = clip_vocab_and_merges()
    plain = CLIPTokenizer(vocab=dict(vocab), merges=list(merges))
    raw = load_clip_tokenizer(text_cleaning="none")
    for text in CLEANING_CASES + ["A Photo Of   a CAT"]:
        assert raw(text)["input_ids"] == plain(text)["input_ids"]
    # The gap the official default closes: without cleaning, entities and ligatures tokenize as other words.
    assert raw("fish &amp; chips")["input_ids"] != tokenizer("fish &amp; chips")["input_ids"]
    assert raw("ﬁsh")["input_ids"] != tokenizer("fish")["input_ids"] == tokenizer("ﬁsh")["input_ids"]


def test_text_cleaning_is_validated_and_saved(tmp_path):
    from transformers import AutoTokenizer, CLIPTokenizer

    with pytest.raises(ValueError, match="text_cleaning must be one of"):
        load_clip_tokenizer(text_cleaning="ftfy")
    for mode in ("official", "none"):
        load_clip_tokenizer(text_cleaning=mode).save_pretrained(tmp_path / mode)
        reloaded = AutoTokenizer.from_pretrained(tmp_path / mode)
        if mode == "official":
            assert type(reloaded) is ZooCLIPTokenizer and reloaded.text_cleaning == mode
        else:  # transformers' own class: the folder loads anywhere transformers' CLIPTokenizer does
            assert type(reloaded) is CLIPTokenizer
        assert (
            reloaded("fish &amp; chips")["input_ids"]
            == load_clip_tokenizer(text_cleaning=mode)("fish &amp; chips")["input_ids"]
        )


def test_missing_ftfy_is_a_clear_error(tokenizer, monkeypatch):
    import hf_clipzoo.backbones.tokenizer as module

    monkeypatch.setattr(module, "ftfy", None)
    with pytest.raises(ImportError, match="pip install ftfy.*text_cleaning='none'"):
        tokenizer("a cat")
    assert load_clip_tokenizer(text_cleaning="none")("a cat")["input_ids"] == [49406, 320, 2368, 49407]


def _remote_code_tokenizer_case(folder):
    tokenizer = load_clip_tokenizer()
    tokenizer.save_pretrained(folder / "tok")
    expected = [tokenizer(text)["input_ids"] for text in CLEANING_CASES]
    (folder / "expected.txt").write_text(repr(expected))
    return f"""
        import ast, transformers
        tok = transformers.AutoTokenizer.from_pretrained("tok", trust_remote_code=True)
        assert type(tok).__module__.startswith("transformers_modules"), type(tok).__module__
        got = [tok(text)["input_ids"] for text in {CLEANING_CASES!r}]
        assert got == ast.literal_eval(open("expected.txt").read()), got
        tok.save_pretrained("resaved")
        again = transformers.AutoTokenizer.from_pretrained("resaved", trust_remote_code=True)
        assert again("fish &amp; chips")["input_ids"] == got[0]
        """


@checked_without_package(_remote_code_tokenizer_case)
def test_remote_code_tokenizer_in_fresh_interpreter(without_package):
    assert without_package.error is None, without_package.error
