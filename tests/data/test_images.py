"""The one image policy (`to_rgb_image`) and every entry point that uses it: processors, collators, video frames."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipzoo.data.collate import ImageTextCollator, decode_image
from hf_clipzoo.data.images import to_rgb_image
from hf_clipzoo.data.video import preprocess_videos
from hf_clipzoo.models.clip_fsar.processing_clip_fsar import CLIPFSARProcessor
from hf_clipzoo.models.dreamlip.processing_dreamlip import DreamLIPProcessor
from hf_clipzoo.models.fff.processing_fff import FFFProcessor
from hf_clipzoo.models.groupvit.processing_groupvit import ZooGroupViTProcessor
from hf_clipzoo.models.ma_clip.processing_ma_clip import MACLIPProcessor
from tests.models.clip.test_processing_clip import tiny_processor

RNG = np.random.default_rng(0)
UINT8 = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)  # every value of the 8-bit range, a non-square image
GREY8 = RNG.integers(0, 256, (12, 10), dtype=np.uint8)


def saved(image: Image.Image, fmt: str) -> Image.Image:
    """`image` written to a real file of format `fmt` and read back, as a dataset would hand it over."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    reloaded = Image.open(io.BytesIO(buffer.getvalue()))
    reloaded.load()
    return reloaded


def grey_rgb(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=-1)


# --- the policy -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_png_and_tiff_files_scale_to_their_8_bit_values(mode):
    sixteen = GREY8.astype(np.uint16) * 257  # how a 16-bit writer stores the 8-bit value v
    # frombytes, not convert: Pillow's I;16 -> I;16B conversion itself clips at 255.
    image = Image.frombytes(mode, GREY8.shape[::-1], sixteen.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    for fmt in ("PNG", "TIFF"):
        file_image = saved(image, fmt)
        assert file_image.mode in ("I;16", "I;16B", "I")  # what Pillow hands out for 16-bit files
        np.testing.assert_array_equal(np.asarray(to_rgb_image(file_image)), grey_rgb(GREY8))


def test_sixteen_bit_values_are_rounded_to_nearest():
    sixteen = np.array([[0, 128, 129, 32767, 65534, 65535]], dtype=np.uint16)
    expected = np.rint(sixteen / 257).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(Image.fromarray(sixteen)))[..., 0], expected)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(sixteen))[..., 0], expected)  # uint16 arrays alike


def test_mode_i_outside_sixteen_bits_is_refused():
    with pytest.raises(ValueError, match=r"img \(mode I\) has values in \[-1, 70000\]; expected 16-bit"):
        to_rgb_image(Image.fromarray(np.array([[-1, 70000]], dtype=np.int32)), name="img")


@pytest.mark.parametrize("scale", [1 / 255, 1.0])
def test_float_tiff_in_either_range_gives_the_8_bit_values(scale):
    floats = Image.fromarray(GREY8.astype(np.float32) * np.float32(scale), mode="F")
    file_image = saved(floats, "TIFF")
    assert file_image.mode == "F"
    np.testing.assert_array_equal(np.asarray(to_rgb_image(file_image)), grey_rgb(GREY8))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "1"])
def test_eight_bit_modes_keep_pil_conversion(mode):
    image = Image.fromarray(UINT8).convert(mode)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(image)), np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("to_tensor", [False, True])
@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("scale", [1 / 255, 1.0])
def test_float_arrays_in_zero_one_are_taken_as_scaled(to_tensor, channels_first, scale):
    values = UINT8.astype(np.float32) * np.float32(scale)
    values = np.moveaxis(values, -1, 0) if channels_first else values
    image = to_rgb_image(torch.from_numpy(values) if to_tensor else values)
    np.testing.assert_array_equal(np.asarray(image), UINT8)


@pytest.mark.parametrize(
    "values, message",
    [
        (np.full((6, 6, 3), np.nan, dtype=np.float32), "contains NaN or infinite"),
        (np.full((6, 6, 3), np.inf, dtype=np.float32), "contains NaN or infinite"),
        (np.full((6, 6, 3), -0.5, dtype=np.float32), r"has float values in \[-0.5, -0.5\]; expected \[0, 1\]"),
        (np.full((6, 6, 3), 300, dtype=np.int64), r"has integer values in \[300, 300\]; expected 8-bit"),
        (np.zeros((6, 6, 5), dtype=np.uint8), r"has shape \(6, 6, 5\); expected \(height, width\)"),
        (np.zeros((0, 6, 3), dtype=np.uint8), "is empty"),
    ],
)
def test_unreadable_arrays_are_refused_with_the_image_name(values, message):
    with pytest.raises(ValueError, match=f"img 3 {message}"):
        to_rgb_image(values, name="img 3")
    with pytest.raises(ValueError, match=f"img 3 {message}"):
        to_rgb_image(torch.from_numpy(values), name="img 3")


def test_nan_in_a_float_tiff_is_refused():
    values = GREY8.astype(np.float32) / 255
    values[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"\(mode F\) contains NaN"):
        to_rgb_image(saved(Image.fromarray(values, mode="F"), "TIFF"))


# --- every processor --------------------------------------------------------------------------------------------------
def image_processors():
    base = tiny_processor()
    parts = dict(image_processor=base.image_processor, tokenizer=base.tokenizer)
    return [base, FFFProcessor(**parts), DreamLIPProcessor(**parts), ZooGroupViTProcessor(**parts)]


@pytest.mark.parametrize("processor", image_processors(), ids=lambda p: type(p).__name__)
def test_every_image_processor_follows_the_policy(processor):
    reference = processor(images=Image.fromarray(UINT8))["pixel_values"]
    as_tensor = torch.from_numpy(UINT8).permute(2, 0, 1)
    for image in (UINT8.astype(np.float32) / 255, as_tensor.float() / 255, as_tensor, as_tensor.to(torch.float16)):
        torch.testing.assert_close(processor(images=image)["pixel_values"], reference, rtol=0, atol=0)
    sixteen = saved(Image.fromarray(GREY8.astype(np.uint16) * 257), "PNG")
    grey = processor(images=Image.fromarray(GREY8))["pixel_values"]
    torch.testing.assert_close(processor(images=sixteen)["pixel_values"], grey, rtol=0, atol=0)
    with pytest.raises(ValueError, match="Image 1 contains NaN"):
        processor(images=[UINT8, np.full((8, 8, 3), np.nan, dtype=np.float32)])


def test_segmentation_takes_float_images_as_scaled_and_refuses_nan():
    base = tiny_processor()
    processor = ZooGroupViTProcessor(image_processor=base.image_processor, tokenizer=base.tokenizer)
    reference = processor.preprocess_for_segmentation(Image.fromarray(UINT8), short_side=16)
    scaled = torch.from_numpy(UINT8).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(processor.preprocess_for_segmentation(scaled, short_side=16), reference)
    with pytest.raises(ValueError, match="Image 0 contains NaN"):
        processor.preprocess_for_segmentation(np.full((8, 8, 3), np.nan, dtype=np.float32))


@pytest.mark.parametrize("processor_class", [CLIPFSARProcessor, MACLIPProcessor])
def test_video_processors_follow_the_policy(processor_class):
    base = tiny_processor()
    processor = processor_class(image_processor=base.image_processor, tokenizer=base.tokenizer, num_frames=2)
    video = np.stack([UINT8, UINT8[::-1]])
    reference = processor(videos=[video])["pixel_values"]
    for same in (video.astype(np.float32) / 255, torch.from_numpy(video).float() / 255):
        torch.testing.assert_close(processor(videos=[same])["pixel_values"], reference, rtol=0, atol=0)
    with pytest.raises(ValueError, match="Video 0, frame 1 contains NaN"):
        processor(videos=[[UINT8, np.full((8, 8, 3), np.nan, dtype=np.float32)]])


def test_a_dark_frame_of_a_255_video_is_not_rescaled():
    processor = tiny_processor().image_processor
    bright = UINT8.astype(np.float32)
    dark = np.full_like(bright, 1.0)  # all values <= 1, on its own it would be read as [0, 1]
    out = preprocess_videos([[bright, dark]], processor)
    expected = preprocess_videos([[UINT8, np.full_like(UINT8, 1)]], processor)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


# --- the collator -----------------------------------------------------------------------------------------------------
def png(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def test_collator_decodes_sixteen_bit_png_to_its_8_bit_values():
    sixteen = png(Image.fromarray(GREY8.astype(np.uint16) * 257))
    np.testing.assert_array_equal(np.asarray(decode_image(sixteen)), grey_rgb(GREY8))
    collator = ImageTextCollator(tiny_processor())
    batch = collator([{"image": sixteen, "caption": "a grey square"}])
    expected = tiny_processor()(images=Image.fromarray(GREY8), text=["a grey square"])
    torch.testing.assert_close(batch["pixel_values"], expected["pixel_values"], rtol=0, atol=0)
    assert batch["num_skipped"] == 0


def test_collator_skips_and_counts_unconvertible_images():
    values = GREY8.astype(np.float32) / 255
    values[0, 0] = np.nan
    buffer = io.BytesIO()
    Image.fromarray(values, mode="F").save(buffer, format="TIFF")
    rows = [
        {"image": {"bytes": buffer.getvalue(), "path": None}, "caption": "nan"},
        {"image": png(Image.fromarray(UINT8)), "caption": "a square"},
    ]
    collator = ImageTextCollator(tiny_processor())
    batch = collator(rows)
    assert batch["num_skipped"] == 1 and batch["pixel_values"].shape[0] == 1
    assert collator.skipped == {"unconvertible image (mode F)": 1}


# --- the other readers of training / evaluation images ---------------------------------------------------------------
def test_diffusion_and_ape_training_images_scale_sixteen_bit_files():
    from hf_clipzoo.models.ape.building import augment_image
    from hf_clipzoo.models.diva.diffusion import CaptionedImageCollator

    sixteen = saved(Image.fromarray(GREY8.astype(np.uint16) * 257), "PNG")
    collator = CaptionedImageCollator(tiny_processor().tokenizer, max_length=8)
    images = collator([{"image": sixteen, "caption": "a grey square"}])["images"][0]
    torch.testing.assert_close(images, torch.from_numpy(grey_rgb(GREY8)).permute(2, 0, 1).float() / 255)
    expected = augment_image(Image.fromarray(GREY8), np.random.default_rng(0), 8)
    np.testing.assert_array_equal(
        np.asarray(augment_image(sixteen, np.random.default_rng(0), 8)), np.asarray(expected)
    )


def test_diva_pipeline_refuses_sixteen_bit_images_it_cannot_convert():
    from hf_clipzoo.models.diva.pipeline_diva import images_to_tensor

    with pytest.raises(ValueError, match=r"Image 0 has mode 'I;16' \(16-bit or float\)"):
        images_to_tensor([Image.fromarray(GREY8.astype(np.uint16) * 257)])


def test_diva_pipeline_refuses_floats_outside_zero_one_instead_of_guessing_a_scale():
    import torch

    from hf_clipzoo.models.diva.pipeline_diva import images_to_tensor

    unit = np.random.default_rng(0).random((4, 4, 3), dtype=np.float32)
    assert torch.equal(images_to_tensor([unit]), torch.from_numpy(unit).permute(2, 0, 1)[None])
    with pytest.raises(ValueError, match=r"Image 0 has float values in \[.*\]; expected \[0, 1\]"):
        images_to_tensor([unit * 255])  # an 8-bit image as floats: taking it as [0, 1] would be silently wrong
    with pytest.raises(ValueError, match="Image 0 contains NaN"):
        images_to_tensor([np.full((4, 4, 3), np.nan, dtype=np.float32)])
    with pytest.raises(ValueError, match="dtype uint16"):
        images_to_tensor([np.zeros((4, 4, 3), dtype=np.uint16)])
    with pytest.raises(ValueError, match="The `images` tensor has float values"):
        images_to_tensor(torch.full((1, 3, 4, 4), 2.0))
