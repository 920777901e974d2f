"""`tsn convert`: a video dataset -> ``<out>/<split>/<split>-NNNNN.tfrecord`` shards + ``manifest.json``.

The steps: parse the dataset's split files (:mod:`tfrecords_tools.datasets`), convert each
video in worker processes (:mod:`tfrecords_tools.worker`), write the records in input order
through ``tfrecords_tools.shards.ShardWriter`` (one shard closes once it reaches the target
size), journal each finished shard (:mod:`tfrecords_tools.journal`) and finally write the
manifest. Guarantees:

- deterministic: results are consumed in input order, so shard contents depend neither on
  the number of workers nor on timing; the train split is written in a seeded random order
  (so every shard mixes classes; the reader's shuffle buffer holds only a few dozen videos);
- resumable: a killed run started again with the same options continues after the last
  finished shard and yields the same bytes as an uninterrupted run;
- robust: a video that cannot be converted is listed in ``rejects`` with the reason, listed
  videos absent from disk in ``missing``; neither stops the run (``strict`` makes them an
  error at the end);
- bounded memory: at most ``2 * workers`` videos are in flight, frames are streamed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from tfrecords_tools.conversion import (
    finish_conversion,
    plan_conversion,
    shard_file,
    video_outcome,
)
from tfrecords_tools.journal import Journal
from tfrecords_tools.plan import VideoEntry
from tfrecords_tools.shards import ShardWriter
from tfrecords_tools.worker import VideoResult, VideoSettings, convert_video, init_worker

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_pool_worker(settings: VideoSettings, parent: int) -> None:
    """A pool worker: one OpenCV thread, and it ends with the conversion that started it.

    Without the second part, a worker of a killed ``tsn convert`` went on with its current
    video (tens of minutes of TV-L1 on a CPU) for nobody, reparented to init. On Linux the
    kernel sends it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``); elsewhere it still
    stops at the end of its video, when it reads the closed task pipe.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
    init_worker(settings, threads=1)


def _results(tasks: Iterable[tuple[VideoEntry, str]], settings: VideoSettings, workers: int) -> Iterator[VideoResult]:
    """Convert ``tasks`` in order; with workers > 1, at most ``2 * workers`` are in flight."""
    if workers == 1:
        init_worker(settings, threads=None)  # in this process: let OpenCV use its threads
        yield from map(convert_video, tasks)
        return
    # spawn, never fork: the parent has TensorFlow loaded (ShardWriter).
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_pool_worker, initargs=(settings, os.getpid())) as pool:
        tasks = iter(tasks)
        pending = deque(pool.apply_async(convert_video, (t,)) for t in islice(tasks, 2 * workers))
        while pending:
            result = pending.popleft().get()
            for task in islice(tasks, 1):
                pending.append(pool.apply_async(convert_video, (task,)))
            yield result


class _SplitWriter:
    """Fills shards of one split up to the target size and journals each finished chunk."""

    def __init__(self, out: Path, split: str, journal: Journal, start: int, shard_number: int, target_bytes: int):
        self.out, self.split, self.journal = out, split, journal
        self.position, self.shard_number, self.target_bytes = start, shard_number, target_bytes
        self.writer: ShardWriter | None = None
        self._pending: dict[str, list] = {"videos": [], "rejects": [], "truncated": []}

    def add(self, result: VideoResult) -> None:
        self.position += 1
        outcome = video_outcome(result)
        if outcome["reject"] is not None:
            self._pending["rejects"].append(outcome["reject"])
        else:
            if self.writer is None:
                self.writer = ShardWriter(self.out / shard_file(self.split, self.shard_number))
            self.writer.write(result.record)
            self._pending["videos"].append(dict(outcome["video"], shard=shard_file(self.split, self.shard_number)))
            if outcome["truncated"] is not None:
                self._pending["truncated"].append(outcome["truncated"])
            if self.writer.bytes_written >= self.target_bytes:  # the rule the Beam runner's plan_chunks repeats
                self.flush()

    def flush(self) -> None:
        """Close the open shard (if any) and journal everything up to the current position."""
        shard = None
        if self.writer is not None:
            info = self.writer.close()
            shard = {"file": f"{self.split}/{info.file}", "records": info.records, "bytes": info.bytes,
                     "sha256": info.sha256}
            self.writer = None
            self.shard_number += 1
        if shard is None and not self._pending["rejects"]:
            return
        self.journal.append({"split": self.split, "end": self.position, "shard": shard, **self._pending})
        self._pending = {"videos": [], "rejects": [], "truncated": []}

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def convert_dataset(source: str | os.PathLike, out: str | os.PathLike, *, format: str = "folder", split: int = 1,
                    lists: dict[str, str | os.PathLike] | None = None, classes_file: str | os.PathLike | None = None,
                    val_fraction: float = 0.0, seed: int = 0, modalities: Iterable[str] = ("rgb",),
                    flow: str = "tvl1", flow_engine: str = "auto", frame_size: tuple[int, int] | None = (340, 256),
                    short_side: int | None = None, shard_size_mb: float = 200.0, jpeg_quality: int = 90,
                    workers: int = 1, present_classes_only: bool = False, strict: bool = False,
                    progress: bool = True, annotations: str | os.PathLike | None = None,
                    overwrite: bool = False, test_fraction: float = 0.0, group_by: str = "none") -> dict:
    """Convert a video dataset to TSN shards in ``out`` and return the manifest (also written there).

    Args:
        source: the dataset folder (for ``ucf101`` the ``UCF-101`` folder or its parent).
        out: the output folder; a folder holding an interrupted conversion is resumed.
        format: ``ucf101``, ``hmdb51``, ``folder`` (``<root>/<class>/<video>``) or ``list``.
        split: official split 1, 2 or 3 (``ucf101``, ``hmdb51``).
        lists: ``{split name: list file}`` for format ``list`` (``<relative path> <0-based label>`` lines).
        classes_file: class names for format ``list`` (one per line, or ``<1-based index> <name>``).
        val_fraction: share of train carved into a seeded ``val`` split (by group for UCF101/HMDB51).
        test_fraction: share of train carved into a seeded ``test`` split (formats ``folder``, and
            ``list`` without a test list), after val.
        group_by: how ``folder``/``list`` videos are grouped for both carves, whole groups moving:
            ``none`` (each video alone), ``ucf101`` (``_gXX_``), ``hmdb51`` (the source movie) or
            ``regex:<pattern>`` (its first capture group, searched in the relative path).
        seed: seed of the validation carve and of the train write order.
        modalities: any of ``rgb``, ``flow``, ``warped_flow``.
        flow: ``tvl1`` (the paper's), ``dis`` (fast on CPU) or ``farneback``.
        flow_engine: ``auto``, ``tf`` (TV-L1 in TensorFlow, CPU or GPU) or ``opencv``
            (:mod:`tfrecords_tools.flow_engines`; ``auto`` is ``tf`` for TV-L1).
        frame_size: stored ``(width, height)``, the paper's 340x256 by default; ``None`` keeps the size.
        short_side: resize to this shorter side instead of ``frame_size`` (keeps the aspect ratio).
        shard_size_mb: a shard is closed once it reaches this size.
        jpeg_quality: JPEG quality of stored frames (1..100).
        workers: worker processes (spawned) that decode, compute flow and encode.
        present_classes_only: keep only classes with a video on disk, relabelled 0..n-1.
        strict: raise ``DataError`` (after writing the manifest) if any video was rejected or missing.
        progress: show a progress bar with videos/s and ETA.
        annotations: folder of the official split files (default: searched in and beside ``source``).
        overwrite: delete a previous conversion in ``out`` instead of resuming it.

    Example:
        >>> manifest = convert_dataset("data", "shards", format="ucf101", modalities=("rgb", "flow"),
        ...                            present_classes_only=True)  # doctest: +SKIP
    """
    from tqdm import tqdm

    conversion = plan_conversion(source, format=format, split=split, lists=lists, classes_file=classes_file,
                                 val_fraction=val_fraction, seed=seed, modalities=modalities, flow=flow,
                                 flow_engine=flow_engine,
                                 frame_size=frame_size, short_side=short_side, shard_size_mb=shard_size_mb,
                                 jpeg_quality=jpeg_quality, workers=workers, present_classes_only=present_classes_only,
                                 annotations=annotations, test_fraction=test_fraction, group_by=group_by)
    plan, order, settings, target_bytes = conversion.plan, conversion.order, conversion.settings, conversion.target_bytes
    out = Path(out)
    journal = Journal.open(out, conversion.header, overwrite)
    starts = {name: journal.done(name) for name in order}
    total = sum(len(entries) - starts[name][0] for name, entries in order.items())

    tasks = ((entry, plan.classes[entry.label]) for name, entries in order.items()
             for entry in entries[starts[name][0]:])
    writers = {name: _SplitWriter(out, name, journal, *starts[name], target_bytes) for name in order}
    current: _SplitWriter | None = None
    rejected = 0
    import tensorflow  # noqa: F401  (ShardWriter's; loaded now so its seconds do not skew the bar's rate)

    bar = tqdm(total=total, unit="video", desc="convert", disable=not progress, dynamic_ncols=True)
    try:
        for result in _results(tasks, settings, max(1, min(int(workers), total))):
            writer = writers[result.entry.split]
            if writer is not current and current is not None:
                current.flush()
            current = writer
            writer.add(result)
            rejected += result.record is None
            bar.update(1)
            if rejected:
                bar.set_postfix(rejected=rejected, refresh=False)
        if current is not None:
            current.flush()
    except BaseException:
        if current is not None:
            current.abort()
        journal.close()
        raise
    finally:
        bar.close()
    try:
        return finish_conversion(out, conversion, journal.chunks, strict)
    finally:
        journal.close()  # releases the folder's lock
