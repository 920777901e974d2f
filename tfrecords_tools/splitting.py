"""How listed videos are split: clips of one source video kept together, and listing mistakes.

Clips cut from one source video (UCF101's ``gXX``, an HMDB51 movie) look alike; a clip of it in
train and another in val or test leaks. ``carve_splits`` moves whole groups into val/test; the
group rules are ``ucf_group``, ``hmdb_group`` and ``group_rule`` (presets or a regex, for class
folders and list files). ``overlap_rejects`` finds videos listed twice in a
split or in two splits (hand-made list files).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from tfrecords_tools.errors import ConfigError

# A listed video (``datasets.VideoEntry``): anything with ``rel``, ``label`` and ``split``.
Entry = TypeVar("Entry")


def _class_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def carve_splits(entries: list[Entry], classes: list[str], fractions: dict[str, float], seed: int,
                 group_of=None) -> tuple[list[Entry], dict[str, list[Entry]]]:
    """Move a seeded fraction of each class's groups from train to each named split.

    ``fractions`` maps split names to shares of a class's groups, in carving order (``{"val":
    0.1, "test": 0.2}``). With ``group_of`` (video path -> group key), whole groups move, so that
    clips cut from one source video (UCF101's ``gXX``) never straddle two splits: that would
    leak; without it every clip is its own group. Per class the groups are sorted and permuted
    by a generator seeded from ``(seed, class name)``; the first split takes the first
    ``round(fraction * groups)`` of the permutation (at least one), the next split the
    following ones, and so on, leaving train at least one group (later splits give way first).
    A split's groups therefore do not depend on the splits carved after it.
    Returns ``(train, {name: entries})``, each in the input order.
    """
    wanted = {name: fraction for name, fraction in fractions.items() if fraction > 0}
    if not wanted:
        return entries, {name: [] for name in fractions}
    keys_of: dict[int, set] = {}
    for e in entries:
        keys_of.setdefault(e.label, set()).add(group_of(e.rel) if group_of else e.rel)
    split_of: dict[tuple, str] = {}
    for label, name in enumerate(classes):
        keys = sorted(keys_of.get(label, ()))
        if len(keys) < 2:
            continue  # a lone group stays in train
        order = _class_rng(seed, name).permutation(len(keys))
        taken = 0
        for split, fraction in wanted.items():
            count = min(max(round(fraction * len(keys)), 1), len(keys) - 1 - taken)
            split_of.update(((label, keys[i]), split) for i in order[taken:taken + count])
            taken += count

    def split_name(e: Entry) -> str | None:
        return split_of.get((e.label, group_of(e.rel) if group_of else e.rel))

    train = [e for e in entries if split_name(e) is None]
    carved = {name: [replace(e, split=name) for e in entries if split_name(e) == name] for name in fractions}
    return train, carved


GROUP_PRESETS: tuple[str, ...] = ("none", "ucf101", "hmdb51")


def group_rule(group_by: str, rels: list[str], option: str = "group_by"):
    """The group rule (video path -> group key) named by ``group_by``; ``None`` for ``none``.

    ``group_by`` is a preset of :data:`GROUP_PRESETS` (``ucf101``: the ``_gXX_`` of the file
    name; ``hmdb51``: the part of the file name before ``_<class folder>_``) or
    ``regex:<pattern>``, searched in each relative path: its first capture group (or else
    the whole match) names the group; a path it does not match is a group of its own. A bad
    pattern, or one that matches none of ``rels``, is a ``ConfigError`` naming ``option``.
    """
    if group_by == "none":
        return None
    if group_by == "ucf101":
        return ucf_group
    if group_by == "hmdb51":
        return hmdb_group
    if not group_by.startswith("regex:"):
        raise ConfigError(f"{option} {group_by!r}: choose one of {', '.join(GROUP_PRESETS)} or regex:<pattern>")
    try:
        pattern = re.compile(group_by[len("regex:"):])
    except re.error as err:
        raise ConfigError(f"{option} {group_by!r}: not a regular expression ({err})") from None
    if not pattern.pattern or not any(pattern.search(rel) for rel in rels):
        raise ConfigError(f"{option} {group_by!r}: the pattern matches none of the {len(rels)} listed videos")

    def regex_group(rel: str) -> str:
        match = pattern.search(rel)
        if match is None:
            return f"\0{rel}"  # unmatched: its own group (no group name starts with NUL)
        return match.group(1) if pattern.groups else match.group(0)

    return regex_group


def ucf_group(rel: str) -> str:
    """The UCF101 group of a clip (``v_Archery_g01_c02.avi`` -> ``g01``)."""
    match = re.search(r"_(g\d+)_c\d+", Path(rel).stem)
    return match.group(1) if match else Path(rel).stem


def hmdb_group(rel: str) -> str:
    """The source movie of an HMDB51/JHMDB clip: the part of its name before ``_<class>_``.

    ``brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi`` -> ``April_09``. The name carries
    per-clip tags after the class (visibility, camera motion, people, view, quality), so the
    name minus its trailing number split one movie into several groups (on JHMDB 112 of 410
    (class, movie) pairs), and clips of one movie could land in train and val.
    """
    path = Path(rel)
    stem, label = path.stem, path.parent.name
    cut = stem.find(f"_{label}_") if label else -1
    return stem[:cut] if cut > 0 else re.sub(r"_\d+$", "", stem)


def overlap_rejects(splits: dict[str, list], keep_in: str = "test") -> tuple[dict[str, list], list[dict]]:
    """Drop repeated listings: a second listing in the same split, and a training-side listing
    of a video that ``keep_in`` (the test split) also lists, which would leak it.

    Returns the splits without them and one reject (``path``, ``split``, ``reason``) per drop,
    so the summary counts them and ``--strict`` refuses them.
    """
    tested = {e.rel for e in splits.get(keep_in, [])}
    kept, rejects = {}, []
    for name, entries in splits.items():
        seen, out = set(), []
        for e in entries:
            if e.rel in seen:
                rejects.append({"path": e.rel, "split": name, "reason": f"listed twice in split {name!r}"})
            elif name != keep_in and e.rel in tested:
                rejects.append({"path": e.rel, "split": name,
                                "reason": f"also listed in split {keep_in!r}: train/test overlap would leak"})
            else:
                out.append(e)
            seen.add(e.rel)
        kept[name] = out
    return kept, rejects
