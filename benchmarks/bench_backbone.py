"""The zoo's CLIP core against transformers' `CLIPModel` on the same config: forward + backward, time and memory.

    python benchmarks/bench_backbone.py [--device cuda] [--preset vit-b-16] [--batch 32] [--image-size 224]

Both models get the same weights (the zoo model is loaded from the `CLIPModel` state dict, key for key) and the
same batch, and run forward + backward of the symmetric InfoNCE loss: `ZooCLIPModel(..., return_loss=True)` with its
distributed-aware loss against `CLIPModel(..., return_loss=True)`. The design target is overhead <= 5% (ratio <= 1.05).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import compare, describe_machine, markdown_table, parse_args  # noqa: E402
from transformers import CLIPConfig, CLIPModel  # noqa: E402

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="world-tiny", help="tower shapes from CLIP_PRESETS (default: world-tiny).")
    parser.add_argument("--batch", type=int, default=32, help="image-text pairs per step (default: 32).")
    parser.add_argument("--image-size", type=int, default=None, help="image size (default: the preset's).")
    parser.add_argument("--seq-len", type=int, default=32, help="text tokens per caption (default: 32).")
    args = parse_args(__doc__, parser)

    torch.manual_seed(0)
    overrides = {"image_size": args.image_size} if args.image_size else {}
    zoo_config = ZooCLIPConfig.from_preset(args.preset, vision_config=overrides)
    reference = CLIPModel(
        CLIPConfig(
            **{
                k: v
                for k, v in zoo_config.to_dict().items()
                if k in ("text_config", "vision_config", "projection_dim")
            }
        )
    )
    candidate = ZooCLIPModel(zoo_config)
    candidate.load_state_dict(reference.state_dict(), strict=True)
    reference.to(args.device).train()
    candidate.to(args.device).train()

    size = zoo_config.vision_config.image_size
    pixel_values = torch.randn(args.batch, 3, size, size, device=args.device)
    input_ids = torch.randint(0, 49405, (args.batch, args.seq_len), device=args.device)
    input_ids[:, -1] = zoo_config.text_config.eos_token_id

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            model(input_ids=input_ids, pixel_values=pixel_values, return_loss=True).loss.backward()

        return run

    result = compare(
        f"forward+backward {args.preset} batch {args.batch} @ {size}px",
        step(candidate),
        step(reference),
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    print(describe_machine(args.device))
    print(markdown_table([result], title="candidate: ZooCLIPModel, reference: transformers CLIPModel"))


if __name__ == "__main__":
    main()
