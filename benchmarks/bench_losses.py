"""Losses against their naive formulas, and the chunked sigmoid loss against the dense one (time + peak memory).

    python benchmarks/bench_losses.py [--device cuda] [--batch 4096] [--dim 512] [--chunk-sizes 512 128]

Every variant runs forward + backward (`torch.autograd.grad` w.r.t. embeddings, log scale and bias) on the same
L2-normalised random embeddings, single process (the gathers are no-ops). The naive references are the textbook
one-liners (transformers' `CLIPModel` / `SiglipModel` losses), which is also open_clip's single-process semantics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere

from _harness import compare, describe_machine, markdown_table, parse_args  # noqa: E402

from hf_clipzoo.losses import clip_loss, sigmoid_loss  # noqa: E402


def naive_clip_loss(images, texts, logit_scale):
    logits = logit_scale.exp() * images @ texts.t()
    labels = torch.arange(images.shape[0], device=images.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def naive_sigmoid_loss(images, texts, logit_scale, logit_bias):
    logits = logit_scale.exp() * images @ texts.t() + logit_bias
    labels = 2 * torch.eye(images.shape[0], device=images.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / images.shape[0]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4096, help="images = texts in the batch (default: 4096).")
    parser.add_argument("--dim", type=int, default=512, help="embedding dim (default: 512).")
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="+", default=[512, 128], help="text columns per chunk (default: 512 128)."
    )
    args = parse_args(__doc__, parser)

    torch.manual_seed(0)
    device = args.device
    images = F.normalize(torch.randn(args.batch, args.dim, device=device), dim=-1).requires_grad_(True)
    texts = F.normalize(torch.randn(args.batch, args.dim, device=device), dim=-1).requires_grad_(True)
    logit_scale = torch.tensor(2.3026, device=device, requires_grad=True)  # SigLIP init: ln 10
    logit_bias = torch.tensor(-10.0, device=device, requires_grad=True)

    def forward_backward(loss_fn, *extra):
        def run():
            loss = loss_fn(images, texts, logit_scale, *extra)
            return torch.autograd.grad(loss, [images, texts, logit_scale, *extra])

        return run

    def sigmoid(chunk_size):
        return lambda i, t, s, b: sigmoid_loss(i, t, s, b, chunk_size=chunk_size)

    options = dict(repeats=args.repeats, warmup=args.warmup, device=device)
    shape = f"B={args.batch}, D={args.dim}"
    results = [
        compare(
            f"sigmoid_loss chunked ({chunk_size}) vs dense, {shape}",
            forward_backward(sigmoid(chunk_size), logit_bias),
            forward_backward(sigmoid(None), logit_bias),
            **options,
        )
        for chunk_size in args.chunk_sizes
    ]
    results += [
        compare(
            f"sigmoid_loss dense vs naive SigLIP formula, {shape}",
            forward_backward(sigmoid(None), logit_bias),
            forward_backward(naive_sigmoid_loss, logit_bias),
            **options,
        ),
        compare(
            f"clip_loss vs naive CLIP formula, {shape}",
            forward_backward(clip_loss),
            forward_backward(naive_clip_loss),
            **options,
        ),
    ]
    print(markdown_table(results, title=f"Losses, forward + backward ({describe_machine(device)})"))
    print(f"\nrepeats={args.repeats}, warmup={args.warmup}; ratios are candidate / reference.")


if __name__ == "__main__":
    main()
