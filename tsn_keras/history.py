"""A run's ``history.csv`` (one row per epoch), read in one place, without TensorFlow.

The file is written by :class:`tsn_keras.callbacks.HistoryCSV` (or Keras' ``CSVLogger``). Its
readers are the resumed run (the rows of the epochs before the restored one), the best
checkpoint (the best value of those rows), ``train``'s result and the training-curve figure.
All of them tolerate the same things:

- a blank cell: validation runs every ``train.validate_every`` epochs, and a column that
  appears later (``val_*``) is blank in the earlier rows;
- a missing cell (a short row): read as blank;
- a non-numeric column (e.g. a timestamp a user added): left out of :func:`columns`.

Example:
    >>> read_columns("runs/ucf101_rgb-20240101-120000/history.csv")["loss"]  # doctest: +SKIP
    [2.31, 1.87, 1.52]
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from tsn_keras.errors import DataError


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows as written, cells as strings; empty when the file does not exist (no epoch finished yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def number(cell: str | float | None) -> float:
    """A cell as a float; a blank or missing cell is NaN, text that is not a number a ``ValueError``."""
    if cell is None or cell == "":
        return math.nan
    return float(cell)


def columns(rows: Iterable[Mapping[str, object]]) -> dict[str, list[float]]:
    """The numeric columns of ``rows`` as float lists, in the order they first appear.

    A row without a column's value gets NaN there; a column with any non-numeric cell is left out.
    Rows may hold strings (read from the file) or numbers (logged by this run).
    """
    rows = list(rows)
    names: list[str] = []
    for row in rows:
        names += [name for name in row if name is not None and name not in names]  # None: cells past the header
    out: dict[str, list[float]] = {}
    for name in names:
        try:
            out[name] = [number(row.get(name)) for row in rows]
        except (TypeError, ValueError):
            continue
    return out


def read_columns(path: str | os.PathLike) -> dict[str, list[float]]:
    """:func:`columns` of the file; a ``DataError`` if it does not exist or holds no epoch."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"history file {path} not found (a run folder holds history.csv once an epoch has finished)")
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path} holds no epochs yet")
    return columns(rows)
