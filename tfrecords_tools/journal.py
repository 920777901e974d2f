"""Resuming a conversion: a journal of finished chunks in ``<out>/convert-journal.jsonl``.

Line 1 is a header with the options that change the output and a fingerprint of the input
(classes and the ordered list of videos). Every further line is one finished *chunk* of a
split: the shard just closed (or none, when only rejects were left at the end of a split),
the videos it holds, the rejects met on the way and ``end``, the position in the split's
video list up to which everything is done. A line is appended (and fsynced) only after its
shard is on disk under its final name (``ShardWriter`` writes ``*.tmp`` and renames), so a
run killed at any point resumes from the last line: work after it is redone, and as the
converter is deterministic it produces the same bytes. A torn last line is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfrecords_tools.errors import ConfigError, DataError
from tfrecords_tools.manifest import MANIFEST_NAME
from tfrecords_tools.shards import SHARD_SUFFIX, index_path

JOURNAL_NAME = "convert-journal.jsonl"
JOURNAL_FORMAT = "tsn-keras-convert-journal"


def _remove_outputs(out: Path) -> None:
    """Delete what a conversion writes in ``out`` (and nothing else)."""
    for name in (JOURNAL_NAME, MANIFEST_NAME):
        (out / name).unlink(missing_ok=True)
    for sub in out.iterdir():
        if not sub.is_dir():
            continue
        for path in sub.iterdir():
            if path.name.endswith((SHARD_SUFFIX, f"{SHARD_SUFFIX}.index", ".tmp")):
                path.unlink()
        if not any(sub.iterdir()):
            sub.rmdir()


def _has_outputs(out: Path) -> bool:
    if (out / MANIFEST_NAME).exists():
        return True
    return any(sub.is_dir() and any(sub.glob(f"*{SHARD_SUFFIX}")) for sub in out.iterdir())


class Journal:
    """The record of finished chunks of one conversion folder.

    Example:
        >>> journal = Journal.open(out, header, overwrite=False)  # doctest: +SKIP
        >>> journal.append({"split": "train", "end": 12, "shard": {...}, ...})  # doctest: +SKIP
    """

    def __init__(self, path: Path, chunks: list[dict]):
        self.path = path
        self.chunks = chunks

    @classmethod
    def open(cls, out: str | os.PathLike, header: dict, overwrite: bool = False) -> Journal:
        """Start a journal in ``out`` or resume the one there (its header must equal ``header``)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / JOURNAL_NAME
        if overwrite:
            _remove_outputs(out)
        header = {"format": JOURNAL_FORMAT, **header}
        if not path.exists():
            if _has_outputs(out):
                raise ConfigError(f"{out} already holds converted data with no resumable journal; "
                                  "pass --overwrite (overwrite=True) to replace it, or choose another folder")
            _write_line(path, header, mode="w")
            return cls(path, [])
        lines = path.read_bytes().split(b"\n")
        try:
            old = json.loads(lines[0])
        except ValueError:
            if len(lines) <= 2:  # killed while writing the header: nothing was done yet
                _write_line(path, header, mode="w")
                return cls(path, [])
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
        journal = cls(path, chunks)
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
