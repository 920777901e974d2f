"""A run's figure inputs are found, and what is missing is said, before anything is drawn."""

from __future__ import annotations

import os

import pytest

from tsn_keras.errors import DataError
from tsn_keras.run_files import find_run_files


def test_a_folder_without_files_names_every_missing_input(tmp_path):
    found = find_run_files(tmp_path)
    assert found.history is None and found.metrics is None and found.video is None
    assert (found.num_segments, found.new_length, found.modality) == (3, 1, "rgb")  # TSN's defaults
    assert [reason.split(":")[0] for reason in found.missing] == [
        "training curves", "confusion matrix and per-class accuracy", "sampling picture"]


def test_the_newest_evaluation_is_chosen_and_a_metrics_file_stands_for_its_folder(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    for i, name in enumerate(("eval-val", "eval-test")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
        os.utime(tmp_path / name / "metrics.json", (1000 + i, 1000 + i))
    found = find_run_files(tmp_path)
    assert found.history == tmp_path / "history.csv"
    assert found.metrics == tmp_path / "eval-test" / "metrics.json"
    by_file = find_run_files(tmp_path / "eval-val" / "metrics.json")
    assert by_file.folder == tmp_path / "eval-val" and by_file.metrics == tmp_path / "eval-val" / "metrics.json"


def test_a_video_id_needs_converted_data(tmp_path):
    with pytest.raises(DataError, match="names no converted data"):
        find_run_files(tmp_path, video="v_Archery_g01_c01")
    with pytest.raises(DataError, match=r"neither a run folder nor a metrics\.json"):
        find_run_files(tmp_path / "nothing")
