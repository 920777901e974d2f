"""Score files, metrics and the fusion of streams: what the test protocol leaves behind, TF-free.

Per-video logits go to a score file (``scores.npz``: ``video_ids``, ``labels``, ``logits``,
``class_names``, ``modality``) and metrics to ``metrics.json``. Streams are fused by a weighted
sum of their logits (paper Sec. 4: RGB 1 : flow 1.5; with warped flow RGB 1, flow 1, warped
0.5), from score files (``fuse``) or from one video's stream logits (``fuse_logits``, used by
``tsn predict``).

Example:
    >>> fused = fuse(["rgb/scores.npz", "flow/scores.npz"], output_dir="fused")  # doctest: +SKIP
    >>> fused["top1"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfrecords_tools.shards import atomic_path, atomic_write_bytes
from tsn_keras.errors import ConfigError, DataError

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
        if not np.isfinite(self.logits).all():
            bad = int(np.sum(~np.isfinite(self.logits).all(axis=1)))
            raise DataError(f"scores of {bad} video(s) are NaN or infinite (a model that diverged?); "
                            "they cannot be ranked or fused")

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # never a partial score file under the final name
            np.savez(tmp, video_ids=self.video_ids, labels=self.labels, logits=self.logits,
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
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"cannot read score file {path}: {err} (not a score file, or damaged)") from None
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
    atomic_write_bytes(path, (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
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


# --- fusion -----------------------------------------------------------------------------------

def default_fusion_weights(modalities: list[str]) -> list[float]:
    """The paper's stream weights for score files of these modalities (RGB 1 : flow 1.5, ...)."""
    table = FUSION_WEIGHTS_WITH_WARPED if {"flow", "warped_flow"} <= set(modalities) else FUSION_WEIGHTS
    unknown = [m for m in modalities if m not in table]
    if unknown:
        raise ConfigError(f"no default fusion weight for modality {unknown[0]!r} (defaults exist for "
                          f"{', '.join(table)}); pass one weight per score file with --weights")
    return [table[m] for m in modalities]


def fuse_logits(logits: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The weighted sum of aligned stream logits (float64), checked: one weight per stream."""
    if len(weights) != len(logits):
        raise ConfigError(f"--weights needs one weight per stream: {len(logits)} stream(s), {len(weights)} weight(s)")
    return sum(float(w) * np.asarray(x, dtype=np.float64) for w, x in zip(weights, logits))


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
    aligned_logits = []
    for number, stream in enumerate(streams):
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
        aligned_logits.append(aligned)
    fused = fuse_logits(aligned_logits, weights)
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
