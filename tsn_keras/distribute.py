"""Where training runs: ``tf.distribute`` strategies by name, and the mixed-precision policy.

``train.strategy`` in a recipe:

- ``default``: TensorFlow's default strategy (one device).
- ``mirrored``: ``MirroredStrategy`` over all local GPUs; on a machine without GPUs, over all
  logical CPU devices (one unless configured, e.g. two for the tests).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster described by ``TF_CONFIG``.
- ``auto``: ``mirrored`` when there is more than one local GPU, else ``default``.

``MultiWorkerMirroredStrategy`` has to be created before TensorFlow runs any op, so
``tsn_keras.training.train`` makes the strategy first.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tsn_keras.errors import ConfigError
from tsn_keras.vocab import PRECISIONS, STRATEGIES

# One strategy object per kind and devices for the life of the process: a second
# MirroredStrategy over the same devices reuses the collective keys of the first, and their
# all-reduces then meet the wrong partners ("Shape mismatch in the collective instance ..."),
# e.g. when one process trains the RGB and then the flow stream. A second
# MultiWorkerMirroredStrategy cannot be created at all.
_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}

# train.mixed_precision -> Keras dtype policy.
POLICIES = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy named by ``train.strategy``.

    Args:
        name: ``auto``, ``default``, ``mirrored`` or ``multi_worker``.

    Raises:
        ConfigError: for an unknown name, or ``multi_worker`` without a usable ``TF_CONFIG``.

    Example:
        >>> strategy = make_strategy("auto")  # doctest: +SKIP
        >>> strategy.num_replicas_in_sync  # doctest: +SKIP
        1
    """
    if name not in STRATEGIES:
        raise ConfigError(f"train.strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if name == "multi_worker":
        config = _check_tf_config()
        key = ("multi_worker", json.dumps(config, sort_keys=True))
        if key not in _STRATEGIES:
            if any(k[0] == "multi_worker" for k in _STRATEGIES):
                raise ConfigError("this process already joined a multi-worker cluster with another TF_CONFIG; "
                                  "start a new process for the new cluster")
            _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES[key]
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    devices = tuple(d.name for d in gpus) or tuple(d.name for d in tf.config.list_logical_devices("CPU"))
    key = ("mirrored", devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
    return _STRATEGIES[key]


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "train.strategy=multi_worker needs the TF_CONFIG environment variable "
            '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}})'
        )
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"TF_CONFIG is not valid for train.strategy=multi_worker ({err!r}): {raw}") from None
    if not workers:
        raise ConfigError("TF_CONFIG lists no workers in cluster.worker")
    return config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder (always, except non-chief multi-worker tasks)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def task_name(strategy: tf.distribute.Strategy) -> str:
    """``chief`` or ``<type>-<index>`` of this process in a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if is_chief(strategy) or resolver is None:
        return "chief"
    return f"{resolver.task_type}-{resolver.task_id}"


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line for the log: the strategy, its replicas and this process's devices."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = f"MultiWorkerMirroredStrategy ({strategy.extended._num_workers} workers)"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        name = "MirroredStrategy"
    else:
        name = "default strategy"
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        devices = ["the default device"]
    return f"{name} with {strategy.num_replicas_in_sync} replica(s); this process: {', '.join(devices)}"


def dtype_policy(precision: str) -> str:
    """The Keras dtype policy for ``train.mixed_precision`` (``float32``, ``float16``, ``bfloat16``)."""
    if precision not in POLICIES:
        raise ConfigError(f"train.mixed_precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return POLICIES[precision]


def fit_under_multi_worker(model, strategy: tf.distribute.Strategy) -> None:
    """Let Keras 3's ``Model.fit`` run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585).

    Keras 3.15 fails there in two places, both only about bookkeeping, not about training:

    - before training it builds the model's state from the first batch, which it gets with
      ``strategy.reduce("MEAN", (x, y))``; MultiWorkerMirroredStrategy cannot reduce a tuple.
      The build needs only shapes, so Keras is handed this worker's first replica's batch.
    - after each step it reduces the per-replica logs with ``strategy.reduce("MEAN", v, axis=0)``,
      which fails for the scalar metric values. The steps here return them with shape ``(1,)``,
      so that this reduction is the mean over replicas it was meant to be.

    Args:
        model: a compiled Keras model, built in ``strategy.scope()``.
        strategy: the ``MultiWorkerMirroredStrategy`` it trains under.
    """
    from keras import ops

    keras_build = model._maybe_symbolic_build

    def build(iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], first)
                break
        return keras_build(data_batch=data_batch)

    def vector_logs(step):
        def run(data):
            return {name: ops.reshape(value, (1,)) for name, value in step(data).items()}

        return run

    model._maybe_symbolic_build = build
    model.train_step = vector_logs(model.train_step)
    model.test_step = vector_logs(model.test_step)
