"""The built-in default dataset: short synthetic action videos that need both TSN streams.

Eight classes of one object on a textured background, written as real ``.avi`` files through
OpenCV so that they go through the same converter as any other dataset:

- four **appearance** classes (red disc, blue disc, red square, blue square) that all move the
  same random way: colour tells them apart, motion cannot, so optical flow confuses
  red with blue while a single RGB frame does not;
- four **motion** classes of the same yellow wedge: sliding left, sliding right, rotating
  clockwise, rotating anticlockwise. Position and orientation are random in every frame's
  distribution, so a single RGB frame cannot tell them apart (with TSN's average consensus,
  neither can three), while flow can.

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

DEFAULT_SIZE = (96, 72)  # width, height of the written videos
DEFAULT_SPLITS = {"train": 24, "val": 6, "test": 10}  # videos per class
DEFAULT_FRAMES = (28, 40)  # inclusive range of frames per video
FPS = 25.0


@dataclass(frozen=True)
class SyntheticClass:
    name: str
    cue: str  # "appearance" or "motion": what tells this class apart from the others
    shape: str  # disc | square | wedge
    colour: tuple[int, int, int]  # BGR
    motion: str  # wander | left | right | cw | ccw


RED = (40, 40, 220)
BLUE = (220, 80, 30)
YELLOW = (30, 210, 235)

CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("red_disc", "appearance", "disc", RED, "wander"),
    SyntheticClass("blue_disc", "appearance", "disc", BLUE, "wander"),
    SyntheticClass("red_square", "appearance", "square", RED, "wander"),
    SyntheticClass("blue_square", "appearance", "square", BLUE, "wander"),
    SyntheticClass("slide_left", "motion", "wedge", YELLOW, "left"),
    SyntheticClass("slide_right", "motion", "wedge", YELLOW, "right"),
    SyntheticClass("rotate_cw", "motion", "wedge", YELLOW, "cw"),
    SyntheticClass("rotate_ccw", "motion", "wedge", YELLOW, "ccw"),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random texture (upsampled coarse noise), muted so that objects stand out."""
    coarse = rng.uniform(60, 170, size=(5, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = cv2.resize(rng.uniform(-18, 18, size=(height // 4, width // 4, 1)).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(smooth + grain[..., None], 0, 255)


def _shape_points(shape: str, size: float, angle: float) -> np.ndarray:
    """Polygon vertices (relative to the centre) of a square or wedge of ``size`` at ``angle`` radians."""
    if shape == "square":
        base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * (size / 2)
    elif shape == "wedge":  # a long isosceles triangle: its orientation shows rotation
        base = np.array([[size * 0.75, 0], [-size * 0.5, -size * 0.38], [-size * 0.5, size * 0.38]], np.float32)
    else:
        raise ValueError(f"no polygon for shape {shape!r}")
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
    size = float(rng.uniform(14, 20))
    margin = size * 0.8
    angle0 = float(rng.uniform(0, 2 * math.pi))
    if cls.motion in ("cw", "ccw"):
        centre = np.array([rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)])
        speed = math.radians(rng.uniform(7, 13))
        # Image y points down, so a growing angle turns clockwise on screen.
        direction = 1.0 if cls.motion == "cw" else -1.0
        return [(centre, angle0 + direction * speed * t) for t in range(num_frames)], size
    if cls.motion in ("left", "right"):
        speed = rng.uniform(1.2, 2.2)
        travel = speed * (num_frames - 1)
        lo, hi = margin, max(margin, width - margin - travel)
        start_x = rng.uniform(lo, hi)
        y = rng.uniform(margin, height - margin)
        if cls.motion == "left":
            start_x = width - start_x
            speed = -speed
        drift = rng.uniform(-0.15, 0.15)
        return [(np.array([start_x + speed * t, y + drift * t]), angle0) for t in range(num_frames)], size
    # "wander": a random direction and speed, bouncing off the borders; squares also turn
    # a little either way, so that neither direction nor turning tells classes apart.
    position = np.array([rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)])
    heading = rng.uniform(0, 2 * math.pi)
    velocity = rng.uniform(1.0, 2.2) * np.array([math.cos(heading), math.sin(heading)])
    turn = math.radians(rng.uniform(-6, 6))
    states = []
    for t in range(num_frames):
        states.append((position.copy(), angle0 + turn * t))
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
