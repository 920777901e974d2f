"""Reading videos: decode every frame, resize to the stored size, encode JPEG.

Frames are streamed (one decoded frame in memory at a time) so that a worker's memory is the
size of one video's JPEGs, whatever the video's length. OpenCV only, no TensorFlow: this runs
in the converter's worker processes.

How broken input is judged (the converter turns a :class:`VideoError` into a ``rejects``
entry of the manifest):

- a path that cannot be opened or read (permissions, a directory, an unreadable parent
  folder) is rejected with the operating system's reason;
- a file that the decoder does not open, or opens but yields no frame ("not a video", zero
  frames, an empty file) is rejected;
- the frame count is the number of frames decoded until the decoder stops, never the
  container's ``CAP_PROP_FRAME_COUNT`` (unreliable: it is an estimate for many codecs). A
  video whose decode stops before the container's declared count is *truncated*. It is kept
  when at least ``MIN_DECODED_FRACTION`` of the declared frames decoded (the label still
  describes the clip and TSN's segments still span most of the action) and the manifest lists
  it under ``truncated``; below that it is rejected, since sparse sampling would then cover a
  different clip than the one the label was given for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

# FFmpeg prints every damaged macroblock of a broken file to stderr, through the progress bar;
# the reason a video is rejected or flagged as truncated goes to the manifest instead.
# Read when the first video is opened; set OPENCV_FFMPEG_LOGLEVEL yourself to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

# Keep a truncated video only if at least this share of the declared frames decoded.
MIN_DECODED_FRACTION = 0.5
# Differences up to this many frames between the declared and decoded counts are normal
# (B-frame reordering, edit lists) and not reported as truncation.
FRAME_COUNT_SLACK = 2


class VideoError(Exception):
    """A video that cannot be converted; the message is the reason recorded in the manifest."""


@dataclass
class VideoInfo:
    """What the container says about a video before decoding."""

    fps: float
    width: int
    height: int
    declared_frames: int  # CAP_PROP_FRAME_COUNT: an estimate, 0 when unknown


def target_size(width: int, height: int, frame_size: tuple[int, int] | None = (340, 256),
                short_side: int | None = None) -> tuple[int, int]:
    """The ``(width, height)`` frames are stored at.

    Args:
        width, height: size of the decoded frames.
        frame_size: fixed ``(width, height)`` (the paper's 340x256); ignored when
            ``short_side`` is given; ``None`` with no ``short_side`` keeps the original size.
        short_side: resize so that the shorter side has this length, keeping the aspect ratio.

    Example:
        >>> target_size(320, 240, short_side=128)
        (171, 128)
    """
    if short_side is not None:
        scale = short_side / min(width, height)
        if width <= height:
            return short_side, max(1, round(height * scale))
        return max(1, round(width * scale)), short_side
    if frame_size is None:
        return width, height
    return int(frame_size[0]), int(frame_size[1])


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` = (width, height): area averaging when shrinking, bilinear when enlarging."""
    height, width = frame.shape[:2]
    if (width, height) == tuple(size):
        return frame
    shrinking = size[0] * size[1] < width * height
    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a BGR or grayscale ``uint8`` image (decoders return RGB / one channel)."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise VideoError("JPEG encoding failed")
    return buffer.tobytes()


def decode_jpeg(data: bytes, grayscale: bool = False) -> np.ndarray:
    """Decode JPEG bytes to a BGR (or grayscale) ``uint8`` array."""
    flags = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise ValueError("not a JPEG image")
    return image


def _check_readable(path: str) -> None:
    """Raise ``VideoError`` with the OS's reason when ``path`` is not a readable regular file."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        raise VideoError("is a directory, not a video file") from None
    except OSError as err:
        raise VideoError(f"cannot read file: {err.strerror or err}") from None
    if os.path.getsize(path) == 0:
        raise VideoError("empty file (0 bytes)")


def bounded(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled down, keeping the aspect ratio, to at most ``max_side`` a side."""
    width, height = size
    if max_side is None or max(width, height) <= max_side:
        return size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class VideoReader:
    """Decode a video frame by frame, resized to the stored size.

    ``max_side`` bounds the longer side of what is yielded (prediction sets it: a conversion
    at original size would otherwise keep a 4096 px video's frames at 4096 px, 8.5 GB for
    ``tsn predict``); each frame is resized as soon as it is decoded. Iterating yields BGR ``uint8`` frames; afterwards :meth:`check_complete` applies the
    truncation rule of this module. Opening raises :class:`VideoError` for files that are not
    readable videos.

    Example:
        >>> reader = VideoReader("v_Archery_g01_c01.avi", short_side=128)  # doctest: +SKIP
        >>> frames = list(reader); reader.check_complete()  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, frame_size: tuple[int, int] | None = (340, 256),
                 short_side: int | None = None, max_side: int | None = None):
        self.path = os.fspath(path)
        _check_readable(self.path)
        self._capture = cv2.VideoCapture(self.path)
        if not self._capture.isOpened():
            raise VideoError("not a video: the decoder cannot open this file")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        declared = self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0
        self.info = VideoInfo(
            fps=fps if math.isfinite(fps) and fps > 0 else 0.0,
            width=int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            declared_frames=int(declared) if math.isfinite(declared) and declared > 0 else 0,
        )
        self.frame_size = frame_size
        self.short_side = short_side
        self.max_side = max_side
        self.size: tuple[int, int] | None = None  # (width, height) stored, known after the first frame
        self.decoded = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = self._capture.read()
                if not ok or frame is None:
                    break
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                if self.size is None:
                    self.size = bounded(target_size(frame.shape[1], frame.shape[0], self.frame_size, self.short_side),
                                        self.max_side)
                self.decoded += 1
                yield resize(frame, self.size)
        finally:
            self._capture.release()

    @property
    def truncated(self) -> bool:
        """Whether decoding stopped clearly before the container's declared frame count."""
        declared = self.info.declared_frames
        return declared > 0 and self.decoded < declared - FRAME_COUNT_SLACK

    def check_complete(self) -> None:
        """Raise ``VideoError`` for zero decoded frames or a truncation beyond the keep rule."""
        if self.decoded == 0:
            raise VideoError("no decodable frames (zero-frame or corrupt video)")
        declared = self.info.declared_frames
        if self.truncated and self.decoded < MIN_DECODED_FRACTION * declared:
            raise VideoError(
                f"truncated: decoded {self.decoded} of {declared} declared frames "
                f"(videos are kept only with at least {MIN_DECODED_FRACTION:.0%} of their frames)"
            )
