"""Tests of the embedded world's MMVP pairs and order-dependent action videos."""

import math
import re

import numpy as np
import pytest

from hf_clipzoo.data.synthetic import (
    ACTION_CLASSES,
    MMVP_CATEGORIES,
    OBJECT_ATTRIBUTES,
    ORDER_INDEPENDENT_ACTIONS,
    POSITIONS,
    WorldConfig,
    generate_action_video_spec,
    make_action_videos,
    make_mmvp_pairs,
    render_background,
    render_video,
    reverse_action,
)
from hf_clipzoo.data.synthetic.vocab import NUMBER_WORDS, POSITION_PHRASES

SMALL = WorldConfig(seed=0, image_size=32)


# ----------------------------------------------------------------------------------------------- MMVP pairs


@pytest.fixture(scope="module")
def pairs():
    return make_mmvp_pairs(40, config=WorldConfig(seed=1, image_size=48))


def attributes(obj: dict) -> dict:
    return {key: obj[key] for key in OBJECT_ATTRIBUTES}


def statement_holds(statement: str, objects: list[dict]) -> bool:
    """A naive evaluator of the statement grammar: a count, or an object with all the named attributes."""
    count = re.fullmatch(r"(\w+) shapes?", statement)
    if count:
        return NUMBER_WORDS.index(count.group(1)) == len(objects)
    wanted = {}
    for phrase, position in ((v, k) for k, v in POSITION_PHRASES.items()):
        if statement.endswith(" " + phrase):
            wanted["position"] = position
            statement = statement[: -len(phrase) - 1]
    pointing = re.search(r" pointing (\w+)$", statement)
    if pointing:
        wanted["orientation"] = pointing.group(1)
        statement = statement[: pointing.start()]
    words = statement.split(" ")[1:]  # drop the article
    wanted["shape"], wanted["colour"] = words[-1], words[-2]
    if len(words) == 3:
        wanted["size"] = words[0]
    return any(all(obj[k] == v for k, v in wanted.items()) for obj in objects)


def test_mmvp_pairs_differ_in_exactly_one_attribute(pairs):
    assert sorted(set(pairs["category"])) == sorted(MMVP_CATEGORIES)
    assert pairs["category"][:5] == list(MMVP_CATEGORIES)
    for row in pairs:
        a, b = row["objects_a"], row["objects_b"]
        if row["category"] == "count":
            assert abs(len(a) - len(b)) == 1
            small, large = (a, b) if len(a) < len(b) else (b, a)
            remaining = [attributes(o) for o in large]
            for obj in small:  # the smaller scene is the larger one minus one object
                remaining.remove(attributes(obj))
            assert len(remaining) == 1
            continue
        assert len(a) == len(b)
        changed = [(i, key) for i in range(len(a)) for key in OBJECT_ATTRIBUTES if a[i][key] != b[i][key]]
        assert changed and len(changed) == 1, changed
        assert changed[0][1] == row["category"]
        # Shapes are unique within MMVP scenes, so a statement can name an object by its shape.
        assert len({o["shape"] for o in a}) == len(a)


def test_mmvp_statements_are_true_of_one_image_only(pairs):
    for row in pairs:
        a, b = row["objects_a"], row["objects_b"]
        assert statement_holds(row["statement_a"], a), row
        assert not statement_holds(row["statement_a"], b), row
        assert statement_holds(row["statement_b"], b), row
        assert not statement_holds(row["statement_b"], a), row


def test_mmvp_images_differ_only_where_the_object_changed(pairs):
    for row in pairs:
        image_a, image_b = np.asarray(row["image_a"]), np.asarray(row["image_b"])
        differ = (image_a != image_b).any(axis=-1)
        assert differ.any()
        if row["category"] == "position":
            continue  # two cells change
        # Everything else lies in one grid cell: the changed (or added / removed) object's cell.
        a_cells = {o["position"]: o for o in row["objects_a"]}
        b_cells = {o["position"]: o for o in row["objects_b"]}
        cells = [p for p in POSITIONS if a_cells.get(p) != b_cells.get(p)]
        assert len(cells) == 1
        r, c = divmod(POSITIONS.index(cells[0]), 3)
        outside = differ.copy()
        outside[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = False
        assert not outside.any()


def test_mmvp_validation():
    with pytest.raises(ValueError, match="num_pairs"):
        make_mmvp_pairs(0)
    with pytest.raises(ValueError, match="Unknown split"):
        make_mmvp_pairs(2, split="dev")


# ----------------------------------------------------------------------------------------------- action videos

DIRECTION_NAMES = {
    0: "moving right",
    90: "moving up",
    180: "moving left",
    -180: "moving left",
    -90: "moving down",
    45: "moving up and right",
    135: "moving up and left",
    -135: "moving down and left",
    -45: "moving down and right",
}


def oracle(objects: list[dict], size: int) -> str:
    """Name the motion from the per-frame object states alone (a naive rule list, independent of the generator)."""
    tol = 1e-3
    if len(objects) == 2:
        a, b = objects
        distance = [math.hypot(ax - bx, ay - by) for ax, ay, bx, by in zip(a["cx"], a["cy"], b["cx"], b["cy"])]
        return "coming together" if distance[-1] < distance[0] else "moving apart"
    (obj,) = objects

    def varies(key):
        return max(obj[key]) - min(obj[key]) > tol

    def monotonic(key):
        steps = np.diff(obj[key])
        return 1 if (steps > 0).all() else -1 if (steps < 0).all() else 0

    if varies("opacity"):
        return {1: "appearing", -1: "disappearing", 0: "blinking"}[monotonic("opacity")]
    if varies("radius"):
        return {1: "growing", -1: "shrinking", 0: "pulsing"}[monotonic("radius")]
    if varies("angle"):
        return {1: "rotating clockwise", -1: "rotating counter-clockwise"}[monotonic("angle")]
    dx, dy = obj["cx"][-1] - obj["cx"][0], obj["cy"][-1] - obj["cy"][0]
    if math.hypot(dx, dy) < tol:
        return "shaking" if varies("cx") or varies("cy") else "standing still"
    heading = math.degrees(math.atan2(-dy, dx))  # screen y points down
    nearest = round(heading / 45) * 45
    if abs(heading - nearest) < 0.5:
        return DIRECTION_NAMES[nearest]
    start = math.hypot(obj["cx"][0] - size / 2, obj["cy"][0] - size / 2)
    end = math.hypot(obj["cx"][-1] - size / 2, obj["cy"][-1] - size / 2)
    return "approaching the center" if end < start else "leaving the center"


def test_action_class_splits():
    splits = list(ACTION_CLASSES)
    assert splits == ["meta_train", "meta_val", "meta_test"]
    everything = [name for split in splits for name in ACTION_CLASSES[split]]
    assert len(everything) == len(set(everything))  # disjoint splits
    assert len(ACTION_CLASSES["meta_train"]) >= 10
    assert len(ACTION_CLASSES["meta_val"]) >= 5 and len(ACTION_CLASSES["meta_test"]) >= 5
    for split in splits:
        for name in ACTION_CLASSES[split]:
            # Every reversal pair lives in one split, so order-blind models fail there.
            assert reverse_action(name) in ACTION_CLASSES[split]
            assert reverse_action(reverse_action(name)) == name
            assert (reverse_action(name) == name) == (name in ORDER_INDEPENDENT_ACTIONS)
    assert reverse_action("moving left") == "moving right"
    assert reverse_action("growing") == "shrinking"
    assert reverse_action("appearing") == "disappearing"
    with pytest.raises(ValueError, match="Unknown action"):
        reverse_action("jumping")


@pytest.mark.parametrize("split", ["meta_train", "meta_val", "meta_test"])
@pytest.mark.parametrize("num_frames", [4, 8])
def test_reversing_a_video_changes_its_class_when_order_dependent(split, num_frames):
    for index in range(2 * len(ACTION_CLASSES[split])):
        video = generate_action_video_spec(index, split=split, num_frames=num_frames, config=SMALL)
        objects = [track.to_dict() for track in video.tracks]
        assert oracle(objects, 32) == video.action
        backwards = video.reversed()
        assert backwards.action == reverse_action(video.action)
        assert oracle([track.to_dict() for track in backwards.tracks], 32) == reverse_action(video.action)
        frames = render_video(video, SMALL)
        # The reversed spec renders exactly the reversed frames...
        np.testing.assert_array_equal(render_video(backwards, SMALL), frames[::-1])
        # ...which differ from the original frames unless the class is order-independent (a palindrome).
        if video.action in ORDER_INDEPENDENT_ACTIONS:
            np.testing.assert_array_equal(frames[::-1], frames)
        else:
            assert not np.array_equal(frames[::-1], frames)


def test_video_pixels_move_the_way_the_label_says():
    config = WorldConfig(seed=2, image_size=48)
    for index in range(4):  # left, right, up, down
        video = generate_action_video_spec(index, split="meta_train", num_frames=6, config=config)
        frames = render_video(video, config).astype(int)
        background = render_background(video.background, 48, config.texture_strength).astype(int)
        centres = []
        for frame in frames:
            ys, xs = np.nonzero((frame != background).any(axis=-1))
            centres.append((xs.mean(), ys.mean()))
        dx = np.diff([c[0] for c in centres])
        dy = np.diff([c[1] for c in centres])
        expected = {"moving left": dx < 0, "moving right": dx > 0, "moving up": dy < 0, "moving down": dy > 0}
        assert expected[video.action].all(), (video.action, centres)


def test_make_action_videos_columns():
    ds = make_action_videos(1, split="meta_test", num_frames=5, config=SMALL)
    assert len(ds) == len(ACTION_CLASSES["meta_test"])
    assert ds.features["label"].names == list(ACTION_CLASSES["meta_test"])
    for row in ds:
        assert ACTION_CLASSES["meta_test"][row["label"]] == row["label_name"]
        assert len(row["frames"]) == 5
        assert all(frame.size == (32, 32) and frame.mode == "RGB" for frame in row["frames"])
        assert oracle(row["objects"], 32) == row["label_name"]
    again = make_action_videos(1, split="meta_test", num_frames=5, config=SMALL)
    assert ds.data.table.equals(again.data.table)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_per_class": 0}, "num_per_class"),
        ({"num_per_class": 1, "split": "meta-test"}, "Unknown split"),
        ({"num_per_class": 1, "split": "train"}, "Unknown split"),
        ({"num_per_class": 1, "num_frames": 3}, "num_frames"),
        ({"num_per_class": 1, "num_frames": 2.0}, "num_frames"),
    ],
)
def test_make_action_videos_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_action_videos(**kwargs, config=SMALL)
