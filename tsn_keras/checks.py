"""Checks of a recipe against its data, run before any training work starts.

``Config.validate`` checks what a recipe says on its own; :func:`check_data` checks it against
the converted dataset it names: the folder and its manifest exist, the splits exist and have
their shards, the modality's frames were converted, and the crop fits in the stored frames.
It reads only the manifest, the byte indexes and one JPEG (no TensorFlow op runs, so that a
``MultiWorkerMirroredStrategy`` can still be created afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfrecords_tools.manifest import load_manifest, split_shards
from tfrecords_tools.schema import MODALITY_KEYS, STORED_KEYS, modality_keys
from tfrecords_tools.shards import ShardIndex, index_path
from tsn_keras.config import Config
from tsn_keras.errors import ConfigError, DataError

# Consensus modes that reduce K segments to one prediction, which the loss needs.
TRAINABLE_CONSENSUS = ("avg", "max", "weighted", "topk", "attention", "gru")


@dataclass
class DataSummary:
    """What training needs to know about the converted dataset."""

    manifest: dict
    classes: list[str]
    train_videos: int
    val_videos: int  # 0 when there is no validation split
    frame_size: tuple[int, int] | None  # (width, height) of the stored frames, when known


def check_data(config: Config) -> DataSummary:
    """Check ``config`` against the dataset in ``data.root``; raises before any work.

    Raises:
        ConfigError: a key whose value the data cannot satisfy (named, with what is allowed).
        DataError: the data itself is missing or broken (no manifest, missing shards).
    """
    d, m = config.data, config.model
    if m.consensus not in TRAINABLE_CONSENSUS:
        raise ConfigError(f"model.consensus={m.consensus!r} cannot be trained (it keeps one prediction per snippet); "
                          f"allowed for training: {', '.join(TRAINABLE_CONSENSUS)}")
    for key, path in (("model.weights", m.weights), ("model.init_from", m.init_from)):
        if path is not None and path != "imagenet" and not Path(path).exists():
            allowed = "null, 'imagenet' or an existing file" if key == "model.weights" else "null or an existing file"
            raise ConfigError(f"{key}={path} does not exist; allowed: {allowed}")
    if not d.root:
        raise ConfigError("data.root is not set: give the folder written by `tsn convert` "
                          "(e.g. --set data.root=data/ucf101_split1)")
    root = Path(d.root)
    if not root.is_dir():
        raise ConfigError(f"data.root={d.root} is not a folder; give the output folder of `tsn convert`")
    manifest = load_manifest(root)
    available = list(manifest["splits"])
    counts = {}
    for key, split in (("data.train_split", d.train_split), ("data.val_split", d.val_split)):
        if split is None:
            continue
        if split not in manifest["splits"]:
            extra = " or null for no validation" if key == "data.val_split" else ""
            raise ConfigError(f"{key}={split!r} is not a split of {d.root}; available: {', '.join(available)}{extra}")
        split_shards(root, split)
        counts[split] = int(manifest["splits"][split].get("videos", 0))
        if counts[split] == 0:
            raise DataError(f"split {split!r} of {d.root} has no videos")

    stored = set(manifest.get("stored_keys") or STORED_KEYS)
    needed = modality_keys(d.modality)
    if not stored.issuperset(needed):
        possible = [name for name, keys in MODALITY_KEYS.items() if stored.issuperset(keys)]
        raise ConfigError(
            f"data.modality={d.modality} needs the stored frames {', '.join(needed)}, which {d.root} does not have "
            f"(it has {', '.join(sorted(stored))}); allowed with this data: {', '.join(possible)}, "
            f"or convert again with --modalities including {'flow' if 'flow' in d.modality else d.modality}"
        )

    frame_size = _frame_size(manifest, root, d.train_split)
    if frame_size is not None:
        short = min(frame_size)
        if d.input_size > short:
            raise ConfigError(
                f"data.input_size={d.input_size} is larger than the stored frames ({frame_size[0]}x{frame_size[1]}); "
                f"allowed: <= {short} (crops are cut from the stored frames)"
            )
    return DataSummary(
        manifest=manifest,
        classes=list(manifest["classes"]),
        train_videos=counts[d.train_split],
        val_videos=counts.get(d.val_split, 0) if d.val_split else 0,
        frame_size=frame_size,
    )


def _frame_size(manifest: dict, root: Path, split: str) -> tuple[int, int] | None:
    """``(width, height)`` of the stored frames: from the manifest, else from the first JPEG."""
    if manifest.get("frame_size"):
        width, height = manifest["frame_size"]
        return int(width), int(height)
    if manifest.get("short_side"):
        side = int(manifest["short_side"])
        return side, side
    # Frames kept at their native size: look at the first stored frame of the split.
    import cv2

    shard = split_shards(root, split)[0]
    index_file = index_path(shard)
    if not index_file.is_file():
        return None
    index = ShardIndex.load(index_file)
    key = next((k for k in STORED_KEYS if k in index.offset and len(index.offset[k])), None)
    if key is None:
        return None
    with open(shard, "rb") as handle:
        handle.seek(int(index.offset[key][0]))
        data = handle.read(int(index.length[key][0]))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"the first frame of {shard} is not a readable JPEG")
    return int(image.shape[1]), int(image.shape[0])

