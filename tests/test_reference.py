"""The reference vectors in the repository: plain data, every section the faithfulness tests read, no drift."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_REFERENCE, VECTORS

SECTIONS = ("val_offsets", "test_offsets", "snippet_frames", "multiscale_crop_sizes", "fixed_crop_offsets")


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return isinstance(value, (bool, int, float))


def test_vectors_are_data_with_every_section(vectors):
    assert VECTORS.stat().st_size < 20_000  # a few cases per section, not a dump
    assert set(vectors) == set(SECTIONS)
    for section in SECTIONS:
        assert vectors[section] and all(isinstance(case, dict) for case in vectors[section])
        assert _plain(vectors[section]), f"{section} holds something other than numbers and lists"
        assert all(any(key.startswith("expected") for key in case) for case in vectors[section])


def test_the_copy_equals_the_shared_reference():
    shared = SHARED_REFERENCE / "vectors.json"
    if not shared.is_file():
        pytest.skip(f"no development material at {SHARED_REFERENCE} to compare with (the copy is what the tests use)")
    assert json.loads(VECTORS.read_text()) == json.loads(shared.read_text()), (
        f"{VECTORS} has drifted from {shared}: copy the shared file again")
