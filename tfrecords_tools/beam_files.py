"""Files through Apache Beam's ``FileSystems``: the same calls for a local folder and for
``gs://`` (or any file system Beam reaches), as ``tsn convert --runner beam`` needs for its work
folder, shards and manifest. An object store has no folders to rename or remove recursively and
no appends: writes go to a unique name and are renamed, and a work folder is deleted by
matching its known layout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from tfrecords_tools.errors import ConfigError
from tfrecords_tools.journal import JOURNAL_NAME
from tfrecords_tools.manifest import MANIFEST_NAME
from tfrecords_tools.shards import INDEX_SUFFIX


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def write_atomic(path: str, data: bytes) -> None:
    """Write under a unique temporary name, then rename: a retried or speculative bundle writing the
    same file at the same time cannot interleave its bytes with another's."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with FileSystems.create(tmp) as handle:
        handle.write(data)
    FileSystems.rename([tmp], [path])


def read(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL of a file system Beam reaches (``gs://``, ``s3://``, ...), not a local path."""
    return "://" in os.fspath(path)


def default_state_folder(out: str) -> Path:
    """Where the journal of a conversion into the remote folder ``out`` is kept on this machine."""
    cache = Path(os.environ.get("TSN_KERAS_CACHE", Path.home() / ".cache" / "tsn-keras"))
    return cache / "beam-journals" / hashlib.sha256(out.encode()).hexdigest()[:16]


def prepare_remote(out: str, state: Path, overwrite: bool) -> None:
    """Refuse to mix with a remote conversion this machine has no journal of; with ``overwrite``,
    delete what the remote manifest lists first."""
    manifest_path = join(out, MANIFEST_NAME)
    if overwrite:
        if exists(manifest_path):
            listed = [s["file"] for split in json.loads(read(manifest_path))["splits"].values() for s in split["shards"]]
            doomed = [p for f in listed for p in (join(out, f), join(out, f) + INDEX_SUFFIX) if exists(p)]
            if doomed:
                FileSystems.delete(doomed)
            FileSystems.delete([manifest_path])
    elif exists(manifest_path) and not (state / JOURNAL_NAME).exists():
        raise ConfigError(f"{out} already holds converted data and this machine has no journal of it ({state}); "
                          "pass --overwrite (overwrite=True) to replace it, or choose another folder")


def delete_work(work: str) -> None:
    """Delete a work folder (``work`` may end in a ``*`` component). An object store has no
    folders to remove recursively: its files are matched by the work folder's layout."""
    if not is_remote(work):
        for folder in ([work] if "*" not in work else [str(p) for p in Path(work).parent.glob(Path(work).name)]):
            shutil.rmtree(folder, ignore_errors=True)
        return
    patterns = [join(work, "tasks.jsonl"), join(work, "videos", "*", "*"), join(work, "chunks", "*", "*")]
    files = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if files:
        FileSystems.delete(files)
