"""The TSN test protocol, its metrics, and the weighted fusion of several streams.

Testing follows the paper (Sec. 3.3) and the original test script: T = 25 snippets spread
evenly over the video, 1, 3 or 10 crops of each, and the video's score is the average of the
snippet *logits* over all crops and snippets, before any softmax (``TSN_SEMANTICS.md``,
"Testing"). The consensus the model was trained with does not change that for the reducing
consensuses (avg/max/weighted/topk), exactly as the original script scored a max-consensus
model by averaging; the feature heads (attention, gru) need a whole set of snippets, so they
run over each crop's T snippets and the crop logits are averaged.

Per-video logits go to a score file (``scores.npz``: ``video_ids``, ``labels``, ``logits``,
``class_names``, ``modality``) and metrics to ``metrics.json``. Streams are fused from score
files by a weighted sum of their logits (RGB 1 : flow 1.5; with warped flow RGB 1, flow 1,
warped 0.5).

Example:
    >>> metrics = evaluate("runs/ucf101_rgb-20240101-120000", "data/ucf101", num_crops=10)  # doctest: +SKIP
    >>> fused = fuse(["rgb/scores.npz", "flow/scores.npz"], output_dir="fused")  # doctest: +SKIP
    >>> fused["top1"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tsn_keras.errors import ConfigError, DataError
from tsn_keras.runs import load_run

SCORES_NAME = "scores.npz"
METRICS_NAME = "metrics.json"
SCORE_KEYS = ("video_ids", "labels", "logits", "class_names", "modality")


# Paper Sec. 4 "Testing": spatial 1, temporal 1.5; with warped flow the temporal weight is
# split into 1 (flow) and 0.5 (warped flow). The paper gives no weight for RGB difference.
FUSION_WEIGHTS = {"rgb": 1.0, "flow": 1.5, "warped_flow": 1.5}
FUSION_WEIGHTS_WITH_WARPED = {"rgb": 1.0, "flow": 1.0, "warped_flow": 0.5}


# --- score files ------------------------------------------------------------------------------

@dataclass
class Scores:
    """Per-video logits of one stream (or of a fusion), as stored in a score file.

    Args:
        video_ids: ``[N]`` video ids.
        labels: ``[N]`` ground-truth class indices.
        logits: ``[N, classes]`` video logits (averaged over crops and snippets, never softmaxed).
        class_names: class names, index = label.
        modality: ``rgb``, ``rgb_diff``, ``flow``, ``warped_flow``, or ``fused`` for a fusion.
    """

    video_ids: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    class_names: list[str]
    modality: str

    def __post_init__(self) -> None:
        self.video_ids = np.asarray(self.video_ids).astype(str)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.logits = np.asarray(self.logits, dtype=np.float32)
        self.class_names = [str(c) for c in self.class_names]
        n = len(self.video_ids)
        if self.logits.ndim != 2 or self.logits.shape != (n, len(self.class_names)) or self.labels.shape != (n,):
            raise DataError(
                f"inconsistent scores: {n} video ids, labels {self.labels.shape}, logits {self.logits.shape}, "
                f"{len(self.class_names)} classes (logits must be [videos, classes])"
            )

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, video_ids=self.video_ids, labels=self.labels, logits=self.logits,
                 class_names=np.asarray(self.class_names, dtype=str), modality=np.asarray(self.modality))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Scores:
        """Read a score file; a missing file, missing key or wrong shape is a ``DataError``."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"score file {path} not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in SCORE_KEYS if key not in data.files]
                if missing:
                    raise DataError(f"{path} is not a score file: missing {', '.join(missing)} "
                                    f"(a score file holds {', '.join(SCORE_KEYS)})")
                values = {key: data[key] for key in SCORE_KEYS}
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read score file {path}: {err}") from None
        try:
            return cls(values["video_ids"], values["labels"], values["logits"], list(values["class_names"]),
                       str(values["modality"]))
        except DataError as err:
            raise DataError(f"{path}: {err}") from None


# --- metrics ----------------------------------------------------------------------------------

def compute_metrics(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Top-1/top-5 accuracy, mean class accuracy, per-class accuracy and the confusion matrix.

    Top-k is clipped to the number of classes. Per-class accuracy is ``None`` for a class with no
    video, and the mean class accuracy is taken over the classes that have videos.

    Args:
        logits: ``[N, classes]`` scores (any monotonic transform gives the same metrics).
        labels: ``[N]`` ground-truth class indices.
        class_names: names of the classes, index = label.

    Example:
        >>> m = compute_metrics(np.array([[2.0, 1.0], [0.0, 1.0]]), np.array([0, 0]), ["a", "b"])
        >>> m["top1"], m["confusion"]
        (0.5, [[1, 1], [0, 0]])
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    if logits.ndim != 2 or logits.shape[1] != num_classes or len(labels) != len(logits):
        raise DataError(f"logits must be [videos, {num_classes}] with one label per video, "
                        f"got logits {logits.shape} and {len(labels)} labels")
    if len(labels) == 0:
        raise DataError("no videos to score")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    predicted = logits.argmax(axis=1)
    # Rank of the true class = number of classes scored strictly higher.
    rank = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(axis=1)
    k5 = min(5, num_classes)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class_count = confusion.sum(axis=1)
    per_class: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        per_class[name] = float(confusion[c, c] / per_class_count[c]) if per_class_count[c] else None
    present = [v for v in per_class.values() if v is not None]
    return {
        "top1": float(np.mean(predicted == labels)),
        "top5": float(np.mean(rank < k5)),
        "top5_k": k5,
        "mean_class_accuracy": float(np.mean(present)),
        "num_videos": len(labels),
        "num_classes": num_classes,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
    }


def write_metrics(metrics: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return path


def load_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``metrics.json`` written by ``evaluate`` or ``fuse``."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"metrics file {path} not found (run `tsn evaluate` first)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read metrics file {path}: {err}") from None
    for key in ("confusion", "per_class", "class_names"):
        if key not in metrics:
            raise DataError(f"{path} has no {key!r} entry; is it a metrics file from `tsn evaluate`?")
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """One human line: top-1, top-k and mean class accuracy over N videos."""
    return (f"top-1 {100 * metrics['top1']:.2f}%  top-{metrics['top5_k']} {100 * metrics['top5']:.2f}%  "
            f"mean class {100 * metrics['mean_class_accuracy']:.2f}%  ({metrics['num_videos']} videos)")


# --- the test protocol ------------------------------------------------------------------------

def average_logits(logits):
    """Video logits from the logits of its views ``[B, views, classes]``: the mean over views.

    The views are all crops x snippets for the reducing consensuses, the crops for the
    feature heads. Averaging happens on logits, before softmax, as in the original test script.
    """
    import keras

    return keras.ops.mean(logits, axis=1)


def _consensus_mode(model) -> str:
    from tsn_keras.models.tsn import CONSENSUS_LAYER

    try:
        return model.get_layer(CONSENSUS_LAYER).mode
    except (ValueError, AttributeError):
        raise DataError(f"model {model.name!r} is not a TSN: it has no {CONSENSUS_LAYER!r} layer") from None


def video_scorer(model, num_crops: int, num_snippets: int):
    """A ``tf.function`` mapping test views ``[B, crops*T, H, W, C]`` (crop-major) to video logits ``[B, classes]``.

    Reducing consensuses: mean of the per-snippet logits over all crops and snippets.
    Feature heads: the model on each crop's T snippets, then the mean of the crop logits.
    """
    import tensorflow as tf

    from tsn_keras.models.consensus import FEATURE_MODES

    if _consensus_mode(model) in FEATURE_MODES:

        @tf.function(reduce_retracing=True)
        def score(views):
            shape = tf.shape(views)
            crops = tf.reshape(views, tf.concat([[shape[0] * num_crops, num_snippets], shape[2:]], axis=0))
            crop_logits = model(crops, training=False)
            return average_logits(tf.reshape(crop_logits, [shape[0], num_crops, -1]))

        return score
    from tsn_keras.models.tsn import snippet_model

    per_snippet = snippet_model(model)

    @tf.function(reduce_retracing=True)
    def score(views):
        return average_logits(per_snippet(views, training=False))

    return score


def score_dataset(model, dataset, *, num_crops: int, num_snippets: int, total: int | None = None,
                  desc: str = "evaluate") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the test protocol over a test-mode dataset of ``(views, label, video_id)`` batches.

    Returns ``(video_ids [N], labels [N], logits [N, classes])``.
    """
    from tqdm.auto import tqdm

    score = video_scorer(model, num_crops, num_snippets)
    ids, labels, logits = [], [], []
    with tqdm(total=total, desc=desc, unit="video") as progress:
        for views, label, video_id in dataset:
            expected = num_crops * num_snippets
            if views.shape[1] != expected:
                raise DataError(f"test batches hold {views.shape[1]} views per video, expected "
                                f"{num_crops} crops x {num_snippets} snippets = {expected}")
            logits.append(np.asarray(score(views)))
            labels.append(label.numpy())
            ids.append(video_id.numpy().astype(str))
            progress.update(len(label))
    if not ids:
        raise DataError("the test split holds no videos")
    return np.concatenate(ids), np.concatenate(labels).astype(np.int64), np.concatenate(logits).astype(np.float32)


def evaluate(model_or_run, data_root: str | os.PathLike | None = None, split: str = "test", *,
             num_snippets: int = 25, num_crops: int = 10, batch_size: int = 4,
             output_dir: str | os.PathLike | None = None, classes: str | os.PathLike | None = None,
             modality: str | None = None, normalization: str | None = None,
             read_mode: str = "auto") -> dict[str, Any]:
    """Test a trained TSN on a converted split and write ``scores.npz`` and ``metrics.json``.

    Args:
        model_or_run: a run folder, a ``.keras`` file, or a loaded ``keras.Model``.
        data_root: conversion folder; defaults to the run's ``data.root``.
        split: split of the conversion folder to test on.
        num_snippets: T, snippets per video (25 in the paper).
        num_crops: 1 (centre), 3 or 10 (4 corners + centre and their flips, the paper's).
        batch_size: videos per forward pass (each is ``num_crops * num_snippets`` snippets).
        output_dir: where the score and metrics files go; defaults to ``<run>/eval-<split>``.
        classes: class names for a bare model (a ``classes.json`` or a conversion folder).
        modality, normalization: override what the run's config says (needed for bare models
            whose input does not tell).
        read_mode: the pipeline's shard reading mode (``auto``, ``index``, ``stream``).

    Returns:
        The metrics (also written to ``metrics.json``).
    """
    from tsn_keras.config import CROP_COUNTS
    from tsn_keras.data import pipeline
    from tsn_keras.data.records import load_manifest

    if num_crops not in CROP_COUNTS:
        raise ConfigError(f"num_crops must be one of {', '.join(map(str, CROP_COUNTS))}, got {num_crops}")
    if num_snippets < 1 or batch_size < 1:
        raise ConfigError(f"num_snippets and batch_size must be >= 1, got {num_snippets} and {batch_size}")
    run = load_run(model_or_run, classes=classes, modality=modality, normalization=normalization)
    if data_root is None:
        if run.config is None or not run.config.data.root:
            raise ConfigError("no data folder: pass data_root (--data) or a run folder whose config names data.root")
        data_root = run.config.data.root
    manifest = load_manifest(data_root)
    class_names = run.class_names or list(manifest["classes"])
    if list(manifest["classes"]) != class_names:
        raise DataError(f"the classes of {data_root} ({len(manifest['classes'])}) differ from the model's "
                        f"({len(class_names)}); test on the conversion the model was trained on")
    dataset = pipeline.make_dataset(
        data_root, split=split, modality=run.modality, mode="test", new_length=run.new_length,
        batch_size=batch_size, input_size=run.input_size, num_snippets=num_snippets, num_crops=num_crops,
        normalization=run.normalization, return_ids=True, read_mode=read_mode,
    )
    total = pipeline.count_videos(data_root, split=split)
    video_ids, labels, logits = score_dataset(run.model, dataset, num_crops=num_crops, num_snippets=num_snippets,
                                              total=total, desc=f"evaluate {split}")
    scores = Scores(video_ids, labels, logits, class_names, run.modality)
    metrics = compute_metrics(scores.logits, scores.labels, class_names)
    metrics["protocol"] = {
        "num_snippets": num_snippets, "num_crops": num_crops, "modality": run.modality,
        "new_length": run.new_length, "input_size": run.input_size, "normalization": run.normalization,
        "consensus": _consensus_mode(run.model), "averaging": "logits over crops and snippets, before softmax",
    }
    metrics["model"] = str(run.model_path) if run.model_path else run.model.name
    metrics["data"] = {"root": str(data_root), "split": split}
    out = Path(output_dir) if output_dir is not None else run.default_output_dir(f"eval-{split}")
    metrics["scores_file"] = str(scores.save(out / SCORES_NAME))
    write_metrics(metrics, out / METRICS_NAME)
    return metrics


# --- fusion -----------------------------------------------------------------------------------

def default_fusion_weights(modalities: list[str]) -> list[float]:
    """The paper's stream weights for score files of these modalities (RGB 1 : flow 1.5, ...)."""
    table = FUSION_WEIGHTS_WITH_WARPED if {"flow", "warped_flow"} <= set(modalities) else FUSION_WEIGHTS
    unknown = [m for m in modalities if m not in table]
    if unknown:
        raise ConfigError(f"no default fusion weight for modality {unknown[0]!r} (defaults exist for "
                          f"{', '.join(table)}); pass one weight per score file with --weights")
    return [table[m] for m in modalities]


def fuse_scores(streams: list[Scores], weights: list[float] | None = None) -> tuple[Scores, list[float]]:
    """Weighted sum of the streams' logits, aligned by the first stream's video order.

    Raises ``DataError`` when the streams' video ids, labels or class lists differ.
    Returns the fused scores and the weights used.
    """
    if len(streams) < 2:
        raise ConfigError(f"fusion needs at least two score files, got {len(streams)}")
    if weights is None:
        weights = default_fusion_weights([s.modality for s in streams])
    weights = [float(w) for w in weights]
    if len(weights) != len(streams):
        raise ConfigError(f"--weights needs one weight per score file: {len(streams)} files, {len(weights)} weights")
    first = streams[0]
    reference = {vid: i for i, vid in enumerate(first.video_ids)}
    fused = np.zeros_like(first.logits, dtype=np.float64)
    for number, (stream, weight) in enumerate(zip(streams, weights)):
        if stream.class_names != first.class_names:
            raise DataError(f"score file {number + 1} has different classes than file 1 "
                            f"({len(stream.class_names)} vs {len(first.class_names)} classes)")
        ids = set(stream.video_ids)
        only_here, only_first = sorted(ids - reference.keys()), sorted(reference.keys() - ids)
        if only_here or only_first or len(ids) != len(stream.video_ids):
            examples = ", ".join((only_here + only_first)[:3]) or "duplicated ids"
            raise DataError(f"score file {number + 1} and file 1 hold different videos: "
                            f"{len(only_here)} only in file {number + 1}, {len(only_first)} only in file 1 "
                            f"(e.g. {examples}); fuse scores of the same split")
        order = np.array([reference[vid] for vid in stream.video_ids])
        if np.any(first.labels[order] != stream.labels):
            raise DataError(f"score file {number + 1} labels videos differently than file 1")
        aligned = np.empty_like(stream.logits)
        aligned[order] = stream.logits
        fused += weight * aligned.astype(np.float64)
    return Scores(first.video_ids, first.labels, fused.astype(np.float32), first.class_names, "fused"), weights


def fuse(score_files: list[str | os.PathLike], weights: list[float] | None = None,
         output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Fuse the score files of several streams and compute the metrics of the fusion.

    Args:
        score_files: ``scores.npz`` files written by ``evaluate`` on the same split.
        weights: one weight per file; default: the paper's weights chosen by each file's modality.
        output_dir: if given, the fused ``scores.npz`` and ``metrics.json`` are written there.

    Returns:
        The metrics of the fusion, with the weights and the metrics of each stream alone.
    """
    streams = [Scores.load(path) for path in score_files]
    fused, used = fuse_scores(streams, weights)
    metrics = compute_metrics(fused.logits, fused.labels, fused.class_names)
    metrics["fusion"] = {
        "files": [str(p) for p in score_files],
        "modalities": [s.modality for s in streams],
        "weights": used,
        "streams_top1": [compute_metrics(s.logits, s.labels, s.class_names)["top1"] for s in streams],
        "averaging": "weighted sum of stream logits, before softmax",
    }
    if output_dir is not None:
        metrics["scores_file"] = str(fused.save(Path(output_dir) / SCORES_NAME))
        write_metrics(metrics, Path(output_dir) / METRICS_NAME)
    return metrics
