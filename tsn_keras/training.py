"""``train(config)``: a TSN trained with ``model.fit`` the way the paper optimised it.

One call checks the recipe against its data, picks the ``tf.distribute`` strategy, builds the
TSN and the Caffe-style optimiser (``tsn_keras.optimization``), feeds it per-replica batches
from the shards, and writes a run folder::

    <run_dir>/config.yaml        the resolved recipe (``tsn train --config`` reads it back)
             classes.json        class names, index = label
             history.csv         one row per epoch: iteration, learning_rate, loss, accuracy, val_*
             train.log           what ran where, and one line per epoch
             tensorboard/        TensorBoard logs
             backup/             BackupAndRestore state (deleted when the run finishes)
             checkpoints/best.weights.h5   best val accuracy (or lowest training loss without val)
             checkpoints/last.weights.h5   the last finished epoch
             model.keras         the final model (no optimiser: loads with the tsn_keras layers only)

Units are the paper's: an *iteration* is one optimiser update over ``train.batch_size`` clips,
reached with ``iteration_size = batch_size / (micro_batch_size * replicas)`` accumulated
micro-steps; ``lr_steps`` and ``max_iterations`` count iterations. An *epoch* is
``ceil(train videos / batch_size)`` iterations, and the last one is cut short so that training
stops exactly at ``max_iterations``.

A run that is killed continues from its last finished epoch when started again with the same
``run_dir`` (``tsn train --config ... --run-dir <run>``).

Example:
    >>> from tsn_keras.config import load_config
    >>> result = train(load_config("ucf101subset_rgb", ["data.root=data/ucf101_subset"]))  # doctest: +SKIP
    >>> result.history["val_accuracy"][-1]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from tfrecords_tools.shards import atomic_write_bytes
from tsn_keras.checks import DataSummary, check_data
from tsn_keras.config import Config, config_from_dict
from tsn_keras.errors import ConfigError
from tsn_keras.history import columns as history_columns
from tsn_keras.vocab import AUTO, backbone_preset

log = logging.getLogger("tsn_keras.training")

# Keys whose change makes a run folder's backup unusable (weight shapes or their meaning).
# data.device_resize: the checkpoints of a run with it hold the weights under the wrapper model.
_FIXED_ON_RESUME = ("model", "data.modality", "data.new_length", "data.num_segments", "data.input_size",
                    "data.device_resize")


@dataclass
class TrainResult:
    """What :func:`train` made: the run folder, the final model file and the epoch history."""

    run_dir: Path
    model_path: Path
    history: dict[str, list[float]]


@dataclass
class Schedule:
    """How the recipe's iterations map onto replicas, micro-steps and Keras epochs."""

    replicas: int
    micro_batch_size: int  # clips per replica per forward pass
    iteration_size: int  # micro-steps accumulated per update
    iterations_per_epoch: int
    steps_per_epoch: int  # Keras steps (micro-steps) per epoch
    epochs: int


def make_schedule(config: Config, train_videos: int, replicas: int) -> Schedule:
    """The run's :class:`Schedule`; a ``ConfigError`` when batch sizes and replicas do not divide."""
    from tsn_keras.optimization import accumulation_steps, iterations_per_epoch

    t = config.train
    iteration_size = accumulation_steps(t.batch_size, t.micro_batch_size, replicas)
    micro = t.micro_batch_size or t.batch_size // replicas
    per_epoch = iterations_per_epoch(train_videos, t.batch_size)
    steps = per_epoch * iteration_size
    if steps % t.steps_per_execution or (t.max_iterations * iteration_size) % t.steps_per_execution:
        raise ConfigError(
            f"train.steps_per_execution={t.steps_per_execution} must divide the micro-steps per epoch ({steps}) "
            f"and per run ({t.max_iterations * iteration_size}); allowed: "
            + ", ".join(str(n) for n in range(1, steps + 1) if not steps % n and not (t.max_iterations * iteration_size) % n)
        )
    return Schedule(replicas, micro, iteration_size, per_epoch, steps, math.ceil(t.max_iterations / per_epoch))


def resolved(config: Config, stored: Config | None = None) -> Config:
    """``config`` with the modality's defaults written in (what ``config.yaml`` stores).

    ``data.device_resize: auto`` becomes what the run folder's ``stored`` config chose (a
    continued run keeps the layout of its checkpoints), else true for RGB when TensorFlow sees
    a GPU: on a CPU the same cores would do the resize either way.
    """
    d, m = config.data, config.model
    device_resize = d.device_resize
    if device_resize == AUTO:
        device_resize = stored.data.device_resize if stored is not None else d.modality == "rgb" and _sees_gpu()
    data = replace(
        d,
        new_length=d.resolved_new_length(),
        scales=d.resolved_scales(),
        normalization=backbone_preset(m.backbone) if d.normalization == AUTO else d.normalization,
        device_resize=device_resize is True,
    )
    return replace(config, data=data, model=replace(m, dropout=m.resolved_dropout(d.modality)))


def train(config: Config, run_dir=None, *, resume: bool = True, verbose="auto", callbacks=None) -> TrainResult:
    """Train a TSN as ``config`` says and write its run folder.

    Args:
        config: a validated recipe (``tsn_keras.config.load_config``).
        run_dir: the run folder; default ``<train.output_dir>/<name>-<YYYYmmdd-HHMMSS>``. An
            existing run folder is continued from its last finished epoch.
        resume: ``False`` refuses to touch a run folder that holds a backup.
        verbose: Keras' ``fit`` verbosity (``"auto"``, 0, 1 or 2).
        callbacks: extra Keras callbacks, run after the run folder's own.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError, DataError: before any work, when the recipe or its data are not usable.
    """
    config = config_from_dict(config.to_dict())  # validates, and leaves the caller's object alone
    if verbose == "auto":
        # A progress bar only on a terminal: redirected, its escape codes filled logs (70 KB a run).
        verbose = 1 if sys.stdout.isatty() else 2
    data = check_data(config)
    stored = _stored_config(run_dir)
    config = resolved(config, stored)

    import keras

    from tsn_keras.distribute import dtype_policy, make_strategy

    strategy = make_strategy(config.train.strategy)  # before any other TensorFlow op (multi-worker)
    schedule = make_schedule(config, data.train_videos, strategy.num_replicas_in_sync)
    if config.train.strategy == "multi_worker" and run_dir is None:
        raise ConfigError("train.strategy=multi_worker needs an explicit run folder (--run-dir) shared by all workers")
    run = _prepare_run_dir(config, run_dir, resume, stored)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy(config.train.mixed_precision))
    try:
        return _fit(config, data, schedule, strategy, run, verbose, list(callbacks or []))
    finally:
        keras.config.set_dtype_policy(previous_policy)
        for handler in list(log.handlers):
            if getattr(handler, "_tsn_run", False):
                log.removeHandler(handler)
                handler.close()


def _fit(config: Config, data: DataSummary, schedule: Schedule, strategy, run: Path, verbose, extra_callbacks) -> TrainResult:
    import keras
    import tensorflow as tf

    from tsn_keras import callbacks as cb
    from tsn_keras.checkpoints import AtomicBackupAndRestore, AtomicModelCheckpoint
    from tsn_keras.distribute import describe, fit_under_multi_worker, is_chief, task_name
    from tsn_keras.models.tsn import build_tsn, with_device_views
    from tsn_keras.optimization import first_conv_lr_mults, make_optimizer

    chief = is_chief(strategy)
    out = run if chief else run / "workers" / task_name(strategy)  # non-chief tasks write scratch copies
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.yaml", config.to_yaml().encode())
    atomic_write_bytes(out / "classes.json", (json.dumps(data.classes, indent=1) + "\n").encode())
    _log_to(out / "train.log")
    t, d, m = config.train, config.data, config.model
    console = chief and verbose != 0
    # The plan goes to train.log and, at the start, to the console.
    for line in (f"run folder {run} ({'chief' if chief else task_name(strategy)})",
                 f"strategy: {describe(strategy)}",
                 f"{data.train_videos} training videos, {data.val_videos} validation videos, {len(data.classes)} classes",
                 f"iterations: {t.max_iterations} of {t.batch_size} clips = {schedule.replicas} replica(s) x "
                 f"{schedule.micro_batch_size} clips x {schedule.iteration_size} micro-step(s); "
                 f"{schedule.iterations_per_epoch} per epoch, {schedule.epochs} epochs",
                 "input: " + ("uint8 crops, resized and normalised on the accelerator (data.device_resize)"
                              if d.device_resize else "views resized and normalised on the host")):
        log.info("%s", line)
        if console:
            print(line, flush=True)

    # A resumed run continues the data stream where the backed-up epoch ended (same clips,
    # same augmentation), so that it ends with the weights of an uninterrupted run.
    start_epoch = _backed_up_epoch(out / "backup")
    train_data, val_data = _datasets(config, schedule, strategy, start_epoch)
    keras.utils.set_random_seed(t.seed)  # the model's initial weights
    with strategy.scope():
        model = build_tsn(
            len(data.classes), modality=d.modality, num_segments=d.num_segments, new_length=d.new_length,
            backbone=m.backbone, consensus=m.consensus, dropout=m.dropout, partial_bn=m.partial_bn,
            input_size=d.input_size, weights=m.weights, consensus_k=m.consensus_k, init_from=m.init_from,
            normalization=d.normalization, class_names=list(data.classes),
        )
        # The model fit sees: with device_resize, the TSN behind the accelerator's half of the
        # pipeline (same weights); model.keras is the TSN alone either way.
        fitted = with_device_views(model) if d.device_resize else model
        fitted.compile(
            optimizer=make_optimizer(t, schedule.iteration_size, first_conv_lr_mults(model, d.modality)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=t.jit_compile,
            steps_per_execution=t.steps_per_execution,
        )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        fit_under_multi_worker(fitted, strategy)

    history = cb.HistoryCSV(out / "history.csv")
    monitor, mode = ("val_accuracy", "max") if val_data is not None else ("loss", "min")
    log.info("best checkpoint by %s (%s)", monitor, mode)
    run_callbacks = [
        cb.StopAtIteration(t.max_iterations),
        *([cb.ReleaseValidationIterator()] if val_data is not None else []),
        *([cb.EtaNotice(t.max_iterations, print_fn=lambda text: print(text, flush=True))] if console else []),
        cb.IterationLogger(t.lr, t.lr_steps, t.lr_decay),
        history,
        cb.EpochLog(),
        cb.ResumableCheckpoint(out / "checkpoints" / "best.weights.h5", history, monitor, mode, weights_of=model),
        AtomicModelCheckpoint(out / "checkpoints" / "last.weights.h5", weights_of=model),
        cb.TensorBoardScalars(out / "tensorboard"),
        # After the history, so that an epoch is never backed up without its history row.
        cb.RandomStateBackup(out / "backup", start_epoch),
        AtomicBackupAndRestore(str(out / "backup"), double_checkpoint=True),
        *extra_callbacks,
    ]
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Keras learns the length of the validation set by running out of it, and says so.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fitted.fit(
            train_data,
            epochs=schedule.epochs,
            steps_per_epoch=schedule.steps_per_epoch,
            validation_data=val_data,
            # Every validate_every epochs, and always the last one (1-based epochs).
            validation_freq=sorted({*range(t.validate_every, schedule.epochs + 1, t.validate_every), schedule.epochs}),
            callbacks=run_callbacks,
            verbose=verbose,
            shuffle=False,  # the pipeline shuffles
        )
    log.info("trained %d iterations in %.1f s", cb.completed_updates(fitted), time.perf_counter() - started)

    model_path = out / "model.keras"
    _save_inference_model(model, model_path)
    log.info("saved %s", model_path)
    if not chief:
        shutil.rmtree(out, ignore_errors=True)
        with contextlib.suppress(OSError):
            out.parent.rmdir()  # the last worker out removes workers/
        model_path = run / "model.keras"
    return TrainResult(run, model_path, history_columns(history.rows))


def _datasets(config: Config, schedule: Schedule, strategy, start_epoch: int = 0):
    """Per-replica train (repeated) and validation datasets through ``distribute_datasets_from_function``.

    The train stream begins after the clips ``start_epoch`` finished epochs consumed: each
    input pipeline feeds ``replicas / pipelines`` replicas ``micro_batch_size`` clips per step.
    """
    from tsn_keras.data.pipeline import dataset_from_config

    d, seed = config.data, config.train.seed

    def train_fn(context):
        per_pipeline = max(1, context.num_replicas_in_sync // max(1, context.num_input_pipelines))
        start = start_epoch * schedule.steps_per_epoch * schedule.micro_batch_size * per_pipeline
        return dataset_from_config(d, "train", schedule.micro_batch_size, d.normalization, seed=seed,
                                   input_context=context, repeat=True, start=start)

    train_data = strategy.distribute_datasets_from_function(train_fn)
    if d.val_split is None:
        return train_data, None

    def val_fn(context):
        return dataset_from_config(d, "val", schedule.micro_batch_size, d.normalization, seed=seed,
                                   input_context=context)

    return train_data, strategy.distribute_datasets_from_function(val_fn)


def _save_inference_model(model, path: Path) -> None:
    """Save ``model`` without its compile state, so loading it needs no optimiser class."""
    from tsn_keras.checkpoints import save_model_atomically

    # clone_model would copy the compile state too; from_config rebuilds the architecture only.
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    save_model_atomically(clone, path)


def _prepare_run_dir(config: Config, run_dir, resume: bool, stored: Config | None) -> Path:
    """The run folder: a new timestamped one, or ``run_dir`` checked for being continuable
    (``stored``: its ``config.yaml``, from :func:`_stored_config`)."""
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run = Path(config.train.output_dir) / f"{config.name}-{stamp}"
        suffix = 1
        while run.exists():
            run = Path(config.train.output_dir) / f"{config.name}-{stamp}-{suffix}"
            suffix += 1
        return run
    run = Path(run_dir)
    if stored is not None:
        has_backup = (run / "backup").is_dir()
        if not resume and has_backup:
            raise ConfigError(f"run folder {run} holds an unfinished run; continue it (resume) or choose a new folder")
        if not has_backup and (run / "model.keras").is_file():
            raise ConfigError(f"run folder {run} holds a finished run (model.keras); choose a new folder")
        _check_resumable(run, stored, config)
    return run


def _sees_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _stored_config(run_dir) -> Config | None:
    """The resolved config of the run ``run_dir`` continues, if any."""
    from tsn_keras.config import load_config

    stored = Path(run_dir) / "config.yaml" if run_dir is not None else None
    return load_config(stored) if stored is not None and stored.is_file() else None


def _check_resumable(run: Path, stored: Config, config: Config) -> None:
    before = _flat(stored.to_dict())
    now = _flat(config.to_dict())
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    fixed = [k for k in changed if any(k == f or k.startswith(f + ".") for f in _FIXED_ON_RESUME)]
    if fixed:
        raise ConfigError(
            f"cannot continue {run}: {', '.join(f'{k} ({before.get(k)!r} -> {now.get(k)!r})' for k in fixed)} "
            "changed; these keys must stay as they were, or start a new run folder"
        )
    if changed:
        log.warning("continuing %s with changed settings: %s", run, ", ".join(changed))


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _backed_up_epoch(backup: Path) -> int:
    """The epoch BackupAndRestore will continue from (0 for a new run)."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        try:
            return int(json.loads((backup / name).read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def _log_to(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler._tsn_run = True
    log.addHandler(handler)
    log.setLevel(logging.INFO)
