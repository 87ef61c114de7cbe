"""Tiny random CLIP model, processor and images shared by the evaluation tests."""

from __future__ import annotations

import csv
import string

import numpy as np
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPProcessor, CLIPTokenizer

# Character-level BPE (no merges): every lowercase letter, digit and a little punctuation, with and without the
# end-of-word marker. Ids 0 / 1 are the start / end tokens, which the tiny text config uses as bos / eos / pad.
_CHARS = list(string.ascii_lowercase) + list(string.digits) + [".", ",", "'"]


def tiny_vocab() -> dict[str, int]:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in _CHARS:
            vocab[char + suffix] = len(vocab)
    return vocab


def tiny_clip_config() -> CLIPConfig:
    text = dict(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        image_size=30, patch_size=2, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


def tiny_processor() -> CLIPProcessor:
    tokenizer = CLIPTokenizer(vocab=tiny_vocab(), merges=[], model_max_length=64)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def random_images(count: int, seed: int) -> list[Image.Image]:
    """Images of different sizes and colours, so the tiny model gives them distinct embeddings."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        height, width = rng.integers(24, 48, size=2)
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        pixels[: height // 2] = rng.integers(0, 256, size=3, dtype=np.uint8)  # a flat band per image
        images.append(Image.fromarray(pixels))
    return images


def write_questions(path, rows, header=("Question ID", "Type", "Statement")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_benchmark(root, folder="MLLM_VLM Images"):
    """A miniature MMVP-VLM folder: 2 pairs (types Color and Text), one flat-colour jpg per question id."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [(1, "Color", "a red flower"), (2, "Color", "a blue flower"), (3, "Text", "stop"), (4, "Text", "go")]
    write_questions(root / "Questions.csv", rows)
    for qid, kind, _ in rows:
        (root / folder / kind).mkdir(parents=True, exist_ok=True)
        # Each image is a flat colour encoding its question id, to check which file landed where.
        Image.new("RGB", (8, 8), (qid * 40, 0, 0)).save(root / folder / kind / f"{qid}.jpg")
    return root
