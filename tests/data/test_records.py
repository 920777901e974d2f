"""The record schema: our serialiser is standard protobuf, and the index points at each JPEG."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import make_video, write_shards
from tfrecords_tools.manifest import load_manifest, split_shards
from tfrecords_tools.schema import encode_video
from tfrecords_tools.shards import ShardIndex, index_path
from tsn_keras.data.reader import parse_video
from tsn_keras.errors import DataError


def test_encoded_record_is_a_standard_sequence_example():
    video = make_video("v_Archery_g01_c01", 2, "Archery", 7)
    data, offsets = encode_video(video)
    proto = tf.train.SequenceExample.FromString(data)
    assert proto.context.feature["video_id"].bytes_list.value[0] == b"v_Archery_g01_c01"
    assert proto.context.feature["label"].int64_list.value[0] == 2
    assert proto.context.feature["fps"].float_list.value[0] == 25.0
    assert len(proto.feature_lists.feature_list["rgb"].feature) == 7
    assert len(proto.feature_lists.feature_list["flow_x"].feature) == 6
    # The same message re-serialised by protobuf parses to the same content.
    assert tf.train.SequenceExample.FromString(proto.SerializeToString()) == proto
    context, frames = parse_video(tf.constant(data))
    assert int(context["num_frames"]) == 7
    assert frames["rgb"].shape == (7,)
    for key, spans in offsets.items():
        for i, (start, length) in enumerate(spans):
            assert data[start: start + length] == video.frames[key][i]


def test_negative_and_large_integers_round_trip():
    video = make_video("x", 0, "a", 2)
    video.label = -3
    video.num_frames = 2**40
    proto = tf.train.SequenceExample.FromString(encode_video(video)[0])
    assert proto.context.feature["label"].int64_list.value[0] == -3
    assert proto.context.feature["num_frames"].int64_list.value[0] == 2**40


def test_serialisation_is_deterministic():
    a = encode_video(make_video("v", 1, "c", 9, rng=np.random.default_rng(5)))[0]
    b = encode_video(make_video("v", 1, "c", 9, rng=np.random.default_rng(5)))[0]
    assert a == b


def test_shard_index_points_at_every_jpeg(tmp_path):
    root = write_shards(tmp_path, num_classes=2, videos_per_class={"train": 3}, num_frames=(3, 9))
    shards = split_shards(root, "train")
    assert len(shards) == 2
    total = 0
    for shard in shards:
        raw = shard.read_bytes()
        index = ShardIndex.load(index_path(shard))
        records = list(tf.data.TFRecordDataset(str(shard)))
        assert index.num_videos == len(records)
        for i, record in enumerate(records):
            start, length = index.record_offset[i], index.record_length[i]
            assert raw[start: start + length] == record.numpy()
            _, frames = parse_video(record)
            for key in ("rgb", "flow_x", "warped_flow_y"):
                first = index.start(key)[i]
                for j in range(index.count[key][i]):
                    s, n = index.offset[key][first + j], index.length[key][first + j]
                    assert raw[s: s + n] == frames[key][j].numpy()
        total += index.num_videos
    assert total == 6


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a converted dataset"):
        load_manifest(tmp_path)
    write_shards(tmp_path, num_classes=1, videos_per_class={"train": 1})
    with pytest.raises(DataError, match="available splits: train"):
        split_shards(tmp_path, "test")
