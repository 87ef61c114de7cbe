"""The cost of FFF's mining: an FFF training step against a SigLIP step with the same number of texts.

    python benchmarks/bench_fff.py [--device cuda] [--preset world-tiny] [--batch 64] [--captions 6]

Both variants run the same `FFFModel` on the same batch — B images and B·(1+K) captions with their `text_owner` —
forward + backward of the sigmoid loss. The reference computes the loss with each image's own captions as positives
(`mine=False`: SigLIP's multi-positive loss over the same pairs); the candidate also mines with image-image and
text-text thresholds over the global batch. The issue's target: ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import compare, describe_machine, markdown_table, parse_args  # noqa: E402

from hf_clipzoo import FFFConfig, FFFModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="world-tiny", help="tower shapes from CLIP_PRESETS (default: world-tiny).")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default: 64).")
    parser.add_argument("--captions", type=int, default=6, help="captions per image, raw + K (default: 6).")
    parser.add_argument("--seq-len", type=int, default=32, help="text tokens per caption (default: 32).")
    args = parse_args(__doc__, parser)

    torch.manual_seed(0)
    config = FFFConfig.from_preset(args.preset, mining_image_text_threshold=0.5)
    model = FFFModel(config).to(args.device).train()
    size = config.vision_config.image_size
    num_texts = args.batch * args.captions
    pixel_values = torch.randn(args.batch, 3, size, size, device=args.device)
    input_ids = torch.randint(0, 49405, (num_texts, args.seq_len), device=args.device)
    input_ids[:, -1] = config.text_config.eos_token_id
    text_owner = torch.arange(args.batch, device=args.device).repeat_interleave(args.captions)

    def step(mine: bool):
        def run():
            model.zero_grad(set_to_none=True)
            out = model(
                input_ids=input_ids, pixel_values=pixel_values, text_owner=text_owner, return_loss=True, mine=mine
            )
            out.loss.backward()

        return run

    result = compare(
        f"FFF step vs SigLIP step, {args.preset}, {args.batch} images x {args.captions} captions",
        step(True),
        step(False),
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    print(describe_machine(args.device))
    print(markdown_table([result], title="candidate: FFF (mining on), reference: same step without mining"))


if __name__ == "__main__":
    main()
