"""What a conversion converts: the videos of each split (``VideoEntry``) and the whole plan.

The dataset parsers (``datasets``, ``kinetics``) make a ``DatasetPlan``; the converters (local
pool and Beam) turn it into shards. Every parser returns the class names (index = label), the
videos of each split in a fixed order, the listed videos that are not on disk (``missing``:
reported, never silently dropped) and paths that could not be examined (``rejects``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VideoEntry:
    """One listed video: where it is, what it is called in the shards, its label and split."""

    path: str  # absolute path on disk (the listed path when missing)
    rel: str  # path as listed, relative to the dataset root
    video_id: str
    label: int
    split: str
    original_label: int | None = None  # before --present-classes-only relabelling


@dataclass
class DatasetPlan:
    """What to convert: classes, the videos of each split, and what is missing or rejected."""

    classes: list[str]
    splits: dict[str, list[VideoEntry]]
    missing: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    dropped_classes: list[dict] = field(default_factory=list)
