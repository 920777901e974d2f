"""How listed videos are split: clips of one source video kept together, and listing mistakes.

Clips cut from one source video (UCF101's ``gXX``, an HMDB51 movie) look alike; a clip of it in
train and another in val or test leaks. ``carve_validation`` moves whole groups; the group
rules are ``ucf_group`` and ``hmdb_group``. ``overlap_rejects`` finds videos listed twice in a
split or in two splits (hand-made list files).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np

# A listed video (``datasets.VideoEntry``): anything with ``rel``, ``label`` and ``split``.
Entry = TypeVar("Entry")


def _class_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def carve_validation(entries: list[Entry], classes: list[str], fraction: float, seed: int,
                     group_of=None) -> tuple[list[Entry], list[Entry]]:
    """Move a seeded ``fraction`` of each class from train to ``val``.

    With ``group_of`` (video path -> group key), whole groups move, so that clips cut from the
    same source video (UCF101's ``gXX``) never straddle train and val: that would leak.
    Returns ``(train, val)``, each in the input order.
    """
    if fraction <= 0:
        return entries, []
    keys_of: dict[int, set] = {}
    for e in entries:
        keys_of.setdefault(e.label, set()).add(group_of(e.rel) if group_of else e.rel)
    val_keys: set = set()
    for label, name in enumerate(classes):
        keys = sorted(keys_of.get(label, ()))
        if not keys:
            continue
        count = round(fraction * len(keys))
        if count == 0 and len(keys) > 1:
            count = 1  # every class gets some validation clips
        count = min(count, len(keys) - 1) if len(keys) > 1 else 0
        chosen = _class_rng(seed, name).permutation(len(keys))[:count]
        val_keys.update((label, keys[i]) for i in chosen)

    def is_val(e: Entry) -> bool:
        return (e.label, group_of(e.rel) if group_of else e.rel) in val_keys

    train = [e for e in entries if not is_val(e)]
    val = [replace(e, split="val") for e in entries if is_val(e)]
    return train, val


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
