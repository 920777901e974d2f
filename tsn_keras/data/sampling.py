"""TSN's sparse segment sampling: which frames of a video a clip is made of.

A video of N frames is split into K equal segments and one snippet of L consecutive frames is
taken from each (``TSN_SEMANTICS.md``, "Segment sampling"; 0-based, as tsn-pytorch):

- ``train``: a random start inside each segment, ``s_k = k*avg + randint(avg)`` with
  ``avg = (N-L+1)//K``; videos shorter than K snippets draw K sorted starts from the whole video.
- ``val``: the centre of each segment, ``int(tick/2 + k*tick)`` with ``tick = (N-L+1)/K``.
- ``test``: the same centre rule for the T = 25 test snippets. The original Caffe script used an
  integer tick that leaves the end of long videos unsampled; this follows tsn-pytorch instead.

Frame ``j`` of the snippet starting at ``s`` is ``min(s + j, N - 1)``: short videos repeat their
last frame. Everything here is TensorFlow graph code, usable eagerly and inside ``Dataset.map``,
so that only the sampled frames are ever read and decoded.
"""

from __future__ import annotations

import tensorflow as tf

from tsn_keras.errors import ConfigError
from tsn_keras.vocab import MODES


def stateless_seed(seed) -> tf.Tensor:
    """A ``[2]`` int64 seed for ``tf.random.stateless_*`` from an int or an existing ``[2]`` seed."""
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.zeros_like(seed)])
    return seed


def uniform_ints(shape, maxval, seed=None) -> tf.Tensor:
    """int32 draws uniform in ``[0, maxval)`` (``maxval >= 1``); stateless when ``seed`` is given."""
    maxval = tf.cast(maxval, tf.int32)
    if seed is None:
        return tf.random.uniform(shape, minval=0, maxval=maxval, dtype=tf.int32)
    return tf.random.stateless_uniform(shape, stateless_seed(seed), minval=0, maxval=maxval, dtype=tf.int32)


def _check(num_segments: int, new_length: int, mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"sampling mode must be one of {', '.join(MODES)}; got {mode!r}")
    for name, value in (("num_segments", num_segments), ("new_length", new_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def sample_offsets(num_frames, num_segments: int, new_length: int, mode: str, seed=None) -> tf.Tensor:
    """0-based start frames of the ``num_segments`` snippets of a clip.

    Args:
        num_frames: frames in the video (for flow: flow fields, N-1), a Python int or scalar tensor.
        num_segments: K in training and validation, T (25) in testing.
        new_length: L, frames per snippet (L+1 for RGB difference, which reads one more frame).
        mode: ``"train"`` (random start in each segment), ``"val"`` or ``"test"`` (segment centres).
        seed: ``None`` for nondeterministic draws; an int or a ``[2]`` stateless seed makes the
            train draw reproducible. Ignored by ``val`` and ``test``, which are deterministic.

    Returns:
        int32 tensor ``[num_segments]``.

    Example:
        >>> sample_offsets(100, 3, 1, "val").numpy().tolist()
        [16, 50, 83]
    """
    _check(num_segments, new_length, mode)
    n = tf.cast(num_frames, tf.int32)
    span = n - new_length + 1  # possible snippet starts
    k = tf.range(num_segments, dtype=tf.int32)
    zeros = tf.zeros([num_segments], tf.int32)
    if mode == "train":
        average = span // num_segments
        seeds = (None, None) if seed is None else tf.unstack(
            tf.random.experimental.stateless_split(stateless_seed(seed), 2))
        in_segment = k * average + uniform_ints([num_segments], tf.maximum(average, 1), seeds[0])
        # Fewer possible starts than segments: K sorted draws over the whole video (tsn-pytorch).
        whole_video = tf.sort(uniform_ints([num_segments], tf.maximum(span, 1), seeds[1]))
        return tf.where(average > 0, in_segment, tf.where(span > 0, whole_video, zeros))
    # Same float64 operations as the reference's Python `int(tick / 2.0 + tick * x)`.
    tick = tf.cast(span, tf.float64) / float(num_segments)
    centres = tf.cast(tick / 2.0 + tick * tf.cast(k, tf.float64), tf.int32)
    usable = n > num_segments + new_length - 1 if mode == "val" else span > 0
    return tf.where(usable, centres, zeros)


def snippet_frames(offsets, new_length: int, num_frames) -> tf.Tensor:
    """Frame indices ``[K, L]`` of the snippets starting at ``offsets``: ``min(s + j, N - 1)``.

    Example:
        >>> snippet_frames([97], 5, 100).numpy().tolist()
        [[97, 98, 99, 99, 99]]
    """
    offsets = tf.cast(offsets, tf.int32)
    last = tf.cast(num_frames, tf.int32) - 1
    frames = offsets[:, None] + tf.range(new_length, dtype=tf.int32)[None, :]
    # An empty video (N = 0) would give -1; 0 lets the read fail with a clear error instead.
    return tf.maximum(tf.minimum(frames, last), 0)
