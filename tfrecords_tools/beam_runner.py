"""`tsn convert --runner beam`: the same conversion as an Apache Beam pipeline.

Beam runs it on one machine (DirectRunner, ``--direct_running_mode=multi_processing``) or on
a cluster (Dataflow, Flink, Spark). The output is the local runner's, byte for byte: the same
shards, byte indexes, checksums, journal and ``manifest.json``. How:

1. Before the pipeline, :func:`tfrecords_tools.convert.plan_conversion` fixes every video's
   split and position (the train split's seeded order); the list of videos still to do is
   written to ``tasks.jsonl`` in a work folder (a file, not ``beam.Create``: a Kinetics plan
   would exceed a cluster runner's job-graph size limit).
2. ``_ConvertVideo`` (any worker, any order) converts a video with the TensorFlow-free
   :class:`tfrecords_tools.worker.VideoConverter` and writes the framed TFRecord bytes plus a
   small sidecar (size, JPEG offsets) to the work folder; only the sidecar's summary travels
   through the pipeline, so the shuffle carries bytes per video, not megabytes.
3. Per split, :func:`plan_chunks` cuts the videos, in plan order, into shards with the local
   runner's rule (a shard closes once it reaches ``shard_size_mb``). Shard sizes are only known
   after encoding, so this is the one step that sees all of a split's summaries; it depends on
   the plan and the encoded sizes, never on scheduling.
4. ``_WriteShard`` concatenates each shard's records, writes its index and reports its
   sha256; the driver then appends the chunks to the journal in order and writes the manifest.

Re-running continues: videos whose work files exist are not converted again, shards already
complete (size and index present) are not rewritten, and shards the journal lists are skipped
as in the local runner. All I/O of the output goes through Beam's ``FileSystems``, so videos,
work files, shards and the manifest may be on ``gs://`` and the like. The journal (and its lock)
is the driver's: inside a local output folder, or, for a remote one, in a local state folder
(``state_folder``, default ``~/.cache/tsn-keras/beam-journals/<hash of OUT>``) that a rerun
from the same machine resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import struct
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import apache_beam as beam
import google_crc32c
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from tfrecords_tools import beam_files as files
from tfrecords_tools.conversion import (
    Conversion,
    build_manifest,
    finish_conversion,
    plan_conversion,
    shard_file,
    strict_error,
    video_outcome,
)
from tfrecords_tools.errors import ConfigError
from tfrecords_tools.journal import Journal
from tfrecords_tools.manifest import MANIFEST_NAME, manifest_bytes
from tfrecords_tools.plan import VideoEntry
from tfrecords_tools.schema import encode_video
from tfrecords_tools.shards import (
    INDEX_SUFFIX,
    RECORD_FOOTER_BYTES,
    RECORD_HEADER_BYTES,
    ShardIndex,
    assemble_index,
    jpeg_crcs,
)
from tfrecords_tools.worker import VideoSettings

WORK_DIR = ".beam-work"


def _masked_crc32c(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame_record(data: bytes) -> bytes:
    """``data`` as one TFRecord: length, masked CRC-32C of the length, data, masked CRC-32C of the data
    (the bytes ``tf.io.TFRecordWriter`` writes, without importing TensorFlow in the workers)."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc32c(length) + data + _masked_crc32c(data)


def pipeline_options(beam_options: str | Sequence[str] | None):
    """``PipelineOptions`` from a command-line string (or list); an unknown flag is a ``ConfigError``.

    Beam itself only logs and drops flags it does not know: a mistyped ``--direct_num_workers``
    would silently run on one worker.
    """
    flags = shlex.split(beam_options) if isinstance(beam_options, str) else list(beam_options or ())
    try:
        options = PipelineOptions(flags)
        unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options()))
    except SystemExit:  # argparse's reaction to a bad value, e.g. --direct_num_workers=two
        raise ConfigError(f"--beam-options {shlex.join(flags)!r}: invalid value (see the Beam message above)") from None
    if unknown:
        raise ConfigError(f"--beam-options: unknown Beam option(s) {', '.join('--' + u for u in unknown)}")
    return options


# --- the work folder --------------------------------------------------------------------

def _video_files(work: str, split: str, position: int) -> tuple[str, str]:
    stem = files.join(work, "videos", split, f"{position:09d}")
    return f"{stem}.rec", f"{stem}.json"


def _task(entry: VideoEntry, label_name: str, position: int) -> str:
    return json.dumps({"position": position, "label_name": label_name, "path": entry.path, "rel": entry.rel,
                       "video_id": entry.video_id, "label": entry.label, "split": entry.split,
                       "original_label": entry.original_label})


# --- pipeline steps -----------------------------------------------------------------------

class _ConvertVideo(beam.DoFn):
    """One task line -> the video's summary (conversion skipped when its work files exist)."""

    def __init__(self, settings: VideoSettings, work: str):
        super().__init__()
        self.settings, self.work = settings, work
        self.converter = None

    def setup(self) -> None:
        import cv2

        from tfrecords_tools.worker import VideoConverter

        cv2.setNumThreads(1)  # parallelism comes from the runner's workers, as in the local pool
        self.converter = VideoConverter(self.settings)

    def process(self, line: str) -> Iterable[tuple[str, dict]]:
        task = json.loads(line)
        label_name, position = task.pop("label_name"), task.pop("position")
        entry = VideoEntry(**task)
        record_path, meta_path = _video_files(self.work, entry.split, position)
        if files.exists(meta_path):
            try:
                yield entry.split, json.loads(files.read(meta_path))["summary"]
                return
            except ValueError:  # a torn sidecar: convert again
                pass
        result = self._convert(entry, label_name)
        summary = {"position": position, "size": 0, **video_outcome(result)}
        meta = {"summary": summary}
        if result.record is not None:
            data, offsets = encode_video(result.record)
            framed = frame_record(data)
            summary["size"] = len(framed)
            record = result.record
            meta["index"] = {"context": [record.video_id, record.label, record.label_name, record.num_frames],
                             "length": len(data), "offsets": {k: v.tolist() for k, v in offsets.items()},
                             "crc32": {k: v.tolist() for k, v in jpeg_crcs(record.frames).items()}}
            files.write_atomic(record_path, framed)
        files.write_atomic(meta_path, json.dumps(meta).encode())  # last: its presence marks the video done
        yield entry.split, summary

    def _convert(self, entry: VideoEntry, label_name: str):
        if "://" not in entry.path:
            return self.converter(entry, label_name)
        # OpenCV reads local files only: copy a remote video to a temporary file first.
        suffix = Path(entry.rel).suffix
        with tempfile.NamedTemporaryFile(suffix=suffix) as local:
            with FileSystems.open(entry.path) as remote:
                shutil.copyfileobj(remote, local)
            local.flush()
            result = self.converter(VideoEntry(local.name, entry.rel, entry.video_id, entry.label, entry.split,
                                               entry.original_label), label_name)
        result.entry = entry
        return result


def plan_chunks(split: str, summaries: Iterable[dict], start: int, shard_number: int, target_bytes: int) -> list[dict]:
    """Cut one split's video summaries (any order; positions ``start..``) into journal chunks.

    The local runner's rule (``_SplitWriter``): videos go to the open shard in plan order, a shard
    closes once it holds ``target_bytes`` (TFRecord framing included), rejects ride with the next
    chunk and a split ends with a chunk of only rejects if some are left. Each chunk's ``shard``
    is ``None`` or ``{"number", "members" (positions), "bytes"}``, replaced by the file, count,
    size and checksum once written.
    """
    ordered = sorted(summaries, key=lambda s: s["position"])
    positions = [s["position"] for s in ordered]
    if positions != list(range(start, start + len(ordered))):
        raise RuntimeError(f"split {split}: video summaries are not positions {start}.. ({positions[:5]}...)")
    chunks: list[dict] = []
    state = {"members": [], "bytes": 0, "number": shard_number, "position": start}
    pending: dict[str, list] = {"videos": [], "rejects": [], "truncated": []}

    def close() -> None:
        nonlocal pending
        shard = None
        if state["members"]:
            shard = {"number": state["number"], "members": state["members"], "bytes": state["bytes"]}
            state.update(members=[], bytes=0, number=state["number"] + 1)
        if shard is None and not pending["rejects"]:
            return
        chunks.append({"split": split, "end": state["position"], "shard": shard, **pending})
        pending = {"videos": [], "rejects": [], "truncated": []}

    for summary in ordered:
        state["position"] += 1
        if summary["reject"] is not None:
            pending["rejects"].append(summary["reject"])
            continue
        state["members"].append(summary["position"])
        pending["videos"].append(dict(summary["video"], shard=shard_file(split, state["number"])))
        if summary["truncated"] is not None:
            pending["truncated"].append(summary["truncated"])
        state["bytes"] += summary["size"]
        if state["bytes"] >= target_bytes:
            close()
    close()
    return chunks


def _shard_index(metas: list[dict]) -> ShardIndex:
    """The index ``ShardWriter`` would write for these records, from their sidecars."""
    record_spans, spans, position = [], [], 0
    for meta in metas:
        start = position + RECORD_HEADER_BYTES
        record_spans.append((start, meta["length"]))
        spans.append({k: np.asarray(v, dtype=np.int64).reshape(-1, 2) + np.array([start, 0])
                      for k, v in meta["offsets"].items()})
        position = start + meta["length"] + RECORD_FOOTER_BYTES
    # A sidecar written before per-JPEG checksums has none: its frames are then read unchecked.
    crcs = [{k: np.asarray(v, dtype=np.uint32) for k, v in meta.get("crc32", {}).items()} for meta in metas]
    return assemble_index([tuple(m["context"]) for m in metas], record_spans, spans, crcs)


class _WriteShard(beam.DoFn):
    """One planned chunk -> its shard, index and chunk file (kept if already complete)."""

    def __init__(self, out: str, work: str):
        super().__init__()
        self.out, self.work = out, work

    def process(self, chunk: dict) -> Iterable[str]:
        chunk_path = files.join(self.work, "chunks", chunk["split"], f"{chunk['end']:09d}.json")
        shard = chunk["shard"]
        if shard is not None:
            path = files.join(self.out, shard_file(chunk["split"], shard["number"]))
            if not self._complete(path, shard["bytes"]):
                self._write(chunk["split"], shard["members"], path)
            digest = hashlib.sha256()
            with FileSystems.open(path) as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
            chunk = dict(chunk, shard={"file": shard_file(chunk["split"], shard["number"]),
                                       "records": len(shard["members"]), "bytes": shard["bytes"],
                                       "sha256": digest.hexdigest()})
        files.write_atomic(chunk_path, json.dumps(chunk).encode())
        yield chunk_path

    @staticmethod
    def _complete(path: str, size: int) -> bool:
        if not FileSystems.exists(path) or not FileSystems.exists(path + INDEX_SUFFIX):
            return False
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes == size

    def _write(self, split: str, members: list[int], path: str) -> None:
        metas = []
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with FileSystems.create(tmp) as handle:
            for position in members:
                record_path, meta_path = _video_files(self.work, split, position)
                metas.append(json.loads(files.read(meta_path))["index"])
                with FileSystems.open(record_path) as record:
                    shutil.copyfileobj(record, handle, 1 << 22)
        # The index first, then the shard under its final name (as ShardWriter): a shard is
        # complete only with its index beside it.
        with tempfile.TemporaryDirectory() as local:
            _shard_index(metas).save(Path(local) / "index")
            files.write_atomic(path + INDEX_SUFFIX, (Path(local) / "index").read_bytes())
        FileSystems.rename([tmp], [path])


# --- the driver ---------------------------------------------------------------------------

def _work_folder(out: str, header: dict) -> str:
    # Keyed by the journal header: work files of other options or inputs are never reused.
    return files.join(out, WORK_DIR, hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16])


def convert_dataset_beam(source: str | os.PathLike, out: str | os.PathLike, *,
                         beam_options: str | Sequence[str] | None = None, strict: bool = False,
                         overwrite: bool = False, state_folder: str | os.PathLike | None = None, **options) -> dict:
    """:func:`tfrecords_tools.convert.convert_dataset` as a Beam pipeline; returns the manifest.

    Args:
        source, out, strict, overwrite: as in ``convert_dataset``; ``out`` may also be a URL
            of a file system Beam reaches (``gs://bucket/shards``): the workers write the shards
            and the driver the manifest there through Beam's ``FileSystems``.
        beam_options: Beam pipeline flags, e.g. ``"--direct_num_workers=2
            --direct_running_mode=multi_processing"`` or ``"--runner=DataflowRunner --project=..."``
            (DirectRunner when none is given).
        state_folder: (remote ``out`` only) the local folder of the journal and its lock, which
            a rerun from this machine resumes; default under ``$TSN_KERAS_CACHE``
            (``~/.cache/tsn-keras``), keyed by ``out``. A local ``out`` keeps them inside it.
        **options: the conversion options of ``convert_dataset`` (format, modalities, frame_size, ...),
            except ``workers`` and ``progress``: the runner decides both.

    Example:
        >>> convert_dataset_beam("data", "shards", format="ucf101", beam_options="--direct_num_workers=2 "
        ...                      "--direct_running_mode=multi_processing")  # doctest: +SKIP
    """
    flags = pipeline_options(beam_options)
    conversion = plan_conversion(source, **options)
    remote = files.is_remote(out)
    out = os.fspath(out).rstrip("/") if remote else os.fspath(Path(out))
    state = Path(state_folder or files.default_state_folder(out)) if remote else Path(out)
    if overwrite:
        files.delete_work(files.join(out, WORK_DIR, "*"))
    if remote:
        files.prepare_remote(out, state, overwrite)
    journal = Journal.open(state, conversion.header, overwrite)
    try:
        work = _work_folder(out, conversion.header)
        starts = {name: journal.done(name) for name in conversion.order}
        tasks = [_task(entry, conversion.plan.classes[entry.label], position)
                 for name, entries in conversion.order.items()
                 for position, entry in enumerate(entries) if position >= starts[name][0]]
        if tasks:
            files.write_atomic(files.join(work, "tasks.jsonl"), "".join(t + "\n" for t in tasks).encode())
            _run_pipeline(flags, conversion, out, work, starts)
        for name in conversion.order:
            for chunk in _finished_chunks(work, name, starts[name][0]):
                journal.append(chunk)
        if remote:
            manifest = build_manifest(conversion.plan, conversion.order, journal.chunks, conversion.options,
                                      conversion.settings)
            files.write_atomic(files.join(out, MANIFEST_NAME), manifest_bytes(manifest))
        else:
            manifest = finish_conversion(out, conversion, journal.chunks, strict=False)
    finally:
        journal.close()  # releases the folder's lock
    # After the manifest: a crash before it leaves the work to reuse.
    files.delete_work(work)
    if not remote and (Path(out) / WORK_DIR).is_dir() and not any((Path(out) / WORK_DIR).iterdir()):
        (Path(out) / WORK_DIR).rmdir()
    error = strict_error(manifest, out)
    if strict and error is not None:
        raise error
    return manifest


def _run_pipeline(flags: PipelineOptions, conversion: Conversion, out: str, work: str, starts: dict) -> None:
    target = conversion.target_bytes
    with beam.Pipeline(options=flags) as pipeline:
        _ = (pipeline
             | "Tasks" >> beam.io.ReadFromText(files.join(work, "tasks.jsonl"))
             | "Spread" >> beam.Reshuffle()  # the task file is one small read: spread its lines over workers
             | "Convert" >> beam.ParDo(_ConvertVideo(conversion.settings, work))
             | "BySplit" >> beam.GroupByKey()
             | "Plan" >> beam.FlatMap(lambda kv: plan_chunks(kv[0], kv[1], *starts[kv[0]], target))
             | "SpreadShards" >> beam.Reshuffle()
             | "Write" >> beam.ParDo(_WriteShard(out, work)))


def _finished_chunks(work: str, split: str, start: int) -> list[dict]:
    pattern = files.join(work, "chunks", split, "*.json")
    matched = FileSystems.match([pattern])[0].metadata_list
    chunks = [json.loads(files.read(m.path)) for m in sorted(matched, key=lambda m: m.path)]
    return [c for c in chunks if c["end"] > start]
