"""Figures a person reads: training curves, the confusion matrix, per-class accuracy, and TSN sampling.

Every function writes one figure as PNG and SVG (``formats``) and returns the paths. Figures are
drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``, so plotting
works without a display and leaves no global state behind.

Example:
    >>> plot_history("runs/ucf101_rgb-20240101-120000/history.csv", "plots")  # doctest: +SKIP
    [PosixPath('plots/history.png'), PosixPath('plots/history.svg')]
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from tsn_keras.errors import DataError

FORMATS = ("png", "svg")
_TRAIN, _VAL = "#1f77b4", "#d62728"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, out_dir: str | os.PathLike, name: str, formats=FORMATS) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise DataError(f"figure format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        path = out / f"{name}.{fmt}"
        figure.savefig(path, format=fmt)
        paths.append(path)
    return paths


# --- training curves --------------------------------------------------------------------------

def read_history(history_csv: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a ``history.csv`` (Keras ``CSVLogger``) as float arrays; empty cells are NaN."""
    path = Path(history_csv)
    if not path.is_file():
        raise DataError(f"history file {path} not found (a run folder holds history.csv once an epoch has finished)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataError(f"{path} holds no epochs yet")
    columns: dict[str, np.ndarray] = {}
    for name in rows[0]:
        try:
            columns[name] = np.array([float(row[name]) if row[name] not in ("", None) else np.nan for row in rows])
        except ValueError:
            continue  # a non-numeric column (e.g. a timestamp) is not plotted
    return columns


def plot_history(history_csv: str | os.PathLike, out_dir: str | os.PathLike, *, formats=FORMATS) -> list[Path]:
    """Loss and accuracy curves, training vs. validation, and the learning rate on its own panel.

    Args:
        history_csv: a run's ``history.csv``; a metric ``m`` is paired with ``val_m``.
        out_dir: folder for ``history.png`` / ``history.svg``.
    """
    history = read_history(history_csv)
    x_name = next((name for name in ("iteration", "step", "epoch") if name in history), None)
    length = len(next(iter(history.values())))
    # CSVLogger numbers epochs from 0; people count them from 1.
    x = history[x_name] + (1 if x_name == "epoch" else 0) if x_name else np.arange(1, length + 1)
    lr_name = next((name for name in ("learning_rate", "lr") if name in history), None)
    metrics = [name for name in history
               if not name.startswith("val_") and name not in (x_name, lr_name, "iteration", "step", "epoch")]
    metrics += [name[4:] for name in history if name.startswith("val_") and name[4:] not in history]
    metrics.sort(key=lambda name: (name != "loss", name))
    if not metrics:
        raise DataError(f"{history_csv} has no metric columns to plot (columns: {', '.join(history)})")
    panels = len(metrics) + (lr_name is not None)
    columns = min(panels, 3)
    rows = math.ceil(panels / columns)
    figure = _figure(4.6 * columns, 3.4 * rows)
    marker = "o" if length < 20 else None
    for i, name in enumerate(metrics):
        axis = figure.add_subplot(rows, columns, i + 1)
        for column, colour, label in ((name, _TRAIN, "train"), (f"val_{name}", _VAL, "validation")):
            if column in history:
                # Validation may run every few epochs: empty cells are skipped, not drawn as gaps.
                known = np.isfinite(history[column])
                axis.plot(x[known], history[column][known], color=colour, marker=marker, label=label)
        axis.set_title(name.replace("_", " "))
        axis.set_xlabel(x_name or "epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    if lr_name is not None:
        axis = figure.add_subplot(rows, columns, panels)
        axis.plot(x, history[lr_name], color="#2ca02c", marker=marker)
        if np.all(history[lr_name][np.isfinite(history[lr_name])] > 0):
            axis.set_yscale("log")
        axis.set_title("learning rate")
        axis.set_xlabel(x_name or "epoch")
        axis.grid(alpha=0.3, which="both")
    figure.suptitle(f"training history ({Path(history_csv).parent.name or Path(history_csv).name})")
    return _save(figure, out_dir, "history", formats)


# --- test results -----------------------------------------------------------------------------

def _metrics(metrics_or_path: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    if isinstance(metrics_or_path, dict):
        return metrics_or_path
    from tsn_keras.scores import load_metrics

    return load_metrics(metrics_or_path)


def _label_size(num_classes: int, extent_inches: float) -> float:
    """A font size (points) that fits one class name per row of a ``extent_inches`` tall axis."""
    return float(np.clip(0.6 * 72 * extent_inches / max(num_classes, 1), 5, 10))


def plot_confusion(metrics_or_path: dict[str, Any] | str | os.PathLike, out_dir: str | os.PathLike, *,
                   formats=FORMATS) -> list[Path]:
    """The row-normalised confusion matrix with class names (readable from 4 to 101 classes).

    Args:
        metrics_or_path: metrics from ``evaluate``/``fuse`` or the path of their ``metrics.json``.
        out_dir: folder for ``confusion.png`` / ``confusion.svg``.
    """
    metrics = _metrics(metrics_or_path)
    confusion = np.asarray(metrics["confusion"], dtype=np.float64)
    names = metrics["class_names"]
    n = len(names)
    counts = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, counts, out=np.zeros_like(confusion), where=counts > 0)
    side = float(np.clip(0.16 * n + 3.5, 5.5, 22))
    figure = _figure(side + 1.2, side)
    axis = figure.add_subplot()
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    size = _label_size(n, side * 0.8)
    axis.set_xticks(range(n), names, rotation=90, fontsize=size)
    axis.set_yticks(range(n), names, fontsize=size)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    axis.text(j, i, f"{normalised[i, j]:.2f}\n({int(confusion[i, j])})", ha="center", va="center",
                              fontsize=size * 0.8, color="white" if normalised[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.04, label="fraction of the true class")
    axis.set_title(f"confusion matrix: top-1 {100 * metrics['top1']:.1f}%, "
                   f"mean class {100 * metrics['mean_class_accuracy']:.1f}% ({metrics['num_videos']} videos)")
    return _save(figure, out_dir, "confusion", formats)


def plot_per_class(metrics_or_path: dict[str, Any] | str | os.PathLike, out_dir: str | os.PathLike, *,
                   formats=FORMATS) -> list[Path]:
    """Per-class accuracy as horizontal bars, worst class on top, with the mean class accuracy."""
    metrics = _metrics(metrics_or_path)
    items = [(name, acc) for name, acc in metrics["per_class"].items() if acc is not None]
    if not items:
        raise DataError("no class has test videos: nothing to plot")
    items.sort(key=lambda item: item[1])
    names, accuracy = zip(*items)
    n = len(names)
    height = float(np.clip(0.2 * n + 1.5, 3, 24))
    figure = _figure(8, height)
    axis = figure.add_subplot()
    colours = ["#d62728" if a < 0.5 else "#ff7f0e" if a < 0.8 else "#2ca02c" for a in accuracy]
    axis.barh(range(n), [100 * a for a in accuracy], color=colours)
    size = _label_size(n, height - 1.2)
    axis.set_yticks(range(n), names, fontsize=size)
    if n <= 40:
        for i, a in enumerate(accuracy):
            axis.text(100 * a + 1, i, f"{100 * a:.1f}", va="center", fontsize=size * 0.9)
    axis.set_ylim(n - 0.5, -0.5)  # worst class on top
    axis.set_xlim(0, 108)
    axis.set_xlabel("accuracy (%)")
    mean = 100 * metrics["mean_class_accuracy"]
    axis.axvline(mean, color="black", linestyle="--")
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(f"per-class accuracy (dashed: mean class accuracy {mean:.1f}%)")
    return _save(figure, out_dir, "per_class", formats)


# --- TSN sampling -----------------------------------------------------------------------------

def plot_sampling(frames, out_dir: str | os.PathLike, *, num_frames: int | None = None, num_segments: int = 3,
                  new_length: int = 1, modality: str = "rgb", num_snippets: int = 25, seed: int = 0,
                  title: str = "", formats=FORMATS) -> list[Path]:
    """Which frames TSN reads from a video: a training draw (K segments) and the T test snippets.

    Args:
        frames: a callable ``index -> RGB uint8 frame`` (only the sampled frames are read) or a
            sequence of RGB frames.
        num_frames: frames in the video (``len(frames)`` for a sequence).
        num_segments, new_length: K and L of the model.
        modality: flow samples from the N-1 flow fields, RGB difference reads L+1 frames per
            snippet; the picture shows the RGB frame where each snippet starts.
        num_snippets: T test snippets.
        seed: the training draw's seed.
        out_dir: folder for ``sampling.png`` / ``sampling.svg``.
    """
    from tsn_keras.data.sampling import sample_offsets

    read = frames if callable(frames) else frames.__getitem__
    total = int(num_frames if num_frames is not None else len(frames))
    n = total - 1 if modality in ("flow", "warped_flow") else total
    new_length = new_length + 1 if modality == "rgb_diff" else new_length
    if n < 1:
        raise DataError(f"the video has {total} frame(s): nothing to sample for {modality}")
    train = np.asarray(sample_offsets(n, num_segments, new_length, "train", seed=seed))
    test = np.asarray(sample_offsets(n, num_snippets, new_length, "test"))
    figure = _figure(16, 8.5)
    grid = figure.add_gridspec(4, 1, height_ratios=[1.0, 1.7, 0.8, 0.8])
    timeline = figure.add_subplot(grid[0])
    segment = (n - new_length + 1) / num_segments
    for k in range(num_segments):
        timeline.axvspan(k * segment, (k + 1) * segment, color=("#e8eef7", "#f7efe6")[k % 2], zorder=0)
        timeline.axvline(k * segment, color="grey", linewidth=0.8)
    for k, start in enumerate(train):
        timeline.add_patch(_span(start, new_length, 0.55, "#1f77b4"))
        timeline.text(start + new_length / 2, 0.93, f"seg {k}", ha="center", fontsize=8, color="#1f77b4")
    for start in test:
        timeline.add_patch(_span(start, new_length, 0.1, "#d62728"))
    timeline.set_xlim(0, n)
    timeline.set_ylim(0, 1)
    timeline.set_yticks([0.25, 0.7], [f"test ({num_snippets})", "train"])
    unit = "flow field" if n < total else "frame"
    timeline.set_xlabel(f"{unit} index (0..{n - 1}); shaded: the {num_segments} segments; each mark spans "
                        f"{new_length} {unit}(s)")
    train_row = grid[1].subgridspec(1, max(num_segments, 1))
    for k, start in enumerate(train):
        axis = figure.add_subplot(train_row[0, k])
        axis.imshow(_frame(read, int(start), n))
        axis.set_title(f"segment {k}: frame {int(start)}", fontsize=9)
        axis.axis("off")
    per_row = math.ceil(len(test) / 2)
    for r in range(2):
        row = grid[2 + r].subgridspec(1, per_row)
        for j, start in enumerate(test[r * per_row:(r + 1) * per_row]):
            axis = figure.add_subplot(row[0, j])
            axis.imshow(_frame(read, int(start), n))
            axis.set_title(str(int(start)), fontsize=7)
            axis.axis("off")
    figure.suptitle(title or f"TSN sampling: {n} frames, K={num_segments}, L={new_length}, training draw "
                    f"(seed {seed}) and the {num_snippets} test snippets")
    return _save(figure, out_dir, "sampling", formats)


def _span(start: int, length: int, y: float, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle((start, y), max(length, 0.6), 0.3, color=colour, alpha=0.85)


def _frame(read, index: int, num_frames: int) -> np.ndarray:
    frame = np.asarray(read(min(index, num_frames - 1)))
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise DataError(f"frame {index} has shape {frame.shape}; expected (H, W, 3) RGB")
    return frame


def shard_frames(data_root: str | os.PathLike, video_id: str):
    """A reader of one converted video's RGB frames, straight from the shard bytes (via the byte index).

    Returns ``(read, num_frames, split)`` where ``read(i)`` decodes frame ``i`` as RGB uint8.
    """
    import cv2

    from tfrecords_tools.manifest import load_manifest, split_shards
    from tfrecords_tools.shards import ShardIndex, index_path

    manifest = load_manifest(data_root)
    for split in manifest["splits"]:
        for shard in split_shards(data_root, split):
            if not index_path(shard).is_file():
                continue
            index = ShardIndex.load(index_path(shard))
            hits = np.flatnonzero(index.video_id == video_id)
            if not len(hits) or "rgb" not in index.count:
                continue
            i = int(hits[0])
            first, count = int(index.start("rgb")[i]), int(index.count["rgb"][i])
            offsets = index.offset["rgb"][first:first + count]
            lengths = index.length["rgb"][first:first + count]

            def read(frame: int, shard=shard, offsets=offsets, lengths=lengths) -> np.ndarray:
                with open(shard, "rb") as handle:
                    handle.seek(int(offsets[frame]))
                    data = np.frombuffer(handle.read(int(lengths[frame])), np.uint8)
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
                if image is None:
                    raise DataError(f"frame {frame} of {video_id} in {shard} is not a readable JPEG")
                return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

            return read, count, split
    raise DataError(f"video {video_id!r} not found in the indexed RGB shards of {data_root}")


def video_file_frames(path: str | os.PathLike, settings=None, thumbnail_width: int = 170):
    """Decode a video file (resized as the converter stored its data) into small RGB thumbnails.

    Returns ``(read, num_frames)``; an unreadable file is a ``DataError``.
    """
    import cv2

    from tsn_keras.predict import read_video

    thumbnails = []
    for frame in read_video(path, settings):
        height = max(1, round(frame.shape[0] * thumbnail_width / frame.shape[1]))
        small = cv2.resize(frame, (thumbnail_width, height), interpolation=cv2.INTER_AREA)
        thumbnails.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    return thumbnails.__getitem__, len(thumbnails)


def plot_run(run: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, video: str | None = None,
             metrics: str | os.PathLike | None = None, seed: int = 0, formats=FORMATS) -> tuple[list[Path], list[str]]:
    """Every figure a run folder can give: history, confusion, per-class accuracy, sampling.

    Args:
        run: a run folder (``history.csv``, ``config.yaml``, ``eval-*/metrics.json``), an
            evaluation folder or a ``metrics.json`` (e.g. of a fusion).
        out_dir: where the figures go; default ``<run>/plots``.
        video: a video file or the id of a video in the run's converted data for the sampling
            picture; default: the first test video of the run's data.
        metrics: a ``metrics.json`` to use instead of the run's newest evaluation.
        seed: seed of the training draw shown in the sampling picture.

    Returns:
        The files written and one line per figure that could not be drawn (and why).
    """
    from tsn_keras.config import load_config
    from tsn_keras.scores import METRICS_NAME

    run = Path(run)
    if run.is_file() and run.suffix == ".json":
        metrics, run = metrics or run, run.parent
    elif not run.is_dir():
        raise DataError(f"{run} is neither a run folder nor a metrics.json")
    out = Path(out_dir) if out_dir is not None else run / "plots"
    written: list[Path] = []
    skipped: list[str] = []
    if (run / "history.csv").is_file():
        written += plot_history(run / "history.csv", out, formats=formats)
    else:
        skipped.append(f"training curves: no history.csv in {run}")
    if metrics is None:
        candidates = sorted([run / METRICS_NAME] if (run / METRICS_NAME).is_file() else run.glob(f"eval-*/{METRICS_NAME}"),
                            key=lambda p: p.stat().st_mtime)
        metrics = candidates[-1] if candidates else None
    if metrics is not None:
        written += plot_confusion(metrics, out, formats=formats)
        written += plot_per_class(metrics, out, formats=formats)
    else:
        skipped.append(f"confusion matrix and per-class accuracy: no metrics.json in {run} (run `tsn evaluate`)")
    config = load_config(run / "config.yaml") if (run / "config.yaml").is_file() else None
    num_segments = config.data.num_segments if config else 3
    new_length = config.data.resolved_new_length() if config else 1
    modality = config.data.modality if config else "rgb"
    data_root = config.data.root if config and config.data.root else None
    if video is not None and Path(video).is_file():
        from tfrecords_tools.worker import stored_video_settings

        read, num_frames = video_file_frames(video, stored_video_settings(data_root))
        name = Path(video).name
    elif video is not None or data_root is not None:
        if data_root is None:
            raise DataError(f"{video} is not a file, and the run names no converted data to find it in")
        if video is None:
            video = _first_video(data_root, config.data.test_split)
        read, num_frames, _ = shard_frames(data_root, video)
        name = video
    else:
        skipped.append("sampling picture: give a video file (--video) for a run without converted data")
        return written, skipped
    written += plot_sampling(read, out, num_frames=num_frames, num_segments=num_segments, new_length=new_length,
                             modality=modality, seed=seed, formats=formats,
                             title=f"TSN sampling of {name} ({modality}): {num_frames} frames, K={num_segments} "
                                   f"segments, L={new_length}; training draw (seed {seed}) and the 25 test snippets")
    return written, skipped


def _first_video(data_root, split: str) -> str:
    from tfrecords_tools.manifest import load_manifest, split_shards
    from tfrecords_tools.shards import ShardIndex, index_path

    splits = load_manifest(data_root)["splits"]
    for name in [split, *splits]:
        if name in splits:
            for shard in split_shards(data_root, name):
                if index_path(shard).is_file():
                    index = ShardIndex.load(index_path(shard))
                    if index.num_videos:
                        return str(index.video_id[0])
    raise DataError(f"no indexed video found in {data_root}")
