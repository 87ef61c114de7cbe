"""The zoo's custom pipelines through `transformers.pipeline`: with the package (registry), from a saved folder
(`custom_pipelines` + bundled code), and without the package in a fresh interpreter."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import hf_clipzoo  # noqa: F401  (registers the zoo classes and pipelines)
from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.models.clip_fsar import CLIPFSARConfig, CLIPFSARModel, CLIPFSARProcessor
from hf_clipzoo.models.groupvit import ZooGroupViTConfig, ZooGroupViTModel, build_groupvit_processor
from hf_clipzoo.models.ma_clip import MACLIPModel, MACLIPProcessor
from hf_clipzoo.pipelines.few_shot_video import FewShotVideoClassifier
from hf_clipzoo.pipelines.zero_shot_segmentation import ZeroShotSegmentationPipeline
from tests.testing_utils import check_card_pipeline_tag, checked_without_package

T = 4
# bg_thresh 0: no background, so the masks of a random tiny model still partition the image.
SEGMENTATION_OPTIONS = dict(crop_size=32, stride=16, short_side=32, bg_thresh=0.0)
LABELS = ["circle", "square", "star"]


def video(seed, frames=T, size=20):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(frames)]


def scene(seed=1):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 40, 3), dtype=np.uint8))


EPISODE = dict(
    support_videos=[video(i) for i in range(6)],
    support_labels=["left", "left", "right", "right", "up", "up"],
    query_videos=[video(10), video(11)],
)


# Each builder saves its tiny model into `folder`: the module's fixtures and the packageless case share them.
def build_groupvit(folder):
    torch.manual_seed(0)
    model = ZooGroupViTModel(ZooGroupViTConfig.from_preset("world-micro")).eval()
    processor = build_groupvit_processor(32)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor, folder


def build_clip_fsar(folder):
    clip = build_clip_processor(16, 77)
    processor = CLIPFSARProcessor(clip.image_processor, clip.tokenizer, num_frames=T)
    torch.manual_seed(0)
    model = CLIPFSARModel(CLIPFSARConfig.from_preset("world-micro", num_frames=T, vision_config={"image_size": 16}))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model.eval(), processor, folder


def build_ma_clip(folder):
    clip = build_clip_processor(16, 77)
    processor = MACLIPProcessor(clip.image_processor, clip.tokenizer, num_frames=T)
    torch.manual_seed(0)
    base = ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro", vision_config={"image_size": 16}))
    model = MACLIPModel.from_clip(base, num_frames=T, seed=0)
    # Adapters start as the identity; perturb them so the fused prediction depends on them.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "adapter" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model.eval(), processor, folder


@pytest.fixture(scope="module")
def groupvit(tmp_path_factory):
    return build_groupvit(tmp_path_factory.mktemp("pipelines") / "groupvit")


@pytest.fixture(scope="module")
def clip_fsar(tmp_path_factory):
    return build_clip_fsar(tmp_path_factory.mktemp("pipelines") / "clip_fsar")


@pytest.fixture(scope="module")
def ma_clip(tmp_path_factory):
    return build_ma_clip(tmp_path_factory.mktemp("pipelines") / "ma_clip")


def same_masks(a, b):
    assert [r["label"] for r in a] == [r["label"] for r in b]
    for x, y in zip(a, b):
        assert x["score"] == y["score"] and np.array_equal(np.asarray(x["mask"]), np.asarray(y["mask"]))


def test_folders_record_their_custom_pipelines(groupvit, clip_fsar, ma_clip):
    for (*_, folder), task, file in (
        (groupvit, "zero-shot-image-segmentation", "clipzoo_pipelines_zero_shot_segmentation"),
        (clip_fsar, "few-shot-video-classification", "clipzoo_pipelines_few_shot_video"),
        (ma_clip, "few-shot-video-classification", "clipzoo_pipelines_few_shot_video"),
    ):
        entry = json.loads((folder / "config.json").read_text())["custom_pipelines"]
        assert list(entry) == [task] and entry[task]["impl"].startswith(file + ".")
        assert entry[task]["pt"] == ["AutoModel"]
        assert (folder / f"{file}.py").is_file()


def test_segmentation_through_pipeline_matches_the_class(groupvit):
    model, processor, folder = groupvit
    expected = ZeroShotSegmentationPipeline(model, processor, **SEGMENTATION_OPTIONS)(scene(), candidate_labels=LABELS)
    assert sum(r["score"] for r in expected) == pytest.approx(1.0)
    # The registered task, with the package's objects...
    direct = pipeline("zero-shot-image-segmentation", model=model, processor=processor, **SEGMENTATION_OPTIONS)
    assert type(direct) is ZeroShotSegmentationPipeline
    same_masks(direct(scene(), candidate_labels=LABELS), expected)
    # ...and the folder's own pipeline, from its path alone.
    loaded = pipeline(
        "zero-shot-image-segmentation", model=str(folder), trust_remote_code=True, **SEGMENTATION_OPTIONS
    )
    same_masks(loaded(scene(), candidate_labels=LABELS), expected)
    # A list of images gives one result list per image; a path loads like an image.
    scene().save(folder.parent / "scene.png")
    for got in loaded([scene(), str(folder.parent / "scene.png")], candidate_labels=LABELS):
        same_masks(got, expected)
    with pytest.raises(ValueError, match="candidate_labels"):
        loaded(scene())
    with pytest.raises(ValueError, match="Unknown options"):
        loaded(scene(), candidate_labels=LABELS, bogus=1)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("zero-shot-image-segmentation", model=str(folder))


def test_few_shot_through_pipeline_matches_the_class(clip_fsar):
    model, processor, folder = clip_fsar
    expected = FewShotVideoClassifier(model, processor)(**EPISODE)
    direct = pipeline("few-shot-video-classification", model=model, processor=processor)
    assert type(direct) is FewShotVideoClassifier
    assert direct(**EPISODE) == expected
    loaded = pipeline("few-shot-video-classification", model=str(folder), trust_remote_code=True)
    assert loaded(EPISODE["support_videos"], EPISODE["support_labels"], EPISODE["query_videos"]) == expected
    # Episodes as dicts: one, or a list of them.
    assert loaded(EPISODE) == expected
    assert loaded([EPISODE, EPISODE], top_k=1) == [[ranked[:1] for ranked in expected]] * 2
    with pytest.raises(ValueError, match="exactly those keys"):
        loaded({"support_videos": EPISODE["support_videos"]})
    with pytest.raises(ValueError, match="`top_k` must be >= 1"):
        loaded(EPISODE, top_k=0)
    with pytest.raises(ValueError, match="`processor` is required"):
        FewShotVideoClassifier(model)


def test_ma_clip_through_the_pipeline_ranks_by_its_fused_prediction(ma_clip):
    model, processor, folder = ma_clip
    episode = processor(
        videos=EPISODE["support_videos"] + EPISODE["query_videos"], class_names=["left", "right", "up"]
    )
    with torch.no_grad():
        probs = model(
            support_pixel_values=episode["pixel_values"][:6], support_labels=torch.tensor([0, 0, 1, 1, 2, 2]),
            query_pixel_values=episode["pixel_values"][6:], input_ids=episode["input_ids"],
            attention_mask=episode["attention_mask"],
        ).probs  # fmt: skip
    for classify in (
        pipeline("few-shot-video-classification", model=model, processor=processor),
        pipeline("few-shot-video-classification", model=str(folder), trust_remote_code=True),
    ):
        ranked = classify(**EPISODE)
        for row, got in zip(probs, ranked):
            want = sorted(zip(row.tolist(), ["left", "right", "up"]), reverse=True)
            assert [r["label"] for r in got] == [name for _, name in want]
            np.testing.assert_allclose([r["score"] for r in got], [p for p, _ in want], atol=1e-6)
    assert processor.prompts(["jump"]) == ["a video of jump."]  # the prompt the MA-CLIP script trains with


def test_a_reloaded_model_saves_its_pipeline_again(groupvit, tmp_path):
    from transformers import AutoModel

    *_, folder = groupvit
    AutoModel.from_pretrained(folder).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "zero-shot-image-segmentation" in config["custom_pipelines"]
    assert (tmp_path / "clipzoo_pipelines_zero_shot_segmentation.py").is_file()


def test_cards_pipeline_tags_load_through_pipeline(groupvit, clip_fsar):
    from hf_clipzoo.hub.model_card import render_model_card, save_model_card

    # The tags the two scripts give their cards (script tests check the cards the scripts really write).
    for (*_, folder), method, tag in ((groupvit, "groupvit", "zero-shot-image-classification"),
                                      (clip_fsar, "clip_fsar", None)):  # fmt: skip
        save_model_card(folder, render_model_card(method, model_id=folder.name, pipeline_tag=tag))
        check_card_pipeline_tag(folder)


def _saved_folders_case(folder):
    seg_model, seg_processor, seg_folder = build_groupvit(folder / "groupvit")
    fsar_model, fsar_processor, fsar_folder = build_clip_fsar(folder / "clip_fsar")
    ma_clip_model, ma_clip_processor, ma_clip_folder = build_ma_clip(folder / "ma_clip")
    segments = ZeroShotSegmentationPipeline(seg_model, seg_processor, **SEGMENTATION_OPTIONS)(
        scene(), candidate_labels=LABELS
    )
    expected = {
        "masks": [np.asarray(r["mask"]).tolist() for r in segments],
        "scores": [r["score"] for r in segments],
        "ranked": {
            str(fsar_folder): FewShotVideoClassifier(fsar_model, fsar_processor)(**EPISODE),
            str(ma_clip_folder): FewShotVideoClassifier(ma_clip_model, ma_clip_processor)(**EPISODE),
        },
    }
    (folder / "expected.json").write_text(json.dumps(expected))
    scene().save(folder / "scene.png")
    for name, frames in (("support", EPISODE["support_videos"]), ("query", EPISODE["query_videos"])):
        np.save(folder / f"{name}.npy", np.stack([np.stack([np.asarray(f) for f in v]) for v in frames]))
    return f"""
        import json
        import numpy as np
        from PIL import Image
        from transformers import pipeline

        expected = json.load(open("expected.json"))
        segmenter = pipeline("zero-shot-image-segmentation", model={str(seg_folder)!r}, trust_remote_code=True,
                             crop_size=32, stride=16, short_side=32, bg_thresh=0.0)
        assert type(segmenter).__module__.startswith("transformers_modules"), type(segmenter).__module__
        assert type(segmenter.model).__module__.startswith("transformers_modules"), type(segmenter.model).__module__
        results = segmenter(Image.open("scene.png"), candidate_labels={LABELS!r})
        assert [np.asarray(r["mask"]).tolist() for r in results] == expected["masks"]
        assert [r["score"] for r in results] == expected["scores"]

        support, query = list(np.load("support.npy")), list(np.load("query.npy"))
        for folder, expected_ranked in expected["ranked"].items():  # CLIP-FSAR and MA-CLIP
            classifier = pipeline("few-shot-video-classification", model=folder, trust_remote_code=True)
            assert type(classifier).__module__.startswith("transformers_modules"), type(classifier).__module__
            ranked = classifier(support, {EPISODE["support_labels"]!r}, query)
            for got, want in zip(ranked, expected_ranked):
                assert [r["label"] for r in got] == [r["label"] for r in want], (folder, got, want)
                np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-6)
        """


@checked_without_package(_saved_folders_case)
def test_saved_folders_run_their_pipelines_without_the_package(without_package):
    assert without_package.error is None, without_package.error


def test_segmentation_takes_its_labels_positionally_as_the_bench_and_the_space_pass_them(groupvit):
    segmenter = ZeroShotSegmentationPipeline.from_pretrained(groupvit[2], **SEGMENTATION_OPTIONS)
    same_masks(segmenter(scene(), LABELS), segmenter(scene(), candidate_labels=LABELS))
