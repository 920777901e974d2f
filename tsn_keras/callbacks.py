"""Callbacks of ``tsn train``: iteration-exact stopping, learning-rate and history logging that
survive a restart, and a best checkpoint that remembers its best across one.

A run killed and started again is continued by ``keras.callbacks.BackupAndRestore`` from the
last finished epoch; these callbacks make the rest of the run folder agree with it: the history
keeps the epochs before the restored one and drops any the killed run logged after its last
backup, and the best checkpoint is compared against the best value of the kept epochs.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

import keras
import numpy as np
from keras import ops

from tfrecords_tools.shards import atomic_path, atomic_write_bytes
from tsn_keras.checkpoints import AtomicModelCheckpoint
from tsn_keras.history import columns as history_columns
from tsn_keras.history import read_rows
from tsn_keras.optimization import lr_at

log = logging.getLogger("tsn_keras.training")


def completed_updates(model: keras.Model) -> int:
    """Optimiser updates done so far: the paper's iteration count (micro-steps excluded)."""
    return int(ops.convert_to_numpy(model.optimizer.iterations))


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


class StopAtIteration(keras.callbacks.Callback):
    """Stop training after exactly ``max_iterations`` updates, part-way through an epoch if needed.

    Args:
        max_iterations: the recipe's ``train.max_iterations``.
    """

    def __init__(self, max_iterations: int):
        super().__init__()
        self.max_iterations = int(max_iterations)

    def on_train_batch_end(self, batch, logs=None):
        if completed_updates(self.model) >= self.max_iterations:
            self.model.stop_training = True


class IterationLogger(keras.callbacks.Callback):
    """Adds ``iteration`` (updates so far) and ``learning_rate`` to the epoch logs.

    ``learning_rate`` is the rate of the epoch's last update (Caffe's multistep schedule of the
    recipe), so an epoch that ends on a step iteration still shows the rate it trained with.

    Args:
        base_lr, lr_steps, lr_decay: the recipe's schedule (``train.lr``, ``lr_steps``, ``lr_decay``).
    """

    def __init__(self, base_lr: float, lr_steps, lr_decay: float):
        super().__init__()
        self.base_lr, self.lr_steps, self.lr_decay = base_lr, tuple(lr_steps), lr_decay

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        done = completed_updates(self.model)
        logs["iteration"] = done
        logs["learning_rate"] = lr_at(max(done - 1, 0), self.base_lr, self.lr_steps, self.lr_decay)


class HistoryCSV(keras.callbacks.Callback):
    """``history.csv``: one row per epoch, columns ``epoch, iteration, learning_rate, <metrics>``.

    Unlike ``keras.callbacks.CSVLogger`` it is continuous across a restart (rows of epochs at or
    after the restored one are dropped, so an epoch logged but not backed up is not repeated),
    and columns that appear later (validation every few epochs) are added, with empty cells
    where an epoch has no value.

    Args:
        path: the CSV file, rewritten atomically after each epoch.
    """

    FIRST = ("epoch", "iteration", "learning_rate")

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict] = []
        self._started = False

    def on_train_begin(self, logs=None):
        self.rows = read_rows(self.path)
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self.rows = [row for row in self.rows if int(row["epoch"]) < epoch]
            self._write()
            self._started = True

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        for key, value in (logs or {}).items():
            scalar = float(ops.convert_to_numpy(value))
            row[key] = int(scalar) if key == "iteration" else scalar
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        columns = [c for c in self.FIRST if any(c in r for r in self.rows)]
        for row in self.rows:
            columns += [key for key in row if key not in columns]
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)


class EpochLog(keras.callbacks.Callback):
    """One line per epoch in ``train.log`` (through the ``tsn_keras.training`` logger)."""

    def on_epoch_end(self, epoch, logs=None):
        items = ", ".join(
            f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}" for key, value in (logs or {}).items()
        )
        log.info("epoch %d: %s", epoch + 1, items)


class ReleaseValidationIterator(keras.callbacks.Callback):
    """Close the validation iterator Keras keeps open between validations.

    Once Keras knows how many batches the validation set has, the end of each validation pass
    opens the iterator for the next one and keeps it until then (``validation_freq`` epochs
    later), when it is deleted and replaced. On 2 CPU cores that deletion stalled the step
    before the next validation by 0 to 40 s (the gap between the last training batch and the
    first validation batch; the validation itself took 1 s), several times the epoch's training
    time. Dropping the iterator as soon as a pass ends costs nothing measurable: the next pass
    opens a fresh one, as the first did.
    """

    def on_test_end(self, logs=None):
        iterator = getattr(self.model, "_eval_epoch_iterator", None)
        if iterator is None:
            return
        for name in ("_current_iterator", "_epoch_iterator"):  # keras.src.trainers.epoch_iterator.EpochIterator
            if hasattr(iterator, name):
                setattr(iterator, name, None)


class ResumableCheckpoint(AtomicModelCheckpoint):
    """``ModelCheckpoint`` of the best epoch whose best survives a restart.

    On the first epoch of a resumed run, the best value is recovered from the history rows
    of the epochs before it, so a resumed run does not overwrite a better checkpoint.

    Args:
        filepath: the ``.weights.h5`` file.
        history: the run's :class:`HistoryCSV` (its rows are read at the first epoch).
        monitor, mode: as for ``ModelCheckpoint``.
        weights_of: as for ``AtomicModelCheckpoint``.
    """

    def __init__(self, filepath, history: HistoryCSV, monitor: str, mode: str, weights_of=None):
        super().__init__(filepath, weights_of=weights_of, monitor=monitor, mode=mode, save_best_only=True, verbose=0)
        self.history = history
        self._started = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self._started:
            return
        self._started = True
        kept = [row for row in self.history.rows if int(row["epoch"]) < epoch]
        values = [value for value in history_columns(kept).get(self.monitor, []) if math.isfinite(value)]
        if values:
            self.best = min(values) if self.mode == "min" else max(values)

    def on_epoch_end(self, epoch, logs=None):
        # Epochs without validation (train.validate_every > 1) are not candidates, and need no warning.
        if logs is not None and self.monitor in logs:
            super().on_epoch_end(epoch, logs)


class TensorBoardScalars(keras.callbacks.Callback):
    """Epoch metrics and the learning rate as TensorBoard scalars, in Keras' layout.

    ``<log_dir>/train`` gets ``epoch_<metric>`` (and ``epoch_learning_rate``), ``<log_dir>/validation``
    the ``val_`` metrics, with the epoch as step. Written with TensorFlow's own summary ops, so
    it needs no ``tensorboard`` package (``keras.callbacks.TensorBoard`` does); reading the logs
    needs TensorBoard.

    Args:
        log_dir: the run's ``tensorboard/`` folder.
    """

    def __init__(self, log_dir: str | os.PathLike):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers = {}

    def _writer(self, name: str):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        for key, value in (logs or {}).items():
            if key == "iteration":
                continue
            writer = self._writer("validation" if key.startswith("val_") else "train")
            tag = f"epoch_{key[4:] if key.startswith('val_') else key}"
            with writer.as_default():
                tf.summary.write(tag, tf.constant(float(ops.convert_to_numpy(value)), tf.float32), step=epoch,
                                 metadata=metadata)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class RandomStateBackup(keras.callbacks.Callback):
    """The model's random-number state (dropout's seed generators) saved beside the backup.

    ``BackupAndRestore`` saves weights and the optimiser, not the seed generators' states
    (``save_weights`` leaves them out), so a resumed run would draw other dropout masks than
    an uninterrupted one. This writes the states at the end of every epoch, keyed by epoch
    (a kill between this write and the backup leaves the previous epoch's states usable),
    and puts back those of the epoch the backup restores.

    Args:
        backup_dir: the ``BackupAndRestore`` folder (deleted with it when the run finishes).
        start_epoch: the epoch the run continues from (0 for a new run).
    """

    NAME = "random_state.json"

    def __init__(self, backup_dir: str | os.PathLike, start_epoch: int):
        super().__init__()
        self.path = Path(backup_dir) / self.NAME
        self.start_epoch = int(start_epoch)

    def _states(self) -> list:
        return [v for v in self.model.variables if "seed_generator" in v.path]

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def on_train_begin(self, logs=None):
        if not self.start_epoch:
            return
        saved = self._read().get(str(self.start_epoch - 1))
        states = self._states()
        if saved is None or len(saved) != len(states):
            log.warning("no random state saved for epoch %d: dropout draws other masks than an uninterrupted "
                        "run would", self.start_epoch)
            return
        for variable, value in zip(states, saved):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        saved = self._read()
        saved[str(epoch)] = [ops.convert_to_numpy(v).tolist() for v in self._states()]
        kept = {key: saved[key] for key in sorted(saved, key=int)[-2:]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(kept).encode())


class EtaNotice(keras.callbacks.Callback):
    """One console line once the speed is measured: time per iteration and when the run should end.

    The first update is left out (it includes tracing); the next ``measure`` updates are timed.
    Validation passes are not in the estimate.

    Args:
        max_iterations: the recipe's ``train.max_iterations``.
        measure: updates timed for the estimate.
        print_fn: where the line goes (the console).
    """

    def __init__(self, max_iterations: int, measure: int = 3, print_fn=print):
        super().__init__()
        self.max_iterations, self.measure, self.print_fn = int(max_iterations), int(measure), print_fn
        self._from: tuple[int, float] | None = None
        self._done = False

    def on_train_batch_end(self, batch, logs=None):
        if self._done:
            return
        import time

        updates, now = completed_updates(self.model), time.perf_counter()
        if self._from is None:
            self._from = (updates, now)  # after the first (traced) update
            return
        counted = updates - self._from[0]
        if counted >= self.measure or updates >= self.max_iterations:
            self._done = True
            if counted <= 0:
                return
            per_update = (now - self._from[1]) / counted
            left = max(self.max_iterations - updates, 0) * per_update
            finish = time.strftime("%H:%M", time.localtime(time.time() + left))
            self.print_fn(f"{per_update:.2f} s per iteration: about {_duration(left)} left for "
                          f"{self.max_iterations - updates} iterations (ends ~{finish}, validation not counted)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
