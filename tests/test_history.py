"""history.csv is read in one place, with the tolerance every reader needs (late columns, blank and short rows)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tsn_keras.errors import DataError
from tsn_keras.history import columns, number, read_columns, read_rows


def test_rows_of_a_missing_file_are_empty(tmp_path):
    assert read_rows(tmp_path / "history.csv") == []


def test_blank_short_and_late_cells_are_nan(tmp_path):
    path = tmp_path / "history.csv"
    # Validation every second epoch (blank cells), and a short last row (a column without a cell).
    path.write_text("epoch,iteration,loss,val_loss\n0,2,1.5,\n1,4,1.25,1.75\n2,6,1.0\n")
    rows = read_rows(path)
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    history = read_columns(path)
    assert list(history) == ["epoch", "iteration", "loss", "val_loss"]
    assert history["iteration"] == [2.0, 4.0, 6.0]
    assert history["loss"] == [1.5, 1.25, 1.0]
    assert math.isnan(history["val_loss"][0]) and history["val_loss"][1] == 1.75 and math.isnan(history["val_loss"][2])


def test_columns_of_mixed_rows_keep_first_appearance_order():
    # A resumed run: rows read back from the file hold strings, rows of this run numbers, and a
    # column (val_accuracy) appears only in the newer rows.
    rows = [{"epoch": "0", "loss": "2.0"}, {"epoch": 1, "loss": 1.5, "val_accuracy": 0.5}]
    history = columns(rows)
    assert list(history) == ["epoch", "loss", "val_accuracy"]
    assert history["epoch"] == [0.0, 1.0] and history["loss"] == [2.0, 1.5]
    assert math.isnan(history["val_accuracy"][0]) and history["val_accuracy"][1] == 0.5


def test_non_numeric_columns_and_cells_past_the_header_are_left_out(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,time,loss\n0,12:00,2.0\n1,12:05,1.0,extra\n")
    assert read_columns(path) == {"epoch": [0.0, 1.0], "loss": [2.0, 1.0]}


def test_number():
    assert number("0.25") == 0.25 and number(3) == 3.0
    assert math.isnan(number("")) and math.isnan(number(None))
    with pytest.raises(ValueError):
        number("12:00")


def test_read_columns_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_columns(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(DataError, match="no epochs"):
        read_columns(tmp_path / "empty.csv")


def test_reading_history_does_not_load_tensorflow():
    code = "import sys, tsn_keras.history; assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
