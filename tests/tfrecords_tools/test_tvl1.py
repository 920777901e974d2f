"""TV-L1 in TensorFlow: each step against the OpenCV function it reproduces, then the whole solver
against OpenCV's TV-L1 (agreement) and against known flow (accuracy), and per-pair stopping."""

import cv2
import numpy as np
import pytest

from benchmarks.bench_flow import agreement, end_point_error, real_frames, synthetic_pairs
from tests.tfrecords_tools.conftest import panning_frames, texture
from tfrecords_tools.flow import BOUND, FlowEstimator
from tfrecords_tools.flow_engines import OpenCVFlow, TensorFlowTVL1, make_flow, resolve_engine
from tfrecords_tools.tvl1_common import TVL1Params, linear_resize_taps, median_network, pyramid_sizes

# Every XLA test runs on frames of this size with batch size 1, so that the session compiles once.
TEST_SIZE = (64, 48)  # (width, height), as test_convert.py's TV-L1 conversion
STEP = 2 * BOUND / 255


@pytest.fixture(scope="module")
def tf_engine():
    return TensorFlowTVL1(batch_size=1)


def _gray(frames):
    return [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]


# --- the TensorFlow-free tables -----------------------------------------------------------------

def test_pyramid_has_opencv_sizes():
    # cv::resize(Size(), 0.8, 0.8) rounds each side; OpenCV stops below 16 pixels.
    assert pyramid_sizes(256, 340) == [(256, 340), (205, 272), (164, 218), (131, 174), (105, 139)]
    assert pyramid_sizes(30, 40) == [(30, 40), (24, 32), (19, 26)]
    assert len(pyramid_sizes(256, 340, TVL1Params(nscales=3))) == 3
    image = np.zeros((256, 340), np.float32)
    for h, w in pyramid_sizes(256, 340)[1:]:
        image = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
        assert image.shape == (h, w)


def _apply_taps(image, size, scale=None):
    (h, w), (oh, ow) = image.shape, size
    sy, sx = scale or (h / oh, w / ow)
    i0, i1, wx = linear_resize_taps(w, ow, sx)
    image = image[:, i0] * (1 - wx) + image[:, i1] * wx
    i0, i1, wy = linear_resize_taps(h, oh, sy)
    return image[i0] * (1 - wy)[:, None] + image[i1] * wy[:, None]


def test_linear_taps_reproduce_cv_resize():
    image = np.random.default_rng(0).uniform(0, 255, (37, 45)).astype(np.float32)
    down = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(_apply_taps(image, down.shape, (1.25, 1.25)), down, atol=1e-3)
    up = cv2.resize(down, (45, 37), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(_apply_taps(down, (37, 45)), up, atol=1e-2)


def test_median_network_selects_the_median():
    network = median_network(25)
    assert sum(keep_min + keep_max for _, _, keep_min, keep_max in network) == 202
    rng = np.random.default_rng(1)
    wires = list(rng.normal(size=(25, 500)))
    expected = np.median(np.stack(wires), axis=0)
    for low, high, keep_min, keep_max in network:  # only the outputs the pruned network keeps
        a, b = wires[low], wires[high]
        if keep_min:
            wires[low] = np.minimum(a, b)
        if keep_max:
            wires[high] = np.maximum(a, b)
    assert np.array_equal(wires[12], expected)
    with pytest.raises(ValueError):
        median_network(4)


def test_parameters_are_opencvs_defaults():
    cv = cv2.optflow.DualTVL1OpticalFlow_create()
    p = TVL1Params()
    assert (p.tau, p.lambda_, p.theta, p.epsilon, p.scale_step) == pytest.approx(
        (cv.getTau(), cv.getLambda(), cv.getTheta(), cv.getEpsilon(), cv.getScaleStep()))
    assert (p.nscales, p.warps, p.inner_iterations, p.outer_iterations, p.median_filtering) == (
        cv.getScalesNumber(), cv.getWarpingsNumber(), cv.getInnerIterations(), cv.getOuterIterations(),
        cv.getMedianFiltering())
    assert cv.getGamma() == 0  # the illumination term is off by default and not implemented
    with pytest.raises(ValueError, match="median_filtering"):
        TVL1Params(median_filtering=3)


def test_engine_choice():
    assert resolve_engine("tvl1") == "tf"
    assert resolve_engine("tvl1", "opencv") == "opencv"
    assert resolve_engine("dis") == resolve_engine("farneback", "auto") == "opencv"
    with pytest.raises(ValueError, match="tvl1 only"):
        resolve_engine("dis", "tf")
    with pytest.raises(ValueError, match="auto, tf, opencv"):
        resolve_engine("tvl1", "cuda")
    assert isinstance(make_flow("dis", "auto"), OpenCVFlow)
    assert make_flow("tvl1", "opencv").engine == "opencv"


# --- the TensorFlow steps, eagerly, against OpenCV ---------------------------------------------

def test_steps_match_opencv():
    import tensorflow as tf

    from tfrecords_tools.tvl1_tf import divergence, forward_gradient, median5, resize_linear, warp_cubic

    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, (2, 29, 35)).astype(np.float32)
    median = median5(tf.constant(image)).numpy()
    for b in range(2):
        assert np.array_equal(median[b], cv2.medianBlur(image[b], 5))
    # Bicubic sampling with a zero border, positions up to 6 px outside the image.
    u1, u2 = rng.uniform(-6, 6, (2, 2, 29, 35)).astype(np.float32)
    warped = warp_cubic(tf.constant(image[..., None]), tf.constant(u1), tf.constant(u2)).numpy()[..., 0]
    for b in range(2):
        expected = cv2.remap(image[b], np.arange(35, dtype=np.float32) + u1[b],
                             np.arange(29, dtype=np.float32)[:, None] + u2[b], cv2.INTER_CUBIC)
        np.testing.assert_allclose(warped[b], expected, atol=1e-3)
    down = resize_linear(tf.constant(image), (23, 28), (1.25, 1.25)).numpy()
    np.testing.assert_allclose(down[0], cv2.resize(image[0], None, fx=0.8, fy=0.8), atol=1e-3)
    # divergence is minus the adjoint of the forward gradient, <grad u, p> = -<u, div p>, for the
    # dual fields the solver produces: zero x-component on the last column, y on the last row.
    u, px, py = (rng.normal(size=(1, 29, 35)).astype(np.float32) for _ in range(3))
    px[..., -1], py[..., -1, :] = 0, 0
    u, px, py = (tf.constant(v) for v in (u, px, py))
    ux, uy = forward_gradient(u)
    lhs = float(tf.reduce_sum(ux * px + uy * py))
    assert lhs == pytest.approx(-float(tf.reduce_sum(u * divergence(px, py))), rel=1e-4)


def test_padding_pairs_are_skipped_and_pairs_stop_on_their_own():
    # Without XLA (the same graph, compiled in a second rather than ~20): a pair's flow and
    # iteration count do not depend on what else is in its batch.
    from tfrecords_tools.tvl1_tf import TVL1Solver

    still = texture(48, 64, seed=5)
    prev, nxt = _gray(panning_frames(2, (2, 1), size=(64, 48)))
    solver = TVL1Solver(jit_compile=False)
    alone, alone_steps = solver(np.stack([prev, still, still]), np.stack([nxt, still, still]),
                                np.array([True, False, False]))
    both, both_steps = solver(np.stack([prev, still, still]), np.stack([nxt, still, still]),
                              np.array([True, True, False]))
    assert alone_steps[1] == alone_steps[2] == both_steps[2] == 0
    assert alone_steps[0] == both_steps[0] > both_steps[1] > 0  # identical frames converge at once
    assert np.array_equal(alone[0], both[0])
    assert np.abs(both[1]).max() == 0


# --- the compiled solver -----------------------------------------------------------------------

@pytest.mark.slow
def test_known_shift_is_recovered(tf_engine):
    shift = (3, -2)
    prev, nxt = _gray(panning_frames(2, shift, size=TEST_SIZE))
    flow = tf_engine(prev, nxt)
    assert flow.shape == (TEST_SIZE[1], TEST_SIZE[0], 2) and flow.dtype == np.float32
    inner = flow[8:-8, 8:-8]
    assert np.abs(np.median(inner, axis=(0, 1)) - shift).max() <= STEP / 2
    assert tf_engine.iterations > 0


@pytest.mark.slow
def test_accuracy_against_ground_truth_matches_opencv(tf_engine, shared_data):
    # A real frame warped by translations, rotations and smooth fields of up to 15 px; 96x64
    # frames (one more compilation), since on 64x48 frames TV-L1 loses the largest motions.
    frame = real_frames(1, data=shared_data)[0][1]
    pairs = synthetic_pairs(frame, (96, 64), count=6)
    opencv = FlowEstimator("tvl1")
    tf_epe = [end_point_error(tf_engine(p, n), f).mean() for p, n, f in pairs]
    cv_epe = [end_point_error(opencv(p, n), f).mean() for p, n, f in pairs]
    assert np.mean(tf_epe) <= 1.1 * np.mean(cv_epe), (tf_epe, cv_epe)
    assert np.mean(cv_epe) < 3.0  # the sequences are solvable at all


@pytest.mark.slow
def test_agrees_with_opencv_on_real_video(tf_engine, shared_data):
    pairs = real_frames(6, TEST_SIZE, data=shared_data, per_clip=2)
    ours = tf_engine.batch([p for p, _ in pairs], [n for _, n in pairs])
    opencv = OpenCVFlow("tvl1").batch([p for p, _ in pairs], [n for _, n in pairs])
    figures = agreement(ours, opencv)
    assert figures["median_epe_px"] <= 0.3, figures
    assert figures["mean_byte_diff"] <= 2.0, figures


@pytest.mark.slow
def test_benchmark_quick_run(capsys):
    from benchmarks.bench_flow import main

    results = main(["--quick"])
    assert [row["batch"] for row in results["rows"]] == [1, 2]
    assert all(row["tf_pairs_per_s"] > 0 and row["opencv_pairs_per_s"] > 0 for row in results["rows"])
    assert results["agreement"]["median_epe_px"] <= 0.3
    assert results["agreement"]["mean_byte_diff"] <= 2.0
    assert set(results["ground_truth_epe"]) == {"tf", "opencv"}
    assert "ratio tf/opencv" in capsys.readouterr().out
