"""The Caffe solver as a Keras optimizer: schedule, L2 on kernels only, clipping, iter_size."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import tensorflow as tf  # noqa: E402

from tsn_keras.config import TrainConfig, load_config  # noqa: E402
from tsn_keras.errors import ConfigError  # noqa: E402
from tsn_keras.optimization import (  # noqa: E402
    CaffeSGD,
    StepSchedule,
    SyncedLossScaleOptimizer,
    accumulation_steps,
    iterations_per_epoch,
    lr_at,
    make_optimizer,
)

# UCF101, the paper (Sec. 4.1): spatial lr 0.001, /10 every 2,000 iterations, stop at 4,500; temporal lr
# 0.005, /10 after 12,000 and 18,000, stop at 20,000.
PAPER_RGB = {0: 1e-3, 1999: 1e-3, 2000: 1e-4, 3999: 1e-4, 4000: 1e-5, 4499: 1e-5}
PAPER_FLOW = {0: 5e-3, 11999: 5e-3, 12000: 5e-4, 17999: 5e-4, 18000: 5e-5, 19999: 5e-5}
# HMDB51 has no schedule in the paper; the original Caffe solvers (models/hmdb51/tsn_bn_inception_
# {rgb,flow}_solver.prototxt, batch 32 x 4 GPUs): RGB lr_policy "step" with stepsize 1000 and
# max_iter 2500; flow "multistep" at 4000 and 6000, max_iter 7000.
HMDB51_RGB = {0: 1e-3, 999: 1e-3, 1000: 1e-4, 1999: 1e-4, 2000: 1e-5, 2499: 1e-5}
HMDB51_FLOW = {0: 5e-3, 3999: 5e-3, 4000: 5e-4, 5999: 5e-4, 6000: 5e-5, 6999: 5e-5}


@pytest.mark.parametrize(("recipe", "expected", "stop", "clip", "batch"), [
    ("ucf101_rgb", PAPER_RGB, 4500, 40.0, 256),
    ("hmdb51_rgb", HMDB51_RGB, 2500, 40.0, 128),
    ("ucf101_flow", PAPER_FLOW, 20000, 20.0, 256),
    ("ucf101_warped_flow", PAPER_FLOW, 20000, 20.0, 256),
    ("hmdb51_flow", HMDB51_FLOW, 7000, 20.0, 128),
    ("hmdb51_warped_flow", HMDB51_FLOW, 7000, 20.0, 128),
    ("hmdb51_rgb_diff", HMDB51_FLOW, 7000, 20.0, 128),
])
def test_recipe_learning_rate_follows_the_reference_schedule(recipe, expected, stop, clip, batch):
    cfg = load_config(recipe).train
    assert (cfg.batch_size, cfg.momentum, cfg.weight_decay, cfg.max_iterations, cfg.clip_norm) == (
        batch, 0.9, 5e-4, stop, clip)
    # The optimiser train() builds, with 4 micro-steps per update: the rate must follow updates.
    optimizer = make_optimizer(cfg, iter_size=4)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    for iteration, lr in expected.items():
        for micro in (0, 3):
            optimizer._iterations.assign(iteration * 4 + micro)
            assert int(optimizer.iterations) == iteration
            assert float(optimizer.learning_rate) == pytest.approx(lr, rel=1e-6), (iteration, micro)
        assert lr_at(iteration, cfg.lr, cfg.lr_steps, cfg.lr_decay) == pytest.approx(lr)


def test_step_schedule_serialises():
    schedule = StepSchedule(0.01, (3, 7), 0.5)
    again = StepSchedule.from_config(schedule.get_config())
    assert [float(again(i)) for i in (0, 3, 7)] == pytest.approx([0.01, 0.005, 0.0025])


def _layered_model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="fc")(x)
    model = keras.Model(inputs, outputs)
    for variable in model.trainable_variables:  # non-zero biases and BN parameters
        variable.assign(variable + 0.5)
    return model


def test_weight_decay_reaches_kernels_only():
    model = _layered_model()
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer = CaffeSGD(1.0, momentum=0.0, weight_decay=0.1)
    optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer.is_decayed(v)}
    assert decayed == {"conv/kernel", "depthwise/kernel", "fc/kernel"}
    for variable in model.trainable_variables:
        # With a zero loss gradient, the update is lr * weight_decay * w on kernels, nothing elsewhere.
        factor = 0.9 if variable.path in decayed else 1.0
        np.testing.assert_allclose(variable.numpy(), factor * before[variable.path], rtol=1e-6)


@pytest.mark.parametrize(("consensus", "learned"), [("weighted", "segment_weights"), ("attention", "attention_kernel")])
def test_consensus_weights_are_not_decayed(consensus, learned):
    from tsn_keras.models.tsn import build_tsn

    model = build_tsn(3, "rgb", backbone="tiny", consensus=consensus, input_size=32, partial_bn=False)
    optimizer = CaffeSGD(1.0, momentum=0.0, weight_decay=0.1)
    optimizer.build(model.trainable_variables)
    decayed = {v.path.split("/")[-1]: optimizer.is_decayed(v) for v in model.trainable_variables}
    assert decayed[learned] is False
    assert decayed["gamma"] is False and decayed["beta"] is False and decayed["bias"] is False
    assert decayed["kernel"] is True


def _caffe_reference(w0, b0, g, lrs, wd, clip, m, clip_first=True):
    """Two-variable Caffe solver in float64: kernel (decayed, lr_mult 1) and bias (not decayed, lr_mult 2)."""
    w, b = w0.astype(np.float64), b0.astype(np.float64)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for lr in lrs:
        gw, gb = g[0].astype(np.float64), g[1].astype(np.float64)
        if not clip_first:
            gw = gw + wd * w
        scale = min(1.0, clip / np.sqrt((gw**2).sum() + (gb**2).sum()))
        gw, gb = gw * scale, gb * scale
        if clip_first:
            gw = gw + wd * w
        vw, vb = m * vw + lr * gw, m * vb + lr * 2.0 * gb
        w, b = w - vw, b - vb
    return w, b


def test_raw_gradient_is_clipped_before_the_l2_term_and_momentum_is_caffes():
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(2, name="fc")
    layer.build((None, 3))
    kernel, bias = layer.kernel, layer.bias
    kernel.assign(np.linspace(-3, 3, 6).reshape(3, 2))  # large weights: the L2 term is far from negligible
    bias.assign([0.3, -0.2])
    w0, b0 = kernel.numpy().copy(), bias.numpy().copy()
    g = [np.full((3, 2), 2.0, "float32"), np.array([1.0, -3.0], "float32")]
    lr0, wd, clip, m = 0.1, 0.5, 1.5, 0.9
    optimizer = CaffeSGD(StepSchedule(lr0, (1,), 0.1), momentum=m, weight_decay=wd, clip_norm=clip)
    optimizer.apply([tf.constant(x) for x in g], [kernel, bias])
    optimizer.apply([tf.constant(x) for x in g], [kernel, bias])

    # Caffe's SGDSolver::ApplyUpdate: ClipGradients() on the loss gradient, then Regularize() adds
    # wd * w to the kernel, then v = m*v + lr*lr_mult*g' (bias lr_mult 2); lr drops at iteration 1.
    w, b = _caffe_reference(w0, b0, g, (lr0, lr0 * 0.1), wd, clip, m)
    np.testing.assert_allclose(kernel.numpy(), w, rtol=1e-5)
    np.testing.assert_allclose(bias.numpy(), b, rtol=1e-5)
    assert int(optimizer.iterations) == 2
    # The order matters here: clipping the gradient with its L2 term gives other weights.
    w_reversed, _ = _caffe_reference(w0, b0, g, (lr0, lr0 * 0.1), wd, clip, m, clip_first=False)
    assert np.abs(w_reversed - w).max() > 1e-2


def _fit_small(batch_size, iter_size, clip_norm, samples=16):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    optimizer = CaffeSGD(StepSchedule(0.5, (1,)), momentum=0.9, weight_decay=0.01, clip_norm=clip_norm,
                         iter_size=iter_size)
    model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, samples)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size), epochs=1, verbose=0, shuffle=False)
    return model


def test_two_half_batches_update_like_one_full_batch():
    # Two iterations of 8 clips (momentum and an lr step in play), clipping active.
    full = _fit_small(batch_size=8, iter_size=1, clip_norm=0.05)
    halves = _fit_small(batch_size=4, iter_size=2, clip_norm=0.05)
    assert int(full.optimizer.iterations) == int(halves.optimizer.iterations) == 2
    for a, b in zip(full.get_weights(), halves.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # The clip was binding, so clipping each half-batch separately would have given other weights.
    unclipped = _fit_small(batch_size=8, iter_size=1, clip_norm=None)
    assert max(np.abs(a - b).max() for a, b in zip(full.get_weights(), unclipped.get_weights())) > 1e-3


def test_accumulation_steps_and_epochs():
    assert accumulation_steps(256, None, 1) == 1
    assert accumulation_steps(256, 32, 8) == 1
    assert accumulation_steps(256, 32, 1) == 8
    assert accumulation_steps(256, 16, 2) == 8
    with pytest.raises(ConfigError, match=r"micro_batch_size \* replicas = 24 \* 2 = 48"):
        accumulation_steps(256, 24, 2)
    with pytest.raises(ConfigError, match="not divisible by the 3 replicas"):
        accumulation_steps(256, None, 3)
    assert iterations_per_epoch(9537, 256) == 38
    assert iterations_per_epoch(256, 256) == 1


def test_optimizer_config_round_trip_and_float16_wrapping():
    optimizer = CaffeSGD(StepSchedule(0.01, (5,)), momentum=0.8, weight_decay=1e-3, clip_norm=20.0, iter_size=4)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, CaffeSGD)
    assert (again.momentum, again.l2_weight_decay, again.clip_norm, again.iter_size) == (0.8, 1e-3, 20.0, 4)
    assert (again.bias_lr_mult, again.lr_mults) == (2.0, {})
    with pytest.raises(ValueError, match="global_clipnorm"):
        CaffeSGD(0.1, global_clipnorm=1.0)
    wrapped = make_optimizer(TrainConfig(mixed_precision="float16"), iter_size=2)
    assert isinstance(wrapped, SyncedLossScaleOptimizer)
    assert wrapped.inner_optimizer.iter_size == 2
