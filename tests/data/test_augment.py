"""Crop candidates and offsets (reference vectors), the graph crop draws, flips and normalisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tsn_keras.data import augment
from tsn_keras.errors import ConfigError


def test_multiscale_crop_sizes_match_the_reference(vectors):
    for case in vectors["multiscale_crop_sizes"]:
        got = augment.multiscale_crop_sizes(case["width"], case["height"], case["scales"], case["max_distort"],
                                            case["input_size"])
        assert [list(wh) for wh in got] == case["expected_wh"]


def test_fixed_crop_offsets_match_the_reference(vectors):
    for case in vectors["fixed_crop_offsets"]:
        got = augment.fixed_crop_offsets(case["width"], case["height"], case["crop_w"], case["crop_h"],
                                         case["more_fix_crop"])
        assert [list(xy) for xy in got] == case["expected_xy"]


def test_crop_sizes_of_small_frames_are_clamped_to_the_frame():
    # 222-px short side: int(222 * 1) is within 3 px of 224 and snaps to 224, which fits the
    # 300-px width but not the 222-px height.
    sizes = augment.multiscale_crop_sizes(300, 222, (1.0, 0.875), 1, 224)
    assert sizes == [(224, 222), (194, 222), (224, 194), (194, 194)]


@pytest.mark.parametrize("width,height,scales,more_fix_crop", [(340, 256, (1, 0.875, 0.75, 0.66), True),
                                                                (85, 64, (1, 0.875, 0.75), False)])
def test_graph_crop_draws_cover_exactly_the_reference_candidates(width, height, scales, more_fix_crop):
    input_size = 224 if width > 100 else 56
    seeds = tf.data.Dataset.range(3000).map(lambda s: tf.stack([s, tf.constant(3, tf.int64)]))
    draws = seeds.map(lambda s: augment.random_crop_window(width, height, scales, 1, input_size, more_fix_crop, s))
    windows = {tuple(w) for w in next(iter(draws.batch(3000))).numpy().tolist()}
    expected = {(x, y, w, h)
                for w, h in augment.multiscale_crop_sizes(width, height, scales, 1, input_size)
                for x, y in augment.fixed_crop_offsets(width, height, w, h, more_fix_crop)}
    assert windows <= expected
    # 3000 uniform draws over at most 130 windows: every one of them appears.
    assert windows == expected


def test_validation_crop_is_the_centre_224_of_a_340x256_frame():
    assert augment.centre_crop_window(340, 256, 224).numpy().tolist() == [58, 16, 224, 224]
    # A frame with another short side: the same field of view (224/256 of it), centred.
    assert augment.centre_crop_window(64, 48, 32).numpy().tolist() == [10, 2, 43, 43]


def test_test_time_frame_scaling_and_crop_boxes():
    assert [int(v) for v in augment.scaled_frame_size(340, 256, 224)] == [340, 256]
    assert [int(v) for v in augment.scaled_frame_size(320, 240, 224)] == [341, 256]
    assert [int(v) for v in augment.scaled_frame_size(240, 320, 224)] == [256, 341]
    boxes = [(int(x), int(y), f) for x, y, f in augment.multi_crop_boxes(340, 256, 224, 10)]
    corners = [(x, y) for x, y in augment.fixed_crop_offsets(340, 256, 224, 224, more_fix_crop=False)]
    assert boxes == [(x, y, False) for x, y in corners] + [(x, y, True) for x, y in corners]
    assert [(int(x), int(y), f) for x, y, f in augment.multi_crop_boxes(340, 256, 224, 3)] == [
        (0, 16, False), (58, 16, False), (116, 16, False)]
    assert [(int(x), int(y), f) for x, y, f in augment.multi_crop_boxes(256, 340, 224, 3)] == [
        (16, 0, False), (16, 58, False), (16, 116, False)]
    assert [(int(x), int(y), f) for x, y, f in augment.multi_crop_boxes(340, 256, 224, 1)] == [(58, 16, False)]
    with pytest.raises(ConfigError, match="1, 3, 10"):
        augment.multi_crop_boxes(340, 256, 224, 5)


def test_flip_mirrors_every_key_and_inverts_only_flow_x():
    ramp = tf.reshape(tf.range(4, dtype=tf.float32), [1, 1, 4, 1]) + 100.0
    frames = {"flow_x": ramp, "flow_y": ramp}
    flipped = augment.flip_frames(frames, tf.constant(True), "flow_x")
    assert flipped["flow_y"].numpy().ravel().tolist() == [103, 102, 101, 100]
    assert flipped["flow_x"].numpy().ravel().tolist() == [152, 153, 154, 155]  # 255 - q, mirrored
    kept = augment.flip_frames(frames, tf.constant(False), "flow_x")
    assert kept["flow_x"].numpy().ravel().tolist() == [100, 101, 102, 103]


@pytest.mark.parametrize("preset,mode", [("keras_caffe", "caffe"), ("keras_tf", "tf"), ("keras_torch", "torch")])
def test_keras_presets_equal_keras_applications_preprocessing(preset, mode):
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    expected = keras.applications.imagenet_utils.preprocess_input(rgb.copy(), mode=mode)
    np.testing.assert_allclose(augment.normalize(rgb, "rgb", preset).numpy(), expected, rtol=1e-5, atol=1e-4)


def test_caffe_bgr_preset_and_flow_normalisation():
    rgb = tf.constant([[[10.0, 20.0, 30.0]]])
    assert augment.normalize(rgb, "rgb", "caffe_bgr").numpy().ravel().tolist() == [30 - 104, 20 - 117, 10 - 128]
    assert augment.normalize(rgb, "rgb", "raw").numpy().ravel().tolist() == [10, 20, 30]
    q = tf.constant([0, 128, 255], tf.uint8)
    assert augment.normalize(q, "flow", "caffe_bgr").numpy().tolist() == [-128, 0, 127]
    np.testing.assert_allclose(augment.normalize(q, "flow", "keras_tf").numpy(), [-128 / 127.5, 0, 127 / 127.5])
    with pytest.raises(ConfigError, match="caffe_bgr, keras_caffe"):
        augment.normalize(q, "flow", "imagenet")


def test_rgb_difference_is_the_difference_of_normalised_frames():
    frames = np.random.default_rng(1).uniform(0, 255, (2, 4, 3, 3, 3)).astype(np.float32)  # [B, L+1, H, W, 3]
    out = augment.normalize(frames, "rgb_diff", "keras_torch").numpy()
    assert out.shape == (2, 3, 3, 9)
    norm = augment.normalize(frames, "rgb", "keras_torch").numpy()
    for j in range(3):
        np.testing.assert_allclose(out[..., 3 * j:3 * j + 3], norm[:, j + 1] - norm[:, j], rtol=1e-5, atol=1e-5)
