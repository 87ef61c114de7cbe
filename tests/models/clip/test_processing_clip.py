import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, CLIPImageProcessorPil, CLIPTokenizer

from hf_clipzoo import ZooCLIPProcessor
from tests.testing_utils import checked_without_package

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP BPE tokenizer whose ids fit the tiny test vocabulary (99, bos 97, eos = pad 98)."""
    vocab = {c: i for i, c in enumerate(LETTERS)}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate(LETTERS)})
    vocab.update({".": 52, ".</w>": 53, "<|startoftext|>": 97, "<|endoftext|>": 98})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def tiny_processor() -> ZooCLIPProcessor:
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    return ZooCLIPProcessor(image_processor=image_processor, tokenizer=tiny_tokenizer())


def test_outputs_match_clip_processor_shapes():
    processor = tiny_processor()
    batch = processor(text=["a cat", "a big dog"], images=[Image.new("RGB", (50, 40), "red")] * 2)
    assert batch["pixel_values"].shape == (2, 3, 30, 30)
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"][0, 0] == 97
    assert (batch["input_ids"] == 98).any(dim=1).all()  # every caption ends with EOS, which the tower pools at


def test_truncates_to_model_max_length():
    batch = tiny_processor()(text=["a " * 40])
    assert batch["input_ids"].shape[1] == 16 and batch["input_ids"][0, -1] == 98


def test_converts_modes_and_arrays():
    processor = tiny_processor()
    grey = processor(images=Image.new("L", (30, 30), 128))["pixel_values"]
    rgb = processor(images=Image.new("RGB", (30, 30), (128, 128, 128)))["pixel_values"]
    torch.testing.assert_close(grey, rgb)
    array = processor(images=np.full((30, 30, 3), 128, dtype=np.uint8))["pixel_values"]
    torch.testing.assert_close(array, rgb)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"images": Image.new("F", (30, 30), float("nan"))}, r"Image 0 \(mode F\) contains NaN"),
        ({"images": np.zeros((30, 30, 5), dtype=np.uint8)}, r"expected \(height, width\), \(height, width, 1\|3\|4\)"),
        ({"images": torch.full((3, 30, 30), -1.5)}, r"float values in \[-1.5, -1.5\]; expected \[0, 1\]"),
        ({"images": []}, "non-empty list"),
        ({"images": ["cat.jpg"]}, "type str"),
        ({"text": ""}, "Text 0 is empty"),
        ({"text": ["a cat", "   "]}, "Text 1 is empty"),
        ({"text": ["a cat", None]}, "Text 1 has type NoneType"),
        ({}, "Pass `images`, `text` or both"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_processor()(**kwargs)


def test_save_load_round_trip(tmp_path):
    import hf_clipzoo  # noqa: F401  (registers the processor class)

    processor = tiny_processor()
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is ZooCLIPProcessor
    image = Image.new("RGB", (64, 48), "blue")
    a, b = processor(text=["a cat"], images=image), reloaded(text=["a cat"], images=image)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def _remote_code_processor_case(folder):
    tiny_processor().save_pretrained(folder / "proc")
    image = Image.new("RGB", (64, 48), "blue")
    image.save(folder / "image.png")
    expected = dict(tiny_processor()(text=["a cat"], images=image))
    torch.save(expected, folder / "expected.pt")
    # The bundled copy of the shared image policy: a [0, 1] float tensor and a 16-bit PNG give the 8-bit result.
    grey = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) % 256
    Image.fromarray((grey * 257).astype(np.uint16)).save(folder / "grey16.png")
    torch.save(dict(tiny_processor()(images=Image.fromarray(grey.astype(np.uint8)))), folder / "grey.pt")
    return """
        import numpy as np, torch, transformers
        from PIL import Image
        processor = transformers.AutoProcessor.from_pretrained("proc", trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        out = processor(text=["a cat"], images=Image.open("image.png"))
        expected = torch.load("expected.pt", weights_only=True)
        for key, value in expected.items():
            torch.testing.assert_close(out[key], value)
        scaled = torch.from_numpy(np.asarray(Image.open("image.png"))).permute(2, 0, 1).float() / 255
        torch.testing.assert_close(processor(images=scaled)["pixel_values"], expected["pixel_values"])
        grey = torch.load("grey.pt", weights_only=True)["pixel_values"]
        torch.testing.assert_close(processor(images=Image.open("grey16.png"))["pixel_values"], grey)
        try:
            processor(images=torch.full((3, 8, 8), float("nan")))
        except ValueError as error:
            assert "NaN" in str(error), error
        else:
            raise AssertionError("NaN image accepted")
        try:
            processor(text=[""])
        except ValueError as error:
            assert "empty" in str(error)
        else:
            raise AssertionError("empty caption accepted")
        """


@checked_without_package(_remote_code_processor_case)
def test_remote_code_processor_in_fresh_interpreter(without_package):
    assert without_package.error is None, without_package.error


def _official_text_cleaning_case(folder):
    from hf_clipzoo.backbones.processing import build_clip_processor

    build_clip_processor(image_size=32).save_pretrained(folder / "proc")
    texts = ["fish &amp; chips", "a cafÃ© with ﬁsh"]
    expected = build_clip_processor(image_size=32)(text=texts)["input_ids"]
    torch.save(expected, folder / "expected.pt")
    return f"""
        import torch, transformers
        processor = transformers.AutoProcessor.from_pretrained("proc", trust_remote_code=True)
        tokenizer = processor.tokenizer
        assert type(tokenizer).__name__ == "ZooCLIPTokenizer", type(tokenizer)
        assert type(tokenizer).__module__.startswith("transformers_modules"), type(tokenizer).__module__
        assert tokenizer.text_cleaning == "official"
        out = processor(text={texts!r})["input_ids"]
        torch.testing.assert_close(out, torch.load("expected.pt", weights_only=True))
        assert out[0].tolist()[:5] == processor(text=["fish & chips"])["input_ids"][0].tolist()[:5]
        """


@checked_without_package(_official_text_cleaning_case)
def test_remote_code_processor_keeps_the_official_text_cleaning(without_package):
    """A processor with the zoo's CLIP tokenizer: the cleaning (ftfy, HTML entities) survives remote-code loading."""
    assert without_package.error is None, without_package.error
