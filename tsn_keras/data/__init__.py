"""The input side of TSN: shards written by ``tsn convert`` -> sampled, augmented clips (tf.data).

- ``sampling``: segment sampling, ``sample_offsets`` and ``snippet_frames``.
- ``augment``: crop candidates and offsets, flips, normalisation presets (``normalize``).
- ``clips``: ``ClipSpec``, what a clip looks like (the typed spec of ``make_dataset``), from a
  clip's sampled JPEG strings to model input.
- ``reader``: the indexed byte reader and the record stream.
- ``failures``: unreadable clips, reported with shard and video or skipped and counted.
- ``pipeline``: ``make_dataset``, ``dataset_from_config``, ``count_videos``, ``test_views``.

The record schema, byte index and manifest are the shard format's, in ``tfrecords_tools``. The
names below are imported on first use, so that importing this package does not load TensorFlow.

Example:
    >>> from tsn_keras.data import make_dataset  # doctest: +SKIP
    >>> ds = make_dataset("data/ucf101", ClipSpec("rgb"), split="train", batch_size=32, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "make_dataset": "pipeline",
    "dataset_from_config": "pipeline",
    "count_videos": "pipeline",
    "test_views": "pipeline",
    "CorruptCounter": "failures",
    "normalize": "augment",
    "multiscale_crop_sizes": "augment",
    "fixed_crop_offsets": "augment",
    "sample_offsets": "sampling",
    "snippet_frames": "sampling",
    "ClipSpec": "clips",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tsn_keras.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tsn_keras.data' has no attribute {name!r}")
