"""The TSN test protocol: 25 snippets x 1, 3 or 10 crops, logits averaged before softmax.

Testing follows the paper (Sec. 3.3) and the original test script: T = 25 snippets spread
evenly over the video, 1, 3 or 10 crops of each, and the video's score is the average of the
snippet *logits* over all crops and snippets, before any softmax (``TSN_SEMANTICS.md``,
"Testing"). The consensus the model was trained with does not change that for the reducing
consensuses (avg/max/weighted/topk), exactly as the original script scored a max-consensus
model by averaging; the feature heads (attention, gru) need a whole set of snippets, so they
run over each crop's T snippets and the crop logits are averaged.

The protocol comes from the run: the model's own input protocol (``models.tsn.TSN``) and the
recipe's ``evaluate:`` section and ``data.test_split``; arguments override them. Score files,
metrics and fusion are ``tsn_keras.scores``.

Example:
    >>> metrics = evaluate("runs/ucf101_rgb-20240101-120000")  # doctest: +SKIP
    >>> metrics["top1"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfrecords_tools.manifest import load_manifest
from tsn_keras.data.clips import ClipSpec
from tsn_keras.data.pipeline import count_videos, make_dataset
from tsn_keras.distribute import make_strategy
from tsn_keras.errors import ConfigError, DataError
from tsn_keras.models.tsn import CONSENSUS_LAYER, snippet_model
from tsn_keras.runs import RunInfo, load_run
from tsn_keras.scores import METRICS_NAME, SCORES_NAME, Scores, compute_metrics, write_metrics
from tsn_keras.vocab import FEATURE_MODES

# --- the test protocol ------------------------------------------------------------------------

def average_logits(logits):
    """Video logits from the logits of its views ``[B, views, classes]``: the mean over views.

    The views are all crops x snippets for the reducing consensuses, the crops for the
    feature heads. Averaging happens on logits, before softmax, as in the original test script.
    """
    return keras.ops.mean(logits, axis=1)


def _consensus_mode(model) -> str:
    try:
        return model.get_layer(CONSENSUS_LAYER).mode
    except (ValueError, AttributeError):
        raise DataError(f"model {model.name!r} is not a TSN: it has no {CONSENSUS_LAYER!r} layer") from None


def video_scorer(model, num_crops: int, num_snippets: int, *, reduce_retracing: bool = True):
    """A ``tf.function`` mapping test views ``[B, crops*T, H, W, C]`` (crop-major) to video logits ``[B, classes]``.

    Reducing consensuses: mean of the per-snippet logits over all crops and snippets.
    Feature heads: the model on each crop's T snippets, then the mean of the crop logits.

    ``reduce_retracing`` lets one trace serve batches of any size (an evaluation's last batch).
    Callers that always pass one shape should turn it off: TensorFlow 2.21's relaxed-shape
    dispatch keeps a little Python state per call (~20 bytes, measured with tracemalloc), which
    adds up over the thousands of calls of a long untrimmed video.

    The function is kept on the model, so that evaluating it again (another split, a benchmark)
    does not trace the network again.
    """
    # object.__setattr__: outside Keras' attribute tracking, which would treat the functions
    # as state of the model.
    scorers = model.__dict__.get("_tsn_scorers")
    if scorers is None:
        scorers = {}
        object.__setattr__(model, "_tsn_scorers", scorers)
    key = (num_crops, num_snippets, reduce_retracing)
    if key not in scorers:
        scorers[key] = _make_scorer(model, num_crops, num_snippets, reduce_retracing)
    return scorers[key]


def _make_scorer(model, num_crops: int, num_snippets: int, reduce_retracing: bool):
    if _consensus_mode(model) in FEATURE_MODES:

        def score(views):
            shape = tf.shape(views)
            crops = tf.reshape(views, tf.concat([[shape[0] * num_crops, num_snippets], shape[2:]], axis=0))
            crop_logits = model(crops, training=False)
            return average_logits(tf.reshape(crop_logits, [shape[0], num_crops, -1]))

        return tf.function(score, reduce_retracing=reduce_retracing)
    per_snippet = snippet_model(model)

    def score(views):
        return average_logits(per_snippet(views, training=False))

    return tf.function(score, reduce_retracing=reduce_retracing)


def replicated_scorer(score, strategy: tf.distribute.Strategy | None):
    """``score`` (views -> video logits) run on every replica of ``strategy``, results in input order.

    Each batch of videos is cut into equal contiguous parts, one per replica, on the host; a
    batch that does not divide is padded with copies of its last video, whose logits are
    dropped (a replica with no video at all fails: TensorFlow's CPU convolution returns its
    input unchanged for an empty batch). Each part goes to its own device and the logits are
    gathered back in order, so the result is the single-device one. With one replica (or no
    strategy) ``score`` itself.
    """
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return score
    replicas = strategy.num_replicas_in_sync

    @tf.function(reduce_retracing=True)
    def gathered(parts):
        return strategy.gather(strategy.run(score, args=(parts,)), axis=0)

    def run(views):
        size = int(views.shape[0])
        per_replica = -(-size // replicas)
        if per_replica * replicas != size:
            views = tf.concat([views, tf.repeat(views[-1:], per_replica * replicas - size, axis=0)], axis=0)
        parts = [views[i * per_replica:(i + 1) * per_replica] for i in range(replicas)]
        logits = gathered(strategy.experimental_distribute_values_from_function(
            lambda context: parts[context.replica_id_in_sync_group]))
        return logits[:size]

    return run


def replica_model(model, strategy: tf.distribute.Strategy | None):
    """``model`` with its variables mirrored on every replica of ``strategy`` (a copy), or itself.

    A model built outside the strategy's scope keeps its variables on one device, which every
    other replica would then read across devices at each step.
    """
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return model
    with strategy.scope():
        copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def score_dataset(model, dataset, *, num_crops: int, num_snippets: int, total: int | None = None,
                  desc: str = "evaluate", strategy: tf.distribute.Strategy | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the test protocol over a test-mode dataset of ``(views, label, video_id)`` batches.

    Every batch of videos is one forward pass (split across the replicas of ``strategy``, if
    given; the model should then be ``replica_model(model, strategy)``). The logits stay
    device tensors until the end, so an accelerator works on one batch while the host reads
    the next (``make_dataset`` prefetches); the order of the videos is the dataset's.

    Returns ``(video_ids [N], labels [N], logits [N, classes])``.
    """
    score = replicated_scorer(video_scorer(model, num_crops, num_snippets), strategy)
    ids, labels, logits = [], [], []
    expected = num_crops * num_snippets
    with tqdm(total=total, desc=desc, unit="video") as progress:
        for views, label, video_id in dataset:
            if views.shape[1] != expected:
                raise DataError(f"test batches hold {views.shape[1]} views per video, expected "
                                f"{num_crops} crops x {num_snippets} snippets = {expected}")
            logits.append(score(views))
            labels.append(label.numpy())
            ids.append(video_id.numpy().astype(str))
            progress.update(len(label))
    if not ids:
        raise DataError("the test split holds no videos")
    logits = [np.asarray(batch) for batch in logits]
    return np.concatenate(ids), np.concatenate(labels).astype(np.int64), np.concatenate(logits).astype(np.float32)


def test_clip_spec(run: RunInfo, num_snippets: int | None = None, num_crops: int | None = None) -> ClipSpec:
    """The test-mode ``ClipSpec`` of a trained run: the model's input protocol, the recipe's (or the
    paper's) snippets and crops unless given."""
    protocol = run.protocol
    return ClipSpec(run.modality, "test", new_length=run.new_length, input_size=run.input_size,
                    normalization=run.normalization,
                    num_snippets=protocol.num_snippets if num_snippets is None else num_snippets,
                    num_crops=protocol.num_crops if num_crops is None else num_crops)


def evaluate(model_or_run, data_root: str | os.PathLike | None = None, split: str | None = None, *,
             num_snippets: int | None = None, num_crops: int | None = None, batch_size: int | None = None,
             output_dir: str | os.PathLike | None = None, classes: str | os.PathLike | None = None,
             read_mode: str = "auto", strategy: str | tf.distribute.Strategy = "auto") -> dict[str, Any]:
    """Test a trained TSN on a converted split and write ``scores.npz`` and ``metrics.json``.

    Every argument left ``None`` comes from the run: its recipe's ``data.root``,
    ``data.test_split`` and ``evaluate:`` section (snippets, crops, batch size), or the paper's
    protocol (25 snippets x 10 crops on ``test``) for a bare model.

    Args:
        model_or_run: a run folder, a ``.keras`` file, or a loaded ``TSN``.
        data_root: conversion folder.
        split: split of the conversion folder to test on.
        num_snippets: T, snippets per video (25 in the paper).
        num_crops: 1 (centre), 3 or 10 (4 corners + centre and their flips, the paper's).
        batch_size: videos per forward pass (each is ``num_crops * num_snippets`` snippets).
        output_dir: where the score and metrics files go; defaults to ``<run>/eval-<split>``.
        classes: class names for a model that holds none (a ``classes.json`` or a conversion folder).
        read_mode: the pipeline's shard reading mode (``auto``, ``index``, ``stream``).
        strategy: where the forward passes run: a ``tf.distribute.Strategy`` or a name of
            ``distribute.make_strategy`` (``auto``: every local GPU, else the default device);
            each batch of videos is split across its replicas.

    Returns:
        The metrics (also written to ``metrics.json``).
    """
    run = load_run(model_or_run, classes=classes)
    clip = test_clip_spec(run, num_snippets, num_crops)
    batch_size = run.protocol.batch_size if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    split = run.test_split if split is None else split
    if data_root is None:
        if run.data_root is None:
            raise ConfigError("no data folder: pass data_root (--data) or a run folder whose config names data.root")
        data_root = run.data_root
    manifest = load_manifest(data_root)
    class_names = run.class_names or list(manifest["classes"])
    if list(manifest["classes"]) != class_names:
        raise DataError(f"the classes of {data_root} ({len(manifest['classes'])}) differ from the model's "
                        f"({len(class_names)}); test on the conversion the model was trained on")
    strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
    dataset = make_dataset(data_root, clip, split=split, batch_size=batch_size, return_ids=True, read_mode=read_mode)
    video_ids, labels, logits = score_dataset(replica_model(run.model, strategy), dataset, num_crops=clip.num_crops,
                                              num_snippets=clip.num_snippets, total=count_videos(data_root, split),
                                              desc=f"evaluate {split}", strategy=strategy)
    scores = Scores(video_ids, labels, logits, class_names, run.modality)
    metrics = compute_metrics(scores.logits, scores.labels, class_names)
    metrics["protocol"] = {
        "num_snippets": clip.num_snippets, "num_crops": clip.num_crops, "modality": run.modality,
        "new_length": run.new_length, "input_size": run.input_size, "normalization": run.normalization,
        "consensus": _consensus_mode(run.model), "averaging": "logits over crops and snippets, before softmax",
    }
    metrics["model"] = str(run.model_path) if run.model_path else run.model.name
    metrics["data"] = {"root": str(data_root), "split": split}
    out = Path(output_dir) if output_dir is not None else run.default_output_dir(f"eval-{split}")
    metrics["scores_file"] = str(scores.save(out / SCORES_NAME))
    write_metrics(metrics, out / METRICS_NAME)
    return metrics
