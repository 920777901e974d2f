"""The TFRecord schema, defined once: the converter writes it and the input pipeline reads it.

A shard is a TFRecord file of ``tf.train.SequenceExample`` records, one per video:

context (per video)
    ``video_id`` (bytes), ``label`` (int64, 0-based), ``label_name`` (bytes), ``num_frames``
    (int64, RGB frames in the video), ``fps`` (float), ``height`` and ``width`` (int64, of the
    stored frames).
feature lists (per frame, JPEG bytes)
    ``rgb`` (N colour frames), ``flow_x``/``flow_y`` (N-1 TV-L1 fields, each component a
    grayscale JPEG quantised with bound 20), ``warped_flow_x``/``warped_flow_y`` (N-1 warped
    flow fields). Only the modalities that were converted are present.

Beside each shard ``<name>.tfrecord`` the converter writes ``<name>.tfrecord.index``: the byte
offset and length of every JPEG inside the shard file. The records stay standard
SequenceExamples that any TensorFlow code can parse; the index lets the input pipeline read
only the frames it samples instead of a whole video's record, which is what makes the cost of
a training clip independent of the video's length (a 1,000-frame record is ~17 MB of RGB
JPEGs, and reading it costs more than decoding the three frames TSN samples from it).

To know where each JPEG lands, records are serialised here rather than through the protobuf
library. The wire format is plain protobuf (tests parse it with ``tf.io`` and with
``tf.train.SequenceExample.FromString``), written with a fixed field order so the same video
always gives the same bytes.

This module imports TensorFlow only inside the functions that need it, so converter worker
processes can use the encoder without loading TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Feature-list keys as stored, in the order they are written.
STORED_KEYS: tuple[str, ...] = ("rgb", "flow_x", "flow_y", "warped_flow_x", "warped_flow_y")

# Which stored keys each modality reads; flow components are interleaved x, y per frame.
MODALITY_KEYS: dict[str, tuple[str, ...]] = {
    "rgb": ("rgb",),
    "rgb_diff": ("rgb",),
    "flow": ("flow_x", "flow_y"),
    "warped_flow": ("warped_flow_x", "warped_flow_y"),
}
MODALITIES: tuple[str, ...] = tuple(MODALITY_KEYS)

# Converter modality names (what is computed) -> stored keys.
CONVERTED_KEYS: dict[str, tuple[str, ...]] = {
    "rgb": ("rgb",),
    "flow": ("flow_x", "flow_y"),
    "warped_flow": ("warped_flow_x", "warped_flow_y"),
}

SHARD_SUFFIX = ".tfrecord"
INDEX_SUFFIX = ".index"
# TFRecord framing: uint64 length + uint32 masked CRC of the length, then the data, then a
# uint32 masked CRC of the data.
RECORD_HEADER_BYTES = 12
RECORD_FOOTER_BYTES = 4


def modality_keys(modality: str) -> tuple[str, ...]:
    """Stored feature-list keys read by ``modality`` (``rgb``, ``rgb_diff``, ``flow``, ``warped_flow``)."""
    try:
        return MODALITY_KEYS[modality]
    except KeyError:
        raise ValueError(f"unknown modality {modality!r}; valid modalities: {', '.join(MODALITIES)}") from None


@dataclass
class VideoRecord:
    """One video as stored: its context and the JPEG bytes of each stored frame list."""

    video_id: str
    label: int
    label_name: str
    num_frames: int
    fps: float
    height: int
    width: int
    frames: dict[str, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.frames) - set(STORED_KEYS)
        if unknown:
            raise ValueError(f"unknown frame keys {sorted(unknown)}; stored keys are {STORED_KEYS}")


# --- protobuf wire format ---------------------------------------------------------------

def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _prefix(tag: int, length: int) -> bytes:
    """Tag byte and length of a length-delimited field (wire type 2)."""
    return bytes([tag]) + _varint(length)


def _field(tag: int, payload: bytes) -> bytes:
    return _prefix(tag, len(payload)) + payload


# Field tags: (field_number << 3) | 2.
_TAG_1 = 0x0A
_TAG_2 = 0x12
_TAG_3 = 0x1A


def _bytes_feature(value: bytes) -> bytes:
    return _field(_TAG_1, _field(_TAG_1, value))  # Feature.bytes_list(1) -> BytesList.value(1)


def _int64_feature(value: int) -> bytes:
    return _field(_TAG_3, _field(_TAG_1, _varint(int(value))))  # Feature.int64_list(3), packed


def _float_feature(value: float) -> bytes:
    return _field(_TAG_2, _field(_TAG_1, struct.pack("<f", float(value))))  # Feature.float_list(2), packed


def _map_entry(key: str, value_message: bytes) -> bytes:
    return _field(_TAG_1, _field(_TAG_1, key.encode()) + _field(_TAG_2, value_message))


def encode_video(video: VideoRecord) -> tuple[bytes, dict[str, np.ndarray]]:
    """Serialise ``video`` as a SequenceExample.

    Returns the serialised bytes and, for each stored key, an ``(n, 2)`` int64 array of the
    (offset, length) of each frame's JPEG bytes inside those bytes.
    """
    context = b"".join(
        [
            _map_entry("video_id", _bytes_feature(video.video_id.encode())),
            _map_entry("label", _int64_feature(video.label)),
            _map_entry("label_name", _bytes_feature(video.label_name.encode())),
            _map_entry("num_frames", _int64_feature(video.num_frames)),
            _map_entry("fps", _float_feature(video.fps)),
            _map_entry("height", _int64_feature(video.height)),
            _map_entry("width", _int64_feature(video.width)),
        ]
    )
    entries: list[bytes] = []
    relative: dict[str, np.ndarray] = {}  # offsets inside the FeatureLists message
    position = 0
    for key in STORED_KEYS:
        if key not in video.frames:
            continue
        parts: list[bytes] = []
        offsets = np.zeros((len(video.frames[key]), 2), dtype=np.int64)
        list_length = 0
        for i, jpeg in enumerate(video.frames[key]):
            jpeg = bytes(jpeg)
            bytes_list = _field(_TAG_1, jpeg)
            feature = _field(_TAG_1, bytes_list)
            # FeatureList.feature(1) -> Feature -> BytesList -> value: three prefixes before the JPEG.
            head = len(_prefix(_TAG_1, len(feature))) + len(_prefix(_TAG_1, len(bytes_list))) + len(
                _prefix(_TAG_1, len(jpeg))
            )
            offsets[i] = (list_length + head, len(jpeg))
            part = _field(_TAG_1, feature)
            parts.append(part)
            list_length += len(part)
        feature_list = b"".join(parts)
        key_field = _field(_TAG_1, key.encode())
        value_prefix = _prefix(_TAG_2, len(feature_list))
        entry_payload_length = len(key_field) + len(value_prefix) + len(feature_list)
        entry_prefix = _prefix(_TAG_1, entry_payload_length)
        offsets[:, 0] += position + len(entry_prefix) + len(key_field) + len(value_prefix)
        relative[key] = offsets
        entry = entry_prefix + key_field + value_prefix + feature_list
        entries.append(entry)
        position += len(entry)
    feature_lists = b"".join(entries)
    head = _field(_TAG_1, context) + _prefix(_TAG_2, len(feature_lists))
    for offsets in relative.values():
        offsets[:, 0] += len(head)
    return head + feature_lists, relative


# --- parsing (TensorFlow) --------------------------------------------------------------------

def context_spec() -> dict:
    """``tf.io`` parsing spec of the context features."""
    import tensorflow as tf

    return {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "label_name": tf.io.FixedLenFeature([], tf.string),
        "num_frames": tf.io.FixedLenFeature([], tf.int64),
        "fps": tf.io.FixedLenFeature([], tf.float32),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
    }


def parse_video(serialized, keys=STORED_KEYS):
    """Parse one serialised record (graph-compatible): ``(context, {key: string tensor [n]})``.

    Keys absent from the record come back as empty tensors.
    """
    import tensorflow as tf

    context, sequences = tf.io.parse_single_sequence_example(
        serialized,
        context_features=context_spec(),
        sequence_features={key: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True) for key in keys},
    )
    return context, sequences


# --- shard files and their index ---------------------------------------------------------

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
    the same slice of ``length[k]``.
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
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        _atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShardIndex:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted({name.split(".")[0] for name in data.files if name.endswith(".count")})
            return cls(
                video_id=data["video_id"],
                label=data["label"],
                label_name=data["label_name"],
                num_frames=data["num_frames"],
                record_offset=data["record_offset"],
                record_length=data["record_length"],
                count={k: data[f"{k}.count"] for k in keys},
                offset={k: data[f"{k}.offset"] for k in keys},
                length={k: data[f"{k}.length"] for k in keys},
            )


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ShardWriter:
    """Writes one shard and its index; the files appear under their final names only on ``close``.

    Example:
        >>> with ShardWriter("out/train/train-00000.tfrecord") as writer:  # doctest: +SKIP
        ...     writer.write(video)
        >>> writer.info.records  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        import tensorflow as tf

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._writer = tf.io.TFRecordWriter(str(self._tmp))
        self._position = 0
        self._videos: list[VideoRecord] = []
        self._record_spans: list[tuple[int, int]] = []
        self._frame_spans: list[dict[str, np.ndarray]] = []
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
        # Keep only the context: the frames are on disk now.
        self._videos.append(
            VideoRecord(video.video_id, video.label, video.label_name, video.num_frames, video.fps,
                        video.height, video.width)
        )
        self._position += RECORD_HEADER_BYTES + len(data) + RECORD_FOOTER_BYTES

    def _index(self) -> ShardIndex:
        keys = [k for k in STORED_KEYS if any(k in spans for spans in self._frame_spans)]
        empty = np.zeros((0, 2), dtype=np.int64)
        per_key = {k: [spans.get(k, empty) for spans in self._frame_spans] for k in keys}
        return ShardIndex(
            video_id=np.array([v.video_id for v in self._videos], dtype=str),
            label=np.array([v.label for v in self._videos], dtype=np.int64),
            label_name=np.array([v.label_name for v in self._videos], dtype=str),
            num_frames=np.array([v.num_frames for v in self._videos], dtype=np.int64),
            record_offset=np.array([s for s, _ in self._record_spans], dtype=np.int64),
            record_length=np.array([n for _, n in self._record_spans], dtype=np.int64),
            count={k: np.array([len(s) for s in per_key[k]], dtype=np.int64) for k in keys},
            offset={k: np.concatenate([s[:, 0] for s in per_key[k]]) if per_key[k] else empty[:, 0] for k in keys},
            length={k: np.concatenate([s[:, 1] for s in per_key[k]]) if per_key[k] else empty[:, 1] for k in keys},
        )

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


# --- the conversion folder's manifest ---------------------------------------------------------

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "tsn-keras-shards"
MANIFEST_VERSION = 1


def write_manifest(root: str | os.PathLike, manifest: dict) -> Path:
    """Write ``<root>/manifest.json`` atomically (see ``docs/DESIGN.md`` for its fields)."""
    import json

    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **manifest}
    path = Path(root) / MANIFEST_NAME
    _atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return path


def load_manifest(root: str | os.PathLike) -> dict:
    """Read and check ``<root>/manifest.json``; a missing or foreign file is a ``DataError``."""
    import json

    from tsn_keras.errors import DataError

    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{root} is not a converted dataset: {MANIFEST_NAME} not found (run `tsn convert` first)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path} is not a tsn-keras manifest (format {manifest.get('format')!r})")
    for key in ("classes", "splits"):
        if key not in manifest:
            raise DataError(f"{path} has no {key!r} entry")
    return manifest


def split_shards(root: str | os.PathLike, split: str) -> list[Path]:
    """The shard files of ``split`` listed in the manifest of ``root``, checked to exist."""
    from tsn_keras.errors import DataError

    manifest = load_manifest(root)
    if split not in manifest["splits"]:
        raise DataError(f"split {split!r} not in {root}; available splits: {', '.join(manifest['splits'])}")
    shards = [Path(root) / shard["file"] for shard in manifest["splits"][split]["shards"]]
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} shard(s) of split {split!r} are missing, e.g. {missing[0]}")
    return shards
