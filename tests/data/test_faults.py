"""Damaged shards (issue 16): flipped JPEG bytes are caught by the index's per-JPEG checksums in
the default read mode, a truncated shard or a damaged index is named before reading, and
`tsn train` / `tsn evaluate` report such data in one line (exit 2)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.helpers import write_shards
from tfrecords_tools.manifest import split_shards
from tfrecords_tools.shards import ShardIndex, index_path
from tsn_keras.cli import main as tsn
from tsn_keras.data.clips import ClipSpec
from tsn_keras.data.pipeline import make_dataset
from tsn_keras.errors import DataError


@pytest.fixture
def shards(tmp_path):
    return write_shards(tmp_path / "shards", num_classes=2, videos_per_class={"train": 4, "val": 1, "test": 1},
                        num_frames=(6, 8), videos_per_shard=4, size=(32, 24))


def flip_jpeg_bytes(root, split="train", video=1):
    """Flip bytes in the middle of every RGB JPEG of one video (the record's CRC is not rewritten)."""
    shard = split_shards(root, split)[0]
    index = ShardIndex.load(index_path(shard))
    start = index.start("rgb")[video]
    data = bytearray(shard.read_bytes())
    for offset, length in zip(index.offset["rgb"][start:start + index.count["rgb"][video]],
                              index.length["rgb"][start:start + index.count["rgb"][video]]):
        middle = int(offset + length // 2)
        data[middle:middle + 8] = bytes(b ^ 0x5A for b in data[middle:middle + 8])
    shard.write_bytes(bytes(data))
    return shard, str(index.video_id[video])


def clips(root, **kwargs):
    spec = ClipSpec("rgb", mode="val", input_size=16)
    return make_dataset(root, spec, split="train", batch_size=2, return_ids=True, **kwargs)


def test_flipped_jpeg_bytes_are_named_in_the_default_read_mode(shards):
    shard, video = flip_jpeg_bytes(shards)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"corrupt data in shard {shard}: video {video}"):
        list(clips(shards))
    ds = clips(shards, skip_corrupt=True)
    seen = [v.decode() for _, _, ids in ds for v in ids.numpy()]
    assert video not in seen and len(seen) == 7
    assert ds.corrupt_counter.count == 1 and f"video {video}" in ds.corrupt_counter.examples[0]


def test_a_truncated_shard_is_named_before_reading(shards):
    shard = split_shards(shards, "train")[0]
    last = ShardIndex.load(index_path(shard)).record_offset[-1]
    shard.write_bytes(shard.read_bytes()[:int(last) + 50])  # the last video's frames are gone
    with pytest.raises(DataError, match=rf"shard {shard} is truncated"):
        clips(shards)
    ds = clips(shards, skip_corrupt=True)  # the videos in the lost tail are skipped and counted
    assert sum(len(ids) for _, _, ids in ds) == 7 and ds.corrupt_counter.count == 1


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"garbage" * 10])
def test_a_damaged_index_is_a_data_error(shards, damage):
    index = index_path(split_shards(shards, "train")[0])
    index.write_bytes(damage(index.read_bytes()))
    with pytest.raises(DataError, match=rf"cannot read the byte index {index}"):
        clips(shards)


@pytest.mark.slow
def test_train_on_flipped_bytes_and_evaluate_stream_on_a_crc_error_are_one_line(shards, tmp_path, capsys):
    from tests.test_training import tiny_config

    config = tiny_config(shards, data={"input_size": 16}, train={"max_iterations": 2, "batch_size": 2})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(config.to_yaml())
    train = ["train", "--config", str(recipe), "--verbose", "0", "--run-dir"]
    assert tsn([*train, str(tmp_path / "clean")]) == 0
    shard, video = flip_jpeg_bytes(shards)
    capsys.readouterr()
    assert tsn([*train, str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"video {video}" in err and "Traceback" not in err

    # The stream reader checks the record's CRC: the shard is named in one line.
    assert tsn(["evaluate", str(tmp_path / "clean"), "--split", "train", "--read-mode", "stream",
                "--snippets", "2"]) == 2
    err = capsys.readouterr().err  # after the progress bar's line
    last = err.strip().splitlines()[-1]
    assert last.startswith("tsn evaluate: error: corrupt data in shard") and str(shard) in last
    assert "Traceback" not in err
