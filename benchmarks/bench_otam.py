"""Our OTAM against the official batched algorithm (CLIP-FSAR / TRX `OTAM_cum_dist_v2`): one 5-way 5-shot 5-query
episode, T = 8 frames.

    python benchmarks/bench_otam.py [--device cuda] [--way 5] [--query 5] [--frames 8] [--no-backward]

Both variants compute the bidirectional soft-min OTAM distance (lambda = 0.5) of every query to every class
prototype of one episode (N·Q x N = 125 pairs for 5-way 5-query; the 5 shots are merged into one prototype per
class before matching, as CLIP-FSAR's `merge_before`), forward + backward by default.

- candidate: `hf_clipzoo.eval.few_shot.otam_distance` on the whole `[N·Q, N, T, T]` tensor (Python loops over the
  frame cells, one out-of-place tensor operation per cell, soft-min with `torch.logaddexp`);
- reference: `official_otam_cum_dist_v2` below, a re-statement of the official algorithm as CLIP-FSAR and TRX run
  it: also batched over all pairs with Python loops over the frame cells, writing in place into a zero-padded
  cumulative-cost tensor, soft-min as the log of a sum of exponentials; `otam(D) + otam(D^T)` for both directions.

Both give the same distances (checked before timing, and in `tests/eval/test_few_shot.py`). The speed-up is
reference / candidate time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import compare, describe_machine, markdown_table, parse_args  # noqa: E402

from hf_clipzoo.eval.few_shot import cosine_frame_distances, otam_distance  # noqa: E402


def official_otam_cum_dist_v2(frame_dists: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """One direction of OTAM as the official `OTAM_cum_dist_v2` computes it, for `[..., T_q, T_s]` -> `[...]`.

    The support axis gets a zero column on both sides; the first row is a plain running sum; every later row starts
    from the zero column (an alignment may begin at any query frame), moves right along the diagonal or the row, and
    the first and last columns may also be entered from above (so it may end early). Written out here rather than
    imported, as the official repositories are not packages; the only change is `zeros_like` for the cost tensor
    (the original allocates float32 whatever the input dtype).
    """
    padded = F.pad(frame_dists, (1, 1))
    rows, cols = padded.shape[-2], padded.shape[-1]
    cost = torch.zeros_like(padded)

    def soft_min(*cells: torch.Tensor) -> torch.Tensor:
        return -lam * torch.log(sum(torch.exp(-cell / lam) for cell in cells))

    for m in range(1, cols):
        cost[..., 0, m] = padded[..., 0, m] + cost[..., 0, m - 1]
    for l in range(1, rows):  # noqa: E741 - the row index of the recursion
        cost[..., l, 1] = padded[..., l, 1] + soft_min(cost[..., l - 1, 0], cost[..., l - 1, 1], cost[..., l, 0])
        for m in range(2, cols - 1):
            cost[..., l, m] = padded[..., l, m] + soft_min(cost[..., l - 1, m - 1], cost[..., l, m - 1])
        last = cols - 1
        cost[..., l, last] = padded[..., l, last] + soft_min(
            cost[..., l - 1, last - 1], cost[..., l - 1, last], cost[..., l, last - 1]
        )
    return cost[..., -1, -1]


def official_bidirectional_otam(frame_dists: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """CLIP-FSAR's default (no `SINGLE_DIRECT`): query->support plus support->query."""
    return official_otam_cum_dist_v2(frame_dists, lam) + official_otam_cum_dist_v2(frame_dists.transpose(-1, -2), lam)


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

    def timed(function):
        def run():
            out = function(dists, 0.5)
            if not args.no_backward:
                torch.autograd.grad(out.sum(), dists)
            return out

        return run

    with torch.no_grad():  # same numbers before timing
        torch.testing.assert_close(otam_distance(dists, lam=0.5), official_bidirectional_otam(dists, 0.5))

    pairs = dists.shape[0] * dists.shape[1]
    result = compare(
        f"OTAM {'fwd' if args.no_backward else 'fwd+bwd'}, {args.way}-way x {args.query} queries ({pairs} pairs), "
        f"T={args.frames}",
        timed(lambda d, lam: otam_distance(d, lam=lam, bidirectional=True)),
        timed(official_bidirectional_otam),
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    print(describe_machine(args.device))
    print(markdown_table([result], title="candidate: otam_distance, reference: official batched OTAM_cum_dist_v2"))
    print(f"speed-up (reference / candidate): {1 / result.time_ratio:.2f}x")


if __name__ == "__main__":
    main()
