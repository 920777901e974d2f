"""Fixtures of the conversion tests: a slice of the real UCF101 subset, synthetic and broken videos."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

# A slice of the official split 1 that is on disk (the shortest clips, to stay fast), plus
# lines that are listed but not on disk: one of a present class, one of an absent class.
SLICE_TRAIN = [
    "Archery/v_Archery_g22_c01.avi 3",
    "Archery/v_Archery_g17_c04.avi 3",
    "Archery/v_Archery_g99_c01.avi 3",  # not on disk
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",  # class absent from the subset
    "BasketballDunk/v_BasketballDunk_g13_c01.avi 9",
    "BasketballDunk/v_BasketballDunk_g12_c01.avi 9",
    "PlayingPiano/v_PlayingPiano_g19_c03.avi 64",
    "PlayingViolin/v_PlayingViolin_g15_c01.avi 67",
]
SLICE_TEST = [
    "Archery/v_Archery_g05_c04.avi",
    "BasketballDunk/v_BasketballDunk_g07_c02.avi",
]
# The options of the reference conversion (DIS flow on small frames: seconds, not minutes).
SLICE_OPTIONS = dict(format="ucf101", modalities=("rgb", "flow", "warped_flow"), flow="dis", short_side=48,
                     shard_size_mb=0.25, present_classes_only=True, progress=False)


@pytest.fixture(scope="session")
def ucf_slice(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    """``(source, annotations)``: the real videos and split-1 files listing only a slice of them."""
    lists = tmp_path_factory.mktemp("ucf_slice_lists")
    shutil.copy(shared_data / "ucfTrainTestlist" / "classInd.txt", lists / "classInd.txt")
    # CRLF, like the official files.
    (lists / "trainlist01.txt").write_bytes("\r\n".join(SLICE_TRAIN).encode() + b"\r\n")
    (lists / "testlist01.txt").write_bytes("\r\n".join(SLICE_TEST).encode() + b"\r\n")
    return shared_data, lists


@pytest.fixture(scope="session")
def reference_conversion(ucf_slice, tmp_path_factory) -> Path:
    """The slice converted once, uninterrupted, with one worker."""
    from tfrecords_tools.convert import convert_dataset

    source, lists = ucf_slice
    out = tmp_path_factory.mktemp("reference") / "out"
    convert_dataset(source, out, annotations=lists, workers=1, **SLICE_OPTIONS)
    return out


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random grayscale texture, rich enough for optical flow and feature matching."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width)).astype(np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)


def panning_frames(num_frames: int, shift: tuple[int, int], size=(96, 72), seed: int = 0) -> list[np.ndarray]:
    """BGR frames of a texture whose content moves by ``shift`` = (dx, dy) pixels per frame."""
    width, height = size
    margin = 4 + max(abs(shift[0]), abs(shift[1])) * num_frames
    big = texture(height + 2 * margin, width + 2 * margin, seed)
    frames = []
    for t in range(num_frames):
        x0, y0 = margin - shift[0] * t, margin - shift[1] * t
        frames.append(cv2.cvtColor(big[y0:y0 + height, x0:x0 + width], cv2.COLOR_GRAY2BGR))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """A lossless (FFV1) AVI of ``frames``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def shard_bytes(root: Path) -> dict[str, bytes]:
    """Every shard and index file under ``root`` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.tfrecord*"))}
