"""GroupViT zero-shot segmentation of one 448x448 image: the official protocol's cost over the model's forward pass.

    python benchmarks/bench_groupvit_segmentation.py [--preset gcc-yfcc|world-tiny] [--size 448] [--labels 20]

Every row compares a candidate with the *plain forward* of the same model on the same sliding windows
(`model(input_ids=<one EOS token>, pixel_values=crop)`, no segmentation outputs, under `torch.no_grad`), so the time
ratio is the segmentation cost in units of one forward pass and `ratio - 1` is the overhead:

1. `processor.segment(model, image, labels)`: the whole official protocol (spec 1.4): the labels through the text
   tower with "a photo of a {}.", keep-ratio resize to a 448 short side, sliding window (448 crop, 224 stride: one
   window for a 448x448 image), forward with `output_segmentation=True`, product of the soft assignment maps,
   bilinear upsampling, one-hot over groups, top-5 filter, background threshold 0.95, resize to the image.
2. `processor.slide_scores(...)` with the class embeddings computed once: the per-image part (forward with the
   segmentation outputs + post-processing).
3. `processor.post_process_semantic_segmentation(outputs, ...)` alone, at the crop size, on one stored forward's
   outputs: the post-processing itself.

The model has random weights (timing does not depend on them); `--preset gcc-yfcc` (default) is the released model's
size (ViT-S-like 384-wide vision tower, 12 blocks, 64 + 8 groups; 256-wide 12-layer text tower).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import compare, describe_machine, markdown_table, parse_args  # noqa: E402

from hf_clipzoo.models.groupvit import ZooGroupViTConfig, ZooGroupViTModel, build_groupvit_processor  # noqa: E402
from hf_clipzoo.models.groupvit.processing_groupvit import sliding_windows  # noqa: E402

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining table", "dog",
    "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv monitor",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gcc-yfcc", help="GROUPVIT_PRESETS entry (default: gcc-yfcc, full size).")
    parser.add_argument("--size", type=int, default=448, help="side of the square test image (default: 448).")
    parser.add_argument("--labels", type=int, default=20, help="candidate labels, VOC class names (default: 20).")
    parser.add_argument("--crop", type=int, default=448, help="sliding-window crop (default: 448, official).")
    parser.add_argument("--stride", type=int, default=224, help="sliding-window stride (default: 224, official).")
    args = parse_args(__doc__, parser)
    if not 1 <= args.labels <= len(VOC_CLASSES):
        parser.error(f"--labels must be in [1, {len(VOC_CLASSES)}]")

    torch.manual_seed(0)
    model = ZooGroupViTModel(ZooGroupViTConfig.from_preset(args.preset)).to(args.device).eval()
    processor = build_groupvit_processor(model.config.vision_config.image_size)
    labels = list(VOC_CLASSES[: args.labels])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))

    pixel_values = processor.preprocess_for_segmentation(image, short_side=min(args.crop, args.size)).to(args.device)
    height, width = pixel_values.shape[-2:]
    windows = sliding_windows(height, width, args.crop, args.stride)
    crops = [pixel_values[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in windows]
    dummy = torch.full((1, 1), int(processor.tokenizer.eos_token_id), device=args.device)
    class_embeds = processor.encode_labels(model, labels)
    with torch.no_grad():
        stored = model(input_ids=dummy, pixel_values=crops[0], output_segmentation=True)

    @torch.no_grad()
    def plain_forward():
        for crop in crops:
            model(input_ids=dummy, pixel_values=crop)

    @torch.no_grad()
    def one_plain_forward():
        model(input_ids=dummy, pixel_values=crops[0])

    def full_protocol():
        processor.segment(model, image, labels, crop_size=args.crop, stride=args.stride, short_side=args.crop)

    @torch.no_grad()
    def per_image():
        processor.slide_scores(model, pixel_values, class_embeds, crop_size=args.crop, stride=args.stride)

    @torch.no_grad()
    def post_process():
        processor.post_process_semantic_segmentation(stored, class_embeds, size=crops[0].shape[-2:])

    common = dict(device=args.device, repeats=args.repeats, warmup=args.warmup)
    where = f"{args.preset}, {args.size}x{args.size}, {len(windows)} window(s), {len(labels)} labels"
    results = [
        compare(f"segment() (full protocol) vs plain forward; {where}", full_protocol, plain_forward, **common),
        compare(f"slide_scores() (labels pre-encoded) vs plain forward; {where}", per_image, plain_forward, **common),
        compare(f"post-processing only vs one plain forward; {where}", post_process, one_plain_forward, **common),
    ]
    print(describe_machine(args.device))
    print(markdown_table(results, title="candidate: GroupViT segmentation step, reference: plain model forward"))


if __name__ == "__main__":
    main()
