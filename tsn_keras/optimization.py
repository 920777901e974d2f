"""The paper's optimiser, as the Caffe solver of the original TSN code ran it.

TSN was trained with Caffe's SGD solver (``TSN_SEMANTICS.md``, "Optimisation"): momentum 0.9,
a learning rate divided by 10 at fixed iterations, the global norm of the raw gradient clipped
at 40 (RGB) or 20 (flow), then weight decay 5e-4 as an L2 term *in the gradient* of conv and
fully-connected weights only, and per-parameter learning-rate multipliers (the prototxts'
``lr_mult``; tsn-pytorch's ``get_optim_policies``): biases x2, and for flow the first
convolution's kernel x5 and bias x10 (its input, flow, is far from the RGB the ImageNet
weights were learned on). One iteration is one update over a batch of 256 clips, which Caffe reached
on few GPUs with ``iter_size`` (gradient accumulation). :class:`CaffeSGD` is that solver as a
Keras optimizer, so that ``model.fit`` runs it unchanged on one device or many:

- ``iter_size`` micro-steps are accumulated; their mean is the batch gradient. The iteration
  counter, the learning-rate schedule and the momentum all advance once per update, not once
  per micro-step.
- The batch gradient is summed over replicas *before* the clipping and the L2 term, so the norm
  that is clipped is the norm of the whole batch's gradient (Keras' own ``global_clipnorm``
  clips each replica's gradient before the all-reduce, and its ``weight_decay`` is decoupled
  decay, not Caffe's L2). The order is Caffe's ``SGDSolver::ApplyUpdate``: ``ClipGradients``,
  then ``Regularize`` (L2), then ``ComputeUpdateValue`` (``lr * lr_mult``, momentum).
- Which variables are decayed is decided by name: the kernels of convolutions (also depthwise
  and pointwise), dense layers and recurrent cells. Biases, BatchNorm gamma/beta and the learned
  weights of the weighted and attention consensus (``segment_weights``, ``attention_kernel``)
  are not decayed: Caffe's BN-Inception prototxt sets ``decay_mult: 0`` on biases and BN, and
  the consensus weights score segments, where shrinking them toward 0 would flatten the
  weighting the consensus is there to learn. The GRU consensus is a small network of its own;
  its kernels are decayed like any dense layer's.

Example:
    >>> opt = CaffeSGD(StepSchedule(0.001, (2000, 4000)), momentum=0.9, weight_decay=5e-4,
    ...                clip_norm=40.0, iter_size=4)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf
from keras import ops

from tsn_keras.errors import ConfigError
from tsn_keras.models.transfer import find_backbone, weighted_layers
from tsn_keras.vocab import is_flow

# Names (the last component of a variable's path) that receive the L2 term.
DECAYED_NAMES: tuple[str, ...] = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel")
# Caffe's second blob of a convolution or inner product layer learns at twice the rate
# (``param { lr_mult: 2 decay_mult: 0 }`` throughout TSN's prototxts); BatchNorm's beta is not one.
BIAS_NAMES: tuple[str, ...] = ("bias",)
BIAS_LR_MULT = 2.0
# The first convolution of a flow network: ``lr_mult: 5`` (kernel) and ``10`` (bias) in
# models/*/tsn_bn_inception_flow_train_val.prototxt and tsn-pytorch's get_optim_policies.
FLOW_FIRST_CONV_LR_MULTS = (5.0, 10.0)


def accumulation_steps(batch_size: int, micro_batch_size: int | None, replicas: int) -> int:
    """Micro-steps per update so that one update sees ``batch_size`` clips.

    Args:
        batch_size: clips per optimiser update (``train.batch_size``, the paper's 256).
        micro_batch_size: clips per replica per forward pass (``train.micro_batch_size``);
            ``None`` takes ``batch_size / replicas`` (no accumulation).
        replicas: devices that train in sync (all workers together).

    Raises:
        ConfigError: when the numbers do not divide exactly.

    Example:
        >>> accumulation_steps(256, 32, 2)
        4
    """
    if micro_batch_size is None:
        if batch_size % replicas:
            raise ConfigError(
                f"train.batch_size={batch_size} is not divisible by the {replicas} replicas; "
                "set train.micro_batch_size so that batch_size = micro_batch_size * replicas * accumulation steps"
            )
        return 1
    per_step = micro_batch_size * replicas
    if batch_size % per_step:
        raise ConfigError(
            f"train.batch_size={batch_size} must be a multiple of train.micro_batch_size * replicas = "
            f"{micro_batch_size} * {replicas} = {per_step}; allowed micro_batch_size values: "
            + ", ".join(str(m) for m in range(1, batch_size // replicas + 1) if batch_size % (m * replicas) == 0)
        )
    return batch_size // per_step


def iterations_per_epoch(num_videos: int, batch_size: int) -> int:
    """One epoch is one pass over the training videos: ``ceil(videos / batch_size)`` updates."""
    return max(1, math.ceil(num_videos / batch_size))


def lr_at(iteration: int, base_lr: float, lr_steps: Sequence[int], lr_decay: float = 0.1) -> float:
    """Caffe's ``multistep`` policy: ``base_lr * lr_decay ** (number of steps <= iteration)``.

    ``iteration`` counts completed updates, so update ``i`` (0-based) uses ``lr_at(i)`` and the
    rate drops on the update numbered ``lr_steps[j]``, as in Caffe's solver.
    """
    return base_lr * lr_decay ** sum(iteration >= step for step in lr_steps)


@keras.saving.register_keras_serializable(package="tsn_keras")
class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate multiplied by ``decay`` at each of ``steps`` (iterations = updates).

    Args:
        base_lr: the rate of the first update.
        steps: increasing iteration numbers at which the rate drops.
        decay: factor applied at each step (0.1 in the paper).

    Example:
        >>> float(StepSchedule(0.001, (2000, 4000))(2000))  # doctest: +SKIP
        0.0001
    """

    def __init__(self, base_lr: float, steps: Sequence[int] = (), decay: float = 0.1):
        self.base_lr = float(base_lr)
        self.steps = tuple(int(s) for s in steps)
        self.decay = float(decay)

    def __call__(self, step):
        step = ops.cast(step, "int64")
        drops = ops.zeros((), "float32")
        for boundary in self.steps:
            drops = drops + ops.cast(ops.greater_equal(step, boundary), "float32")
        return self.base_lr * ops.power(ops.cast(self.decay, "float32"), drops)

    def get_config(self) -> dict:
        return {"base_lr": self.base_lr, "steps": list(self.steps), "decay": self.decay}


@keras.saving.register_keras_serializable(package="tsn_keras")
class CaffeSGD(keras.optimizers.Optimizer):
    """Momentum SGD with Caffe's global-norm clipping, L2 weight decay, ``lr_mult`` and ``iter_size``.

    Per update, with ``g`` the mean gradient of the batch over micro-steps and replicas:
    ``g = clip_by_global_norm(g, clip_norm)``, ``g += weight_decay * w`` (decayed variables
    only), ``v = momentum * v + lr * lr_mult * g``, ``w -= v``. The learning rate sits inside the velocity as in
    Caffe (and Keras' SGD); PyTorch's SGD (``v = m*v + g; w -= lr*v``) differs from this for a
    few hundred iterations after each learning-rate step.

    Args:
        learning_rate: a float or a schedule of the update count (e.g. :class:`StepSchedule`).
        momentum: in [0, 1).
        weight_decay: coefficient of the L2 term added to the gradient (Caffe style).
        clip_norm: maximum global norm of the batch gradient; ``None`` for no clipping.
        iter_size: micro-steps accumulated per update (Caffe's solver name for it).
        decay_names: variable names that receive the L2 term.
        bias_lr_mult: learning-rate multiplier of variables named ``bias`` (Caffe's 2).
        lr_mults: learning-rate multipliers by variable path (``layer/kernel``), over the bias
            rule; see :func:`first_conv_lr_mults`.
        name: optimiser name.
        **kwargs: passed to ``keras.optimizers.Optimizer`` (e.g. ``loss_scale_factor``); Keras'
            own clipping, decoupled weight decay, accumulation and EMA are refused.

    Example:
        >>> model.compile(CaffeSGD(0.001, clip_norm=40.0, iter_size=8), loss=...)  # doctest: +SKIP
    """

    def __init__(
        self,
        learning_rate=0.001,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        clip_norm: float | None = None,
        iter_size: int = 1,
        decay_names: Sequence[str] = DECAYED_NAMES,
        bias_lr_mult: float = BIAS_LR_MULT,
        lr_mults: Mapping[str, float] | None = None,
        name: str = "caffe_sgd",
        **kwargs,
    ):
        for key in ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps", "use_ema"):
            if kwargs.pop(key, None):
                raise ValueError(f"CaffeSGD does its own clipping and accumulation; {key} is not supported")
        for key in ("ema_momentum", "ema_overwrite_frequency"):
            kwargs.pop(key, None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if int(iter_size) < 1:
            raise ValueError(f"iter_size must be >= 1, got {iter_size}")
        self.momentum = float(momentum)
        self.l2_weight_decay = float(weight_decay)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.iter_size = int(iter_size)
        self.decay_names = tuple(decay_names)
        self.bias_lr_mult = float(bias_lr_mult)
        self.lr_mults = {str(path): float(mult) for path, mult in (lr_mults or {}).items()}

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._velocities = self.add_optimizer_variables(variables, "velocity")
        self._accumulators = (
            self.add_optimizer_variables(variables, "accumulator") if self.iter_size > 1 else []
        )

    @property
    def iterations(self):
        """Completed updates (one per ``iter_size`` micro-steps): the paper's iteration count."""
        if self.iter_size > 1:
            return ops.floor_divide(self._iterations, self.iter_size)
        return self._iterations

    def _get_current_learning_rate(self):
        # Keras evaluates a schedule at the micro-step counter; the paper's schedule counts updates.
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def is_decayed(self, variable) -> bool:
        """Whether ``variable`` receives the L2 term (conv, dense and recurrent kernels)."""
        return variable.name.split("/")[-1] in self.decay_names

    def lr_multiplier(self, variable) -> float:
        """The variable's ``lr_mult``: from ``lr_mults`` by path, else 2 for biases, else 1."""
        if variable.path in self.lr_mults:
            return self.lr_mults[variable.path]
        return self.bias_lr_mult if variable.name.split("/")[-1] in BIAS_NAMES else 1.0

    # --- one micro-step --------------------------------------------------------------------

    def _backend_apply_gradients(self, grads, trainable_variables):
        grads = [tf.convert_to_tensor(g) for g in grads]
        if self.iter_size == 1:
            self._update(grads, trainable_variables)
            return
        is_update = ops.equal((self._iterations + 1) % self.iter_size, 0)
        replica = tf.distribute.get_replica_context()
        if replica is None or tf.__internal__.distribute.strategy_supports_no_merge_call():
            ops.cond(
                is_update,
                lambda: self._update_from_accumulators(grads, trainable_variables),
                lambda: self._accumulate(grads, trainable_variables),
            )
        else:
            # A cond whose branch calls merge_call must itself run in cross-replica context
            # (the same construction as Keras' LossScaleOptimizer); the gradients travel as
            # arguments so that each replica gets its own.
            def cross_replica(distribution, grads, trainable_variables):
                ops.cond(
                    is_update,
                    lambda: distribution.extended.call_for_each_replica(
                        self._update_from_accumulators, args=(grads, trainable_variables)
                    ),
                    lambda: distribution.extended.call_for_each_replica(
                        self._accumulate, args=(grads, trainable_variables)
                    ),
                )

            replica.merge_call(cross_replica, args=(grads, trainable_variables))

    def _accumulators_of(self, trainable_variables) -> list:
        return [self._accumulators[self._get_variable_index(v)] for v in trainable_variables]

    def _accumulate(self, grads, trainable_variables):
        accumulators = self._accumulators_of(trainable_variables)
        self._assign_per_replica(accumulators, [a + g for g, a in zip(grads, accumulators)])

    def _update_from_accumulators(self, grads, trainable_variables):
        # Accumulators hold each replica's own sum; the all-reduce comes once, in _update.
        accumulators = self._accumulators_of(trainable_variables)
        mean = [(g + a) / self.iter_size for g, a in zip(grads, accumulators)]
        self._update(mean, trainable_variables)
        self._assign_per_replica(accumulators, [ops.zeros_like(a) for a in accumulators])

    def _update(self, grads, trainable_variables):
        grads = _sum_over_replicas(grads)
        if self.clip_norm is not None:  # on the loss gradient alone, as Caffe clips before Regularize
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        if self.l2_weight_decay:
            grads = [
                g + ops.cast(self.l2_weight_decay, g.dtype) * ops.cast(v, g.dtype) if self.is_decayed(v) else g
                for g, v in zip(grads, trainable_variables)
            ]
        # lr * lr_mult * g: the multiplier scales the gradient, so the velocity holds it as in Caffe.
        grads = [
            g * ops.cast(mult, g.dtype) if (mult := self.lr_multiplier(v)) != 1.0 else g
            for g, v in zip(grads, trainable_variables)
        ]
        self._backend_update_step(grads, trainable_variables, self.learning_rate)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Already summed over replicas in _update, before the L2 term and the clipping.
        return list(grads_and_vars)

    def _assign_per_replica(self, variables, values):
        def assign(distribution, variables, values):
            for variable, value in zip(variables, values):
                distribution.extended.update(variable.value, lambda v, x: v.assign(x), args=(value,), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(assign, self._distribution_strategy, variables, values)

    def update_step(self, gradient, variable, learning_rate):
        velocity = self._velocities[self._get_variable_index(variable)]
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(velocity, self.momentum * velocity + lr * gradient)
        self.assign_sub(variable, velocity)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps", "use_ema",
                    "ema_momentum", "ema_overwrite_frequency"):
            config.pop(key, None)
        config.update(
            momentum=self.momentum,
            weight_decay=self.l2_weight_decay,
            clip_norm=self.clip_norm,
            iter_size=self.iter_size,
            decay_names=list(self.decay_names),
            bias_lr_mult=self.bias_lr_mult,
            lr_mults=dict(self.lr_mults),
        )
        return config


def _sum_over_replicas(grads: list) -> list:
    """Sum gradients over replicas (each is already scaled by 1/replicas by Keras' loss)."""
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        return grads
    return replica.all_reduce(tf.distribute.ReduceOp.SUM, grads)


@keras.saving.register_keras_serializable(package="tsn_keras")
class SyncedLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Dynamic loss scaling (float16) whose skip decision is the same on every replica.

    Keras checks each replica's own gradients for inf/NaN; replicas that disagree would then
    take different branches, and the one that updates waits forever in the all-reduce.
    """

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        replica = tf.distribute.get_replica_context()
        if replica is None or replica.num_replicas_in_sync == 1:
            return finite
        # tf.distribute has no MIN: count the replicas that saw inf/NaN instead.
        bad = replica.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - ops.cast(finite, "float32"))
        return ops.equal(bad, 0.0)


def first_conv_lr_mults(model: keras.Model, modality: str) -> dict[str, float]:
    """``lr_mults`` for a TSN: a flow network's first convolution learns x5 (kernel), x10 (bias).

    Other modalities keep the defaults (kernel x1, bias x2), as tsn-pytorch does for RGB and RGB
    difference.

    Args:
        model: a TSN (or a backbone) whose first layer with weights is its first convolution.
        modality: ``rgb``, ``rgb_diff``, ``flow`` or ``warped_flow``.

    Returns:
        Variable path -> multiplier, for :class:`CaffeSGD`'s ``lr_mults``.
    """
    if not is_flow(modality):
        return {}
    first = weighted_layers(find_backbone(model))[0]
    if not isinstance(first, keras.layers.Conv2D):
        raise ConfigError(f"the first layer with weights of {model.name!r} is {type(first).__name__} "
                          f"{first.name!r}, not a convolution: cannot give it flow's learning-rate multipliers")
    kernel_mult, bias_mult = FLOW_FIRST_CONV_LR_MULTS
    mults = {first.kernel.path: kernel_mult}
    if first.use_bias:
        mults[first.bias.path] = bias_mult
    return mults


def make_optimizer(train_cfg, iter_size: int = 1, lr_mults: Mapping[str, float] | None = None) -> keras.optimizers.Optimizer:
    """The recipe's optimiser: :class:`CaffeSGD` on a :class:`StepSchedule`.

    Wrapped in :class:`SyncedLossScaleOptimizer` when ``train.mixed_precision`` is ``float16``.

    Args:
        train_cfg: a ``tsn_keras.config.TrainConfig``.
        iter_size: micro-steps per update (see :func:`accumulation_steps`).
        lr_mults: per-variable learning-rate multipliers (:func:`first_conv_lr_mults`).
    """
    optimizer = CaffeSGD(
        StepSchedule(train_cfg.lr, train_cfg.lr_steps, train_cfg.lr_decay),
        momentum=train_cfg.momentum,
        weight_decay=train_cfg.weight_decay,
        clip_norm=train_cfg.clip_norm,
        iter_size=iter_size,
        lr_mults=lr_mults,
    )
    if train_cfg.mixed_precision == "float16":
        return SyncedLossScaleOptimizer(optimizer)
    return optimizer
