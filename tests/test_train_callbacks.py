"""The run folder's callbacks agree with a restored backup: history rows and the best checkpoint."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tsn_keras.callbacks import HistoryCSV, ResumableCheckpoint  # noqa: E402
from tsn_keras.history import read_rows  # noqa: E402


def _model():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_history_drops_epochs_after_the_restored_one_and_adds_late_columns(tmp_path):
    path = tmp_path / "history.csv"
    history = HistoryCSV(path)
    history.set_model(_model())
    history.on_train_begin()
    for epoch in range(4):  # a first run: epochs 0-3 logged, the backup only had 0-1
        history.on_epoch_begin(epoch)
        history.on_epoch_end(epoch, {"iteration": 2 * (epoch + 1), "learning_rate": 0.1, "loss": 1.0 / (epoch + 1)})

    resumed = HistoryCSV(path)
    resumed.set_model(_model())
    resumed.on_train_begin()
    resumed.on_epoch_begin(2)
    assert [row["epoch"] for row in read_rows(path)] == ["0", "1"]
    resumed.on_epoch_end(2, {"iteration": 6, "learning_rate": 0.01, "loss": 0.3, "val_loss": 0.5})
    rows = read_rows(path)
    assert list(rows[0]) == ["epoch", "iteration", "learning_rate", "loss", "val_loss"]
    assert [row["val_loss"] for row in rows] == ["", "", "0.5"]
    assert [row["iteration"] for row in rows] == ["2", "4", "6"]


def test_best_checkpoint_remembers_the_best_of_the_kept_epochs(tmp_path):
    history = HistoryCSV(tmp_path / "history.csv")
    history.rows = [
        {"epoch": "0", "val_accuracy": "0.5"},
        {"epoch": "1", "val_accuracy": "0.8"},
        {"epoch": "2", "val_accuracy": "0.95"},  # logged after the last backup: not a candidate
    ]
    best = tmp_path / "best.weights.h5"
    callback = ResumableCheckpoint(best, history, monitor="val_accuracy", mode="max")
    callback.set_model(_model())
    callback.on_train_begin()
    callback.on_epoch_begin(2)
    assert callback.best == pytest.approx(0.8)
    callback.on_epoch_end(2, {"loss": 1.0, "val_accuracy": 0.7})
    assert not best.exists()  # worse than epoch 1
    callback.on_epoch_end(3, {"loss": 1.0})  # an epoch without validation: skipped quietly
    assert not best.exists()
    callback.on_epoch_end(4, {"loss": 1.0, "val_accuracy": 0.9})
    assert best.is_file() and callback.best == pytest.approx(0.9)
    restored = _model()
    restored.load_weights(best)
    np.testing.assert_allclose(restored.get_weights()[0], callback.model.get_weights()[0])


def _fit_validating(callbacks):
    """4 epochs of 3 steps, validating after epochs 2 and 4 on a 3-batch set; returns (history, open
    validation iterators seen at each epoch's end)."""
    import tensorflow as tf

    class Watch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_end(self, epoch, logs=None):
            iterator = getattr(self.model, "_eval_epoch_iterator", None)
            self.seen.append(None if iterator is None else iterator._current_iterator is not None)

    x = np.arange(24, dtype="float32").reshape(12, 2) / 24
    train = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(4).repeat()
    val = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(4)
    watch = Watch()
    history = _model().fit(train, epochs=4, steps_per_epoch=3, validation_data=val, validation_freq=[2, 4],
                           callbacks=[*callbacks, watch], verbose=0, shuffle=False)
    return history.history, watch.seen


def test_the_validation_iterator_is_not_kept_open_between_validations():
    from tsn_keras.callbacks import ReleaseValidationIterator

    history, seen = _fit_validating([ReleaseValidationIterator()])
    assert seen == [None, False, False, False]  # closed after each validation pass
    assert len(history["val_loss"]) == 2 and all(np.isfinite(history["val_loss"]))
    # Without it, Keras keeps the next pass's iterator open from the second validation on (the
    # first pass learns the set's length): if this stops holding, the callback has become moot.
    _, plain = _fit_validating([])
    assert plain[-1] is True
