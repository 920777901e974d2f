"""The conversion folder's ``manifest.json``: classes, splits, shards with checksums, videos.

``docs/DESIGN.md`` ("manifest.json") lists its fields.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfrecords_tools.errors import DataError
from tfrecords_tools.shards import atomic_write_bytes

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "tsn-keras-shards"
MANIFEST_VERSION = 1


def manifest_bytes(manifest: dict) -> bytes:
    """The bytes of ``manifest.json`` for ``manifest`` (format and version first)."""
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **manifest}
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def write_manifest(root: str | os.PathLike, manifest: dict) -> Path:
    """Write ``<root>/manifest.json`` atomically (see ``docs/DESIGN.md`` for its fields)."""
    path = Path(root) / MANIFEST_NAME
    atomic_write_bytes(path, manifest_bytes(manifest))
    return path


def load_manifest(root: str | os.PathLike) -> dict:
    """Read and check ``<root>/manifest.json``; a missing or foreign file is a ``DataError``."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{root} is not a converted dataset: {MANIFEST_NAME} not found (run `tsn convert` first)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path} is not a tsn-keras manifest (format {manifest.get('format')!r})")
    for key in ("classes", "splits"):
        if key not in manifest:
            raise DataError(f"{path} has no {key!r} entry")
    return manifest


def shard_path(root: str | os.PathLike, file: str) -> Path:
    """``<root>/<file>`` for a shard listed in the manifest; a ``DataError`` when it points outside ``root``.

    A manifest is data: an absolute path or ``..`` in it must not make a command read (or
    ``--overwrite`` delete) files elsewhere.
    """
    relative = Path(str(file))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise DataError(f"{Path(root) / MANIFEST_NAME} lists shard {file!r} outside the dataset folder; "
                        "shard paths must be relative to it (convert the dataset again)")
    return Path(root) / relative


def split_shards(root: str | os.PathLike, split: str) -> list[Path]:
    """The shard files of ``split`` listed in the manifest of ``root``, checked to exist."""
    manifest = load_manifest(root)
    if split not in manifest["splits"]:
        raise DataError(f"split {split!r} not in {root}; available splits: {', '.join(manifest['splits'])}")
    shards = [shard_path(root, shard["file"]) for shard in manifest["splits"][split]["shards"]]
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} shard(s) of split {split!r} are missing, e.g. {missing[0]}")
    return shards
