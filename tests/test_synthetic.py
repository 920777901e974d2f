"""The built-in dataset does what its classes claim: colour for some, motion for others."""

import cv2
import numpy as np
import pytest

from tsn_keras.synthetic import CLASSES, YELLOW, generate_dataset, render_video


def _object_mask(frame: np.ndarray, colour) -> np.ndarray:
    return np.abs(frame.astype(int) - np.array(colour)).sum(-1) < 90


def _centroids(frames: np.ndarray, colour) -> np.ndarray:
    out = []
    for frame in frames:
        ys, xs = np.nonzero(_object_mask(frame, colour))
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_each_class_shows_its_colour_and_motion(cls):
    rng = np.random.default_rng(7)
    frames = render_video(cls, rng, 30)
    assert frames.shape == (30, 96, 96, 3)
    centres = _centroids(frames, cls.colour)
    assert _object_mask(frames[0], cls.colour).sum() > 80  # the object is there, in its colour
    for other in CLASSES:
        if other.colour != cls.colour:
            assert _object_mask(frames[0], other.colour).sum() < 10
    dx, dy = np.diff(centres[:, 0]), np.diff(centres[:, 1])
    if cls.motion == "up":
        assert dy.mean() < -0.7 and abs(dx.mean()) < 0.3
    elif cls.motion == "down":
        assert dy.mean() > 0.7 and abs(dx.mean()) < 0.3
    elif cls.motion == "shake":
        assert np.abs(dx).mean() > 2 and np.abs(dy).mean() < 0.3
        assert (np.diff(np.sign(dx)) != 0).sum() >= 4  # back and forth
    elif cls.motion == "spin":
        assert np.ptp(centres, axis=0).max() < 3  # turns in place
    else:  # wander: moves, whatever the direction
        assert np.hypot(dx, dy).mean() > 0.7


def test_motion_classes_look_alike_in_a_single_frame():
    # Same colour and shape for every motion class: a frame's object pixels do not give the class away.
    areas = {}
    for cls in CLASSES[4:]:
        rng = np.random.default_rng(3)
        areas[cls.name] = [_object_mask(f, YELLOW).sum() for f in render_video(cls, rng, 12)]
    means = [np.mean(v) for v in areas.values()]
    assert max(means) / min(means) < 1.6


def test_generation_is_deterministic_and_writes_list_files(tmp_path):
    a = generate_dataset(tmp_path / "a", videos_per_class={"train": 2, "test": 1}, progress=False)
    generate_dataset(tmp_path / "b", videos_per_class={"train": 2, "test": 1}, progress=False)
    generate_dataset(tmp_path / "c", videos_per_class={"train": 2, "test": 1}, seed=1, progress=False)
    assert a["videos"] == 24
    train = (tmp_path / "a" / "train.txt").read_text().splitlines()
    assert len(train) == 16 and sorted({int(line.split()[1]) for line in train}) == list(range(8))
    assert (tmp_path / "a" / "classes.txt").read_text().split() == [cls.name for cls in CLASSES]
    first = train[0].split()[0]
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()
    assert (tmp_path / "a" / first).read_bytes() != (tmp_path / "c" / first).read_bytes()
    capture = cv2.VideoCapture(str(tmp_path / "a" / first))
    count = 0
    while capture.read()[0]:
        count += 1
    assert 24 <= count <= 36
