"""Diagnosis of the README's "shape-blind" finding: how fast does the foundation's ViT learn shape *with the label*?

Trains the CLIP foundation's vision tower shape (``CLIPVisionModel``: 64 px, patch 8, width 128, 3 layers, 4 heads)
from scratch with a linear shape head (8 classes) on the world's classification images (64 per class of the 64,
train split), and prints the val shape accuracy every 100 steps. No claim depends on it; it separates "the tower
cannot learn shape at this size and budget" from "contrastive alt-text never asks for shape".

    python docs/bench/shape_probe.py                      # the world as shipped
    python docs/bench/shape_probe.py --size_scale 2       # objects twice as large
    python docs/bench/shape_probe.py --texture_strength 0 # plain backgrounds
    python docs/bench/shape_probe.py --patch_size 4       # 4x the tokens: an object spans 3-5 patches, not 1-3
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from hf_clipzoo.data.synthetic import WorldConfig, make_classification, vocab
from hf_clipzoo.data.synthetic.vocab import SHAPES


def load(per_class: int, split: str, world: WorldConfig) -> tuple[torch.Tensor, torch.Tensor]:
    images = make_classification(per_class, split=split, config=world)
    pixels = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1 for image in images["image"]])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.tensor(images["label"]) % len(SHAPES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--learning_rate", type=float, default=1.5e-3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--size_scale", type=float, default=1.0, help="Multiply every object radius (<= 1.0 fits).")
    parser.add_argument("--texture_strength", type=int, default=WorldConfig().texture_strength)
    parser.add_argument("--patch_size", type=int, default=8, help="The foundation's is 8; 64 must be a multiple.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # SIZES is read at render time; larger objects are placed with less room inside their grid cell.
    for name in vocab.SIZES:
        vocab.SIZES[name] *= args.size_scale
    world = WorldConfig(seed=args.seed, texture_strength=args.texture_strength)
    x_train, y_train = load(64, "train", world)
    x_val, y_val = load(8, "val", world)
    torch.manual_seed(args.seed)
    config = CLIPVisionConfig(
        image_size=64,
        patch_size=args.patch_size,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=4,
    )
    tower, head = CLIPVisionModel(config), torch.nn.Linear(config.hidden_size, len(SHAPES))
    optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=args.learning_rate, weight_decay=0.1)
    warmup = 30
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)),
    )
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        batch = torch.randint(len(x_train), (args.batch_size,), generator=generator)
        logits = head(tower(pixel_values=x_train[batch]).pooler_output)
        loss = torch.nn.functional.cross_entropy(logits, y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            with torch.no_grad():
                accuracy = (head(tower(pixel_values=x_val).pooler_output).argmax(-1) == y_val).float().mean().item()
            print(f"step {step}: train loss {loss.item():.3f}, val shape accuracy {accuracy:.3f} (chance 0.125)")


if __name__ == "__main__":
    main()
