"""OpenAI CLIP's BPE tokenizer, built offline from the vocabulary file that ships with the package.

`bpe_simple_vocab_16e6.txt.gz` is the merges file of OpenAI CLIP (MIT licence, see `LICENSE-clip-bpe.txt`), taken
unchanged from the open-clip-torch wheel. The 49,408-entry vocabulary is derived from it exactly as OpenAI's
`SimpleTokenizer` does: the 256 byte symbols, the same with the end-of-word marker `</w>`, one entry per merge in
order, then `<|startoftext|>` (49406) and `<|endoftext|>` (49407). The result is transformers' `CLIPTokenizer` with
the special tokens of `openai/clip-vit-base-patch16` (padding with `<|endoftext|>`), so token ids match real CLIP
checkpoints and the tokenizer saves / loads like any transformers tokenizer.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

from transformers import CLIPTokenizer

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


def load_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer (49,408 tokens) truncating / padding to `model_max_length` tokens."""
    if model_max_length <= 2:
        raise ValueError(f"model_max_length must be > 2 (start and end tokens), got {model_max_length}.")
    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)


__all__ = ["BPE_PATH", "VOCAB_SIZE", "bytes_to_unicode", "clip_vocab_and_merges", "load_clip_tokenizer"]
