"""`tsn inspect`: summarise a conversion folder, verify every shard, draw a contact sheet.

Verification reads every byte: each shard's size and sha256 against the manifest, every
record through TensorFlow's TFRecord reader (which checks the CRCs) and protobuf, record
counts and video ids against the manifest, frame counts against the schema (``N`` RGB frames,
``N-1`` flow fields), and the byte index against the file (every record and JPEG span must
hold exactly the bytes the parser returns).
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

import numpy as np

from tfrecords_tools.errors import DataError
from tfrecords_tools.flow import dequantize_flow, flow_to_color
from tfrecords_tools.manifest import load_manifest, shard_path
from tfrecords_tools.shards import (
    RECORD_FOOTER_BYTES,
    RECORD_HEADER_BYTES,
    SHARD_SUFFIX,
    ShardIndex,
    index_path,
    sha256_file,
)
from tfrecords_tools.video import decode_jpeg

_FLOW_ROWS = (("flow", "flow_x", "flow_y"), ("warped flow", "warped_flow_x", "warped_flow_y"))


def summarize(manifest: dict, root: str | os.PathLike = "") -> str:
    """A human-readable summary of a manifest: classes, splits, frames, rejects and missing videos."""
    size = (f"{manifest['frame_size'][0]}x{manifest['frame_size'][1]}" if manifest.get("frame_size")
            else f"short side {manifest['short_side']}" if manifest.get("short_side") else "original size")
    options = manifest.get("options", {})
    flow = f", flow {options['flow']}" if options.get("flow") else ""
    if options.get("flow_engine"):
        flow += f" ({options['flow_engine']} engine)"
    lines = [f"{root}: {len(manifest['classes'])} classes, modalities {', '.join(manifest.get('modalities', []))}"
             f"{flow}, frames {size}, tsn-keras {manifest.get('library_version', '?')}",
             f"  {'split':<8}{'videos':>8}{'shards':>8}{'MB':>10}   frames min / mean / max"]
    for name, split in manifest["splits"].items():
        frames = split.get("frames", {})
        megabytes = sum(s["bytes"] for s in split["shards"]) / 2**20
        lines.append(f"  {name:<8}{split['videos']:>8}{len(split['shards']):>8}{megabytes:>10.1f}   "
                     f"{frames.get('min', '-')} / {frames.get('mean', '-')} / {frames.get('max', '-')}")
    split_names = list(manifest["splits"])
    if len(manifest["classes"]) <= 30:
        lines.append("  per class: " + " / ".join(split_names))
        for name in manifest["classes"]:
            counts = " / ".join(str(manifest["splits"][s]["per_class"].get(name, 0)) for s in split_names)
            lines.append(f"    {name:<28}{counts}")
    else:
        for s in split_names:
            counts = list(manifest["splits"][s]["per_class"].values())
            lines.append(f"  {s}: {min(counts)}..{max(counts)} videos per class")
    for key, what in (("rejects", "rejected"), ("missing", "missing (listed, not on disk)"),
                      ("truncated", "kept with fewer frames than the file header declares")):
        items = manifest.get(key, [])
        lines.append(f"  {len(items)} {what}")
        for item in items[:5]:
            detail = item.get("reason") or (f"{item['decoded']} of {item['declared']} frames" if "decoded" in item else "")
            lines.append(f"    {item['path']} ({item.get('split') or 'all splits'})" + (f": {detail}" if detail else ""))
        if len(items) > 5:
            lines.append(f"    ... and {len(items) - 5} more in manifest.json")
    if manifest.get("dropped_classes"):
        lines.append(f"  {len(manifest['dropped_classes'])} listed classes had no video on disk and were dropped")
    if "warped_flow" in manifest:
        warp = manifest["warped_flow"]
        share = warp["fallbacks"] / warp["fields"] if warp["fields"] else 0.0
        lines.append(f"  warped flow: {warp['fallbacks']} of {warp['fields']} fields fell back to plain flow ({share:.1%})")
    return "\n".join(lines)


def _record_spans(data: mmap.mmap | bytes) -> list[tuple[int, int]]:
    """(offset, length) of each record's data, walking the TFRecord framing."""
    spans, position = [], 0
    while position < len(data):
        if position + RECORD_HEADER_BYTES > len(data):
            raise ValueError(f"truncated record header at byte {position}")
        (length,) = struct.unpack_from("<Q", data, position)
        start = position + RECORD_HEADER_BYTES
        position = start + length + RECORD_FOOTER_BYTES
        if position > len(data):
            raise ValueError(f"record at byte {start} runs past the end of the file")
        spans.append((start, length))
    return spans


def verify_shard(root: Path, shard: dict, manifest: dict) -> tuple[list[str], int]:
    """Problems found in one shard of the manifest, and the number of records read."""
    import tensorflow as tf

    path = shard_path(root, shard["file"])
    name = shard["file"]
    if not path.is_file():
        return [f"{name}: missing"], 0
    problems = []
    if path.stat().st_size != shard["bytes"]:
        problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
    if sha256_file(path) != shard["sha256"]:
        problems.append(f"{name}: sha256 differs from the manifest (file changed or corrupted)")
    try:
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    except tf.errors.OpError as err:
        return [*problems, f"{name}: unreadable TFRecord ({err.message.splitlines()[0]})"], 0
    if len(records) != shard["records"]:
        problems.append(f"{name}: {len(records)} records, manifest says {shard['records']}")
    split = shard["file"].split("/")[0]
    expected_ids = [v["id"] for v in manifest.get("videos", {}).get(split, []) if v.get("shard") == shard["file"]]
    stored_keys = manifest.get("stored_keys", [])
    parsed = []
    for i, record in enumerate(records):
        try:
            example = tf.train.SequenceExample.FromString(record)
        except Exception as err:  # protobuf's DecodeError
            problems.append(f"{name}: record {i} is not a SequenceExample ({err})")
            continue
        context = example.context.feature
        video_id = context["video_id"].bytes_list.value[0].decode() if "video_id" in context else "?"
        frames = int(context["num_frames"].int64_list.value[0]) if "num_frames" in context else -1
        lists = {k: list(example.feature_lists.feature_list[k].feature) for k in example.feature_lists.feature_list}
        if sorted(lists) != sorted(stored_keys):
            problems.append(f"{name}: {video_id} stores {sorted(lists)}, manifest says {sorted(stored_keys)}")
        for key, items in lists.items():
            want = frames if key == "rgb" else frames - 1
            if len(items) != want:
                problems.append(f"{name}: {video_id} has {len(items)} {key} frames for num_frames={frames}")
        parsed.append((video_id, {k: [f.bytes_list.value[0] for f in v] for k, v in lists.items()}))
    if expected_ids and [p[0] for p in parsed] != expected_ids:
        problems.append(f"{name}: video ids differ from the manifest's list for this shard")
    problems += _verify_index(path, name, records, parsed)
    return problems, len(records)


def _verify_index(path: Path, name: str, records: list[bytes], parsed: list) -> list[str]:
    index_file = index_path(path)
    if not index_file.is_file():
        return [f"{name}: byte index {index_file.name} missing"]
    try:
        index = ShardIndex.load(index_file)
    except DataError as err:
        return [f"{name}: byte index unreadable ({err})"]
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            spans = _record_spans(data)
        except ValueError as err:
            return [f"{name}: {err}"]
        if index.num_videos != len(spans):
            return [f"{name}: index lists {index.num_videos} records, file holds {len(spans)}"]
        for i, (start, length) in enumerate(spans):
            if (index.record_offset[i], index.record_length[i]) != (start, length) or data[start:start + length] != records[i]:
                return [f"{name}: index entry of record {i} does not point at it"]
        for i, (video_id, frames) in enumerate(parsed):
            if str(index.video_id[i]) != video_id:
                return [f"{name}: index names record {i} {index.video_id[i]!r}, the record says {video_id!r}"]
            for key, jpegs in frames.items():
                if key not in index.count or index.count[key][i] != len(jpegs):
                    return [f"{name}: index frame count of {key} in {video_id} does not match the record"]
                first = index.start(key)[i]
                for j, jpeg in enumerate(jpegs):
                    offset, length = index.offset[key][first + j], index.length[key][first + j]
                    if data[offset:offset + length] != jpeg:
                        return [f"{name}: index span of {key}[{j}] in {video_id} does not hold that JPEG"]
    return []


def verify(root: str | os.PathLike, progress: bool = True) -> tuple[list[str], int, int]:
    """Verify every shard of a conversion folder: ``(problems, shards checked, records read)``."""
    from tqdm import tqdm

    root = Path(root)
    manifest = load_manifest(root)
    shards = [s for split in manifest["splits"].values() for s in split["shards"]]
    problems, records = [], 0
    for name, split in manifest["splits"].items():
        listed = {s["file"] for s in split["shards"]}
        on_disk = {f"{name}/{p.name}" for p in (root / name).glob(f"*{SHARD_SUFFIX}")} if (root / name).is_dir() else set()
        problems += [f"{f}: on disk but not in the manifest" for f in sorted(on_disk - listed)]
        counted = sum(s["records"] for s in split["shards"])
        if counted != split["videos"]:
            problems.append(f"split {name}: shards hold {counted} records, manifest counts {split['videos']} videos")
    for shard in tqdm(shards, desc="verify", unit="shard", disable=not progress):
        found, count = verify_shard(root, shard, manifest)
        problems += found
        records += count
    return problems, len(shards), records


def _read_frames(path: Path, index: ShardIndex, key: str, video: int, positions: list[int]) -> list[bytes]:
    first = index.start(key)[video]
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return [bytes(data[index.offset[key][first + p]: index.offset[key][first + p] + index.length[key][first + p]])
                for p in positions]


def _videos(root: Path, manifest: dict) -> dict[str, list[dict]]:
    """The manifest's per-split video lists, or the same read from the byte indexes if it has none."""
    if "videos" in manifest:
        return manifest["videos"]
    videos = {}
    for name, split in manifest["splits"].items():
        videos[name] = []
        for shard in split["shards"]:
            index = ShardIndex.load(index_path(shard_path(root, shard["file"])))
            videos[name] += [{"id": str(v), "label": int(label), "frames": int(frames), "shard": shard["file"]}
                             for v, label, frames in zip(index.video_id, index.label, index.num_frames)]
    return videos


def contact_sheet(root: str | os.PathLike, output: str | os.PathLike, videos: int = 4, frames: int = 6) -> Path:
    """Write a PNG of a few videos: RGB frames and colour-coded flow (hue = direction, brightness = speed).

    Videos are taken one class after another from the first split, ``frames`` evenly spaced
    positions each.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    manifest = load_manifest(root)
    split_videos = next((v for v in _videos(root, manifest).values() if v), [])
    first_of_class: dict[int, dict] = {}
    for video in split_videos:
        first_of_class.setdefault(video["label"], video)
    chosen = list(first_of_class.values())[:videos]
    chosen += [v for v in split_videos if v not in chosen][: videos - len(chosen)]
    if not chosen:
        raise DataError(f"{root} holds no converted video to draw")
    keys = manifest.get("stored_keys", [])
    rows_per_video = [("RGB", "rgb", None)] if "rgb" in keys else []
    rows_per_video += [(title, kx, ky) for title, kx, ky in _FLOW_ROWS if kx in keys]
    n_rows = len(chosen) * len(rows_per_video)
    figure, axes = plt.subplots(n_rows, frames, figsize=(1.9 * frames, 1.6 * n_rows), squeeze=False)
    row = 0
    for video in chosen:
        path = root / video["shard"]
        index = ShardIndex.load(index_path(path))
        i = int(np.flatnonzero(index.video_id == video["id"])[0])
        last = max(video["frames"] - 2, 0)
        positions = sorted(set(np.linspace(0, last, frames).round().astype(int).tolist()))
        for title, key, key_y in rows_per_video:
            if key_y is None:
                images = [decode_jpeg(b)[..., ::-1] for b in _read_frames(path, index, key, i, positions)]
            else:
                xs = _read_frames(path, index, key, i, positions)
                ys = _read_frames(path, index, key_y, i, positions)
                images = [flow_to_color(dequantize_flow(decode_jpeg(x, True)), dequantize_flow(decode_jpeg(y, True)))
                          for x, y in zip(xs, ys)]
            for col in range(frames):
                axis = axes[row, col]
                axis.axis("off")
                if col < len(images):
                    axis.imshow(images[col])
                    axis.set_title(f"{title} {positions[col]}", fontsize=7)
            axes[row, 0].text(-0.08, 0.5, f"{video['id']}\n{manifest['classes'][video['label']]}\n{title}",
                              transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=7)
            row += 1
    figure.suptitle(f"{root.name}: RGB frames and optical flow (hue = direction, brightness = speed)", fontsize=9)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return output
