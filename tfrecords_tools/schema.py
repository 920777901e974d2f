"""The record schema, defined once: what one video looks like inside a shard.

A shard is a TFRecord file of ``tf.train.SequenceExample`` records, one per video:

context (per video)
    ``video_id`` (bytes), ``label`` (int64, 0-based), ``label_name`` (bytes), ``num_frames``
    (int64, RGB frames in the video), ``fps`` (float), ``height`` and ``width`` (int64, of the
    stored frames).
feature lists (per frame, JPEG bytes)
    ``rgb`` (N colour frames), ``flow_x``/``flow_y`` (N-1 TV-L1 fields, each component a
    grayscale JPEG quantised with bound 20), ``warped_flow_x``/``warped_flow_y`` (N-1 warped
    flow fields). Only the modalities that were converted are present.

To know where each JPEG lands (the byte index, ``shards.ShardIndex``), records are serialised
here rather than through the protobuf library. The wire format is plain protobuf (tests parse
it with ``tf.io`` and with ``tf.train.SequenceExample.FromString``), written with a fixed field
order so the same video always gives the same bytes. Nothing here imports TensorFlow: converter
worker processes encode records without loading it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

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

# The split folders of a conversion, in the order they are written.
SPLITS: tuple[str, ...] = ("train", "val", "test")

# The context features of a record and their types (the TensorFlow reader builds its parsing
# spec from this table).
CONTEXT_FEATURES: dict[str, str] = {
    "video_id": "bytes", "label": "int64", "label_name": "bytes", "num_frames": "int64",
    "fps": "float", "height": "int64", "width": "int64",
}


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
