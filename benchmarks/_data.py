"""A small conversion folder for the model benchmarks: real UCF101 frames when present, else noise.

The training and evaluation benchmarks need the project's pipeline in the loop, so they read
real shards (``tsn convert``'s format, with a manifest) rather than arrays. With the shared
UCF101 clips (``TSN_SHARED_DATA``) the frames are decoded, resized to 340x256 and JPEG-encoded
as the converter does; without them (a fresh checkout, CI) the frames are tinted noise of the
same size, which decodes a little slower than real video but gives the same tensor shapes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfrecords_tools.manifest import write_manifest
from tfrecords_tools.schema import VideoRecord
from tfrecords_tools.shards import ShardWriter

SHARED_DATA = Path(os.environ.get("TSN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SIZE = (340, 256)  # the converter's default frame size, [width, height]


def _real_videos(count: int, frames: int) -> list[tuple[str, str, list[bytes]]] | None:
    """``(video_id, class name, JPEG frames)`` of ``count`` UCF101 clips, or ``None`` without them."""
    if not (SHARED_DATA / "UCF-101").is_dir():
        return None
    from benchmarks.bench_pipeline import _clips, _frames

    return [(clip.stem, clip.parent.name, _frames(clip, frames)) for clip in _clips(SHARED_DATA, count)]


def _noise_videos(count: int, frames: int) -> list[tuple[str, str, list[bytes]]]:
    import cv2

    rng = np.random.default_rng(0)
    videos = []
    for v in range(count):
        base = rng.integers(0, 256, (SIZE[1] // 8, SIZE[0] // 8, 3), dtype=np.uint8)
        jpegs = []
        for _ in range(frames):
            image = cv2.resize(base, SIZE, interpolation=cv2.INTER_LINEAR)
            image = np.clip(image.astype(np.int16) + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
            jpegs.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        videos.append((f"v_noise_{v:03d}", f"class{v % 4}", jpegs))
    return videos


def write_conversion(root: str | os.PathLike, videos: int, frames: int = 60, split: str = "test",
                     per_shard: int = 4) -> tuple[Path, bool]:
    """Write ``videos`` videos of ``frames`` frames as one split of a conversion folder at ``root``.

    Returns the folder and whether the frames are real UCF101 frames.
    """
    root = Path(root)
    found = _real_videos(videos, frames)
    real = found is not None
    found = found if real else _noise_videos(videos, frames)
    classes = sorted({name for _, name, _ in found})
    shards = []
    for start in range(0, len(found), per_shard):
        with ShardWriter(root / split / f"{split}-{start // per_shard:05d}.tfrecord") as writer:
            for video_id, name, jpegs in found[start:start + per_shard]:
                writer.write(VideoRecord(video_id, classes.index(name), name, len(jpegs), 25.0, SIZE[1], SIZE[0],
                                         frames={"rgb": jpegs}))
        info = writer.info
        shards.append({"file": f"{split}/{info.file}", "records": info.records, "bytes": info.bytes,
                       "sha256": info.sha256})
    per_class = {name: sum(1 for _, n, _ in found if n == name) for name in classes}
    write_manifest(root, {"classes": classes, "modalities": ["rgb"], "stored_keys": ["rgb"],
                          "frame_size": list(SIZE), "splits": {split: {"videos": len(found), "per_class": per_class,
                                                                        "shards": shards}},
                          "rejects": [], "missing": []})
    return root, real
