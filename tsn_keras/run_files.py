"""What a run's figures are drawn from: its ``history.csv``, newest ``metrics.json``, recipe, and a video's frames.

:mod:`tsn_keras.plots` draws; this module finds. :func:`find_run_files` looks through a run
folder (or an evaluation folder, or a ``metrics.json``) and says which figures it can give and
why the others cannot be drawn. A video's frames come either from the run's converted shards,
read through the byte index so that only the frames shown are decoded, or from a video file,
resized as the converter stored its data.

Example:
    >>> files = find_run_files("runs/ucf101_rgb-20240101-120000")  # doctest: +SKIP
    >>> files.history, files.metrics, files.video.name  # doctest: +SKIP
    (PosixPath('runs/.../history.csv'), PosixPath('runs/.../eval-test/metrics.json'), 'v_Archery_g01_c01')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tfrecords_tools.manifest import load_manifest, split_shards
from tfrecords_tools.shards import ShardIndex, index_path
from tfrecords_tools.worker import VideoSettings, read_video, stored_video_settings
from tsn_keras.config import load_config
from tsn_keras.errors import DataError
from tsn_keras.scores import METRICS_NAME

FrameReader = Callable[[int], np.ndarray]


@dataclass
class VideoFrames:
    """A video's RGB frames, read on demand: ``read(i)`` is frame ``i`` as RGB uint8."""

    read: FrameReader
    num_frames: int
    name: str


@dataclass
class RunFiles:
    """The inputs of a run's figures; ``None`` where the run has none, and ``missing`` says why.

    ``num_segments``, ``new_length`` and ``modality`` are the run's recipe (TSN's defaults
    without a ``config.yaml``): what the sampling picture shows.
    """

    folder: Path
    history: Path | None = None
    metrics: Path | None = None
    video: VideoFrames | None = None
    num_segments: int = 3
    new_length: int = 1
    modality: str = "rgb"
    missing: list[str] = field(default_factory=list)


def find_run_files(run: str | os.PathLike, *, video: str | None = None,
                   metrics: str | os.PathLike | None = None) -> RunFiles:
    """Find a run's history, metrics and sampling video.

    Args:
        run: a run folder (``history.csv``, ``config.yaml``, ``eval-*/metrics.json``), an
            evaluation folder or a ``metrics.json`` (e.g. of a fusion).
        video: a video file, or the id of a video in the run's converted data; default: the
            first test video of the run's data.
        metrics: a ``metrics.json`` to use instead of the run's newest evaluation.

    A ``DataError`` when ``run`` is neither a folder nor a ``metrics.json``, or ``video`` is
    not found.
    """
    run = Path(run)
    if run.is_file() and run.suffix == ".json":
        metrics, run = metrics or run, run.parent
    elif not run.is_dir():
        raise DataError(f"{run} is neither a run folder nor a metrics.json")
    found = RunFiles(run)
    if (run / "history.csv").is_file():
        found.history = run / "history.csv"
    else:
        found.missing.append(f"training curves: no history.csv in {run}")
    if metrics is None:
        candidates = sorted([run / METRICS_NAME] if (run / METRICS_NAME).is_file() else run.glob(f"eval-*/{METRICS_NAME}"),
                            key=lambda p: p.stat().st_mtime)
        metrics = candidates[-1] if candidates else None
    if metrics is not None:
        found.metrics = Path(metrics)
    else:
        found.missing.append(f"confusion matrix and per-class accuracy: no metrics.json in {run} (run `tsn evaluate`)")
    config = load_config(run / "config.yaml") if (run / "config.yaml").is_file() else None
    data_root = None
    if config is not None:
        found.num_segments = config.data.num_segments
        found.new_length = config.data.resolved_new_length()
        found.modality = config.data.modality
        data_root = config.data.root or None
    if video is not None and Path(video).is_file():
        read, num_frames = video_file_frames(video, stored_video_settings(data_root))
        found.video = VideoFrames(read, num_frames, Path(video).name)
    elif video is not None or data_root is not None:
        if data_root is None:
            raise DataError(f"{video} is not a file, and the run names no converted data to find it in")
        if video is None:
            video = first_video(data_root, config.data.test_split)
        read, num_frames, _ = shard_frames(data_root, video)
        found.video = VideoFrames(read, num_frames, video)
    else:
        found.missing.append("sampling picture: give a video file (--video) for a run without converted data")
    return found


def shard_frames(data_root: str | os.PathLike, video_id: str) -> tuple[FrameReader, int, str]:
    """A reader of one converted video's RGB frames, straight from the shard bytes (via the byte index).

    Returns ``(read, num_frames, split)`` where ``read(i)`` decodes frame ``i`` as RGB uint8.
    """
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


def video_file_frames(path: str | os.PathLike, settings: VideoSettings | None = None,
                      thumbnail_width: int = 170) -> tuple[FrameReader, int]:
    """Decode a video file (resized as the converter stored its data) into small RGB thumbnails.

    Returns ``(read, num_frames)``; an unreadable file is a ``DataError``.
    """
    thumbnails = []
    for frame in read_video(path, settings):
        height = max(1, round(frame.shape[0] * thumbnail_width / frame.shape[1]))
        small = cv2.resize(frame, (thumbnail_width, height), interpolation=cv2.INTER_AREA)
        thumbnails.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    return thumbnails.__getitem__, len(thumbnails)


def first_video(data_root: str | os.PathLike, split: str) -> str:
    """The id of the first indexed video of ``split`` (or of any split, if it has none)."""
    splits = load_manifest(data_root)["splits"]
    for name in [split, *splits]:
        if name in splits:
            for shard in split_shards(data_root, name):
                if index_path(shard).is_file():
                    index = ShardIndex.load(index_path(shard))
                    if index.num_videos:
                        return str(index.video_id[0])
    raise DataError(f"no indexed video found in {data_root}")
