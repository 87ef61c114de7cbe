"""Tests of the embedded world's scenes, captions, classification set, configuration and determinism."""

import hashlib
import math
import re

import numpy as np
import pyarrow as pa
import pytest

from hf_clipzoo.data.synthetic import (
    COLOURS,
    GENERIC_CAPTIONS,
    POSITIONS,
    SEGMENTATION_CLASSES,
    SHAPES,
    WorldConfig,
    class_names,
    draw_object,
    false_negative_rate,
    make_classification,
    make_scenes,
    sample_scene,
    short_caption,
)
from hf_clipzoo.data.synthetic.config import sample_rng

SMALL = WorldConfig(seed=0, image_size=32)


def table_hash(ds) -> str:
    """sha256 of the dataset's Arrow table in IPC form: equal hashes <=> byte-identical data."""
    sink = pa.BufferOutputStream()
    table = ds.data.table
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(48, config=WorldConfig(seed=3, image_size=48))


# ----------------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 16}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": -64}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 3, "max_objects": 2}, "max_objects"),
        ({"max_objects": 10}, "max_objects"),
        ({"num_pseudo_captions": -1}, "num_pseudo_captions"),
        ({"short_caption_probs": (0.5, 0.5)}, "short_caption_probs"),
        ({"short_caption_probs": (0.5, 0.5, 0.5, -0.5, 0.0)}, "short_caption_probs"),
        ({"wrong_colour_prob": 1.5}, "wrong_colour_prob"),
        ({"image_size": 64.0}, "image_size"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WorldConfig(**kwargs)


@pytest.mark.parametrize("num", [0, -3, 2.5, True])
def test_sizes_must_be_positive_integers(num):
    with pytest.raises(ValueError, match="num_images"):
        make_scenes(num, config=SMALL)
    with pytest.raises(ValueError, match="num_per_class"):
        make_classification(num, config=SMALL)


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        make_scenes(2, split="validation", config=SMALL)
    with pytest.raises(ValueError, match="Unknown split"):
        make_classification(1, split="meta_train", config=SMALL)


# ----------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_data_and_different_seed_differs():
    from hf_clipzoo.data.synthetic import scenes

    a = make_scenes(12, config=SMALL)
    scenes._RECENT_SCENES.clear()  # generate again from scratch (make_scenes keeps the last few worlds)
    b = make_scenes(12, config=WorldConfig(seed=0, image_size=32))
    assert b is not a
    c = make_scenes(12, config=WorldConfig(seed=1, image_size=32))
    assert table_hash(a) == table_hash(b)
    assert table_hash(a) != table_hash(c)
    assert make_scenes(12, config=WorldConfig(seed=0, image_size=32)) is b  # the cache, keyed by the full config
    assert a["caption"] != c["caption"] or a["long_caption"] != c["long_caption"]


def test_splits_are_disjoint_streams_and_prefixes_are_stable():
    train = make_scenes(10, split="train", config=SMALL)
    val = make_scenes(10, split="val", config=SMALL)
    assert train["long_caption"] != val["long_caption"]
    # The number of rows never changes a row: a smaller dataset is a prefix of a larger one.
    longer = make_scenes(14, config=SMALL)
    assert longer.data.table.slice(0, 10).to_pylist() == train.data.table.to_pylist()


def test_classification_is_deterministic():
    a = make_classification(1, config=SMALL)
    b = make_classification(1, config=SMALL)
    c = make_classification(1, config=WorldConfig(seed=5, image_size=32))
    assert table_hash(a) == table_hash(b) != table_hash(c)


# ----------------------------------------------------------------------------------------------- scenes and masks


def test_scene_columns_and_masks_agree_with_objects(scenes):
    expected = {"image", "caption", "long_caption", "pseudo_captions", "nouns", "semantic_mask", "instance_mask"}
    assert expected <= set(scenes.column_names)
    for row in scenes:
        image = np.asarray(row["image"])
        semantic = np.asarray(row["semantic_mask"])
        instance = np.asarray(row["instance_mask"])
        assert image.shape == (48, 48, 3) and image.dtype == np.uint8
        assert row["semantic_mask"].mode == "L" and semantic.shape == (48, 48)
        objects = row["objects"]
        assert 1 <= len(objects) <= 4
        assert set(np.unique(instance)) == set(range(len(objects) + 1))  # every object is visible
        assert (semantic[instance == 0] == 0).all()
        for index, obj in enumerate(objects):
            region = instance == index + 1
            # Semantic class = shape; pixels carry exactly the object's recorded colour.
            assert (semantic[region] == SEGMENTATION_CLASSES.index(obj["shape"])).all()
            assert (image[region] == np.asarray(obj["rgb"], dtype=np.uint8)).all()
            # The object stays in its grid cell.
            ys, xs = np.nonzero(region)
            row_index, col_index = divmod(POSITIONS.index(obj["position"]), 3)
            assert xs.min() >= col_index * 16 - 1 and xs.max() <= (col_index + 1) * 16
            assert ys.min() >= row_index * 16 - 1 and ys.max() <= (row_index + 1) * 16
        assert row["nouns"] == list(dict.fromkeys(o["shape"] for o in objects))
        assert len(row["pseudo_captions"]) == 3


def test_object_colours_stand_out_and_sizes_are_learnable(scenes):
    # Learnability: the drawn colours are far from each other, and even small objects cover many pixels.
    rgb = np.asarray(list(COLOURS.values()), dtype=float)
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e9
    assert distances.min() > 80
    for row in scenes:
        instance = np.asarray(row["instance_mask"])
        for index, obj in enumerate(row["objects"]):
            assert (instance == index + 1).sum() >= 0.3 * math.pi * obj["radius"] ** 2


@pytest.mark.parametrize("angle, direction", [(0, "up"), (90, "right"), (180, "down"), (270, "left")])
def test_orientation_convention(angle, direction):
    opposite = {"up": "down", "down": "up", "left": "right", "right": "left"}[direction]
    masks = {}
    for shape in ("triangle", "arrow"):
        instance = np.zeros((64, 64), dtype=np.uint8)
        draw_object(np.zeros((64, 64, 3), np.uint8), shape, (255, 0, 0), 32.0, 32.0, 20.0, angle, instance=instance,
                    instance_id=1)  # fmt: skip
        masks[shape] = instance
    # Triangle: the tip reaches ~1 radius from the centre, the base only ~0.65 radius.
    ys, xs = np.nonzero(masks["triangle"])
    reach = {"up": 32 - ys.min(), "down": ys.max() + 1 - 32, "left": 32 - xs.min(), "right": xs.max() + 1 - 32}
    assert reach[direction] > reach[opposite] + 3
    # Arrow: the head (tip side) holds more pixels than the thin shaft on the other side.
    arrow = masks["arrow"]
    mass = {
        "up": arrow[:32].sum(),
        "down": arrow[32:].sum(),
        "left": arrow[:, :32].sum(),
        "right": arrow[:, 32:].sum(),
    }
    assert mass[direction] > 1.1 * mass[opposite]


@pytest.mark.parametrize("shape", SHAPES)
def test_quarter_turn_equals_array_rotation(shape):
    # Rotating by 90 degrees clockwise equals rotating the drawn mask clockwise (np.rot90 with k=-1).
    masks = []
    for angle in (0, 90):
        image = np.zeros((64, 64, 3), dtype=np.uint8)
        instance = np.zeros((64, 64), dtype=np.uint8)
        draw_object(image, shape, (255, 0, 0), 32.0, 32.0, 20.0, angle, instance=instance, instance_id=1)
        masks.append(instance)
    assert masks[0].sum() > 100
    assert (np.rot90(masks[0], k=-1) != masks[1]).mean() < 0.01


def test_circle_area_matches_formula():
    instance = np.zeros((64, 64), dtype=np.uint8)
    draw_object(np.zeros((64, 64, 3), np.uint8), "circle", (1, 2, 3), 32, 32, 20, instance=instance, instance_id=1)
    assert abs(instance.sum() - math.pi * 20**2) / (math.pi * 20**2) < 0.02


def test_classification_labels_match_images():
    ds = make_classification(2, split="val", config=SMALL)
    names = class_names()
    assert len(names) == len(set(names)) >= 20
    assert ds.features["label"].names == names
    assert len(ds) == 2 * len(names)
    assert ds["label"] == [i % len(names) for i in range(len(ds))]
    for row in ds.select(range(0, len(ds), 7)):
        colour = names[row["label"]].split(" ")[0]
        pixels = np.asarray(row["image"]).reshape(-1, 3).astype(int)
        # The class colour is present in the image (within the colour jitter).
        assert (np.abs(pixels - np.asarray(COLOURS[colour])).max(axis=1) <= 12).sum() >= 4


# ----------------------------------------------------------------------------------------------- captions


def mentioned_pairs(text: str) -> list[tuple[str, str]]:
    words = re.findall(r"[a-z]+", text.lower())
    return [(a, b) for a, b in zip(words, words[1:]) if a in COLOURS and b in SHAPES]


def test_long_caption_describes_every_object_and_relation(scenes):
    for row in scenes:
        text = row["long_caption"]
        objects = row["objects"]
        sentences = [s for s in text.split(".") if s.strip()]
        n = len(objects)
        assert len(sentences) == 1 + n + n * (n - 1) // 2
        instance = np.asarray(row["instance_mask"])
        boxes = []  # pixel extent (y0, y1, x0, x1) of each object
        for i in range(n):
            ys, xs = np.nonzero(instance == i + 1)
            boxes.append((ys.min(), ys.max(), xs.min(), xs.max()))
        for i, obj in enumerate(objects):
            assert f"{obj['size']} {obj['colour']} {obj['shape']}" in text
            if obj["orientation"] != "none":
                assert f"{obj['colour']} {obj['shape']} pointing {obj['orientation']}" in text
            for j in range(i + 1, n):
                other = objects[j]
                sentence = next(s for s in sentences if s.strip().startswith(f"The {obj['colour']} {obj['shape']} is ")
                                and s.strip().endswith(f"the {other['colour']} {other['shape']}"))  # fmt: skip
                # Relations checked against the pixels: a stated relation means the two objects' pixel extents are
                # strictly ordered on that axis; no statement on an axis means their centres are within one cell.
                (ay0, ay1, ax0, ax1), (by0, by1, bx0, bx1) = boxes[i], boxes[j]
                if "to the left of" in sentence:
                    assert ax1 < bx0
                elif "to the right of" in sentence:
                    assert bx1 < ax0
                else:
                    assert abs((ax0 + ax1) - (bx0 + bx1)) / 2 < 16
                if "above" in sentence:
                    assert ay1 < by0
                elif "below" in sentence:
                    assert by1 < ay0
                else:
                    assert abs((ay0 + ay1) - (by0 + by1)) / 2 < 16


def test_pseudo_captions_are_accurate_and_varied(scenes):
    for row in scenes:
        present = {(o["colour"], o["shape"]) for o in row["objects"]}
        captions = row["pseudo_captions"]
        for caption in captions:
            assert set(mentioned_pairs(caption)) <= present, caption
        assert len(set(captions)) >= 2 or len(row["objects"]) == 1


def test_short_captions_are_short_noisy_and_repeated():
    config = WorldConfig(seed=0)
    captions, wrong, colour_named = [], 0, 0
    for index in range(3000):
        rng = sample_rng(config, "scenes", "train", index)
        scene = sample_scene(rng, config)
        caption = short_caption(scene, rng, config)
        captions.append(caption)
        pairs = mentioned_pairs(caption)
        if pairs:
            colour_named += 1
            present = {(o.colour, o.shape) for o in scene.objects}
            wrong += not set(pairs) <= present
    generic = sum(c in GENERIC_CAPTIONS for c in captions) / len(captions)
    assert abs(generic - 0.15) < 0.03
    assert abs(wrong / colour_named - 0.10) < 0.03
    assert max(len(c.split()) for c in captions) <= 7
    assert len(set(captions)) < len(captions) / 2  # many images share an identical short caption


# ----------------------------------------------------------------------------------------------- false negatives


def naive_false_negative_rate(captions, batch_size, seed, unit):
    order = np.random.default_rng(seed).permutation(len(captions))
    shuffled = [captions[i] for i in order]
    if len(shuffled) >= batch_size:
        shuffled = shuffled[: len(shuffled) // batch_size * batch_size]
        batches = [shuffled[k : k + batch_size] for k in range(0, len(shuffled), batch_size)]
    else:
        batches = [shuffled]
    hits = total = 0
    for batch in batches:
        for i in range(len(batch)):
            others = [j for j in range(len(batch)) if j != i]
            if unit == "image":
                hits += any(batch[j] == batch[i] for j in others)
                total += 1
            else:
                hits += sum(batch[j] == batch[i] for j in others)
                total += len(others)
    return hits / total


@pytest.mark.parametrize("unit", ["image", "pair"])
@pytest.mark.parametrize("n, batch_size, seed", [(100, 16, 0), (70, 32, 3), (20, 64, 1), (64, 64, 2)])
def test_false_negative_rate_matches_naive_loop(unit, n, batch_size, seed):
    rng = np.random.default_rng(seed + 10)
    captions = [f"c{int(k)}" for k in rng.integers(0, 12, size=n)]
    expected = naive_false_negative_rate(captions, batch_size, seed, unit)
    assert false_negative_rate(captions, batch_size=batch_size, seed=seed, unit=unit) == pytest.approx(expected)


def test_false_negative_rate_by_hand_and_errors():
    assert false_negative_rate(["a", "a", "b", "c"], batch_size=4, unit="image") == 0.5
    assert false_negative_rate(["a", "a", "b", "c"], batch_size=4, unit="pair") == pytest.approx(2 / 12)
    assert false_negative_rate(["a", "b", "c", "d"], batch_size=2) == 0.0
    with pytest.raises(ValueError, match="unit"):
        false_negative_rate(["a", "b"], unit="batch")
    with pytest.raises(ValueError, match="batch_size"):
        false_negative_rate(["a", "b"], batch_size=1)
    with pytest.raises(ValueError, match="at least 2 captions"):
        false_negative_rate(["a"])


def test_world_short_captions_have_in_batch_false_negatives():
    ds = make_scenes(512, config=SMALL)
    rate = false_negative_rate(ds["caption"], batch_size=256)
    assert 0.5 < rate < 0.95
    # The long captions are unique per scene, so they remove (nearly) all false negatives.
    assert false_negative_rate(ds["long_caption"], batch_size=256) < 0.05


@pytest.mark.slow
def test_generation_throughput_on_one_core():
    import torch

    from hf_clipzoo.data.synthetic.benchmark import benchmark

    torch.set_num_threads(1)
    result = benchmark(num_images=1000, image_size=64)
    assert result["dataset_per_s"] >= 500
