"""``python -m hf_clipzoo.data.synthetic``: benchmark the embedded world, or write it to disk.

python -m hf_clipzoo.data.synthetic --benchmark [--num-images 2000] [--image-size 64]
python -m hf_clipzoo.data.synthetic --write imagefolder --out-dir world/ --num-images 1000 [--split train]
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", action="store_true", help="Measure scenes per second on one thread.")
    parser.add_argument(
        "--write", choices=("imagefolder", "webdataset", "csv"), help="Write make_scenes(...) in this format."
    )
    parser.add_argument("--out-dir", help="Output folder for --write.")
    parser.add_argument("--num-images", type=int, default=2000, help="Number of scenes.")
    parser.add_argument("--image-size", type=int, default=64, help="Image side in pixels.")
    parser.add_argument("--seed", type=int, default=0, help="World seed.")
    parser.add_argument("--split", default="train", help="Scene split: train, val or test.")
    args = parser.parse_args(argv)
    if not args.benchmark and not args.write:
        parser.error("nothing to do: pass --benchmark and/or --write FORMAT.")
    if args.benchmark:
        # A one-core number: the generators use only numpy element-wise ops (single-threaded) and PIL's PNG encoder;
        # torch (imported by the package) is pinned to one thread too. Pin the process with `taskset -c 0` to be sure.
        import torch

        torch.set_num_threads(1)
        from .benchmark import benchmark

        print(json.dumps(benchmark(args.num_images, args.image_size, args.seed), indent=2))
    if args.write:
        if not args.out_dir:
            parser.error("--write needs --out-dir.")
        from . import WorldConfig, make_scenes, write_csv, write_imagefolder, write_webdataset

        ds = make_scenes(
            args.num_images, split=args.split, config=WorldConfig(seed=args.seed, image_size=args.image_size)
        )
        writer = {"imagefolder": write_imagefolder, "webdataset": write_webdataset, "csv": write_csv}[args.write]
        print(writer(ds, args.out_dir))


if __name__ == "__main__":
    main()
