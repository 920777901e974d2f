"""make_dataset end to end on small shards: shapes, which frames, crops, flips, determinism, readers.

The "geometry" videos make every pixel tell where it came from: red = 4x, green = 4y of the
stored frame, blue = 8 x the frame number; flow x is a constant +3 px (rightward) and flow y is
a horizontal ramp, so a crop's position, a mirror and the frame a snippet read can all be read
back from the output.
"""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import dataset
from tfrecords_tools.manifest import split_shards, write_manifest
from tfrecords_tools.schema import VideoRecord
from tfrecords_tools.shards import ShardWriter
from tsn_keras.config import DataConfig
from tsn_keras.data import pipeline
from tsn_keras.data.clips import ClipSpec
from tsn_keras.data.sampling import sample_offsets, snippet_frames
from tsn_keras.errors import ConfigError

SIZE = (48, 36)  # stored frames, w x h: exactly the test-time scale of input 32 (32 * 256 // 224 = 36)
INPUT = 32
FLOW_RIGHT = 147  # quantised +3 px: round(255 * 23 / 40)
GEOMETRY_SPLITS = {"train": [30, 9, 17, 24, 5, 3], "test": [30, 12]}


def encode(image: np.ndarray) -> bytes:
    """Near-lossless JPEG (quality 100, no chroma subsampling) so pixel values can be read back."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 100,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", image, params)
    assert ok
    return buf.tobytes()


def geometry_video(video_id: str, label: int, num_frames: int, size=SIZE) -> VideoRecord:
    w, h = size
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    rgb = []
    for i in range(num_frames):
        bgr = np.stack([np.full((h, w), 8 * i), 4 * y, 4 * x], axis=-1).astype(np.uint8)
        rgb.append(encode(bgr))
    flow_x = [encode(np.full((h, w), FLOW_RIGHT, np.uint8))] * (num_frames - 1)
    flow_y = [encode((4 * x).astype(np.uint8))] * (num_frames - 1)
    return VideoRecord(video_id, label, f"class{label}", num_frames, 25.0, h, w,
                       frames={"rgb": rgb, "flow_x": flow_x, "flow_y": flow_y})


def write_folder(root, splits: dict[str, list[VideoRecord]], per_shard: int = 3):
    manifest_splits = {}
    for split, videos in splits.items():
        shards = []
        for s in range(0, len(videos), per_shard):
            with ShardWriter(root / split / f"{split}-{s // per_shard:05d}.tfrecord") as writer:
                for video in videos[s:s + per_shard]:
                    writer.write(video)
            shards.append({"file": f"{split}/{writer.info.file}", "records": writer.info.records,
                           "bytes": writer.info.bytes, "sha256": writer.info.sha256})
        manifest_splits[split] = {"videos": len(videos), "shards": shards}
    write_manifest(root, {"classes": ["class0", "class1", "class2"], "modalities": ["rgb", "flow"],
                          "stored_keys": ["rgb", "flow_x", "flow_y"], "frame_size": [SIZE[0], SIZE[1]],
                          "splits": manifest_splits, "rejects": [], "missing": []})
    return root


@pytest.fixture(scope="module")
def geometry(tmp_path_factory):
    root = tmp_path_factory.mktemp("geometry")
    return write_folder(root, {split: [geometry_video(f"{split}{i}", i % 3, n) for i, n in enumerate(counts)]
                               for split, counts in GEOMETRY_SPLITS.items()})


def frame_counts(split="train") -> dict[str, int]:
    return {f"{split}{i}": n for i, n in enumerate(GEOMETRY_SPLITS[split])}


def collect(ds):
    """All elements of a dataset as (x, labels, ids) NumPy arrays."""
    xs, ys, ids = [], [], []
    for x, y, i in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
        ids.extend(v.decode() for v in i.numpy())
    return np.concatenate(xs), np.concatenate(ys), ids


def geometry_dataset(root, **kwargs):
    options = {"split": "train", "mode": "train", "batch_size": 3, "input_size": INPUT, "normalization": "raw",
               "return_ids": True, "drop_remainder": False, "seed": 0}
    return dataset(root, **{**options, **kwargs})


def views_clip(modality, snippets, crops, normalization) -> ClipSpec:
    return ClipSpec(modality, "test", input_size=INPUT, num_snippets=snippets, num_crops=crops,
                    normalization=normalization)


def frame_numbers(clip: np.ndarray) -> np.ndarray:
    """The frame number each view of a raw RGB clip ``[V, S, S, 3]`` was read from (blue = 8 n)."""
    return np.round(clip[..., 2].mean(axis=(1, 2)) / 8).astype(int)


# --- shapes, readers, determinism ----------------------------------------------------------

CHANNELS = {"rgb": 3, "rgb_diff": 15, "flow": 10, "warped_flow": 10}


@pytest.mark.parametrize("modality", list(CHANNELS))
def test_shapes_and_dtypes_for_every_mode(tiny_shards, modality):
    for mode, split, views in (("train", "train", 3), ("val", "val", 3), ("test", "test", 25 * 3)):
        ds = pipeline.make_dataset(tiny_shards, ClipSpec(modality=modality, mode=mode, input_size=INPUT, num_crops=3), split=split, batch_size=4, seed=1, return_ids=True)
        x, y, ids = next(iter(ds))
        assert x.shape == (4, views, INPUT, INPUT, CHANNELS[modality]), (mode, x.shape)
        assert x.dtype == tf.float32 and y.dtype == tf.int32 and ids.dtype == tf.string
        assert ds.element_spec[0].shape[1:] == (views, INPUT, INPUT, CHANNELS[modality])
        assert np.all(np.isfinite(x.numpy())) and float(tf.math.reduce_std(x)) > 0


def test_ten_crop_test_batches_hold_25_snippets_per_crop(tiny_shards):
    ds = pipeline.make_dataset(tiny_shards, ClipSpec(modality="rgb", mode="test", input_size=INPUT, num_crops=10), split="test", batch_size=2)
    x, _ = next(iter(ds))
    assert x.shape == (2, 250, INPUT, INPUT, 3)
    labels = [int(v) for _, batch in ds for v in batch.numpy()]
    assert len(labels) == pipeline.count_videos(tiny_shards, "test") == 8


@pytest.mark.parametrize("modality,mode", [("flow", "train"), ("rgb_diff", "train"), ("rgb", "test")])
def test_index_and_stream_readers_give_identical_tensors(tiny_shards, modality, mode):
    def run(read_mode):
        return collect(pipeline.make_dataset(tiny_shards, ClipSpec(modality=modality, mode=mode, input_size=INPUT, num_crops=3), split=mode, batch_size=4, seed=7, return_ids=True, read_mode=read_mode))

    index, stream = run("index"), run("stream")
    assert index[2] == stream[2]
    assert np.array_equal(index[1], stream[1])
    assert np.array_equal(index[0], stream[0])


def test_same_seed_same_batches_epochs_differ(tiny_shards):
    def build(seed, repeat=False):
        return pipeline.make_dataset(tiny_shards, ClipSpec(modality="rgb", input_size=INPUT), split="train", batch_size=4, seed=seed, repeat=repeat, return_ids=True)

    ds = build(5)
    first, second = collect(ds), collect(ds)  # Keras iterates a non-repeating dataset once per epoch
    again = collect(build(5))
    assert first[2] == again[2] and np.array_equal(first[0], again[0])
    assert sorted(first[2]) == sorted(second[2]) and len(set(first[2])) == 16  # every video once per epoch
    assert first[2] != second[2] and not np.array_equal(first[0], second[0])
    assert collect(build(6))[2] != first[2]
    # repeat=True: the first epoch is the same, the next one is reshuffled and re-augmented.
    two_epochs = collect(build(5, repeat=True).take(8))
    assert two_epochs[2][:16] == first[2] and np.array_equal(two_epochs[0][:16], first[0])
    assert sorted(two_epochs[2][16:]) == sorted(first[2]) and two_epochs[2][16:] != first[2]
    assert collect(build(None))[2] != collect(build(None))[2]


@pytest.mark.parametrize("read_mode", ["index", "stream"])
def test_each_epoch_visits_a_shards_records_in_a_new_order(tiny_shards, read_mode):
    # write_shards puts video train_<c>_<i> at position (4c + i) % 5 of shard (4c + i) // 5.
    def per_shard(ids):
        orders = {}
        for video in ids:
            c, i = map(int, video.split("_")[1:])
            orders.setdefault((4 * c + i) // 5, []).append((4 * c + i) % 5)
        return orders

    def epochs(seed):
        # shuffle_buffer=1: no example shuffle, so what is left is the shard and record order.
        ds = pipeline.make_dataset(tiny_shards, ClipSpec(modality="rgb", input_size=INPUT), split="train",
                                   batch_size=4, seed=seed, shuffle_buffer=1, return_ids=True, read_mode=read_mode)
        return per_shard(collect(ds)[2]), per_shard(collect(ds)[2])

    first, second = epochs(3)
    assert first == epochs(3)[0] and second == epochs(3)[1]  # the same order for the same seed
    full = [shard for shard, order in first.items() if len(order) == 5]
    assert len(full) == 3 and all(sorted(first[s]) == list(range(5)) == sorted(second[s]) for s in full)
    assert all(first[s] != second[s] for s in full)  # a new order each epoch, in every shard
    assert any(first[s] != list(range(5)) for s in full)  # not the order of conversion
    # Testing reads each shard in the order of conversion (test videos: 2 per class, 5 per shard).
    test = pipeline.make_dataset(tiny_shards, ClipSpec(modality="rgb", mode="test", input_size=INPUT),
                                 split="test", batch_size=4, return_ids=True, read_mode=read_mode)
    positions = [2 * int(v.split("_")[1]) + int(v.split("_")[2]) for v in collect(test)[2]]
    assert [p for p in positions if p < 5] == [0, 1, 2, 3, 4] and [p for p in positions if p >= 5] == [5, 6, 7]


def test_seeded_shuffle_works_when_the_global_seed_is_zero(tiny_shards):
    # keras.utils.set_random_seed(0) (what train(seed=0) does) sets TensorFlow's global seed to 0,
    # where Dataset.shuffle(seed=<tensor>) fails in its seed resolution.
    import keras

    keras.utils.set_random_seed(0)
    try:
        for read_mode in ("index", "stream"):
            ids = collect(pipeline.make_dataset(tiny_shards, ClipSpec(modality="rgb", input_size=INPUT), split="train", batch_size=4, seed=0, read_mode=read_mode, return_ids=True))[2]
            assert sorted(ids) == sorted(set(ids)) and len(ids) == 16
    finally:
        tf.random.set_seed(None)


# --- which frames, which crops, which flips -------------------------------------------------

@pytest.mark.parametrize("read_mode", ["index", "stream"])
def test_clips_hold_exactly_the_sampled_frames(geometry, read_mode):
    counts = frame_counts()
    x, _, ids = collect(geometry_dataset(geometry, mode="val", read_mode=read_mode))
    for clip, video in zip(x, ids):
        expected = snippet_frames(sample_offsets(counts[video], 3, 1, "val"), 1, counts[video]).numpy().ravel()
        assert frame_numbers(clip).tolist() == expected.tolist(), video
    x, _, ids = collect(geometry_dataset(geometry, mode="train", read_mode=read_mode))
    for clip, video in zip(x, ids):
        frames, n = frame_numbers(clip), counts[video]
        average = n // 3
        if average > 0:  # one frame from each third of the video
            assert all(k * average <= f < (k + 1) * average for k, f in enumerate(frames)), (video, frames)
        else:
            assert np.all(np.diff(frames) >= 0) and frames.max() < n


def test_rgb_difference_uses_consecutive_frames_with_the_last_repeated(geometry):
    counts = frame_counts()
    x, _, ids = collect(geometry_dataset(geometry, mode="val", modality="rgb_diff", new_length=5,
                                         normalization="caffe_bgr"))
    assert x.shape[-1] == 15
    for clip, video in zip(x, ids):
        n = counts[video]
        starts = sample_offsets(n, 3, 6, "val").numpy()
        frames = snippet_frames(starts, 6, n).numpy()  # [K, L + 1]
        for k in range(3):
            # caffe_bgr: channel 0 of each difference is blue = 8 x frame number; red/green do not change.
            blue = clip[k][..., 0::3].mean(axis=(0, 1))
            np.testing.assert_allclose(blue, 8 * np.diff(frames[k]), atol=1.0)
            assert np.abs(clip[k][..., 1::3]).max() <= 3 and np.abs(clip[k][..., 2::3]).max() <= 3


def _mirrored(ramp_channel: np.ndarray) -> np.ndarray:
    """Per view: True when a left-to-right increasing ramp reads right-to-left."""
    return ramp_channel[..., :, -1].mean(axis=-1) < ramp_channel[..., :, 0].mean(axis=-1)


def test_train_flip_is_one_decision_per_clip_and_flow_x_reads_leftward(geometry):
    x, _, _ = collect(geometry_dataset(geometry, modality="flow", new_length=2, normalization="caffe_bgr",
                                       repeat=True).take(8))
    flipped_clips = 0
    for clip in x:  # [K, S, S, 4]: x0, y0, x1, y1
        mirrored = _mirrored(clip[..., 1::2].transpose(0, 3, 1, 2))  # [K, L] from the y ramp
        assert mirrored.all() or not mirrored.any()
        flow_x = clip[..., 0::2]
        # Rightward +3 px is q = 147, i.e. +19; mirrored it must read leftward, 255 - 147 - 128 = -20.
        np.testing.assert_allclose(flow_x, -20.0 if mirrored.all() else 19.0, atol=1.0)
        flipped_clips += bool(mirrored.all())
    assert 0 < flipped_clips < len(x)
    x, _, _ = collect(geometry_dataset(geometry, modality="flow", new_length=2, normalization="caffe_bgr",
                                       flip=False))
    np.testing.assert_allclose(x[..., 0::2], 19.0, atol=1.0)
    x, _, _ = collect(geometry_dataset(geometry, modality="rgb", repeat=True).take(6))
    mirrored = _mirrored(x[..., 0])  # red = 4x
    assert (mirrored.all(axis=1) | ~mirrored.any(axis=1)).all() and 0 < mirrored[:, 0].sum() < len(x)


def test_validation_view_is_the_centre_crop(geometry):
    x, _, _ = collect(geometry_dataset(geometry, mode="val"))
    # Stored 48x36 = the test scale of input 32, so the centre 32 square is taken as is, at (8, 2).
    np.testing.assert_allclose(x[:, :, 0, 0, 0] / 4, 8, atol=0.5)
    np.testing.assert_allclose(x[:, :, 0, 0, 1] / 4, 2, atol=0.5)


def geometry_frames(num_frames: int, size=SIZE) -> tuple[list[bytes], list[bytes], list[bytes]]:
    video = geometry_video("v", 0, num_frames, size)
    return video.frames["rgb"], video.frames["flow_x"], video.frames["flow_y"]


def _top_left(views: np.ndarray) -> list[tuple[int, int]]:
    return [(round(float(v[0, 0, 0]) / 4), round(float(v[0, 0, 1]) / 4)) for v in views]


def test_ten_crop_views_positions_order_and_flow_flips():
    rgb, flow_x, flow_y = geometry_frames(30)
    snippets = 4
    views = pipeline.test_views(rgb, views_clip("rgb", snippets, 10, "raw")).numpy()
    assert views.shape == (10 * snippets, INPUT, INPUT, 3)
    per_crop = views.reshape(10, snippets, INPUT, INPUT, 3)
    test_frames = sample_offsets(30, snippets, 1, "test").numpy()
    for crop in per_crop:  # crop-major: each crop holds the T snippets in order
        assert frame_numbers(crop).tolist() == test_frames.tolist()
    # fixed_crop_offsets(48, 36, 32, 32): steps of ((48 - 32) // 4, (36 - 32) // 4) = (4, 1) px.
    expected = [(0, 0), (16, 0), (0, 4), (16, 4), (8, 2)]
    assert _top_left(per_crop[:5, 0]) == expected
    # The flipped crops show the same windows mirrored: their first column is the window's last.
    assert _top_left(per_crop[5:, 0]) == [(x + INPUT - 1, y) for x, y in expected]

    flow = pipeline.test_views((flow_x, flow_y), views_clip("flow", snippets, 10, "caffe_bgr")).numpy()
    flow = flow.reshape(10, snippets, INPUT, INPUT, 10)
    np.testing.assert_allclose(flow[:5, ..., 0::2], 19.0, atol=1.0)
    np.testing.assert_allclose(flow[5:, ..., 0::2], -20.0, atol=1.0)  # mirrored: rightward reads leftward
    ramp = flow[..., 1::2].transpose(0, 1, 4, 2, 3)
    assert not _mirrored(ramp[:5]).any() and _mirrored(ramp[5:]).all()


def test_one_and_three_crop_positions_landscape_and_portrait():
    rgb, _, _ = geometry_frames(6)
    one = pipeline.test_views(rgb, views_clip("rgb", 2, 1, "raw")).numpy()
    assert _top_left(one) == [(8, 2), (8, 2)]
    three = pipeline.test_views(rgb, views_clip("rgb", 2, 3, "raw")).numpy()
    assert _top_left(three[::2]) == [(0, 2), (8, 2), (16, 2)]
    portrait, _, _ = geometry_frames(6, size=(36, 48))
    three = pipeline.test_views(portrait, views_clip("rgb", 2, 3, "raw")).numpy()
    assert _top_left(three[::2]) == [(2, 0), (2, 8), (2, 16)]


def test_test_views_equals_the_test_mode_dataset(geometry):
    x, _, ids = collect(geometry_dataset(geometry, split="test", mode="test", modality="flow", num_snippets=5,
                                         num_crops=10, normalization="keras_tf"))
    video = geometry_video(ids[0], 0, dict(zip(["test0", "test1"], GEOMETRY_SPLITS["test"]))[ids[0]])
    frames = {"flow_x": video.frames["flow_x"], "flow_y": video.frames["flow_y"]}
    views = pipeline.test_views(frames, views_clip("flow", 5, 10, "keras_tf"), video.num_frames - 1)
    np.testing.assert_array_equal(views.numpy(), x[0])


# --- distribution ------------------------------------------------------------------------------

@pytest.mark.parametrize("read_mode", ["index", "stream"])
def test_input_pipelines_read_disjoint_videos(tiny_shards, geometry, read_mode):
    # tiny train: 4 shards for 2 pipelines (split by file); geometry train: 2 shards for 3 (by video).
    for root, pipelines, total in ((tiny_shards, 2, 16), (geometry, 3, 6)):
        seen = []
        for pipeline_id in range(pipelines):
            context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline_id,
                                                 num_replicas_in_sync=pipelines)
            ds = pipeline.make_dataset(root, ClipSpec("rgb", input_size=INPUT), split="train", batch_size=1, seed=0, input_context=context, return_ids=True, read_mode=read_mode)
            seen.append({v.decode() for _, _, ids in ds for v in ids.numpy()})
            assert seen[-1]
        assert sum(len(s) for s in seen) == len(set().union(*seen)) == total


MIRRORED_SCRIPT = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tsn_keras.data import pipeline
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
contexts = []
def dataset_fn(context):
    contexts.append((context.num_input_pipelines, context.input_pipeline_id,
                     context.get_per_replica_batch_size(4)))
    return pipeline.make_dataset(sys.argv[1], pipeline.ClipSpec("rgb", input_size=16), split="train",
                                 batch_size=context.get_per_replica_batch_size(4), seed=0, input_context=context,
                                 return_ids=True)
dist = strategy.distribute_datasets_from_function(dataset_fn)
per_replica = [[], []]
for x, y, ids in dist:
    for r, (xr, idr) in enumerate(zip(strategy.experimental_local_results(x),
                                      strategy.experimental_local_results(ids))):
        assert xr.shape == (2, 3, 16, 16, 3), xr.shape
        per_replica[r] += [v.decode() for v in idr.numpy()]
print("CONTEXTS", contexts)
print("REPLICA0", ",".join(sorted(per_replica[0])))
print("REPLICA1", ",".join(sorted(per_replica[1])))
"""


@pytest.mark.slow
def test_mirrored_strategy_replicas_read_disjoint_videos(tiny_shards, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, str(script), str(tiny_shards)], capture_output=True, text=True,
                         env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines()
                 if line.startswith(("REPLICA", "CONTEXTS")))
    replicas = [set(lines[f"REPLICA{r}"].split(",")) for r in (0, 1)]
    assert replicas[0] and replicas[1] and not replicas[0] & replicas[1]
    assert len(replicas[0] | replicas[1]) == 16  # 16 train videos, batch 4 = 2 per replica: nothing dropped


# --- configuration --------------------------------------------------------------------------

def test_dataset_from_config_reads_the_recipe_data_section(tiny_shards):
    cfg = DataConfig(root=str(tiny_shards), modality="flow", num_segments=2, input_size=INPUT)
    x, y = next(iter(pipeline.dataset_from_config(cfg, "val", 2, "caffe_bgr", seed=0)))
    assert x.shape == (2, 2, INPUT, INPUT, 10) and y.dtype == tf.int32
    x, _ = next(iter(pipeline.dataset_from_config(cfg, "test", 2, "caffe_bgr", num_snippets=3, num_crops=3)))
    assert x.shape == (2, 9, INPUT, INPUT, 10)
    with pytest.raises(ConfigError, match="val_split"):
        pipeline.dataset_from_config(DataConfig(root=str(tiny_shards), val_split=None), "val", 2, "caffe_bgr")
    with pytest.raises(ConfigError, match="backbone_preset"):
        pipeline.dataset_from_config(cfg, "train", 2, "auto")


def test_count_videos(tiny_shards):
    assert pipeline.count_videos(tiny_shards, "train") == 16
    assert pipeline.count_videos(split_shards(tiny_shards, "val")) == 8


def test_invalid_arguments_name_the_key_and_the_choices(tiny_shards, geometry):
    cases = [
        ({"modality": "depth"}, "modality must be one of rgb, rgb_diff, flow, warped_flow"),
        ({"mode": "eval"}, "mode must be one of train, val, test"),
        ({"mode": "test", "num_crops": 5}, "num_crops must be one of 1, 3, 10"),
        ({"normalization": "imagenet"}, "normalization must be one of caffe_bgr"),
        ({"read_mode": "mmap"}, "read_mode must be one of auto, index, stream"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"modality": "rgb", "new_length": 3}, "new_length must be 1 for modality rgb"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            dataset(tiny_shards, split="train", **kwargs)
    with pytest.raises(ConfigError, match=r"split is required.*available splits: train, val, test"):
        pipeline.make_dataset(tiny_shards, ClipSpec("rgb"))
    with pytest.raises(ConfigError, match="warped_flow_x"):
        pipeline.make_dataset(geometry, ClipSpec(modality="warped_flow"), split="train")
