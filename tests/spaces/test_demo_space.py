"""The demo Space (spaces/clipzoo-demo), launched on 127.0.0.1: every tab through `gradio_client`, then the page in a
headless Chromium. The app runs on the shipped world models, with the world examples the page offers."""

import importlib.util
import os
import socket
import sys
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio", reason="the Space tests need the `space` extra (gradio, gradio_client)")
gradio_client = pytest.importorskip("gradio_client")

from PIL import Image  # noqa: E402

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "clipzoo-demo"


def load_module(name: str):
    spec = importlib.util.spec_from_file_location(f"clipzoo_space_{name}", SPACE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = load_module("app")
    examples = app.write_examples(tmp_path_factory.mktemp("space_examples"))
    demo = app.build_demo(examples=examples)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url, examples
    finally:
        demo.close()


def confidences(label_output: dict) -> dict[str, float]:
    return {row["label"]: row["confidence"] for row in label_output["confidences"]}


def test_every_tab_answers_correctly_through_gradio_client(space):
    from gradio_client import Client, handle_file

    url, examples = space
    client = Client(url, verbose=False)

    # Zero-shot: the shipped CLIP knows the world's colours (~0.94 accuracy); these examples are easy ones.
    for model, image, labels, template in examples["zero_shot"]:
        colour = Path(image).stem.split("_")[0]
        result = client.predict(model, handle_file(image), labels, template, api_name="/zero_shot")
        assert result["label"] == colour, (image, result)
        assert set(confidences(result)) == {x.strip() for x in labels.split(",")}

    model, image, labels, threshold = examples["segmentation"][0]
    overlay, coverage = client.predict(model, handle_file(image), labels, threshold, api_name="/segment")
    assert Image.open(overlay).size == Image.open(image).size
    scores = confidences(coverage)
    assert set(scores) == {x.strip() for x in labels.split(",")}
    # Threshold 0: every pixel goes to some label, so the coverages add up to the whole image.
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-6)

    model, clips, labels, query = examples["video"][0]
    result = client.predict(
        model, [handle_file(c) for c in clips], labels, handle_file(query), api_name="/few_shot_video"
    )
    scores = confidences(result)
    assert set(scores) == set(labels.splitlines()) and len(scores) == len(clips)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)

    # APE: two shots each of red, green and blue objects; the query is a green star (a shape no support has).
    model, images, labels, query = examples["ape"][0]
    result = client.predict(model, [handle_file(i) for i in images], labels, handle_file(query), api_name="/ape")
    assert result["label"] == "green", result
    assert set(confidences(result)) == {"red", "green", "blue"}


def test_bad_input_is_reported_by_name(space):
    from gradio_client import Client, handle_file

    url, examples = space
    client = Client(url, verbose=False)
    model, images, labels, query = examples["ape"][0]
    with pytest.raises(Exception, match="one label per support image"):
        client.predict(model, [handle_file(i) for i in images], "red\ngreen", handle_file(query), api_name="/ape")
    model, image, _, template = examples["zero_shot"][0]
    with pytest.raises(Exception, match="at least one label"):
        client.predict(model, handle_file(image), " , ", template, api_name="/zero_shot")


def test_page_renders_in_headless_chromium(space, tmp_path):
    shot = load_module("screenshot")
    if shot.find_chromium() is None:
        pytest.skip("no `chromium` on PATH (Debian: `apt-get install chromium`): the page is not rendered")
    url, _ = space
    dom = shot.dump_dom(url)
    app = sys.modules["clipzoo_space_app"]
    for tab in app.TABS:
        assert tab in dom, f"tab {tab!r} missing from the rendered page"
    for element in ("Model folder or repo id", "Candidate labels", "Classify", "World examples"):
        assert element in dom, f"{element!r} missing from the rendered page"

    image = Image.open(shot.screenshot(url, tmp_path / "page.png", width=800, height=600)).convert("L")
    assert image.size == (800, 600)
    low, high = image.getextrema()
    assert high - low > 100, "the screenshot is blank"


def test_clip_folder_gives_clip_fsar_with_an_identity_temporal_head(space):
    # The page says the head is the identity when built from a plain CLIP: an untrained head would scramble features.
    import torch

    app = sys.modules["clipzoo_space_app"]
    classifier, built_from_clip = app.few_shot_video_classifier(app.DEFAULT_CLIP)
    assert built_from_clip
    frames = torch.randn(3, classifier.model.config.num_frames + 1, classifier.model.config.projection_dim)
    torch.testing.assert_close(classifier.model.temporal_transformer(frames), frames)
