"""Kinetics-400/600/700: the official annotation CSVs and clips named as the download scripts name them.

Annotations: ``train.csv``, ``validate.csv`` (or ``val.csv``) and ``test.csv``, also with a
prefix such as ``kinetics_400_train.csv``, with the header
``label,youtube_id,time_start,time_end,split`` (extra columns such as ``is_cc`` are ignored).
A CSV without a ``label`` column (the original test release) is not converted: it appears once
in ``rejects``. Classes are the sorted labels of the training CSV (the order of the official
class list and of mmaction2).

Clips: ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>``, as written by the ActivityNet
crawler, the CVDF tarballs and mmaction2's scripts, anywhere under the video folder:
``<root>/<split>/<label>/<clip>``, ``<root>/<split>/<clip>`` and ``<root>/<clip>`` all work, as
the label comes from the CSV, never from a folder name (the scripts disagree on how they spell
them: spaces, underscores, quotes). Listed clips not found are counted in ``missing``.

The video folder may also be a ``gs://`` (or other Beam file system) URL when Apache Beam is
installed; it is then listed with Beam's ``FileSystems`` (for ``--runner beam``).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from tfrecords_tools.errors import ConfigError, DataError
from tfrecords_tools.plan import DatasetPlan, VideoEntry

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")
# train / validate / test CSV names, bare or with a prefix ("kinetics_400_train.csv").
_CSV_NAME = re.compile(r"(?:^|[_-])(train|validate|val|test)\.csv$", re.IGNORECASE)
_SPLIT_OF = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def clip_name(youtube_id: str, start: float, end: float) -> str:
    """The clip stem the download scripts write: ``<youtube_id>_<start:06d>_<end:06d>``."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def _is_remote(path: str) -> bool:
    return "://" in path


def _find_csvs(source: str, annotations: str | os.PathLike | None) -> dict[str, Path]:
    """``{split: csv path}`` from ``annotations`` (else searched in and beside a local ``source``)."""
    if annotations is not None:
        candidates = [Path(annotations)]
    elif _is_remote(source):
        raise ConfigError("format kinetics with a remote video folder: pass the annotation CSVs' folder "
                          "with --annotations")
    else:
        candidates = [Path(source), Path(source).parent]
    for folder in candidates:
        if not folder.is_dir():
            continue
        found: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            match = _CSV_NAME.search(path.name)
            if match and path.is_file():
                split = _SPLIT_OF[match.group(1).lower()]
                if split in found:
                    raise DataError(f"two {split} annotation files in {folder}: {found[split].name}, {path.name}")
                found[split] = path
        if "train" in found:
            return found
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"Kinetics annotation CSVs (train.csv, validate.csv, test.csv) not found (looked in {tried}); "
                    "pass their folder with --annotations")


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DataError(f"cannot read annotation file {path}: {err.strerror or err}") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    needed = {"youtube_id", "time_start", "time_end"}
    if not needed <= set(columns):
        raise DataError(f"{path}: expected the columns label,youtube_id,time_start,time_end,split; got {columns}")
    # Line numbers for messages: the header is line 1.
    return columns, [(number, row) for number, row in enumerate(reader, 2)]


def _list_videos(source: str) -> dict[str, list[str]]:
    """Clip stem -> paths of the video files under ``source`` (any depth), sorted."""
    found: dict[str, list[str]] = {}
    if _is_remote(source):
        try:
            from apache_beam.io.filesystems import FileSystems
        except ImportError:
            raise ConfigError(f"{source}: listing a remote video folder needs Apache Beam "
                              "(pip install 'tsn-keras[beam]')") from None
        paths = [m.path for m in FileSystems.match([source.rstrip("/") + "/**"])[0].metadata_list]
    else:
        paths = [os.path.join(folder, name) for folder, _, names in os.walk(source) for name in names]
    for path in sorted(paths):
        stem, ext = os.path.splitext(os.path.basename(path))
        if ext.lower() in VIDEO_EXTENSIONS:
            found.setdefault(stem, []).append(path)
    return found


def _pick(paths: list[str], source: str, split: str) -> str:
    """Of several files of one clip, the one under a folder named like its split (else the first)."""
    names = {"train": ("train",), "val": ("val", "validate", "validation"), "test": ("test",)}[split]
    for path in paths:
        rel = path[len(source):].lstrip("/")
        if rel.split("/")[0].lower() in names:
            return path
    return paths[0]


def kinetics(source: str | os.PathLike, annotations: str | os.PathLike | None = None) -> DatasetPlan:
    """Kinetics-400/600/700 (see the module docstring for the files and the clip names)."""
    source = os.fspath(source)
    if not _is_remote(source):
        if not Path(source).is_dir():
            raise DataError(f"dataset folder {source} does not exist or is not a folder")
        source = os.path.abspath(source)  # workers may run elsewhere than in this folder
    csvs = _find_csvs(source, annotations)
    parsed = {split: _read_csv(path) for split, path in csvs.items()}
    columns, rows = parsed["train"]
    if "label" not in columns:
        raise DataError(f"{csvs['train']}: the training CSV has no 'label' column, so there are no classes")
    classes = sorted({row["label"].strip() for _, row in rows if (row["label"] or "").strip()})
    if not classes:
        raise DataError(f"{csvs['train']}: no labelled rows")
    index = {name: i for i, name in enumerate(classes)}
    videos = _list_videos(source)
    splits: dict[str, list[VideoEntry]] = {}
    missing: list[dict] = []
    rejects: list[dict] = []
    for split in ("train", "val", "test"):
        if split not in parsed:
            continue
        columns, rows = parsed[split]
        path = csvs[split]
        if "label" not in columns:
            rejects.append({"path": path.name, "split": split,
                            "reason": f"no label column: the {len(rows)} unlabelled clips are not converted"})
            continue
        entries, seen = [], set()
        for number, row in rows:
            try:
                stem = clip_name(row["youtube_id"].strip(), row["time_start"], row["time_end"])
            except (ValueError, AttributeError):
                raise DataError(f"{path}:{number}: expected youtube_id, time_start and time_end, got {row}") from None
            label = (row["label"] or "").strip()
            if not label:
                rejects.append({"path": stem, "split": split, "reason": f"no label in {path.name}:{number}"})
                continue
            if label not in index:
                raise DataError(f"{path}:{number}: label {label!r} is not a class of the training CSV")
            if stem in seen:
                continue  # the same clip listed twice in one split is converted once
            seen.add(stem)
            files = videos.get(stem)
            if not files:
                missing.append({"path": f"{stem}.mp4", "split": split, "class": label})
                continue
            chosen = _pick(files, source, split)
            rel = chosen[len(source):].lstrip("/") if chosen.startswith(source) else chosen
            entries.append(VideoEntry(chosen, rel, stem, index[label], split))
        splits[split] = entries
    return DatasetPlan(classes, splits, missing, rejects)
