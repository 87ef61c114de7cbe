"""MA-CLIP's adapters against CLIP-FSAR's full fine-tuning: one training step on the same backbone and episode.

    python benchmarks/bench_ma_clip.py [--device cuda] [--preset world-tiny] [--way 5] [--shot 1] [--query 5]

Both models wrap the same zoo CLIP (`--preset`, random weights: the timing does not depend on them) and take one
5-way 1-shot episode with 5 queries per class and T = 8 frames (the papers' training episode): forward + loss +
backward + an AdamW step over each model's trainable parameters. CLIP-FSAR fine-tunes the whole vision tower (its
text tower is frozen); MA-CLIP trains only its adapters and prototype module, the base stays frozen. The table gives
time and peak-memory ratios (MA-CLIP / CLIP-FSAR); the trainable-parameter counts and their ratio are printed below it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import compare, describe_machine, markdown_table, parse_args  # noqa: E402

from hf_clipzoo import CLIPFSARConfig, CLIPFSARModel, MACLIPModel, ZooCLIPConfig, ZooCLIPModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--preset", default="world-tiny", help="CLIP tower shapes from CLIP_PRESETS (default: world-tiny)."
    )
    parser.add_argument("--way", type=int, default=5, help="N classes (default: 5).")
    parser.add_argument("--shot", type=int, default=1, help="K supports per class (default: 1).")
    parser.add_argument("--query", type=int, default=5, help="queries per class (default: 5).")
    parser.add_argument("--frames", type=int, default=8, help="T frames per video (default: 8).")
    args = parse_args(__doc__, parser)

    torch.manual_seed(0)
    clip = ZooCLIPModel(ZooCLIPConfig.from_preset(args.preset))
    fsar = CLIPFSARModel(CLIPFSARConfig.from_preset(args.preset, num_frames=args.frames)).to(args.device).train()
    fsar.load_state_dict(clip.state_dict(), strict=False)  # the same CLIP towers
    ma_clip = MACLIPModel.from_clip(clip, num_frames=args.frames).to(args.device).train()

    size = clip.config.vision_config.image_size
    generator = torch.Generator().manual_seed(0)
    support = torch.randn(args.way * args.shot, args.frames, 3, size, size, generator=generator).to(args.device)
    queries = torch.randn(args.way * args.query, args.frames, 3, size, size, generator=generator).to(args.device)
    support_labels = torch.arange(args.way).repeat_interleave(args.shot).to(args.device)
    query_labels = torch.arange(args.way).repeat_interleave(args.query).to(args.device)
    input_ids = torch.randint(0, 49405, (args.way, 8), generator=generator).to(args.device)
    num_train_classes = 64  # the meta-train classes of the video-text loss (SSv2 / Kinetics-100 have 64)
    train_input_ids = torch.randint(0, 49405, (num_train_classes, 8), generator=generator).to(args.device)
    class_ids = torch.randperm(num_train_classes, generator=generator)[: args.way].to(args.device)

    fsar_inputs = dict(
        support_pixel_values=support, support_labels=support_labels, query_pixel_values=queries,
        query_labels=query_labels, class_input_ids=input_ids, train_input_ids=train_input_ids,
        support_class_ids=class_ids[support_labels], query_class_ids=class_ids[query_labels],
    )  # fmt: skip
    ma_inputs = dict(
        support_pixel_values=support, support_labels=support_labels, query_pixel_values=queries,
        query_labels=query_labels, input_ids=input_ids,
    )  # fmt: skip

    def step_fn(model, inputs):
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def step():
            loss = model(**inputs, return_loss=True).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss

        return step

    results = [
        compare(
            f"training step, {args.preset}, {args.way}-way {args.shot}-shot {args.query}-query, T={args.frames}",
            step_fn(ma_clip, ma_inputs),
            step_fn(fsar, fsar_inputs),
            repeats=args.repeats,
            warmup=args.warmup,
            device=args.device,
        )
    ]
    print(describe_machine(args.device))
    print(markdown_table(results, title="candidate: MA-CLIP (adapters), reference: CLIP-FSAR (full fine-tuning)"))
    trainable = {name: sum(p.numel() for p in m.parameters() if p.requires_grad) for name, m in
                 (("MA-CLIP", ma_clip), ("CLIP-FSAR", fsar))}  # fmt: skip
    print(
        f"\ntrainable parameters: MA-CLIP {trainable['MA-CLIP']:,}, CLIP-FSAR {trainable['CLIP-FSAR']:,} "
        f"(ratio {trainable['MA-CLIP'] / trainable['CLIP-FSAR']:.3f})"
    )


if __name__ == "__main__":
    main()
