"""One video -> one ``VideoRecord``: decode, resize, optical flow, JPEG. Runs in worker processes.

Nothing here imports TensorFlow (``records.VideoRecord`` is plain Python): the converter's
workers are started with ``spawn`` and must stay light, and TensorFlow must never be forked.
The one exception is the ``tf`` flow engine, which loads TensorFlow in the worker when chosen.
The flow objects are made once per worker by :func:`init_worker`; frame pairs reach the flow
engine in batches of its ``batch_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2

from tfrecords_tools.datasets import VideoEntry
from tfrecords_tools.flow import CameraMotion, quantize_flow
from tfrecords_tools.flow_engines import limit_tensorflow_threads, make_flow, warped_flow_batch
from tfrecords_tools.video import VideoError, VideoReader, encode_jpeg
from tsn_keras.data.records import VideoRecord


@dataclass(frozen=True)
class VideoSettings:
    """How every video is converted (the options that change the stored bytes)."""

    modalities: tuple[str, ...] = ("rgb",)
    flow: str = "tvl1"
    flow_engine: str = "opencv"  # resolved ("tf" or "opencv"), never "auto"
    frame_size: tuple[int, int] | None = (340, 256)
    short_side: int | None = None
    jpeg_quality: int = 90


@dataclass
class VideoResult:
    """A converted video (``record``) or the reason it was rejected."""

    entry: VideoEntry
    label_name: str
    record: VideoRecord | None = None
    reason: str | None = None
    frames: int = 0
    declared_frames: int = 0
    truncated: bool = False
    warp_fields: int = 0
    warp_fallbacks: int = 0
    size: tuple[int, int] = field(default=(0, 0))


class VideoConverter:
    """Converts videos with fixed settings; holds the flow objects so they are built once."""

    def __init__(self, settings: VideoSettings):
        self.settings = settings
        needs_flow = "flow" in settings.modalities or "warped_flow" in settings.modalities
        self.flow = make_flow(settings.flow, settings.flow_engine) if needs_flow else None
        self.warped = CameraMotion() if "warped_flow" in settings.modalities else None

    def __call__(self, entry: VideoEntry, label_name: str) -> VideoResult:
        result = VideoResult(entry, label_name)
        try:
            self._convert(entry, result)
        except VideoError as err:
            result.record, result.reason = None, str(err)
        except cv2.error as err:
            result.record, result.reason = None, f"decoder error: {str(err).strip().splitlines()[-1]}"
        return result

    def _convert(self, entry: VideoEntry, result: VideoResult) -> None:
        settings = self.settings
        quality = settings.jpeg_quality
        frames: dict[str, list[bytes]] = {}
        want_rgb = "rgb" in settings.modalities
        if want_rgb:
            frames["rgb"] = []
        if "flow" in settings.modalities:
            frames["flow_x"], frames["flow_y"] = [], []
        if self.warped is not None:
            frames["warped_flow_x"], frames["warped_flow_y"] = [], []
        reader = VideoReader(entry.path, settings.frame_size, settings.short_side)
        previous = None
        pairs: list[tuple] = []  # frame pairs waiting for a full batch
        for frame in reader:
            if want_rgb:
                frames["rgb"].append(encode_jpeg(frame, quality))
            if self.flow is None:
                continue
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if previous is not None:
                pairs.append((previous, gray))
                if len(pairs) == self.flow.batch_size:
                    self._flow_batch(pairs, frames, result)
                    pairs = []
            previous = gray
        if pairs:
            self._flow_batch(pairs, frames, result)
        reader.check_complete()
        if self.flow is not None and reader.decoded < 2:
            raise VideoError("only 1 frame decoded: optical flow needs at least 2")
        width, height = reader.size
        result.frames = reader.decoded
        result.declared_frames = reader.info.declared_frames
        result.truncated = reader.truncated
        result.size = (width, height)
        result.record = VideoRecord(entry.video_id, entry.label, result.label_name, reader.decoded, reader.info.fps,
                                    height, width, frames=frames)


    def _flow_batch(self, pairs: list[tuple], frames: dict[str, list[bytes]], result: VideoResult) -> None:
        """Flow (and warped flow) of consecutive frame pairs, appended to ``frames`` in order."""
        quality = self.settings.jpeg_quality
        prevs, nexts = [p for p, _ in pairs], [n for _, n in pairs]
        plains = self.flow.batch(prevs, nexts)
        if "flow_x" in frames:
            for plain in plains:
                frames["flow_x"].append(encode_jpeg(quantize_flow(plain[..., 0]), quality))
                frames["flow_y"].append(encode_jpeg(quantize_flow(plain[..., 1]), quality))
        if self.warped is not None:
            for warped, fell_back in warped_flow_batch(self.flow, self.warped, prevs, nexts, plains):
                result.warp_fields += 1
                result.warp_fallbacks += int(fell_back)
                frames["warped_flow_x"].append(encode_jpeg(quantize_flow(warped[..., 0]), quality))
                frames["warped_flow_y"].append(encode_jpeg(quantize_flow(warped[..., 1]), quality))


_CONVERTER: VideoConverter | None = None


def init_worker(settings: VideoSettings, threads: int | None = 1) -> None:
    """Build this process's converter; ``threads`` caps OpenCV's own threads (one per worker process)."""
    global _CONVERTER
    if threads is not None:
        cv2.setNumThreads(threads)
        if settings.flow_engine == "tf":
            limit_tensorflow_threads(threads)
    _CONVERTER = VideoConverter(settings)


def convert_video(task: tuple[VideoEntry, str]) -> VideoResult:
    """Convert one ``(entry, label_name)`` with the converter made by :func:`init_worker`."""
    if _CONVERTER is None:
        raise RuntimeError("init_worker() must run in this process before convert_video()")
    return _CONVERTER(*task)
