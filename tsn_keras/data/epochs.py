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
