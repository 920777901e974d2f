"""Resuming a conversion: a journal of finished chunks in ``<out>/convert-journal.jsonl``.

Line 1 is a header with the options that change the output and a fingerprint of the input
(classes and the ordered list of videos). Every further line is one finished *chunk* of a
split: the shard just closed (or none, when only rejects were left at the end of a split),
the videos it holds, the rejects met on the way and ``end``, the position in the split's
video list up to which everything is done. A line is appended (and fsynced) only after its
shard is on disk under its final name (``ShardWriter`` writes ``*.tmp`` and renames), so a
run killed at any point resumes from the last line: work after it is redone, and as the
converter is deterministic it produces the same bytes. A torn last line is ignored.

One conversion at a time: ``Journal.open`` takes an exclusive ``flock`` on ``<out>/.lock``,
held until ``close`` (or the process ends), so a second ``tsn convert`` into the same folder
is refused instead of doubling the journal. ``overwrite`` deletes only what this conversion
lists (its journal's and manifest's shards, their indexes, and its own ``.tmp`` names), and
never through a symbolic link: a split folder that is a link is refused, so neither deleting
nor writing can reach outside ``out``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
from pathlib import Path

from tfrecords_tools.errors import ConfigError, DataError
from tfrecords_tools.manifest import MANIFEST_NAME
from tfrecords_tools.shards import SHARD_SUFFIX, index_path

JOURNAL_NAME = "convert-journal.jsonl"
JOURNAL_FORMAT = "tsn-keras-convert-journal"
LOCK_NAME = ".lock"

log = logging.getLogger("tfrecords_tools.convert")


def lock_folder(out: Path) -> int:
    """Take the exclusive conversion lock of ``out``; a ``ConfigError`` when another run holds it.

    ``flock`` rather than a pid file: the kernel drops it when the holder dies, so a killed
    run never leaves a stale lock behind.
    """
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ConfigError(f"{out} is being written by another tsn convert (pid {holder}); wait for it to "
                              "finish or choose another output folder") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _inside(out: Path, relative: str) -> Path | None:
    """``out / relative`` when it is a file path inside ``out`` reached without a symbolic link, else None."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    path = out
    for part in rel.parts:
        path = path / part
        if path.is_symlink():
            return None
    return path


def _listed_files(out: Path, chunks: list[dict]) -> tuple[set[str], set[str]]:
    """Shard files (relative) and split names a conversion in ``out`` recorded in its journal and manifest."""
    files, splits = set(), set()
    for chunk in chunks:
        splits.add(chunk.get("split", ""))
        if chunk.get("shard"):
            files.add(chunk["shard"]["file"])
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        for name, split in manifest.get("splits", {}).items():
            splits.add(name)
            files.update(shard["file"] for shard in split.get("shards", []))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass  # no manifest (an interrupted run) or not ours: the journal's list stands alone
    return files, {s for s in splits if s}


def _remove_outputs(out: Path, splits: set[str]) -> None:
    """Delete what a conversion listed in ``out`` (and nothing else, and nothing through a link)."""
    chunks, header = _read_chunks(out / JOURNAL_NAME)
    files, listed_splits = _listed_files(out, chunks)
    splits = splits | listed_splits | set(header.get("splits", []))
    targets = set()
    for relative in files:
        path = _inside(out, relative)
        if path is None:
            log.warning("not deleting %s: it is not inside %s", relative, out)
            continue
        targets.update((path, index_path(path)))
    # Files of shards still being written: only the converter's own names in its split folders.
    for split in splits:
        folder = _inside(out, split)
        if folder is None or not folder.is_dir():
            continue
        pattern = re.compile(rf"\.?{re.escape(split)}-\d{{5}}{re.escape(SHARD_SUFFIX)}(\.index)?\.tmp(-\d+\.index)?")
        targets.update(p for p in folder.iterdir() if pattern.fullmatch(p.name) and not p.is_symlink())
    for path in sorted(targets):
        if path.is_file() and not path.is_symlink():
            path.unlink()
        elif path.is_symlink():
            log.warning("not deleting %s: it is a symbolic link", path)
    for split in splits:
        folder = _inside(out, split)
        if folder is not None and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for name in (JOURNAL_NAME, MANIFEST_NAME):
        (out / name).unlink(missing_ok=True)


def _read_chunks(path: Path) -> tuple[list[dict], dict]:
    """The parsable chunk lines and the header of a journal (empty when absent or unreadable)."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return [], {}
    parsed = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    if parsed and parsed[0].get("format") == JOURNAL_FORMAT:
        return parsed[1:], parsed[0]
    return [c for c in parsed if "split" in c], {}


def _has_outputs(out: Path) -> bool:
    if (out / MANIFEST_NAME).exists():
        return True
    return any(sub.is_dir() and not sub.is_symlink() and any(sub.glob(f"*{SHARD_SUFFIX}")) for sub in out.iterdir())


def _refuse_linked_splits(out: Path, splits) -> None:
    """Writing a split through a symbolic link could replace files outside ``out``: refuse it."""
    for split in splits:
        if (out / split).is_symlink():
            raise ConfigError(f"{out / split} is a symbolic link; tsn convert writes only inside its output "
                              "folder: remove the link or choose another output folder")


class Journal:
    """The record of finished chunks of one conversion folder.

    Example:
        >>> journal = Journal.open(out, header, overwrite=False)  # doctest: +SKIP
        >>> journal.append({"split": "train", "end": 12, "shard": {...}, ...})  # doctest: +SKIP
    """

    def __init__(self, path: Path, chunks: list[dict], lock: int | None = None):
        self.path = path
        self.chunks = chunks
        self._lock = lock

    def close(self) -> None:
        """Release the folder's lock (also released when the process ends)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @classmethod
    def open(cls, out: str | os.PathLike, header: dict, overwrite: bool = False) -> Journal:
        """Start a journal in ``out`` or resume the one there (its header must equal ``header``).

        ``header["splits"]`` (optional) names the split folders the conversion writes. Holds
        ``out``'s lock until ``close``; a ``ConfigError`` when another conversion holds it.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        lock = lock_folder(out)
        try:
            return cls._open(out, header, overwrite, lock)
        except BaseException:
            os.close(lock)
            raise

    @classmethod
    def _open(cls, out: Path, header: dict, overwrite: bool, lock: int) -> Journal:
        path = out / JOURNAL_NAME
        splits = set(header.get("splits", []))
        _refuse_linked_splits(out, splits)
        if overwrite:
            _remove_outputs(out, splits)
        header = {"format": JOURNAL_FORMAT, **header}
        if not path.exists():
            # After an overwrite, shards still there are not this conversion's: they stay.
            if not overwrite and _has_outputs(out):
                raise ConfigError(f"{out} already holds converted data with no resumable journal; "
                                  "pass --overwrite (overwrite=True) to replace it, or choose another folder")
            _write_line(path, header, mode="w")
            return cls(path, [], lock)
        lines = path.read_bytes().split(b"\n")
        try:
            old = json.loads(lines[0])
        except ValueError:
            if len(lines) <= 2:  # killed while writing the header: nothing was done yet
                _write_line(path, header, mode="w")
                return cls(path, [], lock)
            raise DataError(f"{path} is damaged (unreadable header); pass --overwrite to start over") from None
        _check_same_run(out, old, header)
        # Only newline-terminated lines count: the text after the last newline is a torn write.
        chunks, torn = [], lines[-1] != b""
        for line in lines[1:-1]:
            try:
                chunks.append(json.loads(line))
            except ValueError:
                torn = True
                break
        journal = cls(path, chunks, lock)
        journal._drop_invalid(out)
        if torn or len(journal.chunks) != len(chunks):
            journal._rewrite(header)
        return journal

    def _drop_invalid(self, out: Path) -> None:
        """Keep the chunks whose shard and index are on disk; a split resumes after its last intact chunk.

        Sizes are checked, not checksums: a shard gets its final name only when complete, so a
        kill cannot leave a short one, and rehashing a whole dataset on every resume would cost
        minutes (``tsn inspect`` verifies checksums).
        """
        kept, broken_splits = [], set()
        for chunk in self.chunks:
            shard = chunk.get("shard")
            if chunk["split"] in broken_splits:
                continue
            if shard is not None:
                path = out / shard["file"]
                if not path.is_file() or path.stat().st_size != shard["bytes"] or not index_path(path).is_file():
                    broken_splits.add(chunk["split"])
                    continue
            kept.append(chunk)
        self.chunks = kept

    def _rewrite(self, header: dict) -> None:
        _write_line(self.path, header, mode="w")
        for chunk in self.chunks:
            _write_line(self.path, chunk)

    def append(self, chunk: dict) -> None:
        """Record a finished chunk (call after its shard is closed)."""
        _write_line(self.path, chunk)
        self.chunks.append(chunk)

    def done(self, split: str) -> tuple[int, int]:
        """``(next video position, next shard number)`` of ``split``."""
        chunks = [c for c in self.chunks if c["split"] == split]
        return (chunks[-1]["end"] if chunks else 0), sum(c.get("shard") is not None for c in chunks)


def _write_line(path: Path, record: dict, mode: str = "a") -> None:
    with open(path, mode) as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _check_same_run(out: Path, old: dict, new: dict) -> None:
    if old.get("format") != JOURNAL_FORMAT:
        raise DataError(f"{out / JOURNAL_NAME} is not a conversion journal; pass --overwrite to start over")
    old_options, new_options = old.get("options", {}), new["options"]
    changed = [f"{key}: {old_options.get(key)!r} -> {new_options.get(key)!r}"
               for key in sorted(set(old_options) | set(new_options)) if old_options.get(key) != new_options.get(key)]
    if changed:
        raise ConfigError(f"{out} holds a conversion made with other options ({'; '.join(changed)}); "
                          "rerun with the same options to resume it, pass --overwrite to start over, "
                          "or choose another output folder")
    if old.get("inputs") != new["inputs"]:
        raise ConfigError(f"the videos to convert changed since the conversion in {out} started (files added "
                          "or removed, list or class files edited); pass --overwrite to start over, "
                          "or choose another output folder")
