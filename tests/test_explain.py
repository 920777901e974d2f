"""`tsn explain`: Grad-CAM finds the region a decision depends on; the command's files and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.probe import probe_model
from tsn_keras.cli import main

SIZE = 96
SQUARE = 20


def _frames(rng, n, square_at=None):
    """Grey noise frames (pixel units, 0..255), with a bright square at ``(y, x)`` if given."""
    frames = np.clip(110 + rng.normal(0, 12, (n, SIZE, SIZE, 3)), 0, 255)
    if square_at is not None:
        y, x = square_at
        frames[:, y:y + SQUARE, x:x + SQUARE] = 245
    return frames


def test_gradcam_peaks_where_the_decision_is_made():
    """Class 0 is "a bright square": its heat map must peak in the quadrant that holds the square.

    The square is shown top-right and bottom-left, so that swapped axes or a flipped map fail.
    """
    import tensorflow as tf

    from tsn_keras.explain import GradCam
    from tsn_keras.pictures import input_scale

    scale = input_scale("rgb", "keras_tf", 1)
    rng = np.random.default_rng(0)
    places = rng.integers(0, SIZE - SQUARE, (8, 2))
    square = np.concatenate([_frames(rng, 1, tuple(at)) for at in places])
    model = probe_model([scale.to_input(square), scale.to_input(_frames(rng, 8))], input_size=SIZE)
    corner = SIZE - SQUARE - 6
    cases = {(0, 1): (6, corner), (1, 0): (corner, 6)}  # quadrant (row, column) -> square (y, x)
    tests = np.concatenate([_frames(rng, 1, at) for at in cases.values()])
    heat, logits = GradCam(model)(tf.constant(scale.to_input(tests), tf.float32), tf.constant(0))
    heat, logits = heat.numpy(), logits.numpy()
    assert (logits.argmax(axis=1) == 0).all()
    h, w = heat.shape[1:]
    for quadrant, snippet in zip(cases, heat):
        y, x = np.unravel_index(int(snippet.argmax()), (h, w))
        assert (int(y >= h // 2), int(x >= w // 2)) == quadrant, snippet.round(2)
        means = {(r, c): snippet[r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2].mean()
                 for r in (0, 1) for c in (0, 1)}
        assert max(means, key=means.get) == quadrant, snippet.round(2)
