"""The hf-clipzoo demo Space: one Gradio tab per task, defaulting to the world models shipped in `foundations/`.

Tabs (and their API endpoints, for `gradio_client`):

* **Zero-shot classification** (`/zero_shot`): any zoo CLIP-like folder or Hub repo id, through
  `transformers.pipeline("zero-shot-image-classification")`;
* **Segmentation** (`/segment`): GroupViT zero-shot segmentation, the masks coloured over the image;
* **Few-shot video** (`/few_shot_video`): labelled support clips + one query clip, CLIP-FSAR's OTAM matching;
* **APE few-shot** (`/ape`): a handful of labelled images become APE's training-free cache over a CLIP.

Run `python spaces/clipzoo-demo/app.py` (it prints the local URL); `--clip`, `--groupvit`, `--fsar` change the
default models. Everything runs offline on CPU: the shipped models are tiny and trained on the embedded world, so the
example inputs come from that world (`hf_clipzoo.data.synthetic`), where they work; on real photos they do not.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

import hf_clipzoo  # noqa: F401  (registers the zoo's model types with the Auto classes)

HERE = Path(__file__).resolve().parent
# In the repository the shipped models sit at its root; a deployed Space carries a copy next to app.py.
FOUNDATIONS = next((p for p in (HERE / "foundations", HERE.parents[1] / "foundations") if p.is_dir()), HERE)


def shown_path(path: Path) -> str:
    """Relative to the working directory when under it: the page shows `foundations/clip`, not a machine's path."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


DEFAULT_CLIP = shown_path(FOUNDATIONS / "clip")
DEFAULT_GROUPVIT = shown_path(FOUNDATIONS / "groupvit")
ZERO_SHOT_TEMPLATE = "a photo of a {} object."
TABS = ("Zero-shot classification", "Segmentation", "Few-shot video", "APE few-shot")
IDENTITY_HEAD_NOTE = (
    "With a plain CLIP folder (the default), CLIP-FSAR is built from its towers with the temporal transformer set to "
    "the identity (**no trained temporal head**): prototypes are the mean CLIP frame features of each class and OTAM "
    "aligns them with the query's frames. Give a trained CLIP-FSAR folder (`training_scripts/clip_fsar.py`) for the "
    "full method."
)


# --- argument checks: the UI shows these messages ----------------------------------------------------------------
def parse_labels(text: str | None, argument: str) -> list[str]:
    """Comma- or newline-separated labels, stripped; duplicates and empty lists are errors."""
    labels = [label.strip() for label in (text or "").replace("\n", ",").split(",") if label.strip()]
    if not labels:
        raise gr.Error(f"`{argument}`: give at least one label (comma- or newline-separated).")
    return labels


def file_path(item) -> str:
    """A Gradio file value (a path, or an object with `.name` / `["path"]`) as a path."""
    if isinstance(item, dict):
        item = item.get("path")
    return str(getattr(item, "name", item))


def check_model(path: str | None, argument: str) -> str:
    path = (path or "").strip()
    if not path:
        raise gr.Error(f"`{argument}`: give a model folder or a Hub repo id.")
    return path


# --- models, loaded once per path --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def zero_shot_classifier(model: str):
    from transformers import pipeline

    return pipeline("zero-shot-image-classification", model=model)


@functools.lru_cache(maxsize=2)
def segmenter(model: str):
    from hf_clipzoo.pipelines.zero_shot_segmentation import ZeroShotSegmentationPipeline

    return ZeroShotSegmentationPipeline.from_pretrained(model)


@functools.lru_cache(maxsize=2)
def dual_encoder(model: str):
    from transformers import AutoModel, AutoProcessor

    return AutoModel.from_pretrained(model).eval(), AutoProcessor.from_pretrained(model)


def identity_temporal_head(model) -> None:
    """Zero the value projections, output biases and FFN outputs: every residual block of the temporal transformer
    then returns its input, so an untrained head changes nothing instead of scrambling the CLIP features."""
    with torch.no_grad():
        for layer in model.temporal_transformer.layers:
            layer.attention.to_v.weight.zero_()
            if layer.attention.to_out is not None:
                layer.attention.to_out.weight.zero_()
                layer.attention.to_out.bias.zero_()
            layer.feed_forward.fc2.weight.zero_()
            layer.feed_forward.fc2.bias.zero_()


@functools.lru_cache(maxsize=2)
def few_shot_video_classifier(model: str):
    """`(FewShotVideoClassifier, built_from_clip)`: a CLIP-FSAR folder as it is, a CLIP folder with an identity head."""
    from transformers import AutoConfig, AutoProcessor

    from hf_clipzoo.models.clip_fsar import CLIPFSARConfig, CLIPFSARModel, CLIPFSARProcessor
    from hf_clipzoo.pipelines.few_shot_video import FewShotVideoClassifier

    base = AutoConfig.from_pretrained(model).to_dict()
    if base.get("model_type") == CLIPFSARConfig.model_type:
        fsar = CLIPFSARModel.from_pretrained(model)
        return FewShotVideoClassifier(fsar, AutoProcessor.from_pretrained(model)), False
    # The same construction as `training_scripts/clip_fsar.py` from a baseline CLIP: keep the towers.
    base = {k: v for k, v in base.items() if k in CLIPFSARConfig.__dataclass_fields__ or k.endswith("_config")}
    base.pop("model_type", None)
    fsar = CLIPFSARModel.from_pretrained(model, config=CLIPFSARConfig(**base))
    identity_temporal_head(fsar)
    clip_processor = AutoProcessor.from_pretrained(model)
    processor = CLIPFSARProcessor(clip_processor.image_processor, clip_processor.tokenizer)
    processor.num_frames = fsar.config.num_frames
    return FewShotVideoClassifier(fsar, processor), True


# --- the four tasks ------------------------------------------------------------------------------------------------
def classify_zero_shot(model: str, image: Image.Image | None, labels: str, template: str) -> dict[str, float]:
    model = check_model(model, "model")
    if image is None:
        raise gr.Error("`image`: upload an image (or click an example).")
    template = (template or "").strip() or "{}"
    if "{}" not in template:
        raise gr.Error(f"`template` must contain `{{}}` where the label goes, got {template!r}.")
    results = zero_shot_classifier(model)(
        image.convert("RGB"), candidate_labels=parse_labels(labels, "labels"), hypothesis_template=template
    )
    return {row["label"]: float(row["score"]) for row in results}


def segment(
    model: str, image: Image.Image | None, labels: str, background_threshold: float = 0.0
) -> tuple[Image.Image, dict[str, float]]:
    model = check_model(model, "model")
    if image is None:
        raise gr.Error("`image`: upload an image (or click an example).")
    pipeline = segmenter(model)
    image = image.convert("RGB")
    size = pipeline.model.config.vision_config.image_size
    # The official protocol scaled to the model's input size, as the bench and the training script evaluate it.
    if not 0.0 <= background_threshold < 1.0:
        raise gr.Error(f"`background threshold` must be in [0, 1), got {background_threshold}.")
    results = pipeline(
        image, parse_labels(labels, "labels"), crop_size=size, stride=max(1, size // 2), short_side=size,
        bg_thresh=background_threshold,
    )  # fmt: skip
    return pipeline.overlay(image, results), {row["label"]: row["score"] for row in results}


def classify_video(model: str, support_files, support_labels: str, query_file) -> dict[str, float]:
    model = check_model(model, "model")
    if not support_files:
        raise gr.Error("`support clips`: upload the labelled support videos (or click an example).")
    if query_file is None:
        raise gr.Error("`query clip`: upload the video to classify.")
    labels = parse_labels(support_labels, "support labels")
    if len(labels) != len(support_files):
        raise gr.Error(
            f"`support labels`: one label per support clip, in upload order: {len(support_files)} clips but "
            f"{len(labels)} labels."
        )
    classifier, _ = few_shot_video_classifier(model)
    try:
        (result,) = classifier([file_path(f) for f in support_files], labels, [file_path(query_file)])
    except ValueError as error:  # uneven shots per class, undecodable video, ...
        raise gr.Error(str(error)) from error
    return {row["label"]: row["score"] for row in result}


def classify_ape(model: str, support_files, support_labels: str, query: Image.Image | None) -> dict[str, float]:
    import datasets

    from hf_clipzoo.data.synthetic import CLASSIFICATION_TEMPLATES
    from hf_clipzoo.eval.embeddings import encode_images
    from hf_clipzoo.models.ape.building import build_adapter, build_cache, build_text_weights
    from hf_clipzoo.models.ape.modeling_ape import APEModel

    model = check_model(model, "model")
    if not support_files:
        raise gr.Error("`support images`: upload a few labelled images (or click an example).")
    if query is None:
        raise gr.Error("`query image`: upload the image to classify.")
    labels = parse_labels(support_labels, "support labels")
    if len(labels) != len(support_files):
        raise gr.Error(
            f"`support labels`: one label per support image, in upload order: {len(support_files)} images but "
            f"{len(labels)} labels."
        )
    class_names = list(dict.fromkeys(labels))
    if len(class_names) < 2:
        raise gr.Error("`support labels`: APE compares classes, give images of at least two classes.")
    encoder, processor = dual_encoder(model)
    images = [Image.open(file_path(f)).convert("RGB") for f in support_files]
    few_shot = datasets.Dataset.from_dict({"image": images, "label": [class_names.index(x) for x in labels]})
    text_weights = build_text_weights(encoder, processor, class_names, CLASSIFICATION_TEMPLATES)
    try:
        cache_keys, _ = build_cache(encoder, processor, few_shot, num_classes=len(class_names))
    except ValueError as error:  # uneven shots per class
        raise gr.Error(str(error)) from error
    channels = min(APEModel.config_class().num_refined_channels, text_weights.shape[1])
    adapter = build_adapter(
        APEModel, encoder, text_weights=text_weights, cache_keys=cache_keys, class_names=class_names,
        num_refined_channels=channels,
    )  # fmt: skip
    with torch.no_grad():
        embeds = encode_images(encoder, processor, [query.convert("RGB")])
        scores = adapter.compute_logits(embeds).float().softmax(dim=-1)[0]
    return dict(zip(class_names, scores.tolist()))


# --- example inputs from the embedded world ------------------------------------------------------------------------
def write_examples(folder: str | os.PathLike) -> dict[str, list]:
    """World images and clips written to `folder`, arranged as each tab's `gr.Examples` rows."""
    from hf_clipzoo.data.synthetic import WorldConfig, make_action_videos, make_classification, make_scenes
    from hf_clipzoo.data.synthetic.vocab import COLOURS, SEGMENTATION_CLASSES
    from hf_clipzoo.data.synthetic.writers import write_video_folder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    world = WorldConfig(seed=0, image_size=64)
    objects = make_classification(1, split="test", config=world)
    names = objects.features["label"].names

    def save(image: Image.Image, name: str) -> str:
        path = folder / f"{name}.png"
        image.convert("RGB").save(path)
        return str(path)

    colour_labels = ", ".join(COLOURS)
    zero_shot = [
        [DEFAULT_CLIP, save(objects[i]["image"], names[i].replace(" ", "_")), colour_labels, ZERO_SHOT_TEMPLATE]
        for i in (0, 17, 42)  # red circle, yellow square, blue triangle
    ]
    scenes = make_scenes(2, split="test", config=world)
    segmentation = [
        [DEFAULT_GROUPVIT, save(row["image"], f"scene_{i}"), ", ".join(SEGMENTATION_CLASSES[1:]), 0.0]
        for i, row in enumerate(scenes)
    ]
    # APE: two shots of three colours (any shape), the query a new image of one of them.
    shots = make_classification(2, split="train", config=world)
    chosen = {"red": 0, "green": 3, "blue": 5}
    support, support_labels = [], []
    for colour, index in chosen.items():
        for shot in range(2):
            row = shots[shot * len(names) + index * 8 + shot]
            support.append(save(row["image"], f"ape_{colour}_{shot}"))
            support_labels.append(colour)
    ape_query = save(objects[3 * 8 + 4]["image"], "ape_query_green_star")
    ape = [[DEFAULT_CLIP, support, "\n".join(support_labels), ape_query]]
    # Few-shot video: 3-way 1-shot from the meta-test classes, the query another clip of the first class.
    clips = make_action_videos(2, split="meta_test", num_frames=8, config=world)
    classes = clips.features["label"].names
    metadata = write_video_folder(clips.select_columns(["frames", "label_name"]), folder / "clips", fps=8)
    records = [json.loads(line) for line in metadata.read_text(encoding="utf-8").splitlines()]
    video_paths = [str(metadata.parent / record["file_name"]) for record in records]
    way = 3
    video = [[DEFAULT_CLIP, video_paths[:way], "\n".join(classes[:way]), video_paths[len(classes)]]]
    return {"zero_shot": zero_shot, "segmentation": segmentation, "video": video, "ape": ape}


# --- the page --------------------------------------------------------------------------------------------------
def build_demo(
    clip: str = DEFAULT_CLIP, groupvit: str = DEFAULT_GROUPVIT, fsar: str | None = None, examples: dict | None = None
) -> gr.Blocks:
    """The page; `examples` are `write_examples(folder)`'s rows (written to a temporary folder when omitted)."""
    examples = examples or write_examples(tempfile.mkdtemp(prefix="clipzoo-space-"))
    fsar = fsar or clip
    with gr.Blocks(title="hf-clipzoo demo") as demo:
        gr.Markdown(
            "# hf-clipzoo demo\nCLIP repairs on the Hub's standard entry points. The default models are the tiny "
            "world models shipped in `foundations/`: try the examples (drawn from the embedded world) first."
        )
        with gr.Tab(TABS[0]):
            with gr.Row():
                with gr.Column():
                    zs_model = gr.Textbox(clip, label="Model folder or repo id")
                    zs_image = gr.Image(type="pil", label="Image")
                    zs_labels = gr.Textbox("red, green, blue", label="Candidate labels")
                    zs_template = gr.Textbox(ZERO_SHOT_TEMPLATE, label="Prompt template")
                    zs_button = gr.Button("Classify", variant="primary")
                zs_output = gr.Label(label="Scores")
            inputs = [zs_model, zs_image, zs_labels, zs_template]
            zs_button.click(classify_zero_shot, inputs, zs_output, api_name="zero_shot")
            gr.Examples(examples["zero_shot"], inputs, label="World examples (colour labels)")
        with gr.Tab(TABS[1]):
            with gr.Row():
                with gr.Column():
                    seg_model = gr.Textbox(groupvit, label="GroupViT folder or repo id")
                    seg_image = gr.Image(type="pil", label="Image")
                    seg_labels = gr.Textbox("circle, square, triangle", label="Labels to segment")
                    # The shipped world GroupViT is weakly confident: at the protocol's 0.95 nearly every pixel is
                    # background, so the demo starts at 0 (every pixel goes to its best label).
                    seg_threshold = gr.Slider(0.0, 0.99, value=0.0, step=0.01, label="Background threshold")
                    seg_button = gr.Button("Segment", variant="primary")
                with gr.Column():
                    seg_overlay = gr.Image(type="pil", label="Overlay")
                    seg_coverage = gr.Label(label="Fraction of the image per label")
            inputs = [seg_model, seg_image, seg_labels, seg_threshold]
            seg_button.click(segment, inputs, [seg_overlay, seg_coverage], api_name="segment")
            gr.Examples(examples["segmentation"], inputs, label="World scenes")
        with gr.Tab(TABS[2]):
            gr.Markdown(IDENTITY_HEAD_NOTE)
            with gr.Row():
                with gr.Column():
                    vid_model = gr.Textbox(fsar, label="CLIP-FSAR or CLIP folder / repo id")
                    vid_support = gr.File(file_count="multiple", file_types=["video"], label="Support clips")
                    vid_labels = gr.Textbox(label="Support labels (one per clip, in upload order)", lines=3)
                    vid_query = gr.File(file_types=["video"], label="Query clip")
                    vid_button = gr.Button("Classify clip", variant="primary")
                vid_output = gr.Label(label="Scores over the support classes")
            inputs = [vid_model, vid_support, vid_labels, vid_query]
            vid_button.click(classify_video, inputs, vid_output, api_name="few_shot_video")
            gr.Examples(examples["video"], inputs, label="World clips (3-way 1-shot)")
        with gr.Tab(TABS[3]):
            gr.Markdown(
                "APE (training-free): the support images become a key-value cache over the CLIP's image features; "
                "the query is scored by the prompt-ensemble text classifier plus the cache, on APE's refined channels."
            )
            with gr.Row():
                with gr.Column():
                    ape_model = gr.Textbox(clip, label="CLIP folder or repo id")
                    ape_support = gr.File(file_count="multiple", file_types=["image"], label="Support images")
                    ape_labels = gr.Textbox(label="Support labels (one per image, in upload order)", lines=3)
                    ape_query = gr.Image(type="pil", label="Query image")
                    ape_button = gr.Button("Classify image", variant="primary")
                ape_output = gr.Label(label="Scores over the support classes")
            inputs = [ape_model, ape_support, ape_labels, ape_query]
            ape_button.click(classify_ape, inputs, ape_output, api_name="ape")
            gr.Examples(examples["ape"], inputs, label="World images (2 shots of 3 colours)")
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", default=DEFAULT_CLIP, help="default zero-shot / APE model")
    parser.add_argument("--groupvit", default=DEFAULT_GROUPVIT, help="default segmentation model")
    parser.add_argument("--fsar", default=None, help="default few-shot video model (CLIP-FSAR, or a CLIP folder)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = parser.parse_args(argv)
    build_demo(args.clip, args.groupvit, args.fsar).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
