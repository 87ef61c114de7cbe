"""The `hf-clipzoo` command.

hf-clipzoo bench [--preset smoke|quick|full] [--output_dir bench_out] [--seed 0] [--methods ape fff ...] [--from_scratch]
hf-clipzoo foundations [--only clip groupvit diffusion] [--output_dir foundations] [--seed 0] [--refresh]
hf-clipzoo report bench_out/results.json [--readme README.md --plots_prefix docs/bench/]
hf-clipzoo eval --model PATH --dataset PATH --task zero-shot|retrieval|mmvp [...]
hf-clipzoo caption --model BLIP_FOLDER --dataset PATH --output_dir OUT [--num_captions 5]
hf-clipzoo list

Building the parser imports nothing heavy (its choices come from `hf_clipzoo.options`): `--help` answers without
torch or transformers, and each command imports what it runs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import PRESETS, TASKS


def _bench(args) -> int:
    from .bench import run_bench

    results = run_bench(
        args.preset, args.output_dir, seed=args.seed, methods=args.methods, from_scratch=args.from_scratch,
        foundations_dir=args.foundations_dir,
    )  # fmt: skip
    print((Path(args.output_dir) / "results.md").read_text())
    print(f"Wrote {args.output_dir}/results.md, results.json and plots/ in {results['total_seconds']:.0f} s.")
    failed = [name for name, entry in results["methods"].items() if entry["status"].startswith("failed")]
    if failed:
        print(f"These methods failed (tracebacks in results.json): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _foundations(args) -> int:
    from .foundations import FOUNDATIONS_DIR, build_foundations, refresh_foundations

    output_dir = args.output_dir or FOUNDATIONS_DIR
    if args.refresh:
        for name, record in refresh_foundations(output_dir, names=args.only).items():
            changed = record["changed"] + record["added"] + record["removed"]
            print(
                f"{name}: {len(changed)} files re-written, weights unchanged: {', '.join(record['weights_unchanged'])}"
            )
        print(f"Refreshed {output_dir} and its manifest.json (validation re-measured, unchanged).")
        return 0
    manifest = build_foundations(output_dir, args.work_dir, names=args.only, seed=args.seed)
    for name, entry in manifest["foundations"].items():
        print(f"{name}: {json.dumps(entry['validation'])}")
    print(f"Wrote {output_dir} and its manifest.json.")
    return 0


def _report(args) -> int:
    from .bench import readme_results_block, update_readme

    if args.readme:
        changed = update_readme(args.results, args.readme, plots_prefix=args.plots_prefix)
        print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    else:
        print(readme_results_block(json.loads(Path(args.results).read_text()), args.plots_prefix))
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


def _caption(args) -> int:
    from .data.captioning import caption_dataset

    result = caption_dataset(
        args.model, args.dataset, args.output_dir, split=args.split, image_column=args.image_column,
        output_column=args.output_column, num_captions=args.num_captions, num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, prompt=args.prompt,
    )  # fmt: skip
    print(f"Captioned {len(result)} images into column {args.output_column!r}: {args.output_dir}/dataset")
    return 0


def _list(args) -> int:
    from .registry import list_methods

    for row in list_methods(include_planned=True):
        print(f"{row['name']:<10} {row['status']:<16} {row['paper']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-clipzoo", description="Seven methods that repair CLIP's weak spots.")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="Train and evaluate every implemented method on the embedded world.")
    bench.add_argument("--preset", default="quick", choices=tuple(PRESETS), help="Budget of the run.")
    bench.add_argument("--output_dir", default="bench_out", help="Where results.md, results.json and plots go.")
    bench.add_argument("--seed", type=int, default=0, help="Seed of the world, the data order and the models.")
    bench.add_argument("--methods", nargs="+", default=None, help="Only these methods (the baseline always runs).")
    bench.add_argument(
        "--foundations_dir", default=None, help="Foundations built elsewhere (default: the repository's)."
    )
    bench.add_argument(
        "--from_scratch",
        action="store_true",
        help="Retrain the foundations (hf-clipzoo foundations) into <output_dir>/foundations instead of using the "
        "shipped ones (about an hour on 2 CPU cores).",
    )
    bench.set_defaults(func=_bench)

    foundations = sub.add_parser(
        "foundations", help="Train the world's starting models (CLIP, GroupViT, diffusion) from scratch and ship them."
    )
    foundations.add_argument("--output_dir", default=None, help="Default: the repository's foundations/ folder.")
    foundations.add_argument("--work_dir", default="foundations_work", help="Checkpoints and logs of the runs.")
    foundations.add_argument("--seed", type=int, default=0, help="Seed of the world and of every run.")
    foundations.add_argument("--only", nargs="+", default=None, help="Only these foundations (clip, groupvit, ...).")
    foundations.add_argument(
        "--refresh",
        action="store_true",
        help="Do not train: re-write the shipped folders' config, code, processor and card with the current code, "
        "keeping the weights files byte for byte (validation re-measured, manifest updated).",
    )
    foundations.set_defaults(func=_foundations)

    report = sub.add_parser("report", help="Print (or write into the README) the claims of a bench run.")
    report.add_argument("results", help="A bench run's results.json.")
    report.add_argument("--readme", default=None, help="Rewrite this file's bench-results block instead of printing.")
    report.add_argument("--plots_prefix", default="", help="Path of the run's folder as seen from the README.")
    report.set_defaults(func=_report)

    evaluate = sub.add_parser("eval", help="Evaluate a saved model on a dataset.")
    evaluate.add_argument("--model", required=True, help="A saved model folder (or Hub id in the local cache).")
    evaluate.add_argument("--dataset", required=True, help="A dataset folder (save_to_disk) or a datasets id.")
    evaluate.add_argument("--task", required=True, choices=TASKS, help="What to measure.")
    evaluate.add_argument("--split", default="test", help="Dataset split.")
    evaluate.add_argument("--image_column", default=None, help="Image column.")
    evaluate.add_argument("--caption_column", default=None, help="Caption column (retrieval).")
    evaluate.add_argument("--label_column", default=None, help="Label column (zero-shot).")
    evaluate.add_argument("--output_file", default=None, help="Also write the result as JSON here.")
    evaluate.set_defaults(func=_eval)

    caption = sub.add_parser("caption", help="Add top-K beam-search captions per image (FFF's pseudo-captions).")
    caption.add_argument("--model", required=True, help="An image-to-text model folder or Hub id (BLIP, BLIP-2, ...).")
    caption.add_argument("--dataset", required=True, help="A dataset folder (save_to_disk, image folder, tars, CSV).")
    caption.add_argument(
        "--output_dir", required=True, help="Shards (for resuming) and the captioned dataset go here."
    )
    caption.add_argument("--split", default="train", help="Dataset split.")
    caption.add_argument("--image_column", default="image", help="Image column.")
    caption.add_argument("--output_column", default="pseudo_captions", help="New column with the K captions.")
    caption.add_argument("--num_captions", type=int, default=5, help="K: beams kept per image.")
    caption.add_argument("--num_beams", type=int, default=None, help="Beam width (default: K).")
    caption.add_argument("--max_new_tokens", type=int, default=30, help="Longest caption in tokens.")
    caption.add_argument("--batch_size", type=int, default=16, help="Images per generate() call.")
    caption.add_argument("--prompt", default=None, help="Optional text prefix for conditional captioners.")
    caption.set_defaults(func=_caption)

    listing = sub.add_parser("list", help="List the methods and their status.")
    listing.set_defaults(func=_list)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
