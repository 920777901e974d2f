"""The optical flow of one video written to a folder: float arrays, stored JPEG pairs or colour pictures.

What ``tsn flow`` runs. Frames are decoded and resized as the converter does
(:class:`~tfrecords_tools.video.VideoReader`), turned to grayscale, and consecutive pairs go
to the flow engine in batches; field ``i`` (1-based, as the original ``dense_flow`` named its
files) is the flow from frame ``i`` to frame ``i + 1``:

- ``npy``: ``flow_00001.npy``, float32 ``(H, W, 2)`` in pixels (x, y);
- ``jpeg``: ``flow_x_00001.jpg`` and ``flow_y_00001.jpg``, the quantised bytes exactly as the
  shards store them (bound 20, same JPEG quality);
- ``png``: ``flow_00001.png``, colour-coded (hue = direction, brightness = speed).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tfrecords_tools.flow import flow_to_color, quantize_flow
from tfrecords_tools.flow_engines import make_flow, resolve_engine
from tfrecords_tools.video import VideoError, VideoReader, encode_jpeg

FORMATS: tuple[str, ...] = ("npy", "jpeg", "png")


@dataclass
class FlowRun:
    """What :func:`write_video_flow` did."""

    fields: int
    frames: int
    size: tuple[int, int]  # (width, height)
    engine: str
    seconds: float
    files: list[Path]


def _write(out: Path, index: int, flow: np.ndarray, fmt: str, jpeg_quality: int) -> list[Path]:
    if fmt == "npy":
        path = out / f"flow_{index:05d}.npy"
        np.save(path, flow.astype(np.float32))
        return [path]
    if fmt == "jpeg":
        paths = [out / f"flow_x_{index:05d}.jpg", out / f"flow_y_{index:05d}.jpg"]
        for path, component in zip(paths, (flow[..., 0], flow[..., 1])):
            path.write_bytes(encode_jpeg(quantize_flow(component), jpeg_quality))
        return paths
    path = out / f"flow_{index:05d}.png"
    rgb = flow_to_color(flow[..., 0], flow[..., 1])
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return [path]


def write_video_flow(video: str | os.PathLike, out: str | os.PathLike, *, algorithm: str = "tvl1",
                     engine: str = "auto", fmt: str = "npy", frame_size: tuple[int, int] | None = (340, 256),
                     jpeg_quality: int = 90, max_frames: int | None = None,
                     batch_size: int | None = None) -> FlowRun:
    """Compute the flow between consecutive frames of ``video`` and write it to the folder ``out``.

    Args:
        video: a video file.
        out: output folder (created; files of the same names are replaced).
        algorithm: ``tvl1``, ``dis`` or ``farneback``.
        engine: ``auto``, ``tf`` or ``opencv`` (:mod:`tfrecords_tools.flow_engines`).
        fmt: ``npy``, ``jpeg`` or ``png`` (see the module's docstring).
        frame_size: ``(width, height)`` frames are resized to (the converter's default,
            340x256); ``None`` keeps the decoded size.
        jpeg_quality: JPEG quality of the ``jpeg`` format.
        max_frames: stop after this many decoded frames.
        batch_size: pairs per call of the ``tf`` engine (its default when ``None``).

    Raises:
        tfrecords_tools.video.VideoError: the file is not a readable video or has one frame.
        ValueError: an unknown algorithm, engine or format, or an impossible combination.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown flow format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2 (flow needs two frames), got {max_frames}")
    resolved = resolve_engine(algorithm, engine)
    if batch_size is not None and resolved != "tf":
        raise ValueError(f"a batch size applies to the tf engine only (the {resolved} engine computes pair by pair)")
    reader = VideoReader(video, frame_size)  # raises VideoError before any work for a non-video
    flow = make_flow(algorithm, resolved, batch_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    files: list[Path] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    previous = None
    fields = 0

    def flush() -> None:
        nonlocal fields
        for field in flow.batch([p for p, _ in pairs], [n for _, n in pairs]):
            fields += 1
            files.extend(_write(out, fields, field, fmt, jpeg_quality))
        pairs.clear()

    for frame in reader:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if previous is not None:
            pairs.append((previous, gray))
            if len(pairs) == flow.batch_size:
                flush()
        previous = gray
        if max_frames is not None and reader.decoded >= max_frames:
            break
    if pairs:
        flush()
    if max_frames is None:
        reader.check_complete()
    if fields == 0:
        raise VideoError(f"only {reader.decoded} frame(s) decoded: optical flow needs at least 2")
    return FlowRun(fields, reader.decoded, reader.size, resolved, time.perf_counter() - start, files)
