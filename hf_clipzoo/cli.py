"""The `hf-clipzoo` command.

    hf-clipzoo bench [--preset smoke|quick|full] [--output_dir bench_out] [--seed 0]
    hf-clipzoo eval --model PATH --dataset PATH --task zero-shot|retrieval|mmvp [...]
    hf-clipzoo list
"""

from __future__ import annotations

import argparse
import json
import sys


def _bench(args) -> int:
    from .bench import run_bench

    results = run_bench(args.preset, args.output_dir, seed=args.seed)
    print(f"Wrote {args.output_dir}/results.md and results.json in {results['total_seconds']:.0f} s.")
    print((__import__("pathlib").Path(args.output_dir) / "results.md").read_text())
    return 0


def _eval(args) -> int:
    from .eval.cli import run_eval

    result = run_eval(
        args.model,
        args.dataset,
        args.task,
        split=args.split,
        output_file=args.output_file,
        **({"image_column": args.image_column} if args.image_column else {}),
        **({"caption_column": args.caption_column} if args.caption_column else {}),
        **({"label_column": args.label_column} if args.label_column else {}),
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def _list(args) -> int:
    import hf_clipzoo

    for row in hf_clipzoo.list_methods(include_planned=True):
        print(f"{row['name']:<10} {row['status']:<16} {row['paper']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-clipzoo", description="Seven methods that repair CLIP's weak spots.")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="Train and evaluate every implemented method on the embedded world.")
    bench.add_argument("--preset", default="quick", choices=("smoke", "quick", "full"), help="Budget of the run.")
    bench.add_argument("--output_dir", default="bench_out", help="Where results.md, results.json and plots go.")
    bench.add_argument("--seed", type=int, default=0, help="Seed of the world, the data order and the models.")
    bench.set_defaults(func=_bench)

    evaluate = sub.add_parser("eval", help="Evaluate a saved model on a dataset.")
    evaluate.add_argument("--model", required=True, help="A saved model folder (or Hub id in the local cache).")
    evaluate.add_argument("--dataset", required=True, help="A dataset folder (save_to_disk) or a datasets id.")
    evaluate.add_argument("--task", required=True, choices=("zero-shot", "retrieval", "mmvp"), help="What to measure.")
    evaluate.add_argument("--split", default="test", help="Dataset split.")
    evaluate.add_argument("--image_column", default=None, help="Image column.")
    evaluate.add_argument("--caption_column", default=None, help="Caption column (retrieval).")
    evaluate.add_argument("--label_column", default=None, help="Label column (zero-shot).")
    evaluate.add_argument("--output_file", default=None, help="Also write the result as JSON here.")
    evaluate.set_defaults(func=_eval)

    listing = sub.add_parser("list", help="List the methods and their status.")
    listing.set_defaults(func=_list)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
