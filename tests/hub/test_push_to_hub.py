"""Acceptance: push a tiny zoo model + processor to the loopback Hub, load it back by repo id, with and without
the package installed, and get identical logits. Also the training scripts' `push_folder_to_hub`."""

import json

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import RepositoryNotFoundError
from PIL import Image
from transformers import AutoModel, AutoProcessor, CLIPImageProcessorPil, CLIPTokenizer

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel, ZooCLIPProcessor
from hf_clipzoo.hub.model_card import render_model_card, save_model_card
from hf_clipzoo.training.hub import push_folder_to_hub
from tests.testing_utils import REPO_ROOT, TINY_TEXT_CONFIG, TINY_VISION_CONFIG, run_without_package

LETTERS = "abcdefghijklmnopqrstuvwxyz"
CAPTIONS = ["a red square", "a blue circle", "two dots"]


def tiny_processor() -> ZooCLIPProcessor:
    # The real CLIP BPE has 49,408 ids; the tiny towers have 99, so a character-level vocabulary stands in.
    vocab = {c: i for i, c in enumerate(LETTERS)}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate(LETTERS)})
    vocab.update({"<|startoftext|>": 97, "<|endoftext|>": 98})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    return ZooCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_model() -> ZooCLIPModel:
    torch.manual_seed(0)
    config = ZooCLIPConfig(text_config=TINY_TEXT_CONFIG, vision_config=TINY_VISION_CONFIG, projection_dim=16)
    return ZooCLIPModel(config).eval()


def images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 36), colour) for colour in ("red", "navy", "white")]


def logits(model, processor) -> torch.Tensor:
    batch = processor(text=CAPTIONS, images=images(), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits_per_image


def test_push_to_hub_then_load_by_repo_id(fake_hub, tmp_path):
    model, processor = tiny_model(), tiny_processor()
    expected = logits(model, processor)
    commit = model.push_to_hub("org/tiny-clip", commit_message="tiny model")
    processor.push_to_hub("org/tiny-clip", commit_message="tiny processor")
    assert commit.oid == fake_hub.commits("org/tiny-clip")[1].oid  # [0] is the repo creation

    files = fake_hub.files("org/tiny-clip")
    assert {"config.json", "model.safetensors", "modeling_clip.py", "configuration_clip.py"} <= set(files)
    assert {"processor_config.json", "README.md"} <= set(files) and not any(f.endswith((".bin", ".pt")) for f in files)
    assert json.loads(files["config.json"])["auto_map"]["AutoModel"] == "modeling_clip.ZooCLIPModel"

    # A fresh cache: everything below really goes through the HTTP server.
    reloaded = AutoModel.from_pretrained("org/tiny-clip")
    reprocessor = AutoProcessor.from_pretrained("org/tiny-clip")
    assert type(reloaded) is ZooCLIPModel and type(reprocessor) is ZooCLIPProcessor
    torch.testing.assert_close(logits(reloaded, reprocessor), expected, atol=0, rtol=0)
    assert fake_hub.unhandled == [] or all(path == "/api/agent-harnesses" for _, path in fake_hub.unhandled)

    # A user without hf_clipzoo: code comes from the repo (`trust_remote_code=True`), in a fresh interpreter.
    batch = dict(processor(text=CAPTIONS, images=images(), padding=True, return_tensors="pt"))
    torch.save({"batch": batch, "expected": expected}, tmp_path / "io.pt")
    images()[0].save(tmp_path / "red.png")
    (tmp_path / "captions.json").write_text(json.dumps(CAPTIONS))
    result = run_without_package(
        """
        import json, torch, transformers
        from PIL import Image
        io = torch.load("io.pt", weights_only=True)
        model = transformers.AutoModel.from_pretrained("org/tiny-clip", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        processor = transformers.AutoProcessor.from_pretrained("org/tiny-clip", trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        batch = processor(text=json.load(open("captions.json")), images=[Image.open("red.png")], padding=True, return_tensors="pt")
        torch.testing.assert_close(batch["input_ids"], io["batch"]["input_ids"], atol=0, rtol=0)
        with torch.no_grad():
            out = model(**io["batch"])
        torch.testing.assert_close(out.logits_per_image, io["expected"], atol=0, rtol=0)
        # The model card's one-line snippet: the zero-shot pipeline straight from the repo id (the tiny tokenizer is
        # character-level with 16 positions, hence the bare hypothesis template).
        classifier = transformers.pipeline(
            "zero-shot-image-classification", model="org/tiny-clip", trust_remote_code=True
        )
        print("PIPELINE", classifier(Image.open("red.png"), candidate_labels=["square", "circle"], hypothesis_template="{}"))
        """,
        cwd=tmp_path,
        env={**fake_hub.env(tmp_path / "child_home"), "HF_MODULES_CACHE": str(tmp_path / "child_modules")},
    )
    assert "PIPELINE [{" in result.stdout, result.stdout


def test_push_folder_to_hub_uploads_the_rendered_card(fake_hub, tmp_path):
    folder = tmp_path / "final"
    model, processor = tiny_model(), tiny_processor()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    metrics = {"zero_shot/top1_accuracy": 0.625, "retrieval/image_to_text_R@1": 0.5, "train/loss": 2.25}
    card = render_model_card(
        "clip", model_id="org/final", datasets=["hf-clipzoo/embedded-world"], metrics=metrics,
        training_args={"learning_rate": 5e-4, "hub_token": fake_hub.token}, pipeline_tag="zero-shot-image-classification",
    )  # fmt: skip
    save_model_card(folder, card)
    (folder / "optimizer.pt").write_bytes(b"not for the Hub")  # a stray pickle must never be uploaded

    url = push_folder_to_hub(folder, "org/final", commit_message="final weights")
    head = fake_hub.commits("org/final")[-1]
    assert url == f"{fake_hub.endpoint}/org/final/commit/{head.oid}" and head.title == "final weights"
    uploaded = fake_hub.files("org/final")
    local = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "optimizer.pt"}
    assert {k: v for k, v in uploaded.items() if k != ".gitattributes"} == local
    assert fake_hub.token.encode() not in uploaded["README.md"]

    # The Hub sees the card's metadata, with the run's numbers in the model-index.
    info = HfApi().model_info("org/final")
    assert info.pipeline_tag == "zero-shot-image-classification" and "hf-clipzoo" in info.tags
    results = {r.metric_name: r.metric_value for r in ModelCard(uploaded["README.md"].decode()).data.eval_results}
    assert results == {"zero_shot/top1_accuracy": 0.625, "retrieval/image_to_text_R@1": 0.5}
    # Pushing again (exist_ok) with unchanged files makes no new commit.
    assert push_folder_to_hub(folder, "org/final") == url

    loaded = AutoModel.from_pretrained("org/final")
    torch.testing.assert_close(logits(loaded, processor), logits(model, processor), atol=0, rtol=0)


def test_push_folder_to_hub_rejects_a_folder_without_config(fake_hub, tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        push_folder_to_hub(tmp_path, "org/empty")
    assert fake_hub.repo_ids() == []


def test_repo_root_templates_are_the_package_templates():
    # `model_cards/` at the repository root is a symlink to the templates shipped inside the package.
    assert (REPO_ROOT / "model_cards").resolve() == (REPO_ROOT / "hf_clipzoo" / "hub" / "model_cards").resolve()


def test_push_folder_to_hub_private_and_bad_repo_id(fake_hub, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    push_folder_to_hub(tmp_path, "org/private-run", private=True)
    assert HfApi().model_info("org/private-run").private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info("org/private-run")
    with pytest.raises(ValueError, match="repo_id"):
        push_folder_to_hub(tmp_path, " ")


def test_weights_over_the_lfs_threshold_take_the_lfs_path_and_reload(tmp_path):
    """The Hub's path for large files: preupload says "lfs", the client asks the LFS batch endpoint, PUTs the bytes to
    the href it gets, verifies, commits a pointer; downloads resolve to the stored object."""
    from safetensors.torch import load_file

    from hf_clipzoo.testing import FakeHub

    folder = tmp_path / "final"
    model, processor = tiny_model(), tiny_processor()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    threshold = max(size for name, size in sizes.items() if name != "model.safetensors") + 1
    assert sizes["model.safetensors"] >= threshold

    with FakeHub(lfs_threshold=threshold) as hub, hub.activate(tmp_path / "hf_home"):
        url = push_folder_to_hub(folder, "org/large")
        modes = {path: mode for repo_id, path, mode in hub.upload_modes if repo_id == "org/large"}
        assert modes.pop("model.safetensors") == "lfs"
        assert modes and set(modes.values()) == {"regular"} and "config.json" in modes
        assert ("POST", "/org/large.git/info/lfs/objects/batch") in hub.requests
        assert any(method == "PUT" and path.startswith("/lfs-objects/") for method, path in hub.requests)
        assert any(method == "POST" and path.endswith("/verify") for method, path in hub.requests)
        assert hub.unhandled == []

        (entry,) = HfApi().get_paths_info("org/large", ["model.safetensors"])
        assert entry.lfs is not None and entry.lfs.size == sizes["model.safetensors"]
        # An unchanged LFS file is recognised by its sha256: pushing again makes no new commit.
        assert push_folder_to_hub(folder, "org/large") == url

        loaded = AutoModel.from_pretrained("org/large")
        expected = load_file(folder / "model.safetensors")
        reloaded = {k: v for k, v in loaded.state_dict().items() if k in expected}
        assert reloaded.keys() == expected.keys()
        assert all(torch.equal(reloaded[k], expected[k]) for k in expected)
