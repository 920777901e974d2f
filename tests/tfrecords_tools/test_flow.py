"""Optical flow: the quantisation of TSN_SEMANTICS.md, a known shift recovered, warped flow."""

import cv2
import numpy as np
import pytest

from tests.tfrecords_tools.conftest import panning_frames, texture
from tfrecords_tools.flow import (
    BOUND,
    CameraMotion,
    FlowEstimator,
    WarpedFlowEstimator,
    dequantize_flow,
    flow_to_color,
    quantize_flow,
)

STEP = 2 * BOUND / 255  # one quantisation level in pixels


def test_quantisation_matches_the_reference_formula():
    values = np.array([-100.0, -20.0, -20.1, 0.0, 20.0, 20.1, 3.0, -2.0, 35.0, 1e-9])
    expected = [0, 0, 0, 128, 255, 255, 147, 115, 255, 128]  # round(255*(v+20)/40), clipped
    assert quantize_flow(values).tolist() == expected
    rng = np.random.default_rng(0)
    v = rng.uniform(-30, 30, 10_000)
    reference = np.clip(np.round(255 * (v + 20) / 40), 0, 255)
    assert np.array_equal(quantize_flow(v), reference.astype(np.uint8))
    assert quantize_flow(v).dtype == np.uint8


def test_dequantisation_is_within_half_a_level_inside_the_bound():
    v = np.random.default_rng(1).uniform(-BOUND, BOUND, 10_000)
    error = np.abs(dequantize_flow(quantize_flow(v)) - v)
    assert error.max() <= STEP / 2 + 1e-5
    assert dequantize_flow(np.array([0, 255])).tolist() == pytest.approx([-20.0, 20.0])


@pytest.mark.parametrize("algorithm", ["dis", "farneback", "tvl1"])
def test_known_shift_is_recovered_within_quantisation_error(algorithm):
    shift = (3, -2)
    # TV-L1 costs ~1 s per 340x256 frame here: a 64x48 pair keeps it well under a second.
    size = (64, 48) if algorithm == "tvl1" else (96, 72)
    prev, nxt = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in panning_frames(2, shift, size=size))
    flow = FlowEstimator(algorithm)(prev, nxt)
    assert flow.shape == (size[1], size[0], 2)
    decoded = dequantize_flow(quantize_flow(flow))[8:-8, 8:-8]
    for component, expected in enumerate(shift):
        assert abs(np.median(decoded[..., component]) - expected) <= STEP / 2 + 1e-5
        assert np.mean(np.abs(decoded[..., component] - expected) <= 2 * STEP) > 0.9


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="tvl1, dis, farneback"):
        FlowEstimator("brox")


def test_camera_pan_is_estimated_and_cancelled_by_warped_flow():
    shift = (3, -2)
    prev, nxt = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in panning_frames(2, shift))
    estimator = FlowEstimator("dis")
    plain = estimator(prev, nxt)
    estimate = CameraMotion().estimate(prev, nxt, plain)
    assert estimate.matches > 50 and estimate.inliers > 25
    assert estimate.matrix[:2, 2] == pytest.approx(shift, abs=0.2)
    warped, fell_back = WarpedFlowEstimator(estimator)(prev, nxt, plain)
    assert not fell_back
    # The whole image moved with the camera: nothing is left after cancelling it.
    assert np.abs(np.median(warped[8:-8, 8:-8], axis=(0, 1))).max() < 0.2
    assert np.abs(np.median(plain[8:-8, 8:-8], axis=(0, 1)) - shift).max() < 0.2


def test_local_motion_survives_warping():
    # A static textured background with a square moving right: the camera does not move, so
    # the homography is the identity and the square's motion stays in the warped flow.
    background = texture(72, 96, seed=3)
    patch = texture(20, 20, seed=4)
    prev, nxt = background.copy(), background.copy()
    prev[26:46, 20:40] = patch
    nxt[26:46, 24:44] = patch
    estimator = FlowEstimator("dis")
    warped, fell_back = WarpedFlowEstimator(estimator)(prev, nxt)
    assert not fell_back
    assert np.median(warped[30:42, 26:38, 0]) == pytest.approx(4.0, abs=0.5)
    assert np.abs(np.median(warped[:, 60:, :], axis=(0, 1))).max() < 0.2


def test_featureless_frames_fall_back_to_plain_flow():
    flat = np.full((48, 64), 120, np.uint8)
    estimator = FlowEstimator("dis")
    estimate = CameraMotion().estimate(flat, flat, estimator(flat, flat))
    assert estimate.matrix is None and estimate.matches <= 50
    warped, fell_back = WarpedFlowEstimator(estimator)(flat, flat)
    assert fell_back
    assert np.array_equal(warped, estimator(flat, flat))


def test_flow_colours_encode_direction_and_speed():
    still = flow_to_color(np.zeros((4, 4)), np.zeros((4, 4)))
    assert still.max() == 0  # no motion is black
    right = flow_to_color(np.full((4, 4), 5.0), np.zeros((4, 4)))
    down = flow_to_color(np.zeros((4, 4)), np.full((4, 4), 5.0))
    assert right[0, 0].tolist() == [255, 0, 0]  # hue 0: red
    assert down[0, 0].argmax() != 0 and down[0, 0].max() == 255
    slow = flow_to_color(np.full((4, 4), 0.5), np.zeros((4, 4)), max_magnitude=5.0)
    assert 0 < slow[0, 0, 0] < 40
