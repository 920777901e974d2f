"""Where the sampled JPEG bytes come from: the shard list, the indexed byte reader, the record stream.

Two ways to get a clip's JPEG strings (``docs/DESIGN.md``, "Why an index"):

- indexed (``IndexedShards``): the byte index beside each shard says where every JPEG lies, so
  only the sampled frames are read, through a memory map of the shard. The per-frame offset
  tables stay in NumPy here (a large dataset has millions of frames); the graph only sees small
  per-video tables and calls ``fetch_many`` once per group of clips through ``tf.numpy_function``
  (each call into Python costs ~0.2 ms of GIL hand-over, more than the fetch itself).
- streamed (``stream_records``): ``TFRecordDataset`` reads whole records, for shards without an
  index or on remote file systems. It reports unreadable records (a failed CRC, a truncated
  file) as a marker element when the shard's record count is known, so that the pipeline can
  name the shard or skip and count the loss.
"""

from __future__ import annotations

import atexit
import logging
import mmap
import os
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrecords_tools.manifest import load_manifest, split_shards
from tfrecords_tools.schema import CONTEXT_FEATURES, STORED_KEYS
from tfrecords_tools.shards import INDEX_SUFFIX, ShardIndex, index_path
from tsn_keras.errors import ConfigError, DataError

log = logging.getLogger("tsn_keras.data.pipeline")


def is_local(path: str) -> bool:
    """A path on the local file system (not ``gs://``, ``s3://``, ...)."""
    return "://" not in path or path.startswith("file://")


def resolve_shards(source, split: str | None = None) -> tuple[list[str], dict | None]:
    """Shard paths of ``source`` and its manifest (``None`` when given shard files).

    Args:
        source: a conversion folder (then ``split`` is required), one shard path, or a list of them.
        split: the split of a conversion folder, e.g. ``"train"``.
    """
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        manifest = load_manifest(source)
        if split is None:
            raise ConfigError(f"split is required when the source is a conversion folder ({source}); "
                              f"available splits: {', '.join(manifest['splits'])}")
        paths = [os.fspath(p) for p in split_shards(source, split)]
        if not paths:
            raise DataError(f"split {split!r} of {source} has no shards")
        return paths, manifest
    paths = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(p) for p in source]
    if not paths:
        raise DataError("no shard files given (source is an empty list)")
    missing = [p for p in paths if is_local(p) and not Path(p.removeprefix("file://")).is_file()]
    if missing:
        raise DataError(f"{len(missing)} shard file(s) not found, e.g. {missing[0]}")
    return paths, None


def has_local_index(path: str) -> bool:
    return is_local(path) and index_path(path.removeprefix("file://")).is_file()


def expected_records(paths: list[str], manifest: dict | None, split: str | None) -> list[int]:
    """Records per shard from the index or the manifest; -1 where neither is available."""
    listed = {}
    if manifest is not None and split is not None:
        listed = {Path(s["file"]).name: int(s["records"]) for s in manifest["splits"][split]["shards"]}
    counts = []
    for path in paths:
        index = path + INDEX_SUFFIX  # a string: Path() would fold the "//" of gs://
        if tf.io.gfile.exists(index):
            try:
                with tf.io.gfile.GFile(index, "rb") as handle, np.load(handle, allow_pickle=False) as data:
                    counts.append(len(data["record_offset"]))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
                raise DataError(f"cannot read the byte index {index} ({type(err).__name__}: {err}); convert the "
                                "dataset again, or delete the .index files to read the shards in stream mode") from None
        else:
            counts.append(listed.get(Path(path).name, -1))
    return counts


def check_shard_sizes(paths: list[str], manifest: dict | None, split: str | None, skipping: bool) -> None:
    """A ``DataError`` naming a local shard of another size than its manifest entry or index says.

    Free (one ``stat`` per shard): run before reading, so that a truncated shard is named
    before training starts rather than in the middle of an epoch. When ``skipping`` corrupt
    clips, a warning instead: the videos past the cut are skipped and counted.
    """
    listed = {}
    if manifest is not None and split is not None:
        listed = {Path(s["file"]).name: int(s["bytes"]) for s in manifest["splits"][split]["shards"] if "bytes" in s}
    problems = []
    for path in paths:
        if not is_local(path):
            continue
        local = path.removeprefix("file://")
        size = os.path.getsize(local)
        expected = listed.get(Path(local).name)
        if expected is None and index_path(local).is_file():
            expected = ShardIndex.load(index_path(local)).end()
        if expected is not None and size < expected:
            problems.append(f"shard {local} is truncated: {size} bytes of {expected}")
        elif expected is not None and size != expected and Path(local).name in listed:
            problems.append(f"shard {local} has {size} bytes, the manifest says {expected} (replaced or damaged)")
    if problems and not skipping:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}; convert the dataset again, or set data.skip_corrupt: true "
                        "(skip_corrupt=True) to skip its lost videos")
    for problem in problems:
        log.warning("%s: its unreadable videos will be skipped", problem)


# --- calls from the graph into Python ----------------------------------------------------------

class PythonGate:
    """The graph's calls into Python (``tf.numpy_function``), closed before the interpreter exits.

    An input pipeline still running when Python shuts down deadlocks if a worker thread waits
    for the GIL inside ``numpy_function`` while the main thread, holding the GIL, waits for that
    worker to stop. At exit the gate is closed: the graph stops calling into Python (a table
    lookup, no GIL needed) and the calls already inside are let finish.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._table = None

    def call(self, fn, inputs, dtype, closed_value, stateful: bool = False):
        """``tf.numpy_function(fn, inputs, dtype)`` while the gate is open, else ``closed_value()``."""
        if self._table is None:
            with tf.init_scope():  # a resource of the eager context, not of the graph being built
                self._table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.int64, default_value=1)
        is_open = tf.equal(self._table.lookup(tf.constant(0, tf.int64)), 1)
        return tf.cond(is_open, lambda: tf.numpy_function(self._counted(fn), inputs, dtype, stateful=stateful),
                       closed_value)

    def _counted(self, fn):
        def run(*args):
            with self._lock:
                self._inside += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._inside -= 1
        return run

    def close(self, timeout: float = 2.0) -> None:
        if self._table is None:
            return
        try:
            self._table.insert(tf.constant(0, tf.int64), tf.constant(0, tf.int64))
        except Exception:  # best effort: the interpreter is shutting down
            return
        time.sleep(0.05)  # sleeping releases the GIL: calls that passed the gate enter and finish
        deadline = time.monotonic() + timeout
        while self._inside and time.monotonic() < deadline:
            time.sleep(0.005)


PYTHON_CALLS = PythonGate()
atexit.register(PYTHON_CALLS.close)


# --- indexed reading -------------------------------------------------------------------------

# One read-only map per shard file and process, shared by every dataset reading it. Keyed by
# the file's identity too, so a shard rewritten under the same name is mapped afresh.
_MAPS: dict[str, tuple[tuple, mmap.mmap]] = {}
_MAPS_LOCK = threading.Lock()


def _file_identity(path: str) -> tuple:
    stat = os.stat(path)
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _mapped(path: str, identity: tuple) -> mmap.mmap:
    entry = _MAPS.get(path)
    if entry is not None and entry[0] == identity:
        return entry[1]
    with _MAPS_LOCK:
        entry = _MAPS.get(path)
        if entry is None or entry[0] != identity:
            with open(path, "rb") as handle:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            if hasattr(mmap, "MADV_RANDOM"):
                # A clip reads a few scattered JPEGs: read-ahead would fetch their neighbours for nothing.
                mapped.madvise(mmap.MADV_RANDOM)
            entry = (identity, mapped)
            _MAPS[path] = entry
    return entry[1]


class IndexedShards:
    """The byte indexes of a list of shards: per-video references and a per-clip byte fetcher.

    Args:
        paths: local shard files, each with its ``.index``.
        keys: stored feature lists to read (``modality_keys(modality)``).

    ``videos`` holds one row per video (``shard_id``, ``record``, ``label``, ``video_id``,
    ``count`` = frames of ``keys[0]``), in shard then record order.
    """

    def __init__(self, paths: list[str], keys: tuple[str, ...]):
        self.paths = [p.removeprefix("file://") for p in paths]
        self.keys = tuple(keys)
        self._identity, self._video_ids, self._starts = [], [], []
        self._counts, self._offsets, self._lengths, self._crcs = [], [], [], []
        rows: dict[str, list[np.ndarray]] = {name: [] for name in ("shard_id", "record", "label", "video_id",
                                                                     "count")}
        for shard_id, path in enumerate(self.paths):
            index = self._load(path)
            missing = [k for k in self.keys if k not in index.count]
            if missing:
                stored = ", ".join(index.count) or "none"
                raise DataError(f"shard {path} has no {missing[0]!r} frames (stored: {stored}); "
                                "convert the dataset with that modality first")
            self._identity.append(_file_identity(path))
            self._video_ids.append(index.video_id)
            self._starts.append({k: index.start(k) for k in self.keys})
            self._counts.append({k: index.count[k] for k in self.keys})
            self._offsets.append({k: index.offset[k] for k in self.keys})
            self._lengths.append({k: index.length[k] for k in self.keys})
            self._crcs.append({k: index.crc32[k] for k in self.keys if k in index.crc32})
            if len(self._crcs[-1]) < len(self.keys):
                log.warning("the byte index of %s has no JPEG checksums (converted by an older version): "
                            "damaged JPEG data in it is not detected; `tsn inspect --verify` checks it", path)
            n = index.num_videos
            rows["shard_id"].append(np.full(n, shard_id, np.int64))
            rows["record"].append(np.arange(n, dtype=np.int64))
            rows["label"].append(index.label.astype(np.int32))
            rows["video_id"].append(index.video_id.astype(object))
            rows["count"].append(index.count[self.keys[0]].astype(np.int32))
        self.videos = {name: np.concatenate(parts) for name, parts in rows.items()}

    @staticmethod
    def _load(path: str) -> ShardIndex:
        return ShardIndex.load(index_path(path))  # a DataError naming the index when damaged

    def fetch(self, shard_id, record, frames) -> np.ndarray:
        """JPEG bytes ``[len(keys), len(frames)]`` of frames ``frames`` of one video (numpy_function body)."""
        shard_id, record = int(shard_id), int(record)
        path = self.paths[shard_id]
        data = _mapped(path, self._identity[shard_id])
        frames = np.asarray(frames, dtype=np.int64)
        out = np.empty((len(self.keys), len(frames)), dtype=object)
        for k, key in enumerate(self.keys):
            count = int(self._counts[shard_id][key][record])
            if len(frames) and (frames.min() < 0 or frames.max() >= count):
                raise DataError(f"shard {path}: video {self._video_ids[shard_id][record]} has {count} {key!r} "
                                f"frames; frame {int(frames.max())} requested")
            position = self._starts[shard_id][key][record] + frames
            offsets, lengths = self._offsets[shard_id][key][position], self._lengths[shard_id][key][position]
            if len(frames) and int((offsets + lengths).max()) > len(data):
                video = self._video_ids[shard_id][record]
                raise DataError(f"shard {path} is truncated: video {video} needs bytes up to "
                                f"{int((offsets + lengths).max())}, the file has {len(data)}")
            crcs = self._crcs[shard_id].get(key)
            for i, (start, length) in enumerate(zip(offsets.tolist(), lengths.tolist())):
                out[k, i] = data[start:start + length]
                # ~10 us per 15 KB JPEG: what makes flipped bytes a named (or skipped) clip
                # instead of a silently decoded wrong image (docs/DESIGN.md, "Failure model").
                if crcs is not None and zlib.crc32(out[k, i]) != int(crcs[position[i]]):
                    raise DataError(f"shard {path}: {key!r} frame {int(frames[i])} of video "
                                    f"{self._video_ids[shard_id][record]} fails its checksum")
        return out

    def fetch_many(self, shard_ids, records, frames) -> tuple[np.ndarray, np.ndarray]:
        """``fetch`` for ``n`` clips in one call into Python (numpy_function body).

        Returns JPEG bytes ``[n, len(keys), F]`` and ``ok`` ``[n]``. A clip whose bytes cannot be
        fetched gets empty strings and ``ok`` false instead of an exception, so that one bad
        video fails only its own clip (the pipeline then names it or skips it).
        """
        frames = np.asarray(frames, dtype=np.int64)
        out = np.full((len(shard_ids), len(self.keys), frames.shape[1]), b"", dtype=object)
        ok = np.ones(len(shard_ids), dtype=bool)
        for i, (shard_id, record) in enumerate(zip(np.asarray(shard_ids).tolist(), np.asarray(records).tolist())):
            try:
                out[i] = self.fetch(shard_id, record, frames[i])
            except (DataError, OSError, ValueError, IndexError):
                ok[i] = False
        return out, ok


# --- streamed reading --------------------------------------------------------------------------

def stream_records(path, expected=None) -> tf.data.Dataset:
    """Elements ``{record, serialized, end, read}`` of one shard, record by record.

    ``expected`` is the shard's record count (a scalar tensor inside ``interleave``) or ``None``
    when unknown. When known, a read error (failed CRC, truncated file) ends the shard quietly
    and one final ``end`` element carries ``read`` < ``expected``; a shard read in full has no
    ``end`` element. When unknown, read errors surface as TensorFlow raises them.
    """
    reader = tf.data.TFRecordDataset(path)

    def element(i, serialized, end=False):
        return {"record": i, "serialized": serialized, "end": tf.constant(end), "read": i + 1}

    if expected is None:
        return reader.enumerate().map(element)
    expected = tf.cast(expected, tf.int64)
    marker = tf.data.Dataset.from_tensors(element(tf.constant(-1, tf.int64), tf.constant(""), end=True))

    def count(read, e):
        read = read + tf.cast(tf.logical_not(e["end"]), tf.int64)
        return read, {**e, "read": read}

    stream = reader.ignore_errors().enumerate().map(element).concatenate(marker)
    stream = stream.scan(tf.constant(0, tf.int64), count)
    return stream.filter(lambda e: tf.logical_or(tf.logical_not(e["end"]), e["read"] < expected))


# --- parsing a whole record (the streamed reader) ---------------------------------------------

_CONTEXT_DTYPES = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}


def context_spec() -> dict:
    """``tf.io`` parsing spec of the context features (``schema.CONTEXT_FEATURES``)."""
    return {name: tf.io.FixedLenFeature([], _CONTEXT_DTYPES[kind]) for name, kind in CONTEXT_FEATURES.items()}


def parse_video(serialized, keys=STORED_KEYS):
    """Parse one serialised record (graph-compatible): ``(context, {key: string tensor [n]})``.

    Keys absent from the record come back as empty tensors.
    """
    return tf.io.parse_single_sequence_example(
        serialized,
        context_features=context_spec(),
        sequence_features={key: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True) for key in keys},
    )
