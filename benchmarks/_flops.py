"""FLOPs of a Keras model from its layer shapes, and this CPU's fp32 peak, for "FLOP/s vs peak".

Only convolutions and dense layers are counted (multiply-adds x 2): they are >98% of the
arithmetic of the backbones here; BatchNorm, activations and pooling are memory-bound and left
out, so the fraction of peak is a slight underestimate of the arithmetic the CPU does.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

# A training step is counted as 3 forward passes: the forward, the gradient with respect to
# the inputs and the gradient with respect to the weights each cost about one forward's
# multiply-adds (the usual approximation; the first layer's input gradient is not needed).
TRAIN_FORWARD_MULTIPLE = 3
# Per core and cycle with AVX-512: 2 FMA units x 16 fp32 lanes x 2 flops (multiply + add).
# Xeon Gold 6xxx / Platinum have two 512-bit FMA units; some Silver/Gold 5xxx parts have one,
# which would halve the peak (and double the fractions printed).
FMA_UNITS, FP32_LANES, FLOPS_PER_FMA = 2, 16, 2


def _layers(model):
    """Every leaf layer of ``model``, through nested models and wrappers."""
    import keras

    for layer in model.layers:
        inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
        if isinstance(inner, keras.Model):
            yield from _layers(inner)
        else:
            yield inner


def forward_macs_per_frame(model) -> int:
    """Multiply-adds of one frame's forward pass through the convolutions and dense layers of ``model``.

    For a TSN pass its backbone (the per-frame model) and the classifier; shapes are read from
    each layer's built input and output, so the backbone must have a static input size.
    """
    import keras

    total = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out = layer.output.shape
            total += math.prod(out[1:3]) * out[3] * math.prod(layer.kernel_size)
        elif isinstance(layer, keras.layers.Conv2D):  # includes SeparableConv2D's pointwise part only
            out, cin = layer.output.shape, layer.input.shape[-1]
            total += math.prod(out[1:3]) * out[3] * math.prod(layer.kernel_size) * cin // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def cpu_clock_ghz() -> tuple[float, str]:
    """The core clock and where it was read: ``cpu MHz`` in /proc/cpuinfo (the nominal clock on
    this virtual machine; turbo and the AVX-512 frequency offset are not visible from inside)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 2.0, "assumed 2.0 GHz (/proc/cpuinfo unreadable)"
    found = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, flags=re.MULTILINE)
    if not found:
        return 2.0, "assumed 2.0 GHz (no 'cpu MHz' in /proc/cpuinfo)"
    return float(found[0]) / 1000, "/proc/cpuinfo 'cpu MHz'"


def has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def peak_flops(cores: int) -> tuple[float, str]:
    """fp32 peak FLOP/s of ``cores`` cores and the assumption behind it, in words."""
    clock, source = cpu_clock_ghz()
    lanes = FP32_LANES if has_avx512() else FP32_LANES // 2
    peak = cores * FMA_UNITS * lanes * FLOPS_PER_FMA * clock * 1e9
    return peak, (f"{cores} cores x {FMA_UNITS} FMA units x {lanes} fp32 lanes x {FLOPS_PER_FMA} flops x "
                  f"{clock:.2f} GHz ({source}) = {peak / 1e9:.0f} GFLOP/s")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
