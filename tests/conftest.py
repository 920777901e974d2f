"""Shared fixtures: where the real videos are, and small converted datasets built on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TSN_SHARED_DATA", REPO.parent / "shared" / "data"))
VECTORS = REPO / "tests" / "reference" / "vectors.json"
# The development material the copy above came from; only tests/test_reference.py reads it (to catch drift).
SHARED_REFERENCE = Path(os.environ.get("TSN_SHARED_REFERENCE", REPO.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real UCF101 and KTH clips); tests that need it skip where it is absent."""
    if not (SHARED_DATA / "UCF-101").is_dir():
        pytest.skip(f"real video data not found at {SHARED_DATA} (set TSN_SHARED_DATA to its folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def vectors() -> dict:
    """The reference test vectors of TSN_SEMANTICS.md (``tests/reference/vectors.json``); missing is a failure."""
    import json

    if not VECTORS.is_file():
        pytest.fail(f"reference vectors not found at {VECTORS}: they are part of the repository (tests/reference/)")
    return json.loads(VECTORS.read_text())


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """A small conversion folder (4 classes, rgb + flow + warped flow, 48x64 frames), written directly."""
    from tests.helpers import write_shards

    root = tmp_path_factory.mktemp("tiny_shards")
    write_shards(root, num_classes=4, videos_per_class={"train": 4, "val": 2, "test": 2}, num_frames=(12, 30))
    return root


@pytest.fixture
def small_fs(tmp_path):
    """``make(size) -> folder``: a tmpfs of ``size`` (e.g. ``"64k"``) mounted for this test, to fill up.

    ``resize(folder, size)`` on the returned function remounts it with another size (to free
    space, or to make it read-only with ``size=None, readonly=True``). Skips where mounting is
    not permitted (not root, or no mount namespace).
    """
    import subprocess

    mounted = []

    def make(size: str) -> Path:
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small file system to fill up: {result.stderr.strip() or 'mount failed'}")
        mounted.append(folder)
        return folder

    def remount(folder: Path, size: str | None = None, readonly: bool = False) -> None:
        options = ",".join(["remount", *([f"size={size}"] if size else []), "ro" if readonly else "rw"])
        subprocess.run(["mount", "-o", options, str(folder)], check=True, capture_output=True)

    make.remount = remount
    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
