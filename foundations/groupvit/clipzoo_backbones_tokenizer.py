"""OpenAI CLIP's BPE tokenizer, built offline from the vocabulary file that ships with the package.

`bpe_simple_vocab_16e6.txt.gz` is the merges file of OpenAI CLIP (MIT licence, see `LICENSE-clip-bpe.txt`), taken
unchanged from the open-clip-torch wheel. The 49,408-entry vocabulary is derived from it exactly as OpenAI's
`SimpleTokenizer` does: the 256 byte symbols, the same with the end-of-word marker `</w>`, one entry per merge in
order, then `<|startoftext|>` (49406) and `<|endoftext|>` (49407). The result is transformers' `CLIPTokenizer` with
the special tokens of `openai/clip-vit-base-patch16` (padding with `<|endoftext|>`), so token ids match real CLIP
checkpoints and the tokenizer saves / loads like any transformers tokenizer.

Text cleaning (`ZooCLIPTokenizer(text_cleaning=...)`): OpenAI CLIP and open_clip clean every caption before BPE with
`whitespace_clean(basic_clean(text)).lower()`, i.e. `ftfy.fix_text` (mojibake such as `cafÃ©` -> `café`, ligatures
such as `ﬁ` -> `fi`, curly quotes, width), `html.unescape` twice (`&amp;lt;` -> `<`), strip, runs of whitespace to one
space, lower case. transformers' `CLIPTokenizer` only does NFC, whitespace and lower case, so `&amp;`, `cafÃ©` or `ﬁsh`
get other ids than the ones the CLIP weights were trained on. `"official"` (the default) is OpenAI's cleaning, step for
step, in Python (the backend normaliser is then off so nothing runs twice); `"none"` is transformers' `CLIPTokenizer`
normalisation, for captions that must be tokenized as transformers does.
"""

from __future__ import annotations

import functools
import gzip
import html
import re
from pathlib import Path

from tokenizers import Regex, normalizers
from transformers import CLIPTokenizer

try:  # remote code: transformers' import check skips `try` blocks, the error comes when the cleaning is used
    import ftfy
except ImportError:
    ftfy = None

BPE_PATH = Path(__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
# OpenAI's SimpleTokenizer keeps the first 49152 - 256 - 2 merges of the file (line 0 is a version header).
NUM_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 49408


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, characters)))


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary (token → id) and the ordered merges of OpenAI CLIP's BPE."""
    if not BPE_PATH.is_file():
        raise FileNotFoundError(f"{BPE_PATH} is missing: the package was installed without its data files.")
    lines = gzip.open(BPE_PATH).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{BPE_PATH} gives {len(vocab)} tokens, expected {VOCAB_SIZE}; the file is not CLIP's.")
    return vocab, merges


TEXT_CLEANINGS = ("official", "none")


def official_clean(text: str) -> str:
    """OpenAI CLIP's `whitespace_clean(basic_clean(text)).lower()` (`clip/simple_tokenizer.py`), in that order."""
    if ftfy is None:
        raise ImportError(
            "text_cleaning='official' needs ftfy (`pip install ftfy`), which OpenAI CLIP uses to fix mojibake and "
            "ligatures before tokenizing; or pass text_cleaning='none' for transformers' CLIPTokenizer behaviour."
        )
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def _transformers_clip_normalizer():
    """What transformers' `CLIPTokenizer` normalises with (NFC, whitespace runs to one space, lower case)."""
    return normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])


class ZooCLIPTokenizer(CLIPTokenizer):
    """transformers' `CLIPTokenizer` with OpenAI CLIP's text cleaning in front of the BPE.

    Args:
        text_cleaning: `"official"` (default): every text goes through `official_clean` (ftfy, `html.unescape`
            twice, whitespace, lower case) as in OpenAI CLIP and open_clip, so ids match theirs. `"none"`:
            transformers' `CLIPTokenizer` normalisation only (NFC, whitespace, lower case). Saved in
            `tokenizer_config.json`.
        *args, **kwargs: those of `CLIPTokenizer` (`vocab`, `merges`, `model_max_length`, ...).
    """

    def __init__(self, *args, text_cleaning: str = "official", **kwargs):
        if text_cleaning not in TEXT_CLEANINGS:
            raise ValueError(f"text_cleaning must be one of {TEXT_CLEANINGS}, got {text_cleaning!r}.")
        super().__init__(*args, text_cleaning=text_cleaning, **kwargs)
        self.text_cleaning = text_cleaning
        # Set here whatever tokenizer.json says, so a folder saved in one mode loads in the mode its config names.
        self._tokenizer.normalizer = None if text_cleaning == "official" else _transformers_clip_normalizer()

    def _clean(self, text):
        if isinstance(text, str):
            return official_clean(text)
        if isinstance(text, (list, tuple)):  # batches, pre-tokenized words, (text, pair) tuples
            return type(text)(self._clean(item) for item in text)
        return text  # not text: transformers' own input check reports it

    def _encode_plus(self, text, text_pair=None, *args, **kwargs):
        if self.text_cleaning == "official":
            text, text_pair = self._clean(text), self._clean(text_pair)
        return super()._encode_plus(text, text_pair, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        from .clipzoo_hub_export import bundle_modules, class_reference, update_json

        saved = super().save_pretrained(save_directory, *args, **kwargs)
        # Loadable without hf_clipzoo (`trust_remote_code=True`): the class's code and an `auto_map` entry.
        flat = bundle_modules([type(self).__module__], save_directory)
        update_json(
            Path(save_directory) / "tokenizer_config.json",
            {"AutoTokenizer": [None, class_reference(type(self), flat)]},
        )
        return saved


def load_clip_tokenizer(model_max_length: int = 77, text_cleaning: str = "official") -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer (49,408 tokens) truncating / padding to `model_max_length` tokens, cleaning text as
    `text_cleaning` says (`"official"`: as OpenAI CLIP; `"none"`: as transformers' `CLIPTokenizer`)."""
    if model_max_length <= 2:
        raise ValueError(f"model_max_length must be > 2 (start and end tokens), got {model_max_length}.")
    vocab, merges = clip_vocab_and_merges()
    if text_cleaning == "none":
        # Exactly transformers' CLIPTokenizer, so saved folders need no remote code (diffusers pipelines, for one,
        # load their tokenizer by transformers class).
        return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)
    return ZooCLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length, text_cleaning=text_cleaning
    )


__all__ = [
    "BPE_PATH",
    "TEXT_CLEANINGS",
    "VOCAB_SIZE",
    "ZooCLIPTokenizer",
    "bytes_to_unicode",
    "clip_vocab_and_merges",
    "load_clip_tokenizer",
    "official_clean",
]
