"""CLIP-FSAR processor (videos, class prompts, files) and the few-shot video classifier on a tiny random model."""

import numpy as np
import pytest
import torch
from PIL import Image

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.models.clip_fsar import CLIPFSARConfig, CLIPFSARModel, CLIPFSARProcessor
from hf_clipzoo.pipelines.few_shot_video import FewShotVideoClassifier
from tests.testing_utils import checked_without_package

T = 4


def tiny_processor() -> CLIPFSARProcessor:
    clip = build_clip_processor(16, 77)
    return CLIPFSARProcessor(clip.image_processor, clip.tokenizer, num_frames=T)


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def video(seed, frames=T, size=20):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(frames)]


def test_videos_to_pixel_values(processor):
    arrays = np.stack([np.asarray(f) for f in video(1)])  # [T, H, W, 3]
    batch = processor(videos=[video(0), arrays, video(2, frames=9)], return_tensors="pt")
    assert batch["pixel_values"].shape == (3, T, 3, 16, 16)
    single = processor(videos=[arrays])["pixel_values"][0]
    torch.testing.assert_close(batch["pixel_values"][1], single)
    # A short video repeats its frames in order instead of failing.
    short = processor(videos=[video(3, frames=2)])["pixel_values"][0]
    torch.testing.assert_close(short[0], short[1])


def test_class_names_use_the_prompt(processor):
    batch = processor(class_names=["moving left", "growing"])
    expected = processor.tokenizer(["a photo of moving left", "a photo of growing"], padding=True, return_tensors="pt")
    torch.testing.assert_close(batch["input_ids"], expected["input_ids"])
    assert processor.prompts(["x"]) == ["a photo of x"]


def test_bad_inputs(processor, tmp_path):
    with pytest.raises(ValueError, match="Pass `videos`"):
        processor()
    with pytest.raises(ValueError, match="empty"):
        processor(class_names=[""])
    with pytest.raises(FileNotFoundError):
        processor(videos=[str(tmp_path / "missing.mp4")])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="Could not open video|Could not decode"):
        processor(videos=[str(broken)])
    with pytest.raises(ValueError, match="expected at least 1 frame"):
        processor(videos=[[]])
    with pytest.raises(ValueError, match="text_prompt"):
        CLIPFSARProcessor(processor.image_processor, processor.tokenizer, text_prompt="no placeholder")
    with pytest.raises(ValueError, match="num_frames"):
        CLIPFSARProcessor(processor.image_processor, processor.tokenizer, num_frames=0)


def test_save_load_round_trip(processor, tmp_path):
    custom = CLIPFSARProcessor(processor.image_processor, processor.tokenizer, num_frames=6, text_prompt="{} video")
    custom.save_pretrained(tmp_path)
    reloaded = CLIPFSARProcessor.from_pretrained(tmp_path)
    assert reloaded.num_frames == 6 and reloaded.text_prompt == "{} video"
    assert reloaded(videos=[video(0)])["pixel_values"].shape == (1, 6, 3, 16, 16)


def test_pipeline_on_tiny_random_model(processor):
    config = CLIPFSARConfig.from_preset("world-micro", num_frames=T, vision_config={"image_size": 16})
    torch.manual_seed(0)
    model = CLIPFSARModel(config)
    classifier = FewShotVideoClassifier(model, processor)
    support = [video(i) for i in range(6)]
    labels = ["left", "left", "right", "right", "up", "up"]
    queries = [video(10), video(11)]
    results = classifier(support, labels, queries)
    assert len(results) == 2 and all(len(r) == 3 for r in results)
    for ranked in results:
        assert {r["label"] for r in ranked} == {"left", "right", "up"}
        assert sum(r["score"] for r in ranked) == pytest.approx(1.0, abs=1e-5)
        assert ranked == sorted(ranked, key=lambda r: -r["score"])
    assert model.training  # the classifier restores the mode it found
    # A query identical to one class's supports is closest to that class (identical frames: distance minimal).
    exact = classifier([video(0), video(1), video(2)], ["a", "b", "c"], [video(1)], top_k=1)
    assert exact[0][0]["label"] == "b" and len(exact[0]) == 1
    with pytest.raises(ValueError, match="same number of support videos"):
        classifier(support[:3], ["left", "left", "right"], queries)
    with pytest.raises(ValueError, match="one class name per support video"):
        classifier(support, labels[:2], queries)


def _remote_code_processor_case(folder):
    processor = tiny_processor()
    processor.save_pretrained(folder / "proc")
    frames = np.stack([np.asarray(f) for f in video(5, frames=7)])
    np.save(folder / "frames.npy", frames)
    expected = processor(videos=[frames], class_names=["growing"])
    torch.save(dict(expected), folder / "expected.pt")
    return """
        import numpy as np, torch, transformers
        processor = transformers.AutoProcessor.from_pretrained("proc", trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        out = processor(videos=[np.load("frames.npy")], class_names=["growing"])
        expected = torch.load("expected.pt", weights_only=True)
        for key, value in expected.items():
            torch.testing.assert_close(out[key], value)
        """


@checked_without_package(_remote_code_processor_case)
def test_processor_loads_as_remote_code_in_a_fresh_interpreter(without_package):
    assert without_package.error is None, without_package.error
