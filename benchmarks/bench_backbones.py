"""Training frames/s of a TSN for each backbone on this machine, as ratios measured in one run.

Each model is the library's TSN (``build_tsn``: folded backbone, dropout, new FC, average
consensus, partial BN off) trained with the library's optimiser (Caffe-style SGD with L2 and
clipping) on a fixed random batch of B clips x K = 3 segments, so only the network's cost is
measured (the input pipeline has its own benchmark). Steps of all models are interleaved and
the median kept, so the ratios share the machine's load. Frames/s counts segments (B x K).
Ratios are against BN-Inception, the paper's backbone, at the same input size (against the first
backbone named when BN-Inception is not measured, as in ``--quick``).

    python -m benchmarks.bench_backbones [--quick] [--size 128] [--batch 8]
"""

from __future__ import annotations

import argparse
import os

from benchmarks._defaults import default_help, resolve
from benchmarks._timing import interleaved_steps
from tsn_keras.vocab import BACKBONES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name -> smallest input it accepts (keras.applications limits; BN-Inception needs 32n-1..32n+6)
MIN_SIZE = {"inception_v3": 75, "resnet50": 32, "mobilenet_v2": 32, "tiny": 8, "bn_inception": 31,
            "efficientnet_lite0": 32, "efficientnet_lite1": 32, "efficientnet_lite2": 32}
FULL = {"size": 128, "batch": 8, "backbones": ",".join(BACKBONES), "steps": 8}
# Seconds, not minutes: building and tracing the three large backbones alone takes a minute on 2 cores.
QUICK = {"size": 32, "batch": 2, "backbones": "mobilenet_v2,tiny", "steps": 2}


def _model(backbone: str, size: int, classes: int):
    import keras

    from tsn_keras.config import TrainConfig
    from tsn_keras.models.tsn import build_tsn
    from tsn_keras.optimization import make_optimizer

    model = build_tsn(classes, "rgb", num_segments=3, backbone=backbone, input_size=size, partial_bn=False)
    model.compile(optimizer=make_optimizer(TrainConfig(lr=0.001)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_backbones", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds: 2 backbones, small input")
    parser.add_argument("--size", type=int, default=None, help="input size in pixels " + default_help("size", FULL, QUICK))
    parser.add_argument("--batch", type=int, default=None,
                        help="clips per batch, x 3 segments " + default_help("batch", FULL, QUICK))
    parser.add_argument("--backbones", default=None,
                        help="comma-separated backbone names " + default_help("backbones", FULL, QUICK))
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per model " + default_help("steps", FULL, QUICK))
    args = resolve(parser.parse_args(argv), FULL, QUICK)

    import numpy as np
    from tqdm import tqdm

    names = [name.strip() for name in args.backbones.split(",") if name.strip()]
    too_small = [n for n in names if args.size < MIN_SIZE.get(n, 1)]
    if too_small:
        raise SystemExit(f"--size {args.size} is below the minimum input of {', '.join(too_small)}")
    steps = args.steps
    segments, classes = 3, 101
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, segments, args.size, args.size, 3)).astype(np.float32)
    y = rng.integers(0, classes, size=args.batch)
    models = {name: _model(name, args.size, classes) for name in tqdm(names, desc="building", unit="model")}
    _, step = interleaved_steps(models, x, y, steps)

    frames = args.batch * segments
    fps = {name: frames / seconds for name, seconds in step.items()}
    params = {name: int(sum(np.prod(w.shape) for w in model.trainable_weights)) for name, model in models.items()}
    reference = "bn_inception" if "bn_inception" in names else names[0]  # the paper's backbone, when measured
    ratios = {name: fps[name] / fps[reference] for name in names}
    print(f"TSN training, {args.batch} clips x {segments} segments at {args.size} px, median of {steps} steps, "
          f"{os.cpu_count()} CPUs")
    for name in names:
        print(f"  {name:<18} {fps[name]:8.1f} frames/s  {params[name] / 1e6:6.2f} M trainable  "
              f"{ratios[name]:6.2f} x {reference}")
    return {"size": args.size, "batch": args.batch, "segments": segments, "steps": steps,
            "frames_per_s": fps, "trainable_parameters": params, "reference": reference, "ratio_to_reference": ratios}


if __name__ == "__main__":
    main()
