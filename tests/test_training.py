"""``train(config)`` on a tiny converted dataset: checks before work, the run folder, precision."""

import json
import shutil

import numpy as np
import pytest

from tsn_keras.checks import check_data
from tsn_keras.config import config_from_dict, load_config
from tsn_keras.errors import ConfigError, DataError


def tiny_config(root, name="tiny", **sections):
    """A recipe for ``tiny_shards`` (16 training videos of 48x64 frames): 2 iterations per epoch."""
    values = {
        "name": name,
        "data": {"root": str(root), "input_size": 32, "shuffle_buffer": 16},
        "model": {"backbone": "tiny", "partial_bn": False, "dropout": 0.5},
        # seed 0, as in the recipes: train() leaves TensorFlow's global seed at 0 for the next run
        # in the process, which the pipeline's seeded shuffle must survive.
        "train": {"batch_size": 8, "lr": 0.05, "lr_steps": [16], "max_iterations": 5, "clip_norm": 40.0,
                  "strategy": "default", "seed": 0},
    }
    for section, entries in sections.items():
        values.setdefault(section, {}).update(entries)
    return config_from_dict(values)


# --- checks before any work -------------------------------------------------------------------

def test_check_data_summarises_a_good_dataset(tiny_shards):
    summary = check_data(tiny_config(tiny_shards))
    assert (summary.train_videos, summary.val_videos) == (16, 8)
    assert summary.classes == ["class0", "class1", "class2", "class3"]
    assert summary.frame_size == (64, 48)


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"data": {"root": ""}}, ConfigError, r"data\.root is not set"),
    ({"data": {"root": "/nonexistent/shards"}}, ConfigError, r"data\.root=/nonexistent/shards is not a folder"),
    ({"data": {"val_split": "valid"}}, ConfigError,
     r"data\.val_split='valid' is not a split of .*; available: train, val, test or null"),
    ({"data": {"train_split": "training"}}, ConfigError, r"data\.train_split='training' is not a split"),
    ({"data": {"input_size": 56}}, ConfigError,
     r"data\.input_size=56 is larger than the stored frames \(64x48\); allowed: <= 48"),
    ({"model": {"consensus": "identity"}}, ConfigError, r"model\.consensus='identity' cannot be trained.*avg, max"),
    ({"model": {"weights": "/nonexistent/w.weights.h5"}}, ConfigError,
     r"model\.weights=/nonexistent/w\.weights\.h5 does not exist; allowed: null, 'imagenet'"),
])
def test_check_data_errors_name_the_key(tiny_shards, change, error, message):
    with pytest.raises(error, match=message):
        check_data(tiny_config(tiny_shards, **change))


def test_check_data_missing_modality_and_shards(tiny_shards, tmp_path):
    # A copy of the conversion that stored only RGB frames, and one that lost a shard.
    rgb_only = tmp_path / "rgb_only"
    shutil.copytree(tiny_shards, rgb_only)
    manifest = json.loads((rgb_only / "manifest.json").read_text())
    manifest.update(stored_keys=["rgb"], modalities=["rgb"])
    (rgb_only / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"data\.modality=flow needs the stored frames flow_x, flow_y.*"
                                          r"allowed with this data: rgb, rgb_diff"):
        check_data(tiny_config(rgb_only, data={"modality": "flow", "input_size": 32}))
    next((rgb_only / "val").glob("*.tfrecord")).unlink()
    with pytest.raises(DataError, match=r"shard.* of split 'val' are missing"):
        check_data(tiny_config(rgb_only))
    (rgb_only / "manifest.json").unlink()
    with pytest.raises(DataError, match="not a converted dataset"):
        check_data(tiny_config(rgb_only))


def test_batch_sizes_that_do_not_divide_fail_before_training(tiny_shards, tmp_path):
    from tsn_keras.training import train

    config = tiny_config(tiny_shards, train={"micro_batch_size": 3, "output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"train\.batch_size=8 must be a multiple of train\.micro_batch_size"):
        train(config)
    assert not any(tmp_path.iterdir())  # nothing written


def test_schedule_maps_iterations_to_replicas_micro_steps_and_epochs(tiny_shards):
    from tsn_keras.training import make_schedule

    config = tiny_config(tiny_shards, train={"batch_size": 256, "micro_batch_size": 16, "max_iterations": 4500})
    schedule = make_schedule(config, train_videos=9537, replicas=2)  # UCF101 split 1 on 2 GPUs
    assert (schedule.iteration_size, schedule.iterations_per_epoch, schedule.steps_per_epoch, schedule.epochs) == (8, 38, 304, 119)
    with pytest.raises(ConfigError, match=r"train\.steps_per_execution=3 must divide .*; allowed: 1, 2, 4, 8"):
        make_schedule(tiny_config(tiny_shards, train={"steps_per_execution": 3, "micro_batch_size": 1, "max_iterations": 8}),
                  train_videos=16, replicas=1)


def test_run_folders_that_cannot_be_continued(tiny_shards, tmp_path, monkeypatch):
    from tsn_keras.distribute import make_strategy
    from tsn_keras.training import train

    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    (run / "config.yaml").write_text(tiny_config(tiny_shards).to_yaml())
    with pytest.raises(ConfigError, match=r"model\.backbone \('tiny' -> 'mobilenet_v2'\) changed"):
        train(tiny_config(tiny_shards, model={"backbone": "mobilenet_v2"}), run)
    with pytest.raises(ConfigError, match="holds an unfinished run"):
        train(tiny_config(tiny_shards), run, resume=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"train\.strategy=multi_worker needs the TF_CONFIG environment variable"):
        make_strategy("multi_worker")


def test_cli_check_validates_without_training(tiny_shards, capsys):
    from tsn_keras.cli import main

    recipe = ["train", "--config", "ucf101subset_rgb", "--set", f"data.root={tiny_shards}"]
    assert main([*recipe, "--set", "data.input_size=32", "--check"]) == 0
    out = capsys.readouterr().out
    assert "normalization: keras_tf" in out  # "auto" resolved for the tiny backbone
    assert "# ok: 16 training videos, 8 validation videos, 4 classes" in out
    assert main([*recipe, "--check"]) == 2  # the recipe's 112 px crop does not fit 64x48 frames
    assert "data.input_size=112 is larger than the stored frames (64x48)" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "give --config" in capsys.readouterr().err


# --- training ---------------------------------------------------------------------------------

def _scalars(folder) -> dict[str, list[float]]:
    """Scalars of the TensorBoard event files in ``folder``, read back with TensorFlow only."""
    import tensorflow as tf

    values: dict[str, list[float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return values


@pytest.mark.slow
def test_train_lowers_the_loss_and_writes_the_run_folder(tiny_shards, tmp_path):
    import keras

    from tsn_keras.training import train

    # 9 iterations at 2 per epoch: 5 epochs, the last one cut to a single iteration.
    config = tiny_config(tiny_shards, train={"max_iterations": 9, "lr_steps": [6], "output_dir": str(tmp_path)})
    result = train(config, verbose=0)
    run = result.run_dir
    assert run.parent == tmp_path and run.name.startswith("tiny-")
    history = result.history
    assert history["epoch"] == [0, 1, 2, 3, 4]
    assert history["iteration"] == [2, 4, 6, 8, 9]
    # The rate of each epoch's last update: update 6 (0-based) is the first at lr / 10.
    assert history["learning_rate"] == pytest.approx([0.05, 0.05, 0.05, 0.005, 0.005])
    assert np.mean(history["loss"][-2:]) < 0.7 * history["loss"][0]
    assert all(np.isfinite(history["val_accuracy"]))

    for name in ("config.yaml", "classes.json", "history.csv", "train.log", "model.keras",
                 "checkpoints/best.weights.h5", "checkpoints/last.weights.h5"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()  # a finished run leaves no backup
    assert json.loads((run / "classes.json").read_text()) == ["class0", "class1", "class2", "class3"]
    stored = load_config(run / "config.yaml")
    assert stored.data.normalization == "keras_tf" and stored.data.new_length == 1 and stored.model.dropout == 0.5
    log = (run / "train.log").read_text()
    assert "epoch 5:" in log and "best checkpoint by val_accuracy" in log
    train_scalars = _scalars(run / "tensorboard" / "train")
    assert train_scalars["epoch_learning_rate"] == pytest.approx(history["learning_rate"])
    assert train_scalars["epoch_loss"] == pytest.approx(history["loss"])
    assert _scalars(run / "tensorboard" / "validation")["epoch_accuracy"] == pytest.approx(history["val_accuracy"])

    # The final model loads without the optimiser class, and is the last epoch's weights.
    model = keras.saving.load_model(run / "model.keras")
    assert not model.compiled
    # ... and tells, on its own, how its input must be prepared.
    assert (type(model).__name__, model.modality, model.new_length, model.input_size, model.normalization) == (
        "TSN", "rgb", 1, 32, "keras_tf")
    assert model.class_names == ["class0", "class1", "class2", "class3"]
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32, 3)).astype("float32")
    last = keras.models.clone_model(model)
    last.load_weights(run / "checkpoints" / "last.weights.h5")
    np.testing.assert_allclose(model.predict(x, verbose=0), last.predict(x, verbose=0), rtol=1e-5, atol=1e-6)

    with pytest.raises(ConfigError, match="holds a finished run"):
        train(config, run_dir=run)


def test_device_resize_trains_the_same_weights_as_the_host_path(tiny_shards, tmp_path):
    import keras

    from tsn_keras.training import train

    def run(device_resize):
        config = tiny_config(tiny_shards, data={"device_resize": device_resize}, train={"max_iterations": 2})
        return train(config, tmp_path / str(device_resize), verbose=0)

    host, device = run(False), run(True)
    assert load_config(device.run_dir / "config.yaml").data.device_resize is True
    assert "resized and normalised on the accelerator" in (device.run_dir / "train.log").read_text()
    assert device.history["loss"] == host.history["loss"]  # the views are the host's, bit for bit
    assert device.history["val_accuracy"] == host.history["val_accuracy"]
    model = keras.saving.load_model(device.model_path)
    assert type(model).__name__ == "TSN"  # model.keras is the TSN alone
    for a, b in zip(model.get_weights(), keras.saving.load_model(host.model_path).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    last = keras.models.clone_model(model)
    last.load_weights(device.run_dir / "checkpoints" / "last.weights.h5")  # the TSN's weights, not the wrapper's
    # On a CPU, auto keeps the host path; a recipe cannot ask for it on flow.
    from tsn_keras.training import resolved
    assert resolved(tiny_config(tiny_shards)).data.device_resize is (bool(__import__("tensorflow").config.list_physical_devices("GPU")))
    with pytest.raises(ConfigError, match=r"data\.device_resize is for rgb training, not flow"):
        tiny_config(tiny_shards, data={"modality": "flow", "device_resize": True})
    with pytest.raises(ConfigError, match=r"data\.device_resize must be true, false or auto, got 'yes'"):
        tiny_config(tiny_shards, data={"device_resize": "yes"})


@pytest.mark.slow
def test_bfloat16_xla_and_accumulation_train_on_cpu(tiny_shards, tmp_path):
    import keras

    from tsn_keras.training import train

    config = tiny_config(tiny_shards, data={"val_split": None},
                         train={"max_iterations": 2, "micro_batch_size": 4, "mixed_precision": "bfloat16",
                                "jit_compile": True})
    result = train(config, tmp_path / "run", verbose=0)
    assert result.history["iteration"] == [2]  # 4 micro-steps of 4 clips: 2 iterations of 8
    assert all(np.isfinite(result.history["loss"]))
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    model = keras.saving.load_model(result.model_path)
    assert model.get_layer("backbone").dtype_policy.name == "mixed_bfloat16"
    assert "best checkpoint by loss" in (result.run_dir / "train.log").read_text()


@pytest.mark.slow
def test_float16_loss_scaling_trains(tiny_shards, tmp_path):
    from tsn_keras.training import train

    config = tiny_config(tiny_shards, data={"val_split": None},
                         train={"max_iterations": 2, "mixed_precision": "float16"})
    result = train(config, tmp_path / "run", verbose=0)
    assert result.history["iteration"] == [2]
    assert np.isfinite(result.history["loss"][0])
