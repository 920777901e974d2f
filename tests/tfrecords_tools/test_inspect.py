"""`tsn inspect`: the summary, verification that catches damaged shards, the contact sheet."""

import json
import shutil

import cv2
import numpy as np
import pytest

from tfrecords_tools.inspect import summarize, verify
from tfrecords_tools.manifest import load_manifest
from tfrecords_tools.shards import ShardIndex, index_path
from tsn_keras.cli import main as tsn


@pytest.fixture()
def copy(reference_conversion, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(reference_conversion, target)
    return target


@pytest.mark.slow
def test_inspect_summarises_verifies_and_draws(reference_conversion, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    code = tsn(["inspect", str(reference_conversion), "--dump", str(sheet), "--videos", "2", "--frames", "3",
                "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "4 classes" in out and "short side 48" in out
    manifest = load_manifest(reference_conversion)
    shards = sum(len(s["shards"]) for s in manifest["splits"].values())
    assert f"verified: {shards} shards, 8 records" in out
    assert "1 missing (listed, not on disk)" in out and "Archery/v_Archery_g99_c01.avi (train)" in out
    assert "warped flow:" in out
    image = cv2.imread(str(sheet))
    # 2 videos x (RGB, flow, warped flow) rows of 3 frames: taller than wide.
    assert image is not None and image.shape[0] > image.shape[1] > 200
    assert np.std(image) > 10  # frames were drawn, not an empty canvas


def test_summary_lists_rejects_and_counts():
    manifest = {
        "classes": ["a", "b"], "modalities": ["rgb"], "frame_size": [340, 256], "short_side": None,
        "options": {"flow": None}, "library_version": "0.1.0",
        "splits": {"train": {"videos": 3, "per_class": {"a": 2, "b": 1}, "shards": [{"bytes": 2**20}],
                             "frames": {"min": 10, "mean": 20.0, "max": 30}}},
        "rejects": [{"path": "b/x.avi", "split": "train", "reason": "not a video"}], "missing": [], "truncated": [],
    }
    text = summarize(manifest, "out")
    assert "out: 2 classes, modalities rgb, frames 340x256" in text
    assert "train" in text and "1.0" in text and "10 / 20.0 / 30" in text
    assert "1 rejected" in text and "b/x.avi (train): not a video" in text


@pytest.mark.slow
def test_a_flipped_byte_is_caught(copy, capsys):
    shard = next((copy / "train").glob("*.tfrecord"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems, _, _ = verify(copy, progress=False)
    assert any("sha256 differs" in p for p in problems)
    assert any("unreadable TFRecord" in p for p in problems)  # the record CRC no longer matches
    assert tsn(["inspect", str(copy), "--no-progress"]) == 2
    assert "FAILED" in capsys.readouterr().err


@pytest.mark.slow
def test_missing_shard_wrong_count_and_bad_index_are_caught(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    test_shard = copy / manifest["splits"]["test"]["shards"][0]["file"]
    test_shard.unlink()
    manifest["splits"]["train"]["shards"][0]["records"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    second = copy / manifest["splits"]["train"]["shards"][1]["file"]
    index = ShardIndex.load(index_path(second))
    index.offset["rgb"][0] += 1
    index.save(index_path(second))
    (copy / "train" / "train-09999.tfrecord").write_bytes(b"")
    problems, _, _ = verify(copy, progress=False)
    text = "\n".join(problems)
    assert f"{manifest['splits']['test']['shards'][0]['file']}: missing" in text
    assert "records, manifest says" in text
    assert "index span of rgb[0]" in text
    assert "train/train-09999.tfrecord: on disk but not in the manifest" in text


def test_inspect_of_a_folder_without_manifest_is_a_clear_error(tmp_path, capsys):
    assert tsn(["inspect", str(tmp_path)]) == 2
    assert "not a converted dataset" in capsys.readouterr().err
