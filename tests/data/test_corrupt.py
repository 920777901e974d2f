"""Corrupt data: errors name the shard and the video, ``skip_corrupt`` skips and counts, and
frames that are not sampled are never read (index) or decoded (stream)."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import dataset, make_video
from tfrecords_tools.shards import ShardIndex, ShardWriter, index_path
from tsn_keras.data import pipeline
from tsn_keras.data.clips import ClipSpec
from tsn_keras.errors import DataError

READ_MODES = ["index", "stream"]
GARBAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4  # a JPEG start marker, then nonsense


def write_shard(path, videos):
    with ShardWriter(path) as writer:
        for video in videos:
            writer.write(video)
    return path


def videos(bad_frames=None, bad_video="b"):
    """Three 9-frame RGB videos a, b, c; in ``bad_video`` the frames ``bad_frames`` are garbage."""
    out = []
    for label, name in enumerate("abc"):
        video = make_video(name, label, f"class{label}", 9, size=(32, 24))
        if name == bad_video and bad_frames is not None:
            video.frames["rgb"] = [GARBAGE if i in bad_frames else f for i, f in enumerate(video.frames["rgb"])]
        out.append(video)
    return out


def val_dataset(shard, read_mode, **kwargs):
    options = {"mode": "val", "modality": "rgb", "batch_size": 2, "input_size": 16, "return_ids": True}
    return dataset([shard], read_mode=read_mode, **{**options, **kwargs})


def ids_of(ds) -> list[str]:
    return [v.decode() for _, _, batch in ds for v in batch.numpy()]


@pytest.mark.parametrize("read_mode", READ_MODES)
def test_a_corrupt_jpeg_names_the_shard_and_video_or_is_skipped(tmp_path, read_mode, caplog):
    shard = write_shard(tmp_path / "bad-00000.tfrecord", videos(bad_frames=range(9)))
    message = r"corrupt data in shard \S*bad-00000\.tfrecord: video b"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        ids_of(val_dataset(shard, read_mode))
    ds = val_dataset(shard, read_mode, skip_corrupt=True)
    with caplog.at_level(logging.WARNING, logger="tsn_keras.data.pipeline"):
        assert ids_of(ds) == ["a", "c"]
    assert ds.corrupt_counter.count == 1 and "video b" in ds.corrupt_counter.examples[0]
    assert any("bad-00000.tfrecord" in r.getMessage() for r in caplog.records)
    counter = pipeline.CorruptCounter()  # a counter of one's own, e.g. for a distributed dataset
    assert ids_of(val_dataset(shard, read_mode, skip_corrupt=counter)) == ["a", "c"] and counter.count == 1


@pytest.mark.parametrize("read_mode", READ_MODES)
def test_a_truncated_shard_names_the_shard(tmp_path, read_mode):
    shard = write_shard(tmp_path / "cut-00000.tfrecord", videos())
    index = ShardIndex.load(index_path(shard))
    data = shard.read_bytes()
    shard.write_bytes(data[: int(index.record_offset[2]) + 10])  # the last record loses its frames
    # Named before reading (its size against its index), not mid-epoch.
    with pytest.raises(DataError, match=r"shard \S*cut-00000\.tfrecord is truncated"):
        val_dataset(shard, read_mode)
    ds = val_dataset(shard, read_mode, skip_corrupt=True)
    assert ids_of(ds) == ["a", "b"] and ds.corrupt_counter.count == 1


def test_a_failed_record_checksum_names_the_shard_when_streaming(tmp_path):
    shard = write_shard(tmp_path / "crc-00000.tfrecord", videos())
    index = ShardIndex.load(index_path(shard))
    data = bytearray(shard.read_bytes())
    # Damage a frame of video b that validation never samples (frame 0; val reads 1, 4, 7).
    start = int(index.offset["rgb"][index.start("rgb")[1]])
    data[start + 50] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"crc-00000\.tfrecord: records 1 to 2 of 3 are unreadable"):
        ids_of(val_dataset(shard, "stream"))
    ds = val_dataset(shard, "stream", skip_corrupt=True)
    assert ids_of(ds) == ["a"] and ds.corrupt_counter.count == 2
    # The indexed reader never touches that frame's bytes.
    assert ids_of(val_dataset(shard, "index")) == ["a", "b", "c"]


@pytest.mark.parametrize("read_mode", READ_MODES)
def test_unsampled_frames_are_never_decoded(tmp_path, read_mode):
    sampled = set(ClipSpec("rgb", "val", 3, 1).frame_indices(9).numpy().tolist())
    assert sampled == {1, 4, 7}
    shard = write_shard(tmp_path / "holes-00000.tfrecord", videos(bad_frames=set(range(9)) - sampled))
    x, _, ids = next(iter(val_dataset(shard, read_mode, batch_size=3)))
    assert [v.decode() for v in ids.numpy()] == ["a", "b", "c"] and np.all(np.isfinite(x.numpy()))
    # The records themselves are intact (every checksum passes): only the unsampled JPEGs are bad.
    assert len(list(tf.data.TFRecordDataset(str(shard)))) == 3


def test_the_python_gate_stops_calls_into_python_once_closed():
    from tsn_keras.data.reader import PythonGate

    gate, calls = PythonGate(), []

    def record(i):
        calls.append(int(i))
        return i * 10

    closed = lambda: tf.constant(-1, tf.int64)  # noqa: E731
    ds = tf.data.Dataset.range(6).map(lambda i: gate.call(record, [i], tf.int64, closed))
    options = tf.data.Options()  # one element at a time: nothing computed ahead of next()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False
    iterator = iter(ds.with_options(options))
    assert [int(next(iterator)) for _ in range(3)] == [0, 10, 20]
    gate.close()
    assert [int(v) for v in iterator] == [-1, -1, -1]  # closed: the graph no longer calls record
    assert calls == [0, 1, 2]


def test_one_unfetchable_clip_does_not_fail_the_others_fetched_with_it(tmp_path):
    from tsn_keras.data.reader import IndexedShards

    shard = write_shard(tmp_path / "ok-00000.tfrecord", videos())
    shards = IndexedShards([str(shard)], ("rgb",))
    frames = np.array([[0, 4, 8], [0, 4, 9], [1, 2, 3]])  # video b has 9 frames: frame 9 does not exist
    jpegs, ok = shards.fetch_many(np.zeros(3, np.int64), np.array([0, 1, 2]), frames)
    assert ok.tolist() == [True, False, True]
    assert jpegs.shape == (3, 1, 3) and jpegs[1].tolist() == [[b"", b"", b""]]
    assert jpegs[2, 0, 1] == shards.fetch(0, 2, [2])[0, 0] and jpegs[0, 0, 0].startswith(b"\xff\xd8")
