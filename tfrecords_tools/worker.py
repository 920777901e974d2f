"""One video -> one ``VideoRecord``: decode, resize, optical flow, JPEG. Runs in worker processes.

Nothing here imports TensorFlow (``records.VideoRecord`` is plain Python): the converter's
workers are started with ``spawn`` and must stay light, and TensorFlow must never be forked.
:func:`init_worker` makes each worker process's converter once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2

from tfrecords_tools.datasets import VideoEntry
from tfrecords_tools.flow import FlowEstimator, WarpedFlowEstimator, quantize_flow
from tfrecords_tools.video import VideoError, VideoReader, encode_jpeg
from tsn_keras.data.records import VideoRecord


@dataclass(frozen=True)
class VideoSettings:
    """How every video is converted (the options that change the stored bytes)."""

    modalities: tuple[str, ...] = ("rgb",)
    flow: str = "tvl1"
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
    """Converts videos with fixed settings.

    The flow objects are made anew for each video: OpenCV's DIS keeps state from one call to the
    next (the same frame pair gives a different field after other pairs), so reusing one across
    videos would make a video's bytes depend on which video its worker converted before, i.e. on
    scheduling. Making them costs microseconds.
    """

    def __init__(self, settings: VideoSettings):
        self.settings = settings
        self.flow: FlowEstimator | None = None
        self.warped: WarpedFlowEstimator | None = None

    def _new_estimators(self) -> None:
        settings = self.settings
        needs_flow = "flow" in settings.modalities or "warped_flow" in settings.modalities
        self.flow = FlowEstimator(settings.flow) if needs_flow else None
        self.warped = WarpedFlowEstimator(self.flow) if "warped_flow" in settings.modalities else None

    def __call__(self, entry: VideoEntry, label_name: str) -> VideoResult:
        result = VideoResult(entry, label_name)
        self._new_estimators()
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
        for frame in reader:
            if want_rgb:
                frames["rgb"].append(encode_jpeg(frame, quality))
            if self.flow is None:
                continue
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if previous is not None:
                plain = self.flow(previous, gray)
                if "flow_x" in frames:
                    frames["flow_x"].append(encode_jpeg(quantize_flow(plain[..., 0]), quality))
                    frames["flow_y"].append(encode_jpeg(quantize_flow(plain[..., 1]), quality))
                if self.warped is not None:
                    warped, fell_back = self.warped(previous, gray, plain)
                    result.warp_fields += 1
                    result.warp_fallbacks += int(fell_back)
                    frames["warped_flow_x"].append(encode_jpeg(quantize_flow(warped[..., 0]), quality))
                    frames["warped_flow_y"].append(encode_jpeg(quantize_flow(warped[..., 1]), quality))
            previous = gray
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


_CONVERTER: VideoConverter | None = None


def init_worker(settings: VideoSettings, threads: int | None = 1) -> None:
    """Build this process's converter; ``threads`` caps OpenCV's own threads (one per worker process)."""
    global _CONVERTER
    if threads is not None:
        cv2.setNumThreads(threads)
    _CONVERTER = VideoConverter(settings)


def convert_video(task: tuple[VideoEntry, str]) -> VideoResult:
    """Convert one ``(entry, label_name)`` with the converter made by :func:`init_worker`."""
    if _CONVERTER is None:
        raise RuntimeError("init_worker() must run in this process before convert_video()")
    return _CONVERTER(*task)
