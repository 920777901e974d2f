"""Which videos make up each split: parsers for UCF101, HMDB51, class folders and list files.

Every parser returns a :class:`DatasetPlan`: the class names (index = label), the videos of
each split in a fixed order, the listed videos that are not on disk (``missing``: reported,
never silently dropped) and paths that could not be examined (``rejects``, e.g. an unreadable
class folder). Nothing here decodes a video.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from tfrecords_tools.errors import ConfigError, DataError
from tfrecords_tools.plan import DatasetPlan, VideoEntry
from tfrecords_tools.splitting import carve_splits, group_rule, hmdb_group, overlap_rejects, ucf_group

FORMATS: tuple[str, ...] = ("ucf101", "hmdb51", "folder", "list", "kinetics")
UCF_LISTS_DIR = "ucfTrainTestlist"
HMDB_LISTS_DIR = "testTrainMulti_7030_splits"


# --- locating files -----------------------------------------------------------------------

class _Resolver:
    """Find listed relative paths on disk, tolerating case differences (e.g. ``HandStandPushups``).

    Folder listings are cached, so checking ~13,000 listed UCF101 clips costs one listing per
    class folder. Returns ``(path, None)`` when found, ``(None, None)`` when missing and
    ``(None, reason)`` when a folder on the way cannot be read.
    """

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[Path, tuple[set[str], dict[str, str]] | str] = {}

    def _listing(self, folder: Path) -> tuple[set[str], dict[str, str]] | str:
        if folder not in self._listings:
            try:
                names = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError):
                names = []
            except OSError as err:
                self._listings[folder] = f"cannot list directory {folder}: {err.strerror or err}"
                return self._listings[folder]
            self._listings[folder] = (set(names), {n.lower(): n for n in sorted(names, reverse=True)})
        return self._listings[folder]

    def find(self, rel: str) -> tuple[Path | None, str | None]:
        folder = self.root
        for part in Path(rel).parts:
            listing = self._listing(folder)
            if isinstance(listing, str):
                return None, listing
            names, lower = listing
            if part in names:
                folder = folder / part
            elif part.lower() in lower:
                folder = folder / lower[part.lower()]
            else:
                return None, None
        return folder, None


def _locate(entries: Iterable[VideoEntry], root: Path,
            classes: list[str]) -> tuple[list[VideoEntry], list[dict], list[dict]]:
    """Split listed entries into those on disk, missing ones and unreadable ones."""
    resolver = _Resolver(root)
    found, missing, rejects = [], [], []
    for entry in entries:
        path, reason = resolver.find(entry.rel)
        if reason is not None:
            rejects.append({"path": entry.rel, "split": entry.split, "reason": reason})
        elif path is None:
            missing.append({"path": entry.rel, "split": entry.split, "class": classes[entry.label]})
        else:
            found.append(replace(entry, path=str(path)))
    return found, missing, rejects


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of a text file with their 1-based numbers (handles CRLF and BOM)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DataError(f"cannot read list file {path}: {err.strerror or err}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _find_dir(source: Path, annotations: str | os.PathLike | None, name: str, what: str, pattern: str) -> Path:
    candidates = [Path(annotations)] if annotations is not None else [source / name, source.parent / name, source]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob(pattern)):
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"{what} split files not found (looked in {tried}); pass their folder with --annotations")


def _stem_ids(rels: list[str]) -> list[str]:
    """Video ids: file stems when unique in the dataset, else the relative path without extension."""
    stems = [Path(rel).stem for rel in rels]
    if len(set(stems)) == len(stems):
        return stems
    return [str(Path(rel).with_suffix("")) for rel in rels]


# --- validation splits --------------------------------------------------------------------

# --- the four formats ---------------------------------------------------------------------

def _check_split(split: int) -> None:
    if split not in (1, 2, 3):
        raise ConfigError(f"split must be 1, 2 or 3 (the official splits), got {split!r}")


def ucf101(source: str | os.PathLike, split: int = 1, annotations=None, val_fraction: float = 0.0,
           seed: int = 0) -> DatasetPlan:
    """UCF101: ``UCF-101/<Class>/*.avi`` plus ``ucfTrainTestlist`` (1-based classInd).

    ``source`` is the ``UCF-101`` folder or the folder containing it; the split files are
    looked for in ``annotations``, else ``source/ucfTrainTestlist`` or beside it.
    """
    _check_split(split)
    source = Path(source)
    video_root = source / "UCF-101" if (source / "UCF-101").is_dir() else source
    lists = _find_dir(source, annotations, UCF_LISTS_DIR, "UCF101", "classInd.txt")
    class_lines = _read_lines(lists / "classInd.txt")
    classes = []
    for number, line in class_lines:
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise DataError(f"{lists / 'classInd.txt'}:{number}: expected '<{len(classes) + 1}> <class name>', got {line!r}")
        classes.append(parts[1])
    index = {name.lower(): i for i, name in enumerate(classes)}
    listed: dict[str, list[VideoEntry]] = {"train": [], "test": []}
    for split_name, file_name in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        list_path = lists / file_name
        for number, line in _read_lines(list_path):
            parts = line.split()
            rel = parts[0]
            class_name = Path(rel).parts[0] if len(Path(rel).parts) > 1 else ""
            if class_name.lower() not in index:
                raise DataError(f"{list_path}:{number}: class folder {class_name!r} of {rel!r} is not in classInd.txt")
            label = index[class_name.lower()]
            if len(parts) > 1 and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
                raise DataError(f"{list_path}:{number}: label {parts[1]} does not match class {class_name!r} "
                                f"(classInd gives {label + 1})")
            listed[split_name].append(VideoEntry(rel, rel, Path(rel).stem, label, split_name))
    train, carved = carve_splits(listed["train"], classes, {"val": val_fraction}, seed, group_of=ucf_group)
    val = carved["val"]
    return _plan(classes, {"train": train, "val": val, "test": listed["test"]}, video_root)


def hmdb51(source: str | os.PathLike, split: int = 1, annotations=None, val_fraction: float = 0.0,
           seed: int = 0) -> DatasetPlan:
    """HMDB51: ``<root>/<class>/*.avi`` plus ``testTrainMulti_7030_splits/<class>_test_split<N>.txt``.

    Each split file line is ``<video> <0|1|2>``: 1 train, 2 test, 0 unused. Classes are the
    split files' class names in sorted order (the order of mmaction2 and tsn-pytorch).
    """
    _check_split(split)
    source = Path(source)
    lists = _find_dir(source, annotations, HMDB_LISTS_DIR, "HMDB51", "*_test_split*.txt")
    files = sorted(lists.glob(f"*_test_split{split}.txt"))
    if not files:
        raise DataError(f"no '*_test_split{split}.txt' files in {lists}")
    classes = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    video_root = source / "hmdb51_org" if (source / "hmdb51_org").is_dir() else source
    listed: dict[str, list[VideoEntry]] = {"train": [], "test": []}
    for label, (name, list_path) in enumerate(zip(classes, files)):
        for number, line in _read_lines(list_path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{list_path}:{number}: expected '<video> <0|1|2>', got {line!r}")
            if parts[1] == "0":
                continue
            split_name = "train" if parts[1] == "1" else "test"
            rel = f"{name}/{parts[0]}"
            listed[split_name].append(VideoEntry(rel, rel, Path(rel).stem, label, split_name))
    train, carved = carve_splits(listed["train"], classes, {"val": val_fraction}, seed, group_of=hmdb_group)
    val = carved["val"]
    return _plan(classes, {"train": train, "val": val, "test": listed["test"]}, video_root)


def folder(source: str | os.PathLike, val_fraction: float = 0.0, seed: int = 0, test_fraction: float = 0.0,
           group_by: str = "none") -> DatasetPlan:
    """``<root>/<class>/<video>``: classes are the sorted folder names; ``val`` and ``test`` are
    seeded fractions of each class's groups (``group_by``: see :func:`splitting.group_rule`).

    Every non-hidden file in a class folder is listed (a file that is not a video is then
    rejected with a reason, not skipped in silence); an unreadable class folder is a reject.
    """
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders (expected <root>/<class>/<video>)")
    rels, labels, rejects = [], [], []
    for label, name in enumerate(classes):
        try:
            names = sorted(os.listdir(root / name))
        except OSError as err:
            rejects.append({"path": name, "split": None, "reason": f"cannot list directory: {err.strerror or err}"})
            continue
        for file_name in names:
            if not file_name.startswith(".") and not (root / name / file_name).is_dir():
                rels.append(f"{name}/{file_name}")
                labels.append(label)
    entries = [VideoEntry(str(root / rel), rel, vid, label, "train") for rel, vid, label in zip(rels, _stem_ids(rels), labels)]
    group_of = group_rule(group_by, rels, "group_by/--group-by")
    train, carved = carve_splits(entries, classes, {"val": val_fraction, "test": test_fraction}, seed, group_of)
    if not test_fraction:
        del carved["test"]  # no test split unless asked for
    plan = DatasetPlan(classes, {"train": train, **carved})
    plan.rejects.extend(rejects)
    return plan


def read_classes_file(path: str | os.PathLike) -> list[str]:
    """Class names from one name per line, or UCF ``classInd`` style ``<1-based index> <name>``."""
    lines = _read_lines(Path(path))
    pairs = [line.split(maxsplit=1) for _, line in lines]
    if lines and all(len(p) == 2 and p[0].isdigit() for p in pairs):
        numbers = [int(p[0]) for p in pairs]
        if numbers != list(range(1, len(numbers) + 1)):
            raise DataError(f"{path}: numbered class lines must run 1, 2, ..., {len(numbers)} (classInd style)")
        return [p[1].strip() for p in pairs]
    return [line for _, line in lines]


def list_files(source: str | os.PathLike, lists: dict[str, str | os.PathLike],
               classes_file: str | os.PathLike | None = None, val_fraction: float = 0.0, seed: int = 0,
               test_fraction: float = 0.0, group_by: str = "none") -> DatasetPlan:
    """List files of ``<relative path> <0-based label>`` lines (mmaction2's video lists), one per split.

    ``val_fraction`` / ``test_fraction`` carve seeded fractions of each class's groups
    (``group_by``) from the train list, for a split that has no list of its own.
    """
    root = Path(source)
    if not lists:
        raise ConfigError("format 'list' needs at least one list file: lists={'train': 'train.txt', ...} "
                          "(CLI: --list train=train.txt)")
    parsed: dict[str, list[tuple[str, int]]] = {}
    for split_name, list_path in lists.items():
        rows = []
        for number, line in _read_lines(Path(list_path)):
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{list_path}:{number}: expected '<relative path> <label>', got {line!r}")
            label = int(parts[1])
            if label < 0:
                raise DataError(f"{list_path}:{number}: labels are 0-based and non-negative, got {label}")
            rows.append((parts[0], label))
        parsed[split_name] = rows
    max_label = max((label for rows in parsed.values() for _, label in rows), default=-1)
    if classes_file is not None:
        classes = read_classes_file(classes_file)
        if max_label >= len(classes):
            raise DataError(f"label {max_label} in the lists but {classes_file} names only {len(classes)} classes")
    else:
        classes = [f"class{i}" for i in range(max_label + 1)]
    all_rels = [rel for rows in parsed.values() for rel, _ in rows]
    ids = iter(_stem_ids(all_rels))
    splits = {name: [VideoEntry(rel, rel, next(ids), label, name) for rel, label in rows]
              for name, rows in parsed.items()}
    splits, repeated = overlap_rejects(splits)
    fractions = {"val": val_fraction, "test": test_fraction}
    for name, fraction in fractions.items():
        if fraction and name in splits:
            raise ConfigError(f"{name}_fraction/--{name}-fraction carves {name} from the train list, but a {name} "
                              f"list was given (--list {name}=...): use one or the other")
        if fraction and "train" not in splits:
            raise ConfigError(f"{name}_fraction/--{name}-fraction carves {name} from the train list: pass one "
                              "(--list train=train.txt)")
    if any(fractions.values()):
        group_of = group_rule(group_by, [e.rel for e in splits["train"]], "group_by/--group-by")
        splits["train"], carved = carve_splits(splits["train"], classes, fractions, seed, group_of)
        splits.update((name, entries) for name, entries in carved.items() if fractions[name])
    elif group_by != "none":
        group_rule(group_by, all_rels, "group_by/--group-by")  # checked even when nothing is carved
    plan = _plan(classes, splits, root)
    plan.rejects.extend(repeated)
    return plan


def _plan(classes: list[str], listed: dict[str, list[VideoEntry]], root: Path) -> DatasetPlan:
    splits, missing, rejects = {}, [], []
    for name, entries in listed.items():
        found, lost, bad = _locate(entries, root, classes)
        splits[name] = found
        missing.extend(lost)
        rejects.extend(bad)
    return DatasetPlan(classes, splits, missing, rejects)


def keep_present_classes(plan: DatasetPlan) -> DatasetPlan:
    """Keep only classes with at least one video on disk, relabelled 0..n-1 in the original order.

    Listed videos of the dropped classes are summarised per class in ``dropped_classes``;
    each entry keeps its ``original_label``.
    """
    present = sorted({e.label for entries in plan.splits.values() for e in entries})
    if not present:
        raise DataError("no listed video was found on disk, so no class is present")
    new_label = {old: new for new, old in enumerate(present)}
    dropped = []
    for label, name in enumerate(plan.classes):
        if label not in new_label:
            counts: dict[str, int] = {}
            for item in plan.missing:
                if item["class"] == name:
                    counts[item["split"]] = counts.get(item["split"], 0) + 1
            dropped.append({"class": name, "original_label": label, "listed": counts})
    kept_names = {plan.classes[i] for i in present}
    splits = {name: [replace(e, label=new_label[e.label], original_label=e.label) for e in entries]
              for name, entries in plan.splits.items()}
    missing = [m for m in plan.missing if m["class"] in kept_names]
    return DatasetPlan([plan.classes[i] for i in present], splits, missing, plan.rejects, dropped)


def make_plan(format: str, source: str | os.PathLike, *, split: int = 1, lists=None, classes_file=None,
              annotations=None, val_fraction: float = 0.0, seed: int = 0,
              present_classes_only: bool = False, test_fraction: float = 0.0, group_by: str = "none") -> DatasetPlan:
    """Parse a dataset in one of :data:`FORMATS` (see the parser of each).

    ``test_fraction`` and ``group_by`` (:data:`splitting.GROUP_PRESETS` or ``regex:<pattern>``) are for
    the folder and list formats; UCF101 and HMDB51 group by their own rule.
    """
    if format not in FORMATS:
        raise ConfigError(f"format {format!r} is not supported; choose one of {', '.join(FORMATS)}")
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction must be below 1 (train keeps the rest), got "
                          f"{val_fraction} + {test_fraction}")
    if format != "list" and (lists or classes_file):
        raise ConfigError(f"lists/--list and classes_file/--classes are for format 'list', not {format!r}")
    if format not in ("folder", "list") and (test_fraction or group_by != "none"):
        raise ConfigError(f"test_fraction/--test-fraction and group_by/--group-by are for the folder and list formats; "
                          f"{format} has an official test split and its own grouping")
    if format in ("folder", "list") and annotations is not None:
        raise ConfigError(f"annotations/--annotations is for the ucf101 and hmdb51 formats, not {format!r}")
    if format == "kinetics":
        if val_fraction:
            raise ConfigError("format kinetics has an official validation split (validate.csv); "
                              "val_fraction is not used with it")
        from tfrecords_tools.kinetics import kinetics  # it imports this module

        plan = kinetics(source, annotations)  # checks the folder itself: it may be a gs:// URL
    elif not Path(source).is_dir():
        raise DataError(f"dataset folder {source} does not exist or is not a folder")
    elif format == "ucf101":
        plan = ucf101(source, split, annotations, val_fraction, seed)
    elif format == "hmdb51":
        plan = hmdb51(source, split, annotations, val_fraction, seed)
    elif format == "folder":
        plan = folder(source, val_fraction, seed, test_fraction, group_by)
    else:
        plan = list_files(source, lists, classes_file, val_fraction, seed, test_fraction, group_by)
    carved = {"val"} | ({"test"} if test_fraction else set())  # a carved split may come out empty
    plan.splits = {name: entries for name, entries in plan.splits.items() if entries or name not in carved}
    if present_classes_only:
        plan = keep_present_classes(plan)
    return plan
