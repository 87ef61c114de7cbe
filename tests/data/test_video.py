"""Tests of the video input pieces: frame sampling, PyAV decoding, per-frame preprocessing, episodes and split lists."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipzoo.backbones.processing import build_clip_processor
from hf_clipzoo.data.episodes import Episode, EpisodeSampler, SplitList, parse_split_file
from hf_clipzoo.data.synthetic import WorldConfig, make_action_videos
from hf_clipzoo.data.video import decode_video, preprocess_videos, sample_frame_indices

# ----------------------------------------------------------------------------------------------- frame sampling


@pytest.mark.parametrize("n, t", [(8, 8), (100, 8), (9, 8), (17, 3), (1, 1), (250, 16)])
def test_uniform_indices_are_segment_centres(n, t):
    indices = sample_frame_indices(n, t)
    assert indices.dtype == np.int64 and indices.shape == (t,)
    # Naive centres of T equal segments of [0, n).
    expected = [int(np.floor((i + 0.5) * n / t)) for i in range(t)]
    assert indices.tolist() == expected
    assert (np.diff(indices) > 0).all()  # enough frames: all distinct
    assert indices.min() >= 0 and indices.max() < n


def test_segment_sampling_draws_one_frame_per_segment():
    n, t = 50, 8
    seen = set()
    for seed in range(30):
        indices = sample_frame_indices(n, t, mode="segment", rng=np.random.default_rng(seed))
        assert indices.dtype == np.int64 and (np.diff(indices) > 0).all()
        for i, index in enumerate(indices):
            assert (i * n) // t <= index < ((i + 1) * n) // t
        seen.add(tuple(indices.tolist()))
    assert len(seen) > 20  # it is random
    # Same generator state -> same draw; an int seed works as well.
    assert (
        sample_frame_indices(n, t, "segment", np.random.default_rng(3)).tolist()
        == sample_frame_indices(n, t, "segment", np.random.default_rng(3)).tolist()
    )
    assert sample_frame_indices(n, t, "segment", 3).tolist() == sample_frame_indices(n, t, "segment", 3).tolist()
    # Without a generator: the segment centre, i.e. the uniform indices.
    assert sample_frame_indices(n, t, "segment").tolist() == sample_frame_indices(n, t).tolist()


@pytest.mark.parametrize("mode", ["uniform", "segment"])
def test_short_videos_repeat_frames_in_order(mode):
    indices = sample_frame_indices(3, 8, mode=mode, rng=np.random.default_rng(0))
    assert indices.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert sample_frame_indices(4, 8, mode=mode, rng=0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sample_frame_indices(1, 5, mode=mode, rng=0).tolist() == [0] * 5
    indices = sample_frame_indices(5, 16, mode=mode, rng=0)
    assert (np.diff(indices) >= 0).all() and set(indices.tolist()) == set(range(5))


def test_frame_sampling_errors():
    with pytest.raises(ValueError, match="at least 1 frame"):
        sample_frame_indices(0, 8)
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(10, 0)
    with pytest.raises(ValueError, match="mode"):
        sample_frame_indices(10, 4, mode="random")
    with pytest.raises(ValueError, match="integer"):
        sample_frame_indices(10.5, 4)


# ----------------------------------------------------------------------------------------------- decoding


def _frame_colour(k: int) -> tuple[int, int, int]:
    return (20 + 40 * k, 230 - 40 * k, 128)


def _write_mp4(path, num_frames: int, size: int = 32) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for k in range(num_frames):
            array = np.empty((size, size, 3), dtype=np.uint8)
            array[...] = _frame_colour(k)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _closest_frame(image: Image.Image, num_frames: int) -> int:
    pixel = np.asarray(image, dtype=np.float64)[16, 16]
    return int(np.argmin([np.abs(pixel - _frame_colour(k)).sum() for k in range(num_frames)]))


def test_decode_video_round_trip(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_mp4(path, num_frames=6)
    frames = decode_video(path, 3)
    assert len(frames) == 3 and all(f.mode == "RGB" and f.size == (32, 32) for f in frames)
    assert [_closest_frame(f, 6) for f in frames] == sample_frame_indices(6, 3).tolist() == [1, 3, 5]
    # Bytes in, short video (6 frames -> 8): frames repeat in order.
    frames = decode_video(path.read_bytes(), 8, mode="segment", rng=0)
    assert [_closest_frame(f, 6) for f in frames] == sample_frame_indices(6, 8).tolist()
    # Segment mode with enough frames stays inside the segments.
    frames = decode_video(str(path), 2, mode="segment", rng=np.random.default_rng(1))
    first, second = (_closest_frame(f, 6) for f in frames)
    assert 0 <= first < 3 <= second < 6


def test_decode_video_errors(tmp_path):
    av = pytest.importorskip("av")
    with pytest.raises(FileNotFoundError, match="not found"):
        decode_video(tmp_path / "missing.mp4", 4)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="Could not"):
        decode_video(garbage, 4)
    # An audio-only file has no video stream.
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(ValueError, match="no video stream"):
        decode_video(audio, 4)


# ----------------------------------------------------------------------------------------------- preprocessing


@pytest.fixture(scope="module")
def image_processor():
    return build_clip_processor(image_size=16).image_processor


def test_preprocess_videos_shapes_and_inputs(image_processor):
    rng = np.random.default_rng(0)
    pil_video = [Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(4)]
    array_video = rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    grey_video = [frame.convert("L") for frame in pil_video]  # non-RGB mode is converted
    pixel_values = preprocess_videos(
        [pil_video, array_video, grey_video, torch.from_numpy(array_video)], image_processor
    )
    assert pixel_values.shape == (4, 4, 3, 16, 16) and pixel_values.dtype == torch.float32
    # Per frame, the result is exactly the image processor's output for that frame.
    single = image_processor(images=[pil_video[2]], return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(pixel_values[0, 2], single)
    torch.testing.assert_close(pixel_values[1], pixel_values[3])
    # The wrapping processor (with an `.image_processor`) works too.
    torch.testing.assert_close(preprocess_videos([pil_video], build_clip_processor(image_size=16)), pixel_values[:1])


def test_preprocess_videos_resamples_to_num_frames(image_processor):
    frames = [Image.new("RGB", (16, 16), (10 * k, 0, 0)) for k in range(10)]
    out = preprocess_videos([frames, frames[:3]], image_processor, num_frames=4)
    assert out.shape == (2, 4, 3, 16, 16)
    expected_long = preprocess_videos([[frames[i] for i in sample_frame_indices(10, 4)]], image_processor)
    assert sample_frame_indices(3, 4).tolist() == [0, 1, 1, 2]  # centres of 4 segments of 3 frames
    expected_short = preprocess_videos([[frames[i] for i in [0, 1, 1, 2]]], image_processor)
    torch.testing.assert_close(out[0], expected_long[0])
    torch.testing.assert_close(out[1], expected_short[0])


def test_preprocess_videos_on_the_embedded_world(image_processor):
    videos = make_action_videos(1, split="meta_test", num_frames=4, config=WorldConfig(seed=0, image_size=32))
    pixel_values = preprocess_videos(videos["frames"], image_processor, num_frames=6)
    assert pixel_values.shape == (len(videos), 6, 3, 16, 16)
    assert torch.isfinite(pixel_values).all()


def test_preprocess_videos_errors(image_processor):
    frame = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="expected at least 1 frame"):
        preprocess_videos([[frame], []], image_processor)
    with pytest.raises(ValueError, match="at least 1 video"):
        preprocess_videos([], image_processor)
    with pytest.raises(ValueError, match="different frame counts"):
        preprocess_videos([[frame], [frame, frame]], image_processor)
    with pytest.raises(ValueError, match=r"Video 0, frame 0 has float values in \[-1, -1\]"):
        preprocess_videos([np.full((2, 8, 8, 3), -1, dtype=np.float32)], image_processor)
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        preprocess_videos([np.zeros((8, 3), dtype=np.uint8)], image_processor)
    with pytest.raises(ValueError, match="PIL image or an array"):
        preprocess_videos([["not a frame"]], image_processor)


# ----------------------------------------------------------------------------------------------- episodes

LABELS = np.repeat(np.arange(7), 6)[np.random.default_rng(0).permutation(42)]  # 7 classes x 6 rows, shuffled


def test_episode_sampler_shapes_and_disjointness():
    sampler = EpisodeSampler(LABELS, way=5, shot=2, query=3, seed=1, num_episodes=20)
    assert len(sampler) == 20
    episodes = list(sampler)
    assert len(episodes) == 20
    for episode in episodes:
        assert episode.support_indices.shape == (10,) and episode.query_indices.shape == (15,)
        assert episode.class_ids.shape == (5,) and len(set(episode.class_ids.tolist())) == 5
        assert episode.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # class-major
        assert episode.query_labels.tolist() == np.repeat(np.arange(5), 3).tolist()
        assert not set(episode.support_indices.tolist()) & set(episode.query_indices.tolist())
        # Every row really belongs to its episode class.
        assert (LABELS[episode.support_indices] == episode.support_class_ids).all()
        assert (LABELS[episode.query_indices] == episode.query_class_ids).all()
        assert (episode.way, episode.shot, episode.query_per_class) == (5, 2, 3)
    assert len({tuple(e.class_ids.tolist()) for e in episodes}) > 10  # classes and label order vary


def test_episode_sampler_is_deterministic_and_resumable():
    a = EpisodeSampler(LABELS, 3, 1, 2, seed=7, num_episodes=6)
    b = EpisodeSampler(list(LABELS), 3, 1, 2, seed=7)  # infinite, list input
    first = [e.to_dict() for e in a]
    assert first == [b[i].to_dict() for i in range(6)]
    assert [e.to_dict() for e in a.iter_from(4)] == first[4:]
    # Episode i depends only on (seed, i), not on what was drawn before.
    assert a.episode(5).to_dict() == first[5]
    infinite = iter(b)
    assert [next(infinite).to_dict() for _ in range(3)] == first[:3]
    other_seed = EpisodeSampler(LABELS, 3, 1, 2, seed=8, num_episodes=6)
    assert [e.to_dict() for e in other_seed] != first
    with pytest.raises(TypeError, match="infinite"):
        len(b)
    with pytest.raises(IndexError):
        a[6]


def test_episode_sampler_errors():
    with pytest.raises(ValueError, match=r"shot \+ query = 4 \+ 3 = 7"):
        EpisodeSampler(LABELS, way=5, shot=4, query=3)
    with pytest.raises(ValueError, match="needs at least 8 classes, the labels have 7"):
        EpisodeSampler(LABELS, way=8, shot=1, query=1)
    with pytest.raises(ValueError, match="`shot` must be an integer >= 1"):
        EpisodeSampler(LABELS, way=5, shot=0, query=1)
    with pytest.raises(ValueError, match="integer class ids"):
        EpisodeSampler(["a", "b"], way=1, shot=1, query=1)


def test_episode_consistency_check():
    good = dict(
        support_indices=[0, 1, 2, 3],
        support_labels=[0, 0, 1, 1],
        query_indices=[4, 5],
        query_labels=[0, 1],
        class_ids=[9, 3],
    )
    episode = Episode(**good)
    assert episode.support_class_ids.tolist() == [9, 9, 3, 3] and episode.shot == 2
    bad_cases = {
        "4 support_indices but 3 support_labels": dict(support_labels=[0, 0, 1]),
        r"query_labels must be in 0..1": dict(query_labels=[0, 2]),
        r"same number K >= 1 of supports; supports per class are \[3, 1\]": dict(support_labels=[0, 0, 0, 1]),
        "both supports and queries": dict(query_indices=[3, 5]),
        "must be distinct": dict(class_ids=[3, 3]),
        "same number Q of queries": dict(query_indices=[4, 5, 6], query_labels=[0, 1, 1]),
        "must be 1-D": dict(class_ids=[[9, 3]]),
    }
    for message, change in bad_cases.items():
        with pytest.raises(ValueError, match="inconsistent episode: .*" + message):
            Episode(**{**good, **change})


# ----------------------------------------------------------------------------------------------- split files


def test_parse_split_file_class_dir(tmp_path):
    path = tmp_path / "trainlist.txt"
    path.write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01\n"
        "# comment\n\n"
        "Putting something, something and something on the table/12345\r\n"
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02\n"
        "test0//videos/BlowingCandles/v_BlowingCandles_g01_c01.avi\n"
    )
    videos, classes = parse_split_file(path)
    assert videos == [
        ("v_ApplyEyeMakeup_g08_c01", "ApplyEyeMakeup"),
        ("12345", "Putting something, something and something on the table"),
        ("v_ApplyEyeMakeup_g08_c02", "ApplyEyeMakeup"),
        ("videos/BlowingCandles/v_BlowingCandles_g01_c01.avi", "BlowingCandles"),
    ]
    assert classes == ["ApplyEyeMakeup", "Putting something, something and something on the table", "BlowingCandles"]
    assert isinstance(parse_split_file(path), SplitList)


def test_parse_split_file_id_label_and_csv(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text(
        "78687 Pretending to pick something up\n1002 Pushing something left\n555 Pretending to pick something up\n"
    )
    assert parse_split_file(path) == (
        [
            ("78687", "Pretending to pick something up"),
            ("1002", "Pushing something left"),
            ("555", "Pretending to pick something up"),
        ],
        ["Pretending to pick something up", "Pushing something left"],
    )
    ucf = tmp_path / "ucf.txt"
    ucf.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g01_c01.avi 3\n")
    assert parse_split_file(ucf).classes == ["1", "3"]
    table = tmp_path / "split.csv"
    table.write_text('path,label\nclips/a.mp4,moving left\n"clips/b,c.mp4","Putting something, on it"\n')
    assert parse_split_file(table) == (
        [("clips/a.mp4", "moving left"), ("clips/b,c.mp4", "Putting something, on it")],
        ["moving left", "Putting something, on it"],
    )
    assert parse_split_file(table, format="csv").videos == parse_split_file(table).videos


def test_parse_split_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        parse_split_file(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="no entries"):
        parse_split_file(empty)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("classA/vid1\njustonetoken\n")
    with pytest.raises(ValueError, match="line 2: 'justonetoken' does not match format 'class_dir'"):
        parse_split_file(mixed)
    lonely = tmp_path / "lonely.txt"
    lonely.write_text("lonely\n")
    with pytest.raises(ValueError, match="Cannot detect"):
        parse_split_file(lonely)
    with pytest.raises(ValueError, match="`format` must be one of"):
        parse_split_file(mixed, format="json")
