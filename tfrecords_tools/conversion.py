"""What a conversion is, whichever runner carries it out: options checked, the dataset planned
(every video's split and write position decided before any video is read), and the manifest
built from the journal's chunks. The local process pool (``convert``) and Apache Beam
(``beam_runner``) both start from ``plan_conversion`` and end with ``finish_conversion``, so
they write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from tfrecords_tools.datasets import FORMATS, make_plan
from tfrecords_tools.errors import ConfigError, DataError
from tfrecords_tools.flow import ALGORITHMS, BOUND
from tfrecords_tools.flow_engines import resolve_engine
from tfrecords_tools.manifest import write_manifest
from tfrecords_tools.plan import DatasetPlan, VideoEntry
from tfrecords_tools.schema import CONVERTED_KEYS, SPLITS
from tfrecords_tools.worker import VideoResult, VideoSettings


def _check_options(format, modalities, flow, frame_size, short_side, shard_size_mb, jpeg_quality, workers):
    if format not in FORMATS:
        raise ConfigError(f"format {format!r} is not supported; choose one of {', '.join(FORMATS)}")
    unknown = [m for m in modalities if m not in CONVERTED_KEYS]
    if unknown or not modalities:
        raise ConfigError(f"modalities {list(modalities)!r}: choose one or more of {', '.join(CONVERTED_KEYS)}")
    if flow not in ALGORITHMS:
        raise ConfigError(f"flow {flow!r} is not supported; choose one of {', '.join(ALGORITHMS)}")
    if frame_size is not None and (len(frame_size) != 2 or min(int(v) for v in frame_size) < 1):
        raise ConfigError(f"frame_size must be (width, height) with positive values, got {frame_size!r}")
    if short_side is not None and int(short_side) < 1:
        raise ConfigError(f"short_side must be a positive number of pixels, got {short_side!r}")
    if not shard_size_mb > 0:
        raise ConfigError(f"shard_size_mb must be positive, got {shard_size_mb!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ConfigError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}")
    if int(workers) < 1:
        raise ConfigError(f"workers must be at least 1, got {workers!r}")


def shard_file(split: str, number: int) -> str:
    """A shard's path relative to the output folder."""
    return f"{split}/{split}-{number:05d}.tfrecord"


def _write_order(plan: DatasetPlan, seed: int) -> dict[str, list[VideoEntry]]:
    ordered = {}
    names = [s for s in SPLITS if s in plan.splits] + [s for s in plan.splits if s not in SPLITS]
    for name in names:
        entries = plan.splits[name]
        if name == "train":
            permutation = np.random.default_rng(seed).permutation(len(entries))
            entries = [entries[i] for i in permutation]
        ordered[name] = entries
    return ordered


def _fingerprint(classes: list[str], order: dict[str, list[VideoEntry]]) -> str:
    digest = hashlib.sha256(json.dumps(classes).encode())
    for name, entries in order.items():
        for e in entries:
            digest.update(json.dumps([name, e.rel, e.video_id, e.label]).encode())
    return digest.hexdigest()


def video_outcome(result: VideoResult) -> dict:
    """What the journal keeps of one converted video: ``video`` (shard still ``None``), ``reject`` and
    ``truncated`` entries (``None`` when not applicable). Shared by the local and the Beam runner."""
    entry = result.entry
    if result.record is None:
        return {"video": None, "reject": {"path": entry.rel, "split": entry.split, "reason": result.reason},
                "truncated": None}
    info = {"id": entry.video_id, "label": entry.label, "frames": result.frames, "shard": None, "path": entry.rel}
    if entry.original_label is not None:
        info["original_label"] = entry.original_label
    if result.warp_fields:
        info["warp_fallbacks"] = result.warp_fallbacks
    truncated = None
    if result.truncated:
        truncated = {"path": entry.rel, "split": entry.split, "decoded": result.frames,
                     "declared": result.declared_frames}
    return {"video": info, "reject": None, "truncated": truncated}


@dataclass
class Conversion:
    """What a conversion will do, decided before any video is read; both runners start from it."""

    plan: DatasetPlan
    order: dict[str, list[VideoEntry]]  # per split, in write order (train: seeded permutation)
    settings: VideoSettings
    options: dict  # the options that change the output (journal header, manifest)
    target_bytes: int  # a shard closes once it holds this many bytes

    @property
    def header(self) -> dict:
        """The journal header: a resumed run must match it."""
        return {"options": self.options, "inputs": _fingerprint(self.plan.classes, self.order),
                "splits": list(self.order)}


def plan_conversion(source: str | os.PathLike, *, format: str = "folder", split: int = 1,
                    lists: dict[str, str | os.PathLike] | None = None, classes_file: str | os.PathLike | None = None,
                    val_fraction: float = 0.0, seed: int = 0, modalities: Iterable[str] = ("rgb",),
                    flow: str = "tvl1", flow_engine: str = "auto", frame_size: tuple[int, int] | None = (340, 256),
                    short_side: int | None = None, shard_size_mb: float = 200.0, jpeg_quality: int = 90,
                    workers: int = 1, present_classes_only: bool = False,
                    annotations: str | os.PathLike | None = None, test_fraction: float = 0.0,
                    group_by: str = "none") -> Conversion:
    """Check the options and parse the dataset (arguments as in :func:`convert_dataset`)."""
    modalities = tuple(modalities)
    _check_options(format, modalities, flow, frame_size, short_side, shard_size_mb, jpeg_quality, workers)
    frame_size = None if short_side is not None or frame_size is None else (int(frame_size[0]), int(frame_size[1]))
    plan = make_plan(format, source, split=split, lists=lists, classes_file=classes_file, annotations=annotations,
                     val_fraction=val_fraction, seed=seed, present_classes_only=present_classes_only,
                     test_fraction=test_fraction, group_by=group_by)
    needs_flow = "flow" in modalities or "warped_flow" in modalities
    try:
        engine = resolve_engine(flow, flow_engine)
    except ValueError as err:
        raise ConfigError(f"flow_engine: {err}") from None
    settings = VideoSettings(modalities=modalities, flow=flow, flow_engine=engine, frame_size=frame_size,
                             short_side=None if short_side is None else int(short_side),
                             jpeg_quality=int(jpeg_quality))
    options = {
        "format": format, "split": split if format in ("ucf101", "hmdb51") else None,
        "val_fraction": val_fraction, "seed": seed, "modalities": list(modalities),
        "flow": flow if needs_flow else None, "flow_engine": engine if needs_flow else None,
        "frame_size": list(frame_size) if frame_size else None,
        "short_side": settings.short_side, "shard_size_mb": shard_size_mb, "jpeg_quality": settings.jpeg_quality,
        "present_classes_only": present_classes_only,
        # None when unused, so that conversions journalled before these options existed still resume
        "test_fraction": test_fraction or None, "group_by": None if group_by == "none" else group_by,
    }
    return Conversion(plan, _write_order(plan, seed), settings, options, int(shard_size_mb * 1024 * 1024))


def finish_conversion(out: str | os.PathLike, conversion: Conversion, chunks: list[dict], strict: bool = False) -> dict:
    """Write ``manifest.json`` from the journal's chunks and return it; ``strict`` raises on rejects/missing."""
    manifest = build_manifest(conversion.plan, conversion.order, chunks, conversion.options, conversion.settings)
    write_manifest(out, manifest)
    error = strict_error(manifest, out)
    if strict and error is not None:
        raise error
    return manifest


def strict_error(manifest: dict, out: str | os.PathLike) -> DataError | None:
    """The error ``strict`` raises when videos were rejected or missing, else ``None``."""
    if not (manifest["rejects"] or manifest["missing"]):
        return None
    first = (manifest["rejects"] or manifest["missing"])[0]
    return DataError(f"strict: {len(manifest['rejects'])} video(s) rejected and {len(manifest['missing'])} "
                     f"missing (first: {first['path']}: {first.get('reason', 'not on disk')}); "
                     f"details in {os.fspath(out).rstrip('/')}/manifest.json")


def _frame_stats(frames: list[int]) -> dict:
    if not frames:
        return {"total": 0, "min": 0, "max": 0, "mean": 0.0}
    return {"total": int(sum(frames)), "min": int(min(frames)), "max": int(max(frames)),
            "mean": round(float(np.mean(frames)), 1)}


def build_manifest(plan: DatasetPlan, order: dict[str, list[VideoEntry]], chunks: list[dict], options: dict,
                   settings: VideoSettings) -> dict:
    """The manifest (``docs/DESIGN.md``) from the journal's chunks: deterministic, no timings."""
    splits, videos, rejects, truncated = {}, {}, list(plan.rejects), []
    warp = {"fields": 0, "fallbacks": 0}
    for name in order:
        mine = [c for c in chunks if c["split"] == name]
        split_videos = [v for c in mine for v in c["videos"]]
        per_class = dict.fromkeys(plan.classes, 0)
        for video in split_videos:
            per_class[plan.classes[video["label"]]] += 1
        splits[name] = {
            "videos": len(split_videos),
            "per_class": per_class,
            "frames": _frame_stats([v["frames"] for v in split_videos]),
            "shards": [c["shard"] for c in mine if c["shard"] is not None],
        }
        videos[name] = split_videos
        rejects.extend(r for c in mine for r in c["rejects"])
        truncated.extend(t for c in mine for t in c["truncated"])
        if "warped_flow" in settings.modalities:
            warp["fields"] += sum(v["frames"] - 1 for v in split_videos)
            warp["fallbacks"] += sum(v.get("warp_fallbacks", 0) for v in split_videos)
    stored = [key for m in CONVERTED_KEYS if m in settings.modalities for key in CONVERTED_KEYS[m]]
    manifest = {
        "library_version": _library_version(),
        "classes": list(plan.classes),
        "modalities": [m for m in CONVERTED_KEYS if m in settings.modalities],
        "stored_keys": stored,
        "frame_size": list(settings.frame_size) if settings.frame_size else None,
        "short_side": settings.short_side,
        "options": dict(options, quantization_bound=BOUND),
        "splits": splits,
        "videos": videos,
        "rejects": rejects,
        "missing": list(plan.missing),
        "truncated": truncated,
    }
    if "warped_flow" in settings.modalities:
        manifest["warped_flow"] = {**warp, "rule": "homography from ORB + flow matches with RANSAC; plain flow "
                                               "when <= 50 matches or <= 25 inliers"}
    if plan.dropped_classes:
        manifest["dropped_classes"] = plan.dropped_classes
    return manifest


def summary_line(manifest: dict, out: str | os.PathLike) -> str:
    """One line for the end of a run: videos, shards, rejects and missing files."""
    splits = manifest["splits"]
    videos = sum(s["videos"] for s in splits.values())
    shards = sum(len(s["shards"]) for s in splits.values())
    per_split = ", ".join(f"{name} {s['videos']}" for name, s in splits.items())
    line = (f"converted {videos} videos ({per_split}) into {shards} shards in {out}; "
            f"{len(manifest['rejects'])} rejected, {len(manifest['missing'])} missing")
    if manifest.get("truncated"):
        line += ", " + truncation_note(manifest["truncated"])
    if manifest["rejects"] or manifest["missing"] or manifest.get("truncated"):
        line += f" (details in {Path(out) / 'manifest.json'})"
    return line


def truncation_note(truncated: list[dict]) -> str:
    """What "truncated" means and how much: decoded vs declared frames of the videos kept.

    AVI headers often declare more frames than the stream holds (every JHMDB clip declares
    48 and decodes 40); such a video is complete as far as anyone can decode it, so the note
    says how much is missing rather than sounding like damage.
    """
    shares = [t["decoded"] / t["declared"] for t in truncated if t.get("declared")]
    missing = sum(t["declared"] - t["decoded"] for t in truncated if t.get("declared"))
    low = min(shares) if shares else 1.0
    return (f"{len(truncated)} kept with fewer frames than their file header declares ({missing} frames in all; "
            f"at least {low:.0%} of the declared frames decoded; usually a header that over-counts, harmless)")


def _library_version() -> str:
    """The installed tsn-keras version (one distribution ships both packages; ``tsn_keras.version``
    defines it, read here from the installed metadata so this layer does not import ``tsn_keras``)."""
    try:
        return metadata.version("tsn-keras")
    except metadata.PackageNotFoundError:
        return "unknown"
