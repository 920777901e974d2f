"""Fine-tuning details of the original: Caffe's lr_mult per parameter group, BatchNorm momentum 0.9."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import tensorflow as tf  # noqa: E402

from tsn_keras.models.bn_inception import BNInception  # noqa: E402
from tsn_keras.models.efficientnet_lite import EfficientNetLite  # noqa: E402
from tsn_keras.models.tsn import batch_norm_layers, build_tsn  # noqa: E402
from tsn_keras.optimization import CaffeSGD, first_conv_lr_mults  # noqa: E402

SIZE, CLASSES = 32, 4


def _one_step_deltas(model, grads, **optimizer_kwargs) -> dict[str, np.ndarray]:
    """Weight change of one CaffeSGD update from the model's current weights (restored after)."""
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer = CaffeSGD(0.01, momentum=0.9, weight_decay=5e-4, clip_norm=1.0, **optimizer_kwargs)
    optimizer.apply(grads, model.trainable_variables)
    deltas = {v.path: v.numpy() - b for v, b in zip(model.trainable_variables, before)}
    for variable, value in zip(model.trainable_variables, before):
        variable.assign(value)
    return deltas


@pytest.mark.parametrize(("modality", "first_kernel", "first_bias"), [("flow", 5.0, 10.0), ("rgb", 1.0, 2.0)])
def test_one_update_is_the_multiplier_times_the_plain_update(modality, first_kernel, first_bias):
    # tsn-pytorch's get_optim_policies: first conv (5, 10) for flow, else (1, 2); other weights 1,
    # other biases 2, BatchNorm 1. Clipping (binding here) and L2 act on the raw gradient before.
    keras.utils.set_random_seed(0)
    # float64, so that weight differences of 1e-6 on weights of 0.1 are exact enough to compare.
    keras.config.set_dtype_policy("float64")
    try:
        model = build_tsn(CLASSES, modality, backbone="tiny", input_size=SIZE, partial_bn=False)
    finally:
        keras.config.set_dtype_policy("float32")
    clips = np.random.default_rng(0).normal(size=(2, 3, SIZE, SIZE, model.input_shape[-1]))
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(np.array([1, 2]), model(clips, training=False), from_logits=True)
    grads = tape.gradient(loss, model.trainable_variables)
    assert float(tf.linalg.global_norm(grads)) > 1.0  # the clip binds

    mults = first_conv_lr_mults(model, modality)
    fine_tuned = _one_step_deltas(model, grads, lr_mults=mults)
    plain = _one_step_deltas(model, grads, bias_lr_mult=1.0)
    expected = {"stage1_conv1/kernel": first_kernel, "stage1_conv1/bias": first_bias}
    for path, delta in plain.items():
        mult = expected.get(path, 2.0 if path.endswith("/bias") else 1.0)
        assert np.abs(delta).max() > 0, path
        np.testing.assert_allclose(fine_tuned[path], mult * delta, rtol=1e-7, err_msg=path)
    assert {path for path in plain if path.endswith(("/gamma", "/beta"))}  # BatchNorm is in the check, at x1


def test_first_conv_multipliers_find_a_bias_free_stem():
    model = build_tsn(CLASSES, "flow", backbone="efficientnet_lite0", input_size=SIZE, partial_bn=True)
    assert first_conv_lr_mults(model, "flow") == first_conv_lr_mults(model, "warped_flow") == {"conv_stem/kernel": 5.0}
    assert first_conv_lr_mults(model, "rgb_diff") == first_conv_lr_mults(model, "rgb") == {}


def test_batch_norm_momentum_is_0_9_in_the_pretrained_backbones():
    for backbone in (BNInception((64, 64, 3)), EfficientNetLite("efficientnet_lite0", (SIZE, SIZE, 3))):
        assert {layer.momentum for layer in batch_norm_layers(backbone)} == {0.9}, backbone.name


def test_partial_bn_first_layer_moves_its_statistics_by_a_tenth_per_step():
    keras.utils.set_random_seed(0)
    model = build_tsn(CLASSES, "flow", backbone="efficientnet_lite0", input_size=SIZE, partial_bn=True)
    backbone = model.get_layer("backbone").layer
    first, frozen = batch_norm_layers(model)[0], batch_norm_layers(model)[1]
    assert first.name == "bn0" and first.trainable and not frozen.trainable
    clips = np.random.default_rng(1).normal(3.0, 1.0, size=(2, 3, SIZE, SIZE, 10)).astype(np.float32)
    stem = keras.Model(backbone.input, backbone.get_layer("conv_stem").output)
    batch_mean = stem(clips.reshape(-1, SIZE, SIZE, 10)).numpy().mean(axis=(0, 1, 2))
    old_mean, old_frozen = first.moving_mean.numpy().copy(), frozen.moving_mean.numpy().copy()
    model(clips, training=True)
    np.testing.assert_allclose(first.moving_mean.numpy(), 0.9 * old_mean + 0.1 * batch_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), old_frozen)


@pytest.mark.parametrize("modality", ["rgb", "flow", "rgb_diff"])
def test_pretrained_subset_recipes_fine_tune_efficientnet_lite(modality):
    from tsn_keras.config import load_config
    from tsn_keras.training import resolved

    config = load_config(f"ucf101subset_{modality}_pretrained")
    scratch = load_config(f"ucf101subset_{modality}")
    assert (config.model.backbone, config.model.weights, config.model.partial_bn) == ("efficientnet_lite0", "imagenet", True)
    assert (scratch.model.backbone, scratch.model.weights) == ("tiny", None)  # the from-scratch recipe stays
    assert config.data.modality == scratch.data.modality == modality
    assert resolved(config).data.normalization == "tf_lite"
