"""build_tsn: folding, shapes, `.keras` round trips, partial BN, cross-modality initialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tsn_keras.errors import ConfigError
from tsn_keras.models.backbones import build_backbone
from tsn_keras.models.layers import FoldedTimeDistributed
from tsn_keras.models.transfer import cross_modality_weights
from tsn_keras.models.tsn import batch_norm_layers, build_tsn, set_partial_bn, snippet_model
from tsn_keras.vocab import BACKBONES, CONSENSUS_MODES, backbone_preset, input_channels

SIZE, CLASSES = 64, 5
TINY = {"backbone": "tiny", "input_size": SIZE}


def _clips(batch: int, snippets: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, snippets, SIZE, SIZE, channels)).astype(np.float32)


def _randomise_bn_statistics(model: keras.Model, seed: int = 1) -> None:
    """Random moving statistics, so that inference differs from training-mode normalisation."""
    rng = np.random.default_rng(seed)
    for bn in batch_norm_layers(model):
        bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape).astype(np.float32))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=bn.moving_variance.shape).astype(np.float32))


@pytest.mark.parametrize(("modality", "new_length", "channels"), [
    ("rgb", None, 3), ("flow", None, 10), ("warped_flow", 3, 6), ("rgb_diff", None, 15), ("rgb_diff", 2, 6),
])
def test_input_channels_per_modality(modality, new_length, channels):
    assert input_channels(modality, new_length) == channels
    model = build_tsn(CLASSES, modality, new_length=new_length, **TINY)
    assert model.input_shape == (None, None, SIZE, SIZE, channels)
    assert model.output_shape == (None, CLASSES)


def test_same_model_takes_any_number_of_snippets_and_averages_their_logits():
    model = build_tsn(CLASSES, "rgb", **TINY)
    _randomise_bn_statistics(model)
    per_snippet = snippet_model(model)
    for snippets in (3, 25):
        x = _clips(2, snippets, seed=snippets)
        logits = per_snippet.predict(x, verbose=0)
        assert logits.shape == (2, snippets, CLASSES)
        np.testing.assert_allclose(model.predict(x, verbose=0), logits.mean(axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="per-snippet"):
        snippet_model(build_tsn(CLASSES, "rgb", consensus="gru", **TINY))


def test_folding_runs_the_backbone_once_on_all_frames():
    backbone = build_backbone("tiny", (SIZE, SIZE, 3))
    _randomise_bn_statistics(backbone)
    folded = FoldedTimeDistributed(backbone)
    x = _clips(2, 3)
    frames = x.reshape(6, SIZE, SIZE, 3)
    out = keras.ops.convert_to_numpy(folded(x, training=False))
    assert out.shape == (2, 3, 256)
    np.testing.assert_allclose(out.reshape(6, 256), backbone(frames, training=False).numpy(), rtol=1e-5, atol=1e-5)
    # In training, BatchNorm normalises over all B*S frames together, not segment by segment.
    train_out = keras.ops.convert_to_numpy(folded(x, training=True)).reshape(6, 256)
    np.testing.assert_allclose(train_out, backbone(frames, training=True).numpy(), rtol=1e-4, atol=1e-5)
    per_segment = np.stack([backbone(x[:, s], training=True).numpy() for s in range(3)], axis=1).reshape(6, 256)
    assert np.abs(train_out - per_segment).max() > 1e-2


def test_new_classifier_follows_the_paper():
    model = build_tsn(1000, "flow", **TINY)
    fc = model.get_layer("fc")
    assert abs(float(np.std(fc.kernel.numpy())) - 0.001) < 1e-4
    assert not fc.bias.numpy().any()
    assert model.get_layer("dropout").rate == pytest.approx(0.7)
    assert build_tsn(CLASSES, "rgb", **TINY).get_layer("dropout").rate == pytest.approx(0.8)
    assert build_tsn(CLASSES, "rgb", dropout=0.5, **TINY).get_layer("dropout").rate == pytest.approx(0.5)


@pytest.mark.parametrize("consensus", CONSENSUS_MODES)
def test_keras_file_round_trip_gives_identical_outputs(consensus, tmp_path):
    model = build_tsn(CLASSES, "flow", new_length=2, consensus=consensus, num_segments=3, **TINY)
    _randomise_bn_statistics(model)
    head = model.get_layer("consensus")
    for weight in head.weights:  # move the head away from its (often uniform) initial values
        weight.assign(np.random.default_rng(2).normal(size=weight.shape).astype(np.float32) * 0.1)
    x = _clips(2, 5, channels=4)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # safe mode
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), expected)
    assert [layer.trainable for layer in batch_norm_layers(reloaded)] == [
        layer.trainable for layer in batch_norm_layers(model)
    ]


def test_partial_bn_leaves_one_batchnorm_trainable_and_only_it_learns():
    model = build_tsn(CLASSES, "rgb", dropout=0.0, **TINY)
    layers = batch_norm_layers(model)
    assert [layer.trainable for layer in layers] == [True] + [False] * 7  # tiny: 8 BatchNorm layers
    before = [[w.numpy().copy() for w in layer.weights] for layer in layers]  # gamma, beta, mean, var
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.train_on_batch(_clips(4, 3) * 3 + 1, np.arange(4) % CLASSES)
    after = [[w.numpy() for w in layer.weights] for layer in layers]
    first_gamma, first_beta, first_mean, first_var = (not np.array_equal(b, a) for b, a in zip(before[0], after[0]))
    assert first_mean and first_var and first_gamma and first_beta
    for old, new in zip(before[1:], after[1:]):
        for b, a in zip(old, new):
            np.testing.assert_array_equal(a, b)
    assert model.get_layer("fc").trainable
    assert set_partial_bn(model, enabled=False) == []
    assert all(layer.trainable for layer in batch_norm_layers(model))
    assert set_partial_bn(model) == [layer.name for layer in layers[1:]]


def test_partial_bn_can_be_switched_off_at_build():
    assert all(layer.trainable for layer in batch_norm_layers(build_tsn(CLASSES, partial_bn=False, **TINY)))


def test_cross_modality_weights_follow_the_formula():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32)
    out = cross_modality_weights(kernel, 10)
    assert out.shape == (3, 3, 10, 4)
    for c in range(10):
        for o in range(4):
            np.testing.assert_allclose(out[:, :, c, o], (kernel[:, :, 0, o] + kernel[:, :, 1, o] + kernel[:, :, 2, o]) / 3,
                                       rtol=1e-6)


def _assert_initialised_from(flow: keras.Model, rgb: keras.Model, channels: int) -> None:
    src, dst = rgb.get_layer("backbone").layer, flow.get_layer("backbone").layer
    rgb_kernel = src.get_layer("stage1_conv1").kernel.numpy()
    np.testing.assert_allclose(dst.get_layer("stage1_conv1").kernel.numpy(), cross_modality_weights(rgb_kernel, channels))
    np.testing.assert_array_equal(dst.get_layer("stage1_conv1").bias.numpy(), src.get_layer("stage1_conv1").bias.numpy())
    for name in ("stage1_conv1_bn", "stage3_conv1", "stage4_conv1_bn"):
        for a, b in zip(dst.get_layer(name).get_weights(), src.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_flow_and_rgb_diff_networks_initialise_from_an_rgb_tsn(tmp_path):
    rgb = build_tsn(CLASSES, "rgb", **TINY)
    _randomise_bn_statistics(rgb)
    rgb.get_layer("backbone").layer.get_layer("stage1_conv1").bias.assign(np.linspace(-1, 1, 32).astype(np.float32))
    flow = build_tsn(CLASSES, "flow", init_from=rgb, **TINY)
    _assert_initialised_from(flow, rgb, 10)
    np.testing.assert_array_equal(flow.get_layer("fc").kernel.numpy(), rgb.get_layer("fc").kernel.numpy())
    path = tmp_path / "rgb.keras"
    rgb.save(path)
    rgb_diff = build_tsn(CLASSES + 1, "rgb_diff", init_from=path, **TINY)
    _assert_initialised_from(rgb_diff, rgb, 15)
    assert rgb_diff.get_layer("fc").kernel.shape == (256, CLASSES + 1)  # other classes: new classifier


def test_backbone_weights_file_loads_into_flow_channels(tmp_path):
    rgb = build_backbone("tiny", (SIZE, SIZE, 3))
    _randomise_bn_statistics(rgb)
    path = tmp_path / "tiny.weights.h5"
    rgb.save_weights(path)
    flow = build_backbone("tiny", (SIZE, SIZE, 10), weights=path)
    np.testing.assert_allclose(
        flow.get_layer("stage1_conv1").kernel.numpy(), cross_modality_weights(rgb.get_layer("stage1_conv1").kernel.numpy(), 10)
    )
    np.testing.assert_array_equal(flow.get_layer("stage2_conv1_bn").moving_mean.numpy(), rgb.get_layer("stage2_conv1_bn").moving_mean.numpy())
    same = build_backbone("tiny", (SIZE, SIZE, 3), weights=path)
    x = np.random.default_rng(3).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_array_equal(same.predict(x, verbose=0), rgb.predict(x, verbose=0))
    tsn = build_tsn(CLASSES, "flow", init_from=path, **TINY)  # backbone weights as init_from
    np.testing.assert_array_equal(tsn.get_layer("backbone").layer.get_layer("stage1_conv1").kernel.numpy(),
                                  flow.get_layer("stage1_conv1").kernel.numpy())


def test_keras_applications_backbone_weights_load_into_flow_channels(tmp_path):
    rgb = build_backbone("mobilenet_v2", (SIZE, SIZE, 3))
    path = tmp_path / "mobilenet_v2.weights.h5"
    rgb.save_weights(path)
    flow = build_backbone("mobilenet_v2", (SIZE, SIZE, 10), weights=path)
    assert flow.output_shape == (None, 1280)
    np.testing.assert_allclose(flow.get_layer("Conv1").kernel.numpy(), cross_modality_weights(rgb.get_layer("Conv1").kernel.numpy(), 10))
    np.testing.assert_array_equal(flow.layers[-3].get_weights()[0], rgb.layers[-3].get_weights()[0])


def test_imagenet_weights_reach_flow_channels_by_cross_modality(monkeypatch):
    """The "imagenet" branch, with Keras' download replaced by a stand-in (tests never download)."""
    from tsn_keras.models import backbones

    calls = []

    def application(include_top, weights, input_shape, pooling):
        calls.append((weights, input_shape[-1]))
        model = backbones.tiny_convnet(input_shape)
        if weights == "imagenet":
            rng = np.random.default_rng(7)
            for weight in model.weights:
                weight.assign(rng.uniform(0.5, 1.5, size=weight.shape).astype(np.float32))
        return model

    monkeypatch.setitem(backbones._KERAS_APPLICATIONS, "mobilenet_v2", application)
    rgb = build_backbone("mobilenet_v2", (SIZE, SIZE, 3), weights="imagenet")
    flow = build_backbone("mobilenet_v2", (SIZE, SIZE, 10), weights="imagenet")
    assert calls == [("imagenet", 3), (None, 10), ("imagenet", 3)]
    kernel = rgb.get_layer("stage1_conv1").kernel.numpy()
    np.testing.assert_allclose(flow.get_layer("stage1_conv1").kernel.numpy(), cross_modality_weights(kernel, 10))
    for a, b in zip(flow.get_layer("stage3_conv1_bn").get_weights(), rgb.get_layer("stage3_conv1_bn").get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "size", "dim"), [("inception_v3", 75, 2048), ("resnet50", 32, 2048)])
def test_keras_applications_backbones_take_any_channels(name, size, dim):
    assert build_backbone(name, (size, size, 15)).output_shape == (None, dim)


def test_wrong_weights_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="tsn convert-weights"):
        build_backbone("bn_inception", (224, 224, 3), weights="imagenet")
    with pytest.raises(ConfigError, match=r"missing\.weights\.h5 not found"):
        build_backbone("tiny", (SIZE, SIZE, 3), weights=str(tmp_path / "missing.weights.h5"))
    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(other)
    with pytest.raises(ConfigError, match="does not fit"):
        build_backbone("tiny", (SIZE, SIZE, 3), weights=other)
    with pytest.raises(ConfigError, match="not both"):
        build_tsn(CLASSES, "flow", weights=other, init_from=other, **TINY)


@pytest.mark.parametrize(
    ("kwargs", "valid"),
    [
        ({"backbone": "vgg16"}, BACKBONES),
        ({"consensus": "median"}, CONSENSUS_MODES),
        ({"modality": "depth"}, ("rgb", "rgb_diff", "flow", "warped_flow")),
    ],
)
def test_unknown_names_are_config_errors_listing_the_valid_ones(kwargs, valid):
    with pytest.raises(ConfigError) as err:
        build_tsn(CLASSES, **{**TINY, **kwargs})
    assert all(name in str(err.value) for name in valid)


def test_preprocessing_presets():
    assert [backbone_preset(name) for name in BACKBONES] == [
        "caffe_bgr", "tf_lite", "tf_lite", "tf_lite", "keras_tf", "keras_caffe", "keras_tf", "keras_tf"
    ]


def test_logits_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_tsn(CLASSES, "rgb", consensus="attention", **TINY)
        assert model.get_layer("fc").compute_dtype == "float16"
        out = model(_clips(1, 3), training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == "float32"
