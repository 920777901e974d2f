"""Checkpoints and models written so that a kill or a full disk never leaves a partial file.

Keras writes ``.weights.h5`` and ``.keras`` files in place: a full disk mid-write left a partial
``last.weights.h5``, and h5py, failing to flush the file it had open, crashed the interpreter
at exit (a segmentation fault). Here every such file is written to a temporary file beside it
and renamed into place (``tfrecords_tools.shards.atomic_path``), after checking that the disk
has room for it: the previous file stays valid until the new one is complete, and in the
common case h5py never meets a full disk at all. The cost: room for the old and the new file
at once while writing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from tfrecords_tools.shards import atomic_path, atomic_write_bytes

# HDF5's own structures around the arrays, and what the estimate cannot see (names, attributes).
_MARGIN_BYTES = 256 * 1024


def ensure_space(path: Path, needed: int) -> None:
    """An ``OSError(ENOSPC)`` naming ``path`` when its file system has less than ``needed`` bytes free."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device ({free} bytes free, about {needed} needed)", str(path))


def _weights_bytes(model: keras.Model) -> int:
    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def _needed(model: keras.Model, path: Path) -> int:
    previous = path.stat().st_size if path.is_file() else 0
    return max(previous, _weights_bytes(model)) + _MARGIN_BYTES


def save_weights_atomically(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.save_weights(path)`` through a temporary file, after checking for room."""
    path = Path(path)
    ensure_space(path, _needed(model, path))
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def save_model_atomically(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.save(path)`` (a ``.keras`` file) through a temporary file, after checking for room."""
    path = Path(path)
    ensure_space(path, _needed(model, path))
    with atomic_path(path) as tmp:
        model.save(tmp)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` (weights only) whose file is replaced atomically.

    Overrides ``_save_model`` (Keras 3.15's; ``_get_file_path`` and ``_should_save_model``
    keep Keras' naming and best-tracking). ``weights_of``: the model whose weights are saved,
    when it is not the one being fit (a TSN trained behind ``with_device_views``), so that the
    file loads into the TSN.
    """

    def __init__(self, filepath, weights_of: keras.Model | None = None, **kwargs):
        super().__init__(filepath, save_weights_only=True, **kwargs)
        self.weights_of = weights_of

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            save_weights_atomically(self.weights_of or self.model, filepath)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose weights and metadata files are each replaced atomically.

    The weights are written before the metadata that names their epoch, so a kill or a full
    disk between the two leaves the previous epoch's pair (Keras writes both in place).
    """

    def _save_model(self):
        backup = Path(self.backup_dir)
        weights, metadata = Path(self._weights_path), Path(self._training_metadata_path)
        ensure_space(weights, 2 * _needed(self.model, weights) if self.double_checkpoint else _needed(self.model, weights))
        if self.double_checkpoint:
            for source, target in ((weights, self._prev_weights_path), (metadata, self._prev_training_metadata_path)):
                if source.is_file():
                    with atomic_path(target) as tmp:
                        shutil.copyfile(source, tmp)
        backup.mkdir(parents=True, exist_ok=True)
        save_weights_atomically(self.model, weights)
        atomic_write_bytes(metadata, json.dumps({"epoch": self._current_epoch,
                                                 "batch": self._last_batch_seen}).encode())
