"""Batched OTAM against a per-pair loop: one 5-way 5-shot 5-query episode, T = 8 frames (issue 9 target: >= 20x).

    python benchmarks/bench_otam.py [--device cuda] [--way 5] [--query 5] [--frames 8] [--no-backward]

Both variants compute the bidirectional soft-min OTAM distance (lambda = 0.5) of every query to every class
prototype of one episode (N·Q x N = 125 pairs for 5-way 5-query; the 5 shots are merged into one prototype per
class before matching, as CLIP-FSAR's `merge_before`), forward + backward by default. The candidate is
`hf_clipzoo.eval.few_shot.otam_distance` on the whole `[N·Q, N, T, T]` tensor; the reference calls the same function
once per (query, prototype) pair on a `[T, T]` matrix in a Python loop, which is how a per-pair implementation scores
an episode. Both give the same distances (checked before timing). The speed-up is reference / candidate time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import compare, describe_machine, markdown_table, parse_args  # noqa: E402

from hf_clipzoo.eval.few_shot import cosine_frame_distances, otam_distance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--way", type=int, default=5, help="N classes (default: 5).")
    parser.add_argument("--query", type=int, default=5, help="queries per class (default: 5).")
    parser.add_argument("--frames", type=int, default=8, help="T frames per video (default: 8).")
    parser.add_argument("--dim", type=int, default=512, help="feature width D (default: 512).")
    parser.add_argument("--no-backward", action="store_true", help="time the forward pass only.")
    args = parse_args(__doc__, parser)

    torch.manual_seed(0)
    queries = torch.randn(args.way * args.query, args.frames, args.dim, device=args.device)
    protos = torch.randn(args.way, args.frames, args.dim, device=args.device)
    dists = cosine_frame_distances(queries, protos).requires_grad_(not args.no_backward)

    def batched():
        out = otam_distance(dists, lam=0.5, bidirectional=True)
        if not args.no_backward:
            torch.autograd.grad(out.sum(), dists)
        return out

    def per_pair():
        rows = [
            torch.stack([otam_distance(dists[i, j], lam=0.5, bidirectional=True) for j in range(dists.shape[1])])
            for i in range(dists.shape[0])
        ]
        out = torch.stack(rows)
        if not args.no_backward:
            torch.autograd.grad(out.sum(), dists)
        return out

    with torch.no_grad():  # same numbers before timing
        expected = torch.stack(
            [torch.stack([otam_distance(dists[i, j]) for j in range(dists.shape[1])]) for i in range(dists.shape[0])]
        )
        torch.testing.assert_close(otam_distance(dists), expected)

    pairs = dists.shape[0] * dists.shape[1]
    result = compare(
        f"OTAM {'fwd' if args.no_backward else 'fwd+bwd'}, {args.way}-way x {args.query} queries ({pairs} pairs), "
        f"T={args.frames}",
        batched,
        per_pair,
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    print(describe_machine(args.device))
    print(markdown_table([result], title="candidate: batched otam_distance, reference: per-pair Python loop"))
    print(f"speed-up (reference / candidate): {1 / result.time_ratio:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
