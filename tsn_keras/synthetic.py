"""The built-in default dataset: short synthetic action videos that need both TSN streams.

Eight classes of one object on a textured grey background, written as real ``.avi`` files
through OpenCV so that they go through the same converter as any other dataset:

- four **appearance** classes (red, green, blue and magenta discs) that all move the same
  random way: colour tells them apart and motion cannot, so optical flow confuses them while
  a single RGB frame does not;
- four **motion** classes of the same yellow wedge: sliding up, sliding down, shaking from
  side to side, and spinning. Position and orientation are random, so a single RGB frame
  cannot tell them apart (with TSN's average consensus, neither can three), while flow can.
  Left/right or clockwise/anticlockwise pairs would be the obvious choice, but TSN's
  horizontal-flip augmentation turns one into the other without changing the label, so the
  motion classes here are ones a mirror image leaves unchanged (spin turns either way).

A two-stream TSN needs both streams to solve all eight; the demo's table shows it.
Generation is deterministic for a seed: video ``i`` of a split draws from its own generator.

Example:
    >>> info = generate_dataset("data/synthetic")  # doctest: +SKIP
    >>> info["lists"]["train"]  # doctest: +SKIP
    'data/synthetic/train.txt'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_SIZE = (96, 96)  # width, height of the written videos
DEFAULT_SPLITS = {"train": 24, "val": 6, "test": 10}  # videos per class
DEFAULT_FRAMES = (24, 36)  # inclusive range of frames per video
FPS = 25.0


@dataclass(frozen=True)
class SyntheticClass:
    name: str
    cue: str  # "appearance" or "motion": what tells this class apart from the others
    shape: str  # disc | wedge
    colour: tuple[int, int, int]  # BGR
    motion: str  # wander | up | down | shake | spin


RED = (40, 40, 230)
GREEN = (40, 200, 40)
BLUE = (230, 70, 30)
MAGENTA = (220, 40, 220)
YELLOW = (30, 220, 240)

CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("red_disc", "appearance", "disc", RED, "wander"),
    SyntheticClass("green_disc", "appearance", "disc", GREEN, "wander"),
    SyntheticClass("blue_disc", "appearance", "disc", BLUE, "wander"),
    SyntheticClass("magenta_disc", "appearance", "disc", MAGENTA, "wander"),
    SyntheticClass("slide_up", "motion", "wedge", YELLOW, "up"),
    SyntheticClass("slide_down", "motion", "wedge", YELLOW, "down"),
    SyntheticClass("shake", "motion", "wedge", YELLOW, "shake"),
    SyntheticClass("spin", "motion", "wedge", YELLOW, "spin"),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random grey texture with a faint tint, so that the objects' colour stands out."""
    coarse = rng.uniform(70, 170, size=(5, 6, 1)).astype(np.float32) + rng.uniform(-6, 6, size=(1, 1, 3))
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = cv2.resize(rng.uniform(-18, 18, size=(height // 4, width // 4, 1)).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(smooth + grain[..., None], 0, 255)


def _shape_points(shape: str, size: float, angle: float) -> np.ndarray:
    """Vertices (relative to the centre) of a wedge of ``size`` at ``angle`` radians.

    A long isosceles triangle: unlike a disc, its orientation shows rotation.
    """
    if shape != "wedge":
        raise ValueError(f"no polygon for shape {shape!r}")
    base = np.array([[size * 0.75, 0], [-size * 0.5, -size * 0.38], [-size * 0.5, size * 0.38]], np.float32)
    c, s = math.cos(angle), math.sin(angle)
    return base @ np.array([[c, s], [-s, c]], np.float32)


def _draw(canvas: np.ndarray, cls: SyntheticClass, centre: np.ndarray, size: float, angle: float) -> None:
    shift = 4  # sub-pixel precision for smooth motion
    scale = 1 << shift
    if cls.shape == "disc":
        cv2.circle(canvas, (int(centre[0] * scale), int(centre[1] * scale)), int(size / 2 * scale),
                   cls.colour, -1, cv2.LINE_AA, shift)
    else:
        points = ((_shape_points(cls.shape, size, angle) + centre) * scale).astype(np.int32)
        cv2.fillPoly(canvas, [points], cls.colour, cv2.LINE_AA, shift)


def _trajectory(cls: SyntheticClass, rng: np.random.Generator, num_frames: int, width: int, height: int):
    """Per-frame (centre, angle) of the object, and its size."""
    size = float(rng.uniform(16, 22))
    # Stay well inside the frame: TSN's corner crops keep as little as 66% of each side.
    margin = size * 0.8 + min(width, height) * 0.1
    angle0 = float(rng.uniform(0, 2 * math.pi))
    x0, y0 = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
    if cls.motion == "spin":
        # Either way round: a mirror image turns one into the other.
        speed = math.radians(rng.uniform(8, 14)) * rng.choice([-1.0, 1.0])
        return [(np.array([x0, y0]), angle0 + speed * t) for t in range(num_frames)], size
    if cls.motion == "shake":
        amplitude, period, phase = rng.uniform(5, 8), rng.uniform(6, 10), rng.uniform(0, 2 * math.pi)
        x0 = float(np.clip(x0, margin + amplitude, width - margin - amplitude))
        return [(np.array([x0 + amplitude * math.sin(2 * math.pi * t / period + phase), y0]), angle0)
                for t in range(num_frames)], size
    if cls.motion in ("up", "down"):
        speed = rng.uniform(0.9, 1.3)
        travel = speed * (num_frames - 1)
        start = rng.uniform(margin, max(margin, height - margin - travel))
        if cls.motion == "up":  # image y grows downwards
            start, speed = height - start, -speed
        drift = rng.uniform(-0.15, 0.15)
        return [(np.array([x0 + drift * t, start + speed * t]), angle0) for t in range(num_frames)], size
    # "wander": a random direction and speed, bouncing off the borders, the same for every
    # appearance class so that motion does not tell them apart.
    position = np.array([x0, y0])
    heading = rng.uniform(0, 2 * math.pi)
    velocity = rng.uniform(0.8, 2.0) * np.array([math.cos(heading), math.sin(heading)])
    states = []
    for _ in range(num_frames):
        states.append((position.copy(), angle0))
        position += velocity
        for axis, limit in ((0, width), (1, height)):
            if not margin <= position[axis] <= limit - margin:
                velocity[axis] = -velocity[axis]
                position[axis] = np.clip(position[axis], margin, limit - margin)
    return states, size


def render_video(cls: SyntheticClass, rng: np.random.Generator, num_frames: int,
                 size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """Frames ``(num_frames, H, W, 3)`` uint8 BGR of one video of class ``cls``."""
    width, height = size
    background = _background(rng, width, height)
    states, object_size = _trajectory(cls, rng, num_frames, width, height)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t, (centre, angle) in enumerate(states):
        canvas = background.copy()
        _draw(canvas, cls, centre, object_size, angle)
        noise = rng.normal(0, 2.5, size=canvas.shape).astype(np.float32)  # sensor noise
        frames[t] = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float = FPS) -> None:
    """Write BGR frames as a Motion-JPEG ``.avi`` (needs no codec beyond OpenCV's own)."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for frame in frames:
        writer.write(frame)
    writer.release()


def generate_dataset(out_dir: str | Path, *, videos_per_class: dict[str, int] | None = None,
                     num_frames: tuple[int, int] = DEFAULT_FRAMES, size: tuple[int, int] = DEFAULT_SIZE,
                     seed: int = 0, progress: bool = True) -> dict:
    """Write the synthetic dataset: ``videos/<class>/<id>.avi``, list files and ``classes.txt``.

    Args:
        out_dir: folder to write into (created).
        videos_per_class: videos per class for each split name; default train 24, val 6, test 10.
        num_frames: inclusive range of frames per video.
        size: (width, height) of the videos.
        seed: the same seed gives the same videos.
        progress: show a progress bar.

    Returns:
        ``{"root", "videos", "classes", "lists": {split: path}, "classes_file", "cues"}`` —
        ready for ``tsn convert --format list``.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    videos_per_class = dict(videos_per_class or DEFAULT_SPLITS)
    classes_file = out / "classes.txt"
    classes_file.write_text("".join(f"{c.name}\n" for c in CLASSES))
    jobs = [(split, label, i) for split, count in videos_per_class.items()
            for label in range(len(CLASSES)) for i in range(count)]
    lines: dict[str, list[str]] = {split: [] for split in videos_per_class}
    split_ids = {split: k for k, split in enumerate(videos_per_class)}
    for split, label, i in tqdm(jobs, desc="synthetic videos", unit="video", disable=not progress):
        cls = CLASSES[label]
        rng = np.random.default_rng([seed, split_ids[split], label, i])
        frames = render_video(cls, rng, int(rng.integers(num_frames[0], num_frames[1] + 1)), size)
        relative = Path("videos") / cls.name / f"{split}_{cls.name}_{i:03d}.avi"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        write_video(out / relative, frames)
        lines[split].append(f"{relative.as_posix()} {label}\n")
    lists = {}
    for split, split_lines in lines.items():
        lists[split] = str(out / f"{split}.txt")
        Path(lists[split]).write_text("".join(split_lines))
    return {
        "root": str(out),
        "videos": len(jobs),
        "classes": list(CLASS_NAMES),
        "cues": {c.name: c.cue for c in CLASSES},
        "lists": lists,
        "classes_file": str(classes_file),
    }
