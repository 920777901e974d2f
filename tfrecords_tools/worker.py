"""One video -> one ``VideoRecord``: decode, resize, optical flow, JPEG. Runs in worker processes.

Nothing here imports TensorFlow (``schema.VideoRecord`` is plain Python): the converter's
workers are started with ``spawn`` and must stay light, and TensorFlow must never be forked.
:func:`init_worker` makes each worker process's converter once. The one exception to "no
TensorFlow" is the ``tf`` flow engine, which loads TensorFlow in the worker when chosen; frame
pairs reach the flow engine in batches of its ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from tfrecords_tools.errors import DataError
from tfrecords_tools.flow import CameraMotion, quantize_flow
from tfrecords_tools.flow_engines import limit_tensorflow_threads, make_flow, warped_flow_batch
from tfrecords_tools.manifest import MANIFEST_NAME, load_manifest
from tfrecords_tools.plan import VideoEntry
from tfrecords_tools.schema import VideoRecord
from tfrecords_tools.video import VideoError, VideoReader, encode_jpeg

# The paper's stored frame size (TSN_SEMANTICS.md): 340x256.
PAPER_FRAME_SIZE = (340, 256)


@dataclass(frozen=True)
class VideoSettings:
    """How every video is converted (the options that change the stored bytes)."""

    modalities: tuple[str, ...] = ("rgb",)
    flow: str = "tvl1"
    flow_engine: str = "opencv"  # resolved ("tf" or "opencv"), never "auto"
    frame_size: tuple[int, int] | None = PAPER_FRAME_SIZE
    short_side: int | None = None
    jpeg_quality: int = 90
    max_side: int | None = None  # a bound on the stored longer side (prediction); conversions use None


def stored_video_settings(data_root=None, modalities: tuple[str, ...] = ("rgb",)) -> VideoSettings:
    """The ``VideoSettings`` a conversion folder was written with (the paper's without one), for
    ``modalities``: how to turn a new video into what a model trained on that folder has seen."""
    settings = VideoSettings(modalities=tuple(modalities))
    if data_root is None or not (Path(data_root) / MANIFEST_NAME).is_file():
        return settings
    manifest = load_manifest(data_root)
    stored = manifest.get("options")
    if stored:  # null frame_size with a short_side, or both null, mean "not the paper's 340x256"
        short_side = stored.get("short_side")
        frame_size = stored.get("frame_size")
        return replace(settings, short_side=short_side,
                       frame_size=tuple(frame_size) if frame_size and short_side is None else None,
                       jpeg_quality=int(stored.get("jpeg_quality") or settings.jpeg_quality),
                       flow=stored.get("flow") or settings.flow)
    if manifest.get("frame_size"):
        return replace(settings, frame_size=tuple(manifest["frame_size"]))
    return settings


def read_video(path, settings: VideoSettings | None = None) -> Iterator[np.ndarray]:
    """Decode a video file frame by frame (BGR ``uint8``), resized as ``settings`` store it.

    For readers outside a conversion (``tsn predict``, plots): a file that cannot be read as a
    video is a ``DataError`` naming the file and the reason.
    """
    settings = settings or VideoSettings()
    try:
        reader = VideoReader(path, frame_size=settings.frame_size, short_side=settings.short_side,
                             max_side=settings.max_side)
        yield from reader
        reader.check_complete()
    except VideoError as err:
        raise DataError(f"cannot read video {path}: {err}") from None


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
    scheduling. Making them costs microseconds (the TensorFlow engine's compiled solver is cached
    per process, not per object).
    """

    def __init__(self, settings: VideoSettings):
        self.settings = settings
        self.flow = None  # flow_engines.make_flow's engine, made per video
        self.warped: CameraMotion | None = None

    def _new_estimators(self) -> None:
        settings = self.settings
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
        encoded = self.encode(entry.path)
        reader = encoded.reader
        width, height = reader.size
        result.frames = reader.decoded
        result.declared_frames = reader.info.declared_frames
        result.truncated = reader.truncated
        result.size = (width, height)
        result.warp_fields, result.warp_fallbacks = encoded.warp_fields, encoded.warp_fallbacks
        result.record = VideoRecord(entry.video_id, entry.label, result.label_name, reader.decoded, reader.info.fps,
                                    height, width, frames=encoded.frames)

    def encode(self, path, flow_fields: Collection[int] | None = None) -> EncodedVideo:
        """The stored frame lists of one video file, frame by frame (memory: one batch of frame pairs).

        Args:
            path: the video file.
            flow_fields: compute optical flow only for these field indices (``tsn predict``
                needs the fields its test snippets read); every other place holds the JPEGs of
                the nearest computed field, so the lists keep their length N-1. ``None``: all.

        Raises:
            VideoError: the file cannot be decoded (or has one frame and flow is wanted).
        """
        self._new_estimators()
        settings, quality = self.settings, self.settings.jpeg_quality
        want_rgb = "rgb" in settings.modalities
        keys = (["rgb"] if want_rgb else []) + [f"{m}_{c}" for m in self._flow_modalities() for c in "xy"]
        frames: dict[str, list[bytes]] = {key: [] for key in keys}
        computed: dict[str, dict[int, tuple[bytes, bytes]]] = {m: {} for m in self._flow_modalities()}
        encoded = EncodedVideo(frames, VideoReader(path, settings.frame_size, settings.short_side, settings.max_side))
        wanted = None if flow_fields is None else set(flow_fields)
        previous = None
        pairs: list[tuple] = []  # (field, previous, next) waiting for a full batch of the flow engine
        for index, frame in enumerate(encoded.reader):
            if want_rgb:
                frames["rgb"].append(encode_jpeg(frame, quality))
            if self.flow is None:
                continue
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            field = index - 1
            if previous is not None and (wanted is None or field in wanted):
                pairs.append((field, previous, gray))
                if len(pairs) == self.flow.batch_size:
                    self._flow_batch(pairs, computed, encoded)
                    pairs = []
            previous = gray
        if pairs:
            self._flow_batch(pairs, computed, encoded)
        encoded.reader.check_complete()
        if self.flow is not None and encoded.reader.decoded < 2:
            raise VideoError("only 1 frame decoded: optical flow needs at least 2")
        num_fields = max(encoded.reader.decoded - 1, 0)
        for modality, fields in computed.items():
            if not fields:
                raise VideoError(f"no {modality} field computed (the requested fields are past the video's end)")
            done = np.array(sorted(fields))
            nearest = done[np.abs(done[None, :] - np.arange(num_fields)[:, None]).argmin(axis=1)]
            frames[f"{modality}_x"] = [fields[int(j)][0] for j in nearest]
            frames[f"{modality}_y"] = [fields[int(j)][1] for j in nearest]
        return encoded

    def _flow_batch(self, pairs: list[tuple], computed: dict[str, dict], encoded: EncodedVideo) -> None:
        """Flow (and warped flow) of ``(field, previous, next)`` frame pairs, one engine call."""
        quality = self.settings.jpeg_quality
        fields, prevs, nexts = zip(*pairs)
        plains = self.flow.batch(list(prevs), list(nexts))
        if "flow" in computed:
            for field, plain in zip(fields, plains):
                computed["flow"][field] = _quantised_jpegs(plain, quality)
        if self.warped is not None:
            warped = warped_flow_batch(self.flow, self.warped, list(prevs), list(nexts), plains)
            for field, (flow, fell_back) in zip(fields, warped):
                encoded.warp_fields += 1
                encoded.warp_fallbacks += int(fell_back)
                computed["warped_flow"][field] = _quantised_jpegs(flow, quality)

    def _flow_modalities(self) -> list[str]:
        return [m for m in ("flow", "warped_flow") if m in self.settings.modalities]


@dataclass
class EncodedVideo:
    """What ``VideoConverter.encode`` produced: the frame lists and the reader (size, counts)."""

    frames: dict[str, list[bytes]]
    reader: VideoReader
    warp_fields: int = 0
    warp_fallbacks: int = 0


def _quantised_jpegs(flow, quality: int) -> tuple[bytes, bytes]:
    """A flow field's x and y components, quantised to bytes (bound 20) and JPEG-encoded."""
    return encode_jpeg(quantize_flow(flow[..., 0]), quality), encode_jpeg(quantize_flow(flow[..., 1]), quality)


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
