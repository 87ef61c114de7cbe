"""`caption_is_true`: the world's ground truth of which (image, caption) pairs really match."""

from hf_clipzoo.data.synthetic import WorldConfig, make_scenes
from hf_clipzoo.data.synthetic.captions import caption_is_true

OBJECTS = [{"colour": "red", "shape": "circle"}, {"colour": "blue", "shape": "star"}]
BACKGROUND = {"texture": "striped", "colour": "dark grey"}


def test_hand_cases():
    assert caption_is_true("a red circle", OBJECTS, BACKGROUND)
    assert caption_is_true("a big red circle and a blue star", OBJECTS, BACKGROUND)
    assert not caption_is_true("a blue circle", OBJECTS, BACKGROUND)  # wrong colour binding
    assert not caption_is_true("a green ring", OBJECTS, BACKGROUND)
    assert caption_is_true("a star", OBJECTS, BACKGROUND)
    assert not caption_is_true("a square", OBJECTS, BACKGROUND)
    assert caption_is_true("two shapes", OBJECTS, BACKGROUND)
    assert not caption_is_true("three objects on a striped background", OBJECTS, BACKGROUND)
    assert caption_is_true("a red circle on a dark grey background", OBJECTS, BACKGROUND)
    assert not caption_is_true("a red circle on a grey background", OBJECTS, BACKGROUND)
    assert caption_is_true("abstract art", OBJECTS, BACKGROUND)  # generic alt-text fits every scene


def test_every_correct_text_of_the_world_is_true_of_its_own_scene():
    # Long captions and pseudo-captions are always correct; short alt-text is wrong only through colour noise.
    scenes = make_scenes(60, split="val", config=WorldConfig(image_size=32))
    for row in scenes:
        for text in [row["long_caption"], *row["pseudo_captions"]]:
            assert caption_is_true(text, row["objects"], row["background"]), text
    noisy = make_scenes(60, split="val", config=WorldConfig(image_size=32, wrong_colour_prob=0.0))
    assert all(caption_is_true(r["caption"], r["objects"], r["background"]) for r in noisy)
