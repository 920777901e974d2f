"""The stream of epochs of a dataset: one key per epoch, a pure function of (seed, epoch number).

Every random choice of an epoch (shard order, example shuffle, each clip's sampling and
augmentation) derives from its key, so a stream can begin at any epoch, or any element of
one: a resumed training run continues the data stream of the run it continues, and its final
weights equal an uninterrupted run's (``tests/test_train_distributed.py``). This replaces
``Dataset.random(seed, rerandomize_each_iteration=True)``, whose keys depend on how many
times the dataset was iterated in this process and cannot be restored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tsn_keras.data.reader import PYTHON_CALLS

_NO_END = 1 << 62  # epochs of a repeated stream
_WHOLE_SHARD = 1 << 62  # a batch that holds all of a shard's elements


def epoch_key(base: int, number) -> tf.Tensor:
    """The int64 key of epoch ``number`` of a stream seeded with ``base``."""
    seed = tf.stack([tf.constant(base, tf.int64), tf.cast(number, tf.int64)])
    return tf.random.stateless_uniform([], seed=seed, minval=None, maxval=None, dtype=tf.int64)


class IterationCounter:
    """How many times a finite dataset was iterated (its epoch number), read from inside the graph."""

    def __init__(self):
        self.count = -1
        self._lock = threading.Lock()

    def next(self) -> np.int64:
        with self._lock:
            self.count += 1
            return np.int64(self.count)


def epoch_stream(base: int, epoch_fn: Callable, *, repeat: bool, start: int = 0,
                 per_epoch: int | None = None) -> tf.data.Dataset:
    """``epoch_fn(key)`` of epoch after epoch (``repeat``), or of the next epoch of this dataset.

    Args:
        base: the stream's seed.
        epoch_fn: key -> the elements of one epoch.
        repeat: all epochs, one after the other; else one epoch per iteration of the dataset:
            the n-th iteration is epoch n (Keras iterates a finite dataset once per epoch), so
            that it equals the repeated stream.
        start: (repeated) begin this many elements in: whole epochs are skipped by number
            (free) when ``per_epoch`` is known, the rest element by element (the indexed
            reader's references cost microseconds; the streamed reader reads what it skips).
        per_epoch: elements per epoch, when known.
    """
    def key(number):
        return epoch_key(base, number)

    if repeat:
        first, rest = divmod(start, per_epoch) if per_epoch else (0, start)
        stream = tf.data.Dataset.range(first, _NO_END).map(key).flat_map(epoch_fn)
        return stream.skip(rest) if rest else stream
    counter = IterationCounter()

    def number(_):
        value = PYTHON_CALLS.call(counter.next, [], tf.int64, lambda: tf.constant(0, tf.int64), stateful=True)
        return tf.reshape(value, [])

    return tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).map(number).map(key).flat_map(epoch_fn)


# --- the random choices of one epoch, each a function of its key --------------------------------

def element_seed(key, shard_id, record) -> tf.Tensor:
    """The stateless seed of one clip: a function of the epoch key, the shard and the record."""
    base = tf.stack([tf.cast(key, tf.int64), tf.cast(shard_id, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(record, tf.int64))


def shard_order(key, shard_ids: list[int]) -> tf.Tensor:
    """The order in which an epoch visits the shards."""
    ids = tf.constant(shard_ids, tf.int64)
    return tf.random.experimental.stateless_shuffle(ids, seed=tf.stack([tf.cast(key, tf.int64), tf.constant(1, tf.int64)]))


def record_order(key, shard_id, count) -> tf.Tensor:
    """The order in which an epoch visits the ``count`` records of a shard (positions 0..count-1).

    A new order every epoch: the order at conversion would make a clip's batch-mates mostly
    its shard neighbours. Record -1 never names a clip, so the seed is no clip's.
    """
    return tf.random.experimental.stateless_shuffle(tf.range(tf.cast(count, tf.int64)),
                                                    seed=element_seed(key, shard_id, -1))


def _rows(block) -> tf.Tensor:
    """The number of elements in a batched ``block`` (a nest of columns)."""
    return tf.shape(tf.nest.flatten(block)[0], out_type=tf.int64)[0]


def _reordered(block, order):
    """The rows of a batched ``block`` in ``order``."""
    return tf.nest.map_structure(lambda column: tf.gather(column, order), block)


def in_record_order(ds: tf.data.Dataset, key, shard_id) -> tf.data.Dataset:
    """The elements of one shard's dataset in :func:`record_order` (held in memory: a shard's
    sampled frames, a small part of the shard)."""
    def permute(block):
        return _reordered(block, record_order(key, shard_id, _rows(block)))

    return ds.batch(_WHOLE_SHARD).map(permute).unbatch()


def block_shuffle(ds: tf.data.Dataset, key, size: int) -> tf.data.Dataset:
    """Shuffle elements within blocks of ``size``, keyed by the epoch.

    A stateless permutation per block rather than ``Dataset.shuffle(seed=key)``: with a
    tensor seed, ``Dataset.shuffle`` fails whenever TensorFlow's global seed is 0 (its seed
    resolution compares ``(0, tensor) == (0, 0)`` in Python), and ``keras.utils.set_random_seed(0)``
    sets exactly that.
    """
    def permute(block_id, block):
        order = tf.random.experimental.stateless_shuffle(tf.range(_rows(block)), seed=tf.stack([key, block_id]))
        return _reordered(block, order)

    return ds.batch(size).enumerate().map(permute).unbatch()
