"""Untrimmed videos: snippets at a fixed rate, multi-scale temporal window integration, time ranges.

A trimmed clip holds one action, and TSN's 25 test snippets cover it. A long, untrimmed video
holds actions and background in turn; TSN's recipe for it (the ActivityNet entry of the TSN
authors, and its journal version's "M-TWI") scores snippets at a fixed rate over the whole
video and integrates them over temporal windows of several lengths:

1. one snippet every ``1 / rate`` seconds (default 1 per second), each scored by the model on
   its own (the test protocol's crops and normalisation, averaged over crops before softmax);
2. for each window length (default 1, 2, 4, 8 and 16 s), windows slide over the snippets with
   half a window's stride; a window's class score is the **max** of its snippets' probabilities
   (an action shown briefly still counts);
3. across the windows of one length, the **top-k** window scores are averaged per class (k = 3:
   the action's best moments, not the background around it);
4. the scales are averaged: the video's class scores.

The time ranges where a class "scores highest" are the runs of snippets whose probabilities,
smoothed over ``smooth`` snippets, have that class on top.

Memory does not grow with the video: frames are decoded one at a time (``worker.read_video``),
only the last ``L + 1`` are held, snippets go to the model in batches of ``batch_size`` as they
complete, and only each snippet's score vector is kept. Flow is computed for the fields the
snippets read, with the conversion's algorithm, and every frame or field goes through the same
quantisation and JPEG coding as in the shards, so the model sees the input it was trained on.

Example:
    >>> result = score_untrimmed("street.mp4", ["runs/rgb"])  # doctest: +SKIP
    >>> result["top"][0]["class"], result["top"][0]["ranges"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from array import array
from collections import deque
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfrecords_tools.flow import FlowEstimator, WarpedFlowEstimator, quantize_flow
from tfrecords_tools.video import VideoError, VideoReader, encode_jpeg
from tfrecords_tools.worker import VideoSettings, stored_video_settings
from tsn_keras.data.clips import ClipSpec
from tsn_keras.errors import ConfigError, DataError
from tsn_keras.evaluation import video_scorer
from tsn_keras.plots import FORMATS, new_figure, save_figure
from tsn_keras.runs import RunInfo, load_run
from tsn_keras.scores import default_fusion_weights
from tsn_keras.tool_config import UntrimmedConfig
from tsn_keras.vocab import is_flow

RESULT_FILE, SCORES_FILE = "untrimmed.json", "snippet_scores.npz"


# --- scoring snippets as the frames come ----------------------------------------------------------

class _SnippetScorer:
    """One model: builds a snippet's views from its raw frames and scores them in batches."""

    def __init__(self, run: RunInfo, settings: VideoSettings, num_crops: int, batch_size: int):
        self.run = run
        self.clip = ClipSpec(run.modality, "test", new_length=run.new_length, input_size=run.input_size,
                             normalization=run.normalization, num_snippets=1, num_crops=num_crops)
        # Frames a snippet reads from the video: L+1 for flow (L fields) and RGB difference.
        self.span = run.new_length + 1 if is_flow(run.modality) else self.clip.frames_per_snippet
        self.quality = settings.jpeg_quality
        self.flow = FlowEstimator(settings.flow) if is_flow(run.modality) else None
        self.warped = WarpedFlowEstimator(self.flow) if run.modality == "warped_flow" else None
        # One input shape each (the last batch is padded), so each function is traced once and
        # keeps no state per call (see ``evaluation.video_scorer``).
        self.views = tf.function(self.clip.make_views)
        self.score = video_scorer(run.model, num_crops, 1, reduce_retracing=False)
        self.batch_size = batch_size
        self.pending: list[tf.Tensor] = []
        self.logits = array("f")  # every snippet's logits, flat: the only thing that grows with the video
        self.count = 0

    def add(self, frames: list[np.ndarray]) -> None:
        """Queue the snippet made of ``frames`` (BGR ``uint8``, ``span`` of them)."""
        if self.flow is None:
            jpegs = [[encode_jpeg(frame, self.quality) for frame in frames]]
        else:
            grays = [cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in frames]
            xs, ys = [], []
            for previous, current in pairwise(grays):
                field = self.flow(previous, current) if self.warped is None else self.warped(previous, current)[0]
                xs.append(encode_jpeg(quantize_flow(field[..., 0]), self.quality))
                ys.append(encode_jpeg(quantize_flow(field[..., 1]), self.quality))
            jpegs = [xs, ys]
        self.pending.append(self.views(tf.constant(jpegs, tf.string)))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            batch = tf.stack(self.pending)
            padding = self.batch_size - len(self.pending)
            if padding:
                batch = tf.concat([batch, tf.zeros([padding, *batch.shape[1:]], batch.dtype)], axis=0)
            logits = np.asarray(self.score(batch), np.float32)[:len(self.pending)]
            self.logits.extend(logits.ravel().tolist())
            self.count += len(self.pending)
            self.pending = []

    def take_logits(self) -> np.ndarray:
        """Every snippet's logits ``(N, classes)`` so far; the scorer starts over for another video."""
        self.flush()
        logits = np.frombuffer(self.logits, np.float32).reshape(self.count, -1).copy()
        self.logits, self.count = array("f"), 0
        return logits


def _snippet_logits(video: str | os.PathLike, scorers: list[_SnippetScorer], settings: VideoSettings, rate: float,
                    progress: bool) -> tuple[list[np.ndarray], int, float]:
    """Decode the video once, frame by frame, feeding every scorer the snippets it needs."""
    try:
        reader = VideoReader(video, settings.frame_size, settings.short_side)
    except VideoError as err:
        raise DataError(f"cannot read video {video}: {err}") from None
    fps = reader.info.fps
    if not fps:
        raise DataError(f"cannot read video {video}: the container gives no frame rate, so snippets cannot be timed")
    if rate > fps:
        raise ConfigError(f"--rate {rate:g} is more snippets per second than the video's {fps:g} frames per second")
    buffer: deque[np.ndarray] = deque(maxlen=max(s.span for s in scorers))
    started = [0] * len(scorers)  # per scorer: snippets taken so far
    total = reader.info.declared_frames or None
    with tqdm(total=total, desc="untrimmed", unit="frame", disable=not progress) as bar:
        try:
            for index, frame in enumerate(reader):
                buffer.append(frame)
                for k, scorer in enumerate(scorers):
                    # Snippet i starts at frame round(i * fps / rate) and is complete at its last frame.
                    while round(started[k] * fps / rate) + scorer.span - 1 == index:
                        scorer.add(list(buffer)[-scorer.span:])
                        started[k] += 1
                bar.update(1)
            reader.check_complete()
        except VideoError as err:
            raise DataError(f"cannot read video {video}: {err}") from None
    return [s.take_logits() for s in scorers], reader.decoded, fps


# --- integration -------------------------------------------------------------------------------

def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def window_integration(probabilities: np.ndarray, rate: float, windows: tuple[float, ...], top_k: int) -> np.ndarray:
    """Multi-scale temporal window integration of snippet probabilities ``(N, classes)`` -> ``(classes,)``.

    For each window length (seconds; at least one snippet, at most the whole video): max-pool
    the snippets inside each window (stride half a window), average the top-k windows per class;
    then average the scales (lengths that come to the same number of snippets count once).
    """
    count = len(probabilities)
    lengths = sorted({min(max(1, round(w * rate)), count) for w in windows})
    scales = []
    for length in lengths:
        stride = max(1, length // 2)
        starts = list(range(0, count - length + 1, stride))
        if starts[-1] != count - length:  # the last window ends with the video
            starts.append(count - length)
        pooled = np.stack([probabilities[s:s + length].max(axis=0) for s in starts])
        k = min(top_k, len(pooled))
        scales.append(np.sort(pooled, axis=0)[-k:].mean(axis=0))
    return np.mean(scales, axis=0)


def time_ranges(probabilities: np.ndarray, rate: float, duration: float, smooth: int) -> list[tuple[int, float, float]]:
    """``(class, start s, end s)`` runs of snippets where a class is on top of the smoothed probabilities."""
    if smooth > 1:
        kernel = np.ones(smooth) / smooth
        padded = np.pad(probabilities, ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
        probabilities = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(padded.shape[1])], 1)
    winners = probabilities.argmax(axis=1)
    ranges, start = [], 0
    for i in range(1, len(winners) + 1):
        if i == len(winners) or winners[i] != winners[start]:
            ranges.append((int(winners[start]), start / rate, min(i / rate, duration)))
            start = i
    return ranges


# --- the whole video -------------------------------------------------------------------------------

def score_untrimmed(video: str | os.PathLike, models: list[str | os.PathLike], *, weights: list[float] | None = None,
                    config: UntrimmedConfig | None = None, num_crops: int | None = None, top: int = 5,
                    classes: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Score an untrimmed video: its top classes and the time ranges where each scores highest.

    Args:
        video: a video file of any length.
        models: one run folder or ``.keras`` file, or a model and a flow model to fuse.
        weights: stream weights (default the paper's, RGB 1 : flow 1.5).
        config: rate, windows, top-k, smoothing and batch size (``UntrimmedConfig``).
        num_crops: crops per snippet (1, 3 or 10); default each run's ``evaluate.num_crops``.
        top: how many classes to report.
        classes: class names for bare ``.keras`` models.

    Returns:
        ``{"video", "num_frames", "fps", "duration", "snippets", "streams", "config", "top":
        [{"class", "score", "ranges": [{"start", "end"}]}], "snippet_times", "winner_ranges"}``;
        ``snippet_logits`` (``(N, classes)``, fused) is kept under that key as an array.
    """
    config = config or UntrimmedConfig()
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    if not Path(video).is_file():
        raise DataError(f"video file {video} not found")
    if not 1 <= len(models) <= 2:
        raise ConfigError(f"give one model, or a model and a flow model to fuse; got {len(models)}")
    runs = [load_run(model, classes=classes) for model in models]
    if len(runs) == 2 and not is_flow(runs[1].modality):
        raise ConfigError(f"--flow-model {models[1]} is a {runs[1].modality} model; give a flow or warped_flow model")
    names = runs[0].class_names or [str(i) for i in range(runs[0].model.num_classes)]
    if any((run.class_names or names) != names for run in runs[1:]):
        raise DataError("the models were trained on different classes; they cannot be fused")
    weights = list(weights) if weights is not None else (
        default_fusion_weights([r.modality for r in runs]) if len(runs) > 1 else [1.0])
    if len(weights) != len(runs):
        raise ConfigError(f"--weights needs one weight per model: {len(runs)} model(s), {len(weights)} weight(s)")
    settings = [stored_video_settings(run.data_root) for run in runs]
    if any((s.frame_size, s.short_side) != (settings[0].frame_size, settings[0].short_side) for s in settings):
        raise ConfigError("the models were trained on frames of different sizes; score the video with each alone")
    scorers = [_SnippetScorer(run, s, num_crops or run.protocol.num_crops, config.batch_size)
               for run, s in zip(runs, settings)]
    per_stream, num_frames, fps = _snippet_logits(video, scorers, settings[0], config.rate, progress)
    count = min(len(logits) for logits in per_stream)
    if count == 0:
        raise DataError(f"{video} has {num_frames} frame(s), fewer than one snippet needs "
                        f"({max(s.span for s in scorers)})")
    logits = sum(w * stream[:count] for w, stream in zip(weights, per_stream))
    probabilities = _softmax(logits)
    duration = num_frames / fps
    video_scores = window_integration(probabilities, config.rate, config.windows, config.top_k)
    winners = time_ranges(probabilities, config.rate, duration, config.smooth)
    order = np.argsort(-video_scores, kind="stable")[:top]
    return {
        "video": str(video), "num_frames": num_frames, "fps": fps, "duration": duration, "snippets": count,
        "config": asdict(config),
        "streams": [{"model": str(m), "modality": r.modality, "weight": float(w), "num_crops": s.clip.num_crops}
                    for m, r, w, s in zip(models, runs, weights, scorers)],
        "top": [{"class": names[i], "score": float(video_scores[i]),
                 "ranges": [{"start": a, "end": b} for c, a, b in winners if c == i]} for i in order],
        "winner_ranges": [{"class": names[c], "start": a, "end": b} for c, a, b in winners],
        "snippet_times": [i / config.rate for i in range(count)],
        "class_names": names,
        "snippet_logits": logits.astype(np.float32),
    }


def write_untrimmed(result: dict[str, Any], out_dir: str | os.PathLike, *,
                    formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``untrimmed.json``, the per-snippet scores (``snippet_scores.npz``) and the timeline figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / SCORES_FILE, logits=result["snippet_logits"], times=np.asarray(result["snippet_times"]),
                        class_names=np.asarray(result["class_names"]))
    paths = [out / SCORES_FILE, *plot_untrimmed(result, out, formats=formats)]
    record = {k: v for k, v in result.items() if k not in ("snippet_logits", "snippet_times", "class_names")}
    record["files"] = [str(p.relative_to(out)) for p in paths]
    (out / RESULT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return [out / RESULT_FILE, *paths]


def plot_untrimmed(result: dict[str, Any], out_dir: str | os.PathLike, *,
                   formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """The top classes' snippet probabilities along the video, and the ranges where each is on top."""
    names = result["class_names"]
    probabilities = _softmax(result["snippet_logits"])
    times = np.asarray(result["snippet_times"])
    figure = new_figure(9, 4.2)
    curves, bands = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    colours = {}
    for entry in result["top"][:5]:
        index = names.index(entry["class"])
        line = curves.plot(times, probabilities[:, index], lw=1.2, label=f"{entry['class']} ({entry['score']:.2f})")[0]
        colours[entry["class"]] = line.get_color()
    curves.set_ylim(0, 1.02)
    curves.set_ylabel("snippet probability")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8, loc="upper right", title="class (video score)", title_fontsize=8)
    for entry in result["winner_ranges"]:
        bands.axvspan(entry["start"], entry["end"], color=colours.get(entry["class"], "#bbbbbb"), alpha=0.8)
    bands.set_yticks([])
    bands.set_xlim(0, result["duration"])
    bands.set_xlabel("time (s)")
    bands.set_title("class on top (smoothed)", fontsize=9)
    figure.suptitle(f"{Path(result['video']).name}: {result['snippets']} snippets at {result['config']['rate']:g}/s",
                    fontsize=10)
    return save_figure(figure, out_dir, "untrimmed", formats)
