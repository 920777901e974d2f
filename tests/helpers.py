"""Test helpers: build a valid conversion folder without videos (direct JPEG frames -> shards).

The frames are coloured noise with a class-dependent tint and flow fields that are a constant
shift, so that content is checkable. End-to-end tests go through the real converter instead.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tfrecords_tools.manifest import write_manifest
from tfrecords_tools.schema import VideoRecord
from tfrecords_tools.shards import ShardWriter


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def quantise_flow(value: float, bound: float = 20.0) -> int:
    return int(np.clip(np.round(255.0 * (value + bound) / (2 * bound)), 0, 255))


def make_video(video_id: str, label: int, label_name: str, num_frames: int, size=(64, 48),
               flow=(3.0, -2.0), rng=None) -> VideoRecord:
    """A video whose RGB frames are tinted by label and whose flow is a constant (dx, dy)."""
    rng = rng or np.random.default_rng(0)
    w, h = size
    tint = np.array([(37 * label) % 256, (91 * label + 40) % 256, (150 + 53 * label) % 256], np.uint8)
    rgb = []
    for i in range(num_frames):
        img = (rng.integers(0, 60, (h, w, 3)) + tint // 2).astype(np.uint8)
        img[: 4, : 4] = i % 256  # frame number in a corner, to check which frame was read
        rgb.append(jpeg(img))
    qx = np.full((h, w), quantise_flow(flow[0]), np.uint8)
    qy = np.full((h, w), quantise_flow(flow[1]), np.uint8)
    flow_x = [jpeg(qx)] * max(num_frames - 1, 0)
    flow_y = [jpeg(qy)] * max(num_frames - 1, 0)
    return VideoRecord(video_id, label, label_name, num_frames, 25.0, h, w,
                       frames={"rgb": rgb, "flow_x": flow_x, "flow_y": flow_y,
                               "warped_flow_x": flow_x, "warped_flow_y": flow_y})


def write_shards(root: Path, num_classes: int = 4, videos_per_class: dict | None = None,
                 num_frames=(12, 30), videos_per_shard: int = 5, size=(64, 48), seed: int = 0) -> Path:
    """Write ``root/<split>/*.tfrecord`` (+ index) and ``root/manifest.json``."""
    videos_per_class = videos_per_class or {"train": 4, "val": 2, "test": 2}
    rng = np.random.default_rng(seed)
    classes = [f"class{c}" for c in range(num_classes)]
    splits = {}
    for split, per_class in videos_per_class.items():
        videos = [
            make_video(f"{split}_{c}_{i}", c, classes[c], int(rng.integers(num_frames[0], num_frames[1] + 1)),
                       size=size, rng=rng)
            for c in range(num_classes) for i in range(per_class)
        ]
        shards = []
        for s in range(0, len(videos), videos_per_shard):
            with ShardWriter(root / split / f"{split}-{s // videos_per_shard:05d}.tfrecord") as writer:
                for video in videos[s: s + videos_per_shard]:
                    writer.write(video)
            info = writer.info
            shards.append({"file": f"{split}/{info.file}", "records": info.records, "bytes": info.bytes,
                           "sha256": info.sha256})
        splits[split] = {
            "videos": len(videos),
            "per_class": {name: per_class for name in classes},
            "shards": shards,
        }
    write_manifest(root, {
        "classes": classes,
        "modalities": ["rgb", "flow", "warped_flow"],
        "stored_keys": ["rgb", "flow_x", "flow_y", "warped_flow_x", "warped_flow_y"],
        "frame_size": list(size),
        "splits": splits,
        "rejects": [],
        "missing": [],
    })
    return root


def dataset(source, **options):
    """``make_dataset`` with the clip's and the reader's options in one keyword list (tests only):
    the ``ClipSpec`` fields go into the spec, the rest to ``make_dataset``."""
    import dataclasses

    from tsn_keras.data.clips import ClipSpec
    from tsn_keras.data.pipeline import make_dataset

    clip_fields = {f.name for f in dataclasses.fields(ClipSpec)}
    clip = {k: v for k, v in options.items() if k in clip_fields}
    clip.setdefault("modality", "rgb")
    return make_dataset(source, ClipSpec(**clip), **{k: v for k, v in options.items() if k not in clip_fields})
