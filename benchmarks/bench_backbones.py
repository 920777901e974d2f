"""Training frames/s of a TSN for each backbone on this machine, as ratios measured in one run.

Each model is the library's TSN (``build_tsn``: folded backbone, dropout, new FC, average
consensus, partial BN off) trained with the library's optimiser (Caffe-style SGD with L2 and
clipping) on a fixed random batch of B clips x K = 3 segments, so only the network's cost is
measured (the input pipeline has its own benchmark). Steps of all models are interleaved and
the median kept, so the ratios share the machine's load. Frames/s counts segments (B x K).
Ratios are against BN-Inception, the paper's backbone, at the same input size.

    python -m benchmarks.bench_backbones [--quick] [--size 128] [--batch 8]
"""

from __future__ import annotations

import argparse
import os

from benchmarks._timing import interleaved_steps

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name -> smallest input it accepts (keras.applications limits; BN-Inception needs 32n-1..32n+6)
BACKBONES = ("bn_inception", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
             "inception_v3", "resnet50", "mobilenet_v2", "tiny")
MIN_SIZE = {"inception_v3": 75, "resnet50": 32, "mobilenet_v2": 32, "tiny": 8, "bn_inception": 31,
            "efficientnet_lite0": 32, "efficientnet_lite1": 32, "efficientnet_lite2": 32}


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
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (a smoke run)")
    parser.add_argument("--size", type=int, default=128, help="input size in pixels (default 128)")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch (default 8; x 3 segments)")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated backbone names")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 8, 2 with --quick)")
    args = parser.parse_args(argv)

    import numpy as np
    from tqdm import tqdm

    names = [name.strip() for name in args.backbones.split(",") if name.strip()]
    too_small = [n for n in names if args.size < MIN_SIZE.get(n, 1)]
    if too_small:
        raise SystemExit(f"--size {args.size} is below the minimum input of {', '.join(too_small)}")
    steps = args.steps or (2 if args.quick else 8)
    segments, classes = 3, 101
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, segments, args.size, args.size, 3)).astype(np.float32)
    y = rng.integers(0, classes, size=args.batch)
    models = {name: _model(name, args.size, classes) for name in tqdm(names, desc="building", unit="model")}
    _, step = interleaved_steps(models, x, y, steps)

    frames = args.batch * segments
    fps = {name: frames / seconds for name, seconds in step.items()}
    params = {name: int(sum(np.prod(w.shape) for w in model.trainable_weights)) for name, model in models.items()}
    reference = fps.get("bn_inception")
    print(f"TSN training, {args.batch} clips x {segments} segments at {args.size} px, median of {steps} steps, "
          f"{os.cpu_count()} CPUs")
    for name in names:
        ratio = f"{fps[name] / reference:6.2f} x bn_inception" if reference else ""
        print(f"  {name:<18} {fps[name]:8.1f} frames/s  {params[name] / 1e6:6.2f} M trainable  {ratio}")
    return {"size": args.size, "batch": args.batch, "segments": segments, "steps": steps,
            "frames_per_s": fps, "trainable_parameters": params,
            "ratio_to_bn_inception": {n: fps[n] / reference for n in names} if reference else {}}


if __name__ == "__main__":
    main()
