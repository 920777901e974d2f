"""Figures a person reads: training curves, the confusion matrix, per-class accuracy, and TSN sampling.

Every function writes one figure as PNG and SVG (``formats``) and returns the paths. Figures are
drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``, so plotting
works without a display and leaves no global state behind. What a run's figures are drawn from
(its files, a video's frames) is found by :mod:`tsn_keras.run_files`.

Example:
    >>> plot_history("runs/ucf101_rgb-20240101-120000/history.csv", "plots")  # doctest: +SKIP
    [PosixPath('plots/history.png'), PosixPath('plots/history.svg')]
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tsn_keras.errors import DataError
from tsn_keras.history import read_columns
from tsn_keras.run_files import find_run_files, shard_frames, video_file_frames
from tsn_keras.scores import load_metrics

__all__ = ["FORMATS", "new_figure", "plot_confusion", "plot_history", "plot_per_class", "plot_run", "plot_sampling",
           "save_figure", "shard_frames", "video_file_frames"]

FORMATS = ("png", "svg")
_TRAIN, _VAL = "#1f77b4", "#d62728"


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches on the Agg canvas (no ``pyplot``, no display)."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, out_dir: str | os.PathLike, name: str, formats=FORMATS) -> list[Path]:
    """Write ``figure`` as ``<out_dir>/<name>.<format>`` for each of ``formats``; returns the paths."""
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

def plot_history(history_csv: str | os.PathLike, out_dir: str | os.PathLike, *, formats=FORMATS) -> list[Path]:
    """Loss and accuracy curves, training vs. validation, and the learning rate on its own panel.

    Args:
        history_csv: a run's ``history.csv``; a metric ``m`` is paired with ``val_m``.
        out_dir: folder for ``history.png`` / ``history.svg``.
    """
    history = {name: np.asarray(values) for name, values in read_columns(history_csv).items()}
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
    figure = new_figure(4.6 * columns, 3.4 * rows)
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
    return save_figure(figure, out_dir, "history", formats)


# --- test results -----------------------------------------------------------------------------

def _metrics(metrics_or_path: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    if isinstance(metrics_or_path, dict):
        return metrics_or_path
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
    figure = new_figure(side + 1.2, side)
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
    return save_figure(figure, out_dir, "confusion", formats)


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
    figure = new_figure(8, height)
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
    return save_figure(figure, out_dir, "per_class", formats)


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
    # tsn_keras.data.sampling is TensorFlow code: loaded for this figure only, so that drawing
    # the others does not start TensorFlow.
    from tsn_keras.data.sampling import sample_offsets

    read = frames if callable(frames) else frames.__getitem__
    total = int(num_frames if num_frames is not None else len(frames))
    n = total - 1 if modality in ("flow", "warped_flow") else total
    new_length = new_length + 1 if modality == "rgb_diff" else new_length
    if n < 1:
        raise DataError(f"the video has {total} frame(s): nothing to sample for {modality}")
    train = np.asarray(sample_offsets(n, num_segments, new_length, "train", seed=seed))
    test = np.asarray(sample_offsets(n, num_snippets, new_length, "test"))
    figure = new_figure(16, 8.5)
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
    return save_figure(figure, out_dir, "sampling", formats)


def _span(start: int, length: int, y: float, colour: str) -> Rectangle:
    return Rectangle((start, y), max(length, 0.6), 0.3, color=colour, alpha=0.85)


def _frame(read, index: int, num_frames: int) -> np.ndarray:
    frame = np.asarray(read(min(index, num_frames - 1)))
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise DataError(f"frame {index} has shape {frame.shape}; expected (H, W, 3) RGB")
    return frame


# --- a run folder -----------------------------------------------------------------------------

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
    found = find_run_files(run, video=video, metrics=metrics)
    out = Path(out_dir) if out_dir is not None else found.folder / "plots"
    written: list[Path] = []
    if found.history is not None:
        written += plot_history(found.history, out, formats=formats)
    if found.metrics is not None:
        written += plot_confusion(found.metrics, out, formats=formats)
        written += plot_per_class(found.metrics, out, formats=formats)
    if found.video is not None:
        v, k, length = found.video, found.num_segments, found.new_length
        written += plot_sampling(v.read, out, num_frames=v.num_frames, num_segments=k, new_length=length,
                                 modality=found.modality, seed=seed, formats=formats,
                                 title=f"TSN sampling of {v.name} ({found.modality}): {v.num_frames} frames, K={k} "
                                       f"segments, L={length}; training draw (seed {seed}) and the 25 test snippets")
    return written, found.missing
