"""Shard files and their byte index: writing a shard, reading where each JPEG is.

Beside each shard ``<name>.tfrecord`` the converter writes ``<name>.tfrecord.index``: the byte
offset and length of every record and every JPEG inside the shard file. The records stay
standard SequenceExamples that any TensorFlow code can parse; the index lets the input pipeline
read only the frames it samples instead of a whole video's record, which is what makes the cost
of a training clip independent of the video's length (a 1,000-frame record is ~17 MB of RGB
JPEGs, and reading it costs more than decoding the three frames TSN samples from it).

``ShardWriter`` frames records with TensorFlow's ``TFRecordWriter`` (its CRC32C is native
code), imported when a writer is created: the converter's main process writes shards, its
worker processes never do.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfrecords_tools.errors import DataError
from tfrecords_tools.schema import STORED_KEYS, VideoRecord, encode_video

SHARD_SUFFIX = ".tfrecord"
INDEX_SUFFIX = ".index"
# TFRecord framing: uint64 length + uint32 masked CRC of the length, then the data, then a
# uint32 masked CRC of the data.
RECORD_HEADER_BYTES = 12
RECORD_FOOTER_BYTES = 4


def index_path(shard_path: str | os.PathLike) -> Path:
    """Where the byte index of a shard lives."""
    return Path(f"{os.fspath(shard_path)}{INDEX_SUFFIX}")


@dataclass
class ShardIndex:
    """Byte offsets of every record and every JPEG in one shard file.

    Per video ``i``: ``video_id[i]``, ``label[i]``, ``label_name[i]``, ``num_frames[i]``,
    ``record_offset[i]``/``record_length[i]`` (of the serialised SequenceExample, after the
    12-byte TFRecord header). Per stored key ``k``: ``count[k][i]`` frames, whose absolute
    file offsets and lengths are ``offset[k][start[k][i] : start[k][i] + count[k][i]]`` and
    the same slice of ``length[k]``; ``crc32[k]`` (same slice) is the CRC-32 of each JPEG.

    The per-JPEG CRC-32 lets the indexed reader check exactly the bytes it reads: the TFRecord
    CRC covers a whole record, which the indexed reader never reads. Indexes written before it
    existed have no ``crc32`` (an empty dict) and are read unchecked.
    """

    video_id: np.ndarray
    label: np.ndarray
    label_name: np.ndarray
    num_frames: np.ndarray
    record_offset: np.ndarray
    record_length: np.ndarray
    count: dict[str, np.ndarray]
    offset: dict[str, np.ndarray]
    length: dict[str, np.ndarray]
    crc32: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_videos(self) -> int:
        return len(self.video_id)

    def start(self, key: str) -> np.ndarray:
        """Index into ``offset[key]`` of each video's first frame."""
        counts = self.count[key]
        return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts

    def save(self, path: str | os.PathLike) -> None:
        arrays = {
            "video_id": self.video_id.astype(str),
            "label": self.label.astype(np.int64),
            "label_name": self.label_name.astype(str),
            "num_frames": self.num_frames.astype(np.int64),
            "record_offset": self.record_offset.astype(np.int64),
            "record_length": self.record_length.astype(np.int64),
        }
        for key in self.count:
            arrays[f"{key}.count"] = self.count[key].astype(np.int64)
            arrays[f"{key}.offset"] = self.offset[key].astype(np.int64)
            arrays[f"{key}.length"] = self.length[key].astype(np.int64)
            if key in self.crc32:
                arrays[f"{key}.crc32"] = self.crc32[key].astype(np.uint32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShardIndex:
        """Read an index; a missing, truncated or foreign file is a ``DataError`` naming it."""
        try:
            return cls._load(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"cannot read the byte index {path} ({type(err).__name__}: {err}); it is damaged or "
                            "not an index: convert the dataset again, or delete the .index files to read "
                            "the shards in stream mode") from None

    @classmethod
    def _load(cls, path: str | os.PathLike) -> ShardIndex:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted({name.split(".")[0] for name in data.files if name.endswith(".count")})
            index = cls(
                video_id=data["video_id"],
                label=data["label"],
                label_name=data["label_name"],
                num_frames=data["num_frames"],
                record_offset=data["record_offset"],
                record_length=data["record_length"],
                count={k: data[f"{k}.count"] for k in keys},
                offset={k: data[f"{k}.offset"] for k in keys},
                length={k: data[f"{k}.length"] for k in keys},
                crc32={k: data[f"{k}.crc32"] for k in keys if f"{k}.crc32" in data.files},
            )
        index.check()
        return index

    def check(self) -> None:
        """A ``ValueError`` when the arrays do not agree in length (a damaged or foreign index)."""
        n = len(self.video_id)
        for name in ("label", "label_name", "num_frames", "record_offset", "record_length"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} videos")
        for key, counts in self.count.items():
            frames = int(np.sum(counts))
            if len(counts) != n or len(self.offset[key]) != frames or len(self.length[key]) != frames:
                raise ValueError(f"{key!r} frame tables do not match its counts")
            if key in self.crc32 and len(self.crc32[key]) != frames:
                raise ValueError(f"{key!r} checksums do not match its counts")

    def end(self) -> int:
        """The byte just past the last record: the size of the complete shard file."""
        if not self.num_videos:
            return 0
        return int(self.record_offset[-1] + self.record_length[-1] + RECORD_FOOTER_BYTES)


@dataclass
class ShardInfo:
    """What a finished shard holds (the manifest lists these)."""

    file: str
    records: int
    bytes: int
    sha256: str
    video_ids: list[str]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds.

    Every file a command finishes (shard indexes, manifests, checkpoints, models, score files)
    is written this way, so a kill or a full disk leaves either the previous file or the new
    one, never a partial file under the final name. The temporary name keeps the final suffix
    (Keras insists on ``.weights.h5`` and ``.keras``) and is removed when the block fails.
    """
    path = Path(path)
    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def jpeg_crcs(frames: dict[str, list[bytes]]) -> dict[str, np.ndarray]:
    """The CRC-32 of each stored JPEG, per key: ~1 ms per MB at conversion, and it lets the reader
    check each JPEG it reads (``ShardIndex.crc32``)."""
    return {key: np.array([zlib.crc32(jpeg) for jpeg in jpegs], np.uint32) for key, jpegs in frames.items()}


def assemble_index(contexts: list[tuple[str, int, str, int]], record_spans: list[tuple[int, int]],
                   frame_spans: list[dict[str, np.ndarray]], frame_crcs: list[dict[str, np.ndarray]]) -> ShardIndex:
    """The ``ShardIndex`` of a shard's records, in file order (``ShardWriter`` and the Beam runner).

    Args:
        contexts: ``(video_id, label, label_name, num_frames)`` of each record.
        record_spans: ``(offset, length)`` of each serialised record in the file.
        frame_spans: per record, ``{key: (n, 2) array of (offset, length)}`` of its JPEGs in the file.
        frame_crcs: per record, ``{key: (n,) CRC-32}`` of its JPEGs (``jpeg_crcs``).
    """
    keys = [k for k in STORED_KEYS if any(k in spans for spans in frame_spans)]
    empty = np.zeros((0, 2), dtype=np.int64)
    per_key = {k: [spans.get(k, empty) for spans in frame_spans] for k in keys}
    return ShardIndex(
        video_id=np.array([c[0] for c in contexts], dtype=str),
        label=np.array([c[1] for c in contexts], dtype=np.int64),
        label_name=np.array([c[2] for c in contexts], dtype=str),
        num_frames=np.array([c[3] for c in contexts], dtype=np.int64),
        record_offset=np.array([s for s, _ in record_spans], dtype=np.int64),
        record_length=np.array([n for _, n in record_spans], dtype=np.int64),
        count={k: np.array([len(s) for s in per_key[k]], dtype=np.int64) for k in keys},
        offset={k: np.concatenate([s[:, 0] for s in per_key[k]]) if per_key[k] else empty[:, 0] for k in keys},
        length={k: np.concatenate([s[:, 1] for s in per_key[k]]) if per_key[k] else empty[:, 1] for k in keys},
        crc32={k: np.concatenate([c.get(k, np.zeros(0, np.uint32)) for c in frame_crcs]).astype(np.uint32)
               for k in keys},
    )


class ShardWriter:
    """Writes one shard and its index; the files appear under their final names only on ``close``.

    Example:
        >>> with ShardWriter("out/train/train-00000.tfrecord") as writer:  # doctest: +SKIP
        ...     writer.write(video)
        >>> writer.info.records  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        import tensorflow as tf  # only the writer needs it; see the module docstring

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._writer = tf.io.TFRecordWriter(str(self._tmp))
        self._position = 0
        self._videos: list[VideoRecord] = []
        self._record_spans: list[tuple[int, int]] = []
        self._frame_spans: list[dict[str, np.ndarray]] = []
        self._frame_crcs: list[dict[str, np.ndarray]] = []
        self.info: ShardInfo | None = None

    @property
    def bytes_written(self) -> int:
        return self._position

    def write(self, video: VideoRecord) -> None:
        data, offsets = encode_video(video)
        self._writer.write(data)
        start = self._position + RECORD_HEADER_BYTES
        self._record_spans.append((start, len(data)))
        self._frame_spans.append({k: v + np.array([start, 0]) for k, v in offsets.items()})
        self._frame_crcs.append(jpeg_crcs(video.frames))
        # Keep only the context: the frames are on disk now.
        self._videos.append(
            VideoRecord(video.video_id, video.label, video.label_name, video.num_frames, video.fps,
                        video.height, video.width)
        )
        self._position += RECORD_HEADER_BYTES + len(data) + RECORD_FOOTER_BYTES

    def _index(self) -> ShardIndex:
        contexts = [(v.video_id, v.label, v.label_name, v.num_frames) for v in self._videos]
        return assemble_index(contexts, self._record_spans, self._frame_spans, self._frame_crcs)

    def close(self) -> ShardInfo:
        if self.info is not None:
            return self.info
        self._writer.close()
        self._index().save(index_path(self.path))
        os.replace(self._tmp, self.path)
        self.info = ShardInfo(
            file=self.path.name,
            records=len(self._videos),
            bytes=self.path.stat().st_size,
            sha256=sha256_file(self.path),
            video_ids=[v.video_id for v in self._videos],
        )
        return self.info

    def abort(self) -> None:
        """Drop a shard that will not be finished (no partial file is left under the final name)."""
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def list_shards(split_dir: str | os.PathLike) -> list[Path]:
    """The shard files of one split folder, sorted by name."""
    return sorted(Path(split_dir).glob(f"*{SHARD_SUFFIX}"))
