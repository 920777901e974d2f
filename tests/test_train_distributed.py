"""Training on several replicas: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy
with 2 worker processes on localhost, and a run killed mid-way that resumes at the right epoch.

Each case runs in a fresh process (this module is also the script: ``python -m
tests.test_train_distributed <case> ...``), because logical devices and the multi-worker
collectives must be configured before TensorFlow starts, and because a run has to be killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def _tiny_config(root, **train):
    from tests.test_training import tiny_config

    return tiny_config(root, train=train)


# --- the subprocess side ----------------------------------------------------------------------

def _hand_made_run(strategy_name: str, iter_size: int, global_batch: int, precision: str = "float32") -> dict:
    """A small conv net without BatchNorm or dropout, trained with the recipe optimiser."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tsn_keras.config import TrainConfig
    from tsn_keras.distribute import make_strategy
    from tsn_keras.optimization import make_optimizer

    strategy = make_strategy(strategy_name)
    keras.config.set_dtype_policy({"float32": "float32", "float16": "mixed_float16"}[precision])
    with strategy.scope():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6, 6, 2))
        x = keras.layers.Conv2D(3, 3)(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(3, dtype="float32")(x))
        cfg = TrainConfig(lr=0.5, lr_steps=(1,), clip_norm=0.05, weight_decay=0.01, mixed_precision=precision)
        model.compile(make_optimizer(cfg, iter_size), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, 32)
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch), epochs=2, verbose=0,
                        shuffle=False)
    return {"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"],
            "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
            "weights": [w.tolist() for w in model.get_weights()]}


def _mirrored(root: str, run_dir: str) -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tsn_keras.training import train

    # The same 16 clips per update: 1 replica x 16, and 2 replicas x 4 clips x 2 micro-steps.
    single = _hand_made_run("default", iter_size=1, global_batch=16)
    mirrored = _hand_made_run("mirrored", iter_size=2, global_batch=8)
    # float16 loss scaling: the skip-or-apply decision is taken by all replicas together.
    half = {"single": _hand_made_run("default", 1, 16, "float16"), "mirrored": _hand_made_run("mirrored", 2, 8, "float16")}
    # train() itself on 2 replicas: batch 8 = 2 replicas x 2 clips x 2 micro-steps.
    result = train(_tiny_config(root, strategy="mirrored", micro_batch_size=2, max_iterations=4), run_dir, verbose=0)
    return {"single": single, "mirrored": mirrored, "half": half, "history": result.history,
            "log": (Path(run_dir) / "train.log").read_text()}


def _worker(root: str, run_dir: str) -> dict:
    from tsn_keras.training import train

    result = train(_tiny_config(root, strategy="multi_worker", micro_batch_size=2, max_iterations=4), run_dir,
                   verbose=0)
    return {"history": result.history, "model": str(result.model_path)}


def _killed(root: str, run_dir: str, kill_after_epoch: str) -> dict:
    import keras

    from tsn_keras.training import train

    class KillAfter(keras.callbacks.Callback):
        """SIGKILL at the end of an epoch, after the run's own callbacks (and its backup) ran."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == int(kill_after_epoch):
                os.kill(os.getpid(), signal.SIGKILL)

    train(_tiny_config(root, max_iterations=8), run_dir, verbose=0, callbacks=[KillAfter()])
    return {"finished": True}


def main(argv: list[str]) -> None:
    case, *args = argv
    result = {"mirrored": _mirrored, "worker": _worker, "killed": _killed}[case](*args)
    print("RESULT " + json.dumps(result))


# --- the test side ----------------------------------------------------------------------------

def _launch(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_train_distributed", *args], cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _result(process: subprocess.Popen) -> dict:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, f"exit {process.returncode}\n{out[-3000:]}\n{err[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_matches_one_device(tiny_shards, tmp_path):
    import numpy as np

    result = _result(_launch("mirrored", str(tiny_shards), str(tmp_path / "run")))
    single, mirrored = result["single"], result["mirrored"]
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    assert single["iterations"] == mirrored["iterations"] == 4
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-5)
    for a, b in zip(single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)
    half = result["half"]
    assert half["single"]["iterations"] == half["mirrored"]["iterations"] == 4
    np.testing.assert_allclose(half["mirrored"]["loss"], half["single"]["loss"], rtol=2e-3)
    np.testing.assert_allclose(half["mirrored"]["loss"], single["loss"], rtol=2e-2)  # float16 ~ float32

    history = result["history"]
    assert "MirroredStrategy with 2 replica(s)" in result["log"]
    assert "2 replica(s) x 2 clips x 2 micro-step(s)" in result["log"]
    assert history["iteration"] == [2, 4]
    assert all(np.isfinite(history["loss"])) and all(np.isfinite(history["val_loss"]))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_strategy_with_two_local_workers(tmp_path):
    import numpy as np

    from tests.helpers import write_shards

    # Validation shards of 4 videos: each worker gets one and the same number of batches. (With
    # uneven shards, MultiWorkerMirroredStrategy pads a worker's last step with an empty batch,
    # and TensorFlow's CPU Conv2D mishandles empty batches: a CPU-only TensorFlow bug.)
    shards = write_shards(tmp_path / "shards", videos_per_class={"train": 4, "val": 2}, videos_per_shard=4)
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    run = tmp_path / "run"
    processes = [
        _launch("worker", str(shards), str(run), env={
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]
    results = [_result(p) for p in processes]
    chief = results[0]
    assert chief["history"]["iteration"] == [2, 4]
    assert all(np.isfinite(chief["history"]["loss"]))
    # Both workers trained the same synchronised model; only the chief's files remain.
    assert results[1]["history"]["iteration"] == [2, 4]
    assert (run / "model.keras").is_file() and (run / "history.csv").is_file()
    assert not (run / "workers").exists() or not any((run / "workers").iterdir())
    log = (run / "train.log").read_text()
    assert "MultiWorkerMirroredStrategy (2 workers) with 2 replica(s)" in log
    assert all(np.isfinite(chief["history"]["val_accuracy"]))


@pytest.mark.slow
def test_killed_run_resumes_at_the_next_epoch_and_ends_as_an_uninterrupted_run(tiny_shards, tmp_path):
    import keras
    import numpy as np

    from tsn_keras.cli import main as tsn
    from tsn_keras.history import read_rows

    run = tmp_path / "run"
    killed = _launch("killed", str(tiny_shards), str(run), "1")
    killed.communicate(timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL
    backed_up = json.loads((run / "backup" / "training_metadata.json").read_text())
    assert backed_up["epoch"] == 2  # epochs 0 and 1 finished and backed up
    assert [int(r["epoch"]) for r in read_rows(run / "history.csv")] == [0, 1]
    assert not (run / "model.keras").exists()

    # Started again the way a user would: the run folder alone (its config.yaml is the recipe).
    assert tsn(["train", "--run-dir", str(run), "--verbose", "0"]) == 0
    rows = read_rows(run / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    # The optimiser state came back with the weights: its update counter went on from 4.
    assert [int(r["iteration"]) for r in rows] == [2, 4, 6, 8]
    log = (run / "train.log").read_text()  # appended to by both processes
    assert log.count("epoch 1:") == 1 and log.count("epoch 2:") == 1 and "epoch 4:" in log
    assert (run / "model.keras").is_file() and not (run / "backup").exists()

    # The resumed run is the run it would have been: same data stream, optimiser and RNGs, so
    # the same losses and bit-identical final weights as an uninterrupted run of the recipe.
    whole = tmp_path / "whole"
    assert tsn(["train", "--config", str(run / "config.yaml"), "--run-dir", str(whole), "--verbose", "0"]) == 0
    whole_rows = read_rows(whole / "history.csv")
    assert [r["loss"] for r in rows] == [r["loss"] for r in whole_rows]
    resumed, uninterrupted = (keras.models.load_model(p / "model.keras") for p in (run, whole))
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        assert np.array_equal(a, b)


if __name__ == "__main__":
    main(sys.argv[1:])
