"""Segment sampling: the reference vectors, and the properties of the random train draw."""

import numpy as np
import pytest
import tensorflow as tf

from tsn_keras.data.sampling import sample_offsets, snippet_frames
from tsn_keras.errors import ConfigError


@pytest.mark.parametrize("mode", ["val", "test"])
def test_deterministic_modes_match_the_reference_vectors(vectors, mode):
    cases = vectors[f"{mode}_offsets"]
    assert cases
    for case in cases:
        got = sample_offsets(case["num_frames"], case["num_segments"], case["new_length"], mode)
        assert got.dtype == tf.int32
        assert got.numpy().tolist() == case["expected"], case


def test_snippet_frames_match_the_reference_vectors(vectors):
    for case in vectors["snippet_frames"]:
        got = snippet_frames([case["start"]], case["new_length"], case["num_frames"])
        assert got.numpy()[0].tolist() == case["expected"], case


def _draws(num_frames, num_segments, new_length, seeds):
    return np.stack([sample_offsets(num_frames, num_segments, new_length, "train", seed=s).numpy() for s in seeds])


@pytest.mark.parametrize("num_frames,num_segments,new_length", [(100, 3, 1), (37, 7, 5), (9, 3, 1), (300, 5, 6)])
def test_train_starts_lie_in_their_segments(num_frames, num_segments, new_length):
    average = (num_frames - new_length + 1) // num_segments
    draws = _draws(num_frames, num_segments, new_length, range(60))
    k = np.arange(num_segments)
    assert np.all(draws >= k * average) and np.all(draws < (k + 1) * average)
    assert np.all(np.diff(draws, axis=1) > 0)
    assert draws.max() <= num_frames - new_length
    # Not a constant: the draw moves inside the segment (and reaches both ends of short ones).
    if 1 < average <= 10:
        assert draws[:, 0].min() == 0 and draws[:, 0].max() == average - 1
    elif average > 10:
        assert draws[:, 0].max() - draws[:, 0].min() > average // 2


def test_short_videos_draw_sorted_starts_from_the_whole_video():
    # N - L + 1 = 4 possible starts for K = 7 segments: sorted draws in [0, 3], repeats allowed.
    draws = _draws(8, 7, 5, range(40))
    assert np.all(np.diff(draws, axis=1) >= 0)
    assert draws.min() == 0 and draws.max() == 3
    assert len({tuple(d) for d in draws}) > 1


def test_videos_shorter_than_a_snippet_start_at_zero():
    for mode in ("train", "val", "test"):
        assert sample_offsets(3, 3, 5, mode, seed=1).numpy().tolist() == [0, 0, 0]
    assert snippet_frames([0], 5, 3).numpy().tolist() == [[0, 1, 2, 2, 2]]


def test_seeded_draws_are_reproducible_and_seeds_differ():
    a = _draws(250, 5, 1, [3, 4, 5])
    b = _draws(250, 5, 1, [3, 4, 5])
    assert np.array_equal(a, b)
    assert len({tuple(d) for d in a}) == 3
    assert sample_offsets(250, 5, 1, "train", seed=[7, 9]).shape == (5,)
    unseeded = {tuple(sample_offsets(250, 5, 1, "train").numpy()) for _ in range(5)}
    assert len(unseeded) > 1


def test_sampling_works_inside_dataset_map():
    counts = tf.constant([100, 9, 3], tf.int64)

    def sample(i, n):
        return sample_offsets(n, 3, 1, "train", seed=tf.stack([i, i])), sample_offsets(n, 3, 1, "val")

    out = list(tf.data.Dataset.from_tensor_slices((tf.range(3, dtype=tf.int64), counts)).map(sample))
    # N = 3 is not > K + L - 1 = 3: the reference's val rule gives all zeros.
    assert [v.numpy().tolist() for _, v in out] == [[16, 50, 83], [1, 4, 7], [0, 0, 0]]
    eager = sample_offsets(100, 3, 1, "train", seed=tf.constant([0, 0], tf.int64)).numpy()
    assert np.array_equal(out[0][0].numpy(), eager)


def test_invalid_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="train, val, test"):
        sample_offsets(10, 3, 1, "eval")
    with pytest.raises(ConfigError, match="num_segments"):
        sample_offsets(10, 0, 1, "val")
