"""Cost of the paper's optimiser and of the training options, per iteration of B clips.

The same TSN (``build_tsn``) is trained with:

- ``keras_sgd``: stock ``keras.optimizers.SGD`` with momentum (no L2, no clipping): the baseline;
- ``caffe_sgd``: ``CaffeSGD`` as a recipe builds it (L2 on kernels, global-norm clipping);
- ``accumulated``: ``CaffeSGD`` with ``iter_size=2``, one iteration = 2 micro-steps of B/2 clips;
- ``bfloat16`` / ``float16``: ``caffe_sgd`` under the mixed-precision policy (float16 only with
  ``--float16``: it is emulated, and very slow, on CPUs);
- ``xla``: ``caffe_sgd`` compiled with ``jit_compile=True``.

Iterations of all variants are interleaved and the median of each is kept, so the ratios are
measured in one run under the same load. On a GPU, ``--backbone bn_inception --size 224
--batch 32 --float16`` gives the paper's setting; frames/s = clips/s x K.

    python -m benchmarks.bench_training [--quick] [--backbone tiny] [--size 112] [--batch 16]
"""

from __future__ import annotations

import argparse
import os

from benchmarks._defaults import default_help, resolve
from benchmarks._timing import interleaved

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FULL = {"size": 112, "batch": 16, "iterations": 10}
QUICK = {"size": 32, "batch": 4, "iterations": 2}


def _model(variant: str, args, classes: int):
    import keras

    from tsn_keras.config import TrainConfig
    from tsn_keras.models.tsn import build_tsn
    from tsn_keras.optimization import make_optimizer

    precision = variant if variant in ("bfloat16", "float16") else "float32"
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build_tsn(classes, "rgb", num_segments=args.segments, backbone=args.backbone, input_size=args.size,
                          partial_bn=False)
    finally:
        keras.config.set_dtype_policy(previous)
    if variant == "keras_sgd":
        optimizer = keras.optimizers.SGD(0.001, momentum=0.9)
    else:
        cfg = TrainConfig(batch_size=args.batch, mixed_precision=precision)
        optimizer = make_optimizer(cfg, iter_size=2 if variant == "accumulated" else 1)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=variant == "xla")
    return model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_training", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds: small input, 2 iterations")
    parser.add_argument("--backbone", default="tiny", help="backbone name (default tiny)")
    parser.add_argument("--size", type=int, default=None, help="crop size in pixels " + default_help("size", FULL, QUICK))
    parser.add_argument("--batch", type=int, default=None,
                        help="clips per iteration, even " + default_help("batch", FULL, QUICK))
    parser.add_argument("--segments", type=int, default=3, help="segments K per clip (default 3)")
    parser.add_argument("--float16", action="store_true", help="also time mixed float16 (for GPUs)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed iterations " + default_help("iterations", FULL, QUICK))
    args = resolve(parser.parse_args(argv), FULL, QUICK)
    if args.batch % 2:
        parser.error("--batch must be even (the accumulated variant uses two halves)")

    import numpy as np
    from tqdm import tqdm

    iterations = args.iterations
    classes = 101
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.segments, args.size, args.size, 3)).astype(np.float32)
    y = rng.integers(0, classes, size=args.batch)
    half = args.batch // 2
    variants = ["keras_sgd", "caffe_sgd", "accumulated", "bfloat16", "xla"] + (["float16"] if args.float16 else [])
    models = {}
    for variant in tqdm(variants, desc="building", unit="model"):
        models[variant] = _model(variant, args, classes)

    def iteration(variant: str) -> None:
        model = models[variant]
        if variant == "accumulated":
            model.train_on_batch(x[:half], y[:half])
            model.train_on_batch(x[half:], y[half:])
        else:
            model.train_on_batch(x, y)

    # The first iteration traces (and for xla compiles) the step.
    first, step = interleaved({v: (lambda v=v: iteration(v)) for v in variants}, iterations,
                              desc="timed iterations")
    base = step["caffe_sgd"]
    results = {
        "backbone": args.backbone, "input": [args.batch, args.segments, args.size, args.size, 3],
        "iterations": iterations,
        **{f"{v}_iteration_s": step[v] for v in variants},
        **{f"{v}_clips_per_s": args.batch / step[v] for v in variants},
        **{f"{v}_first_iteration_s": first[v] for v in variants},
        "caffe_sgd_over_keras_sgd": base / step["keras_sgd"],
        **{f"{v}_speedup_vs_caffe_sgd": base / step[v] for v in variants if v not in ("caffe_sgd", "keras_sgd")},
    }
    print(f"backbone {args.backbone}, iterations of {args.batch} clips x {args.segments} segments at {args.size} px, "
          f"median of {iterations}")
    for v in variants:
        print(f"  {v:<12} {1000 * step[v]:8.1f} ms/iteration  {args.batch / step[v]:7.2f} clips/s  "
              f"{args.batch * args.segments / step[v]:8.1f} frames/s  (first, with tracing: {first[v]:.1f} s)")
    print(f"CaffeSGD (L2 + clipping) time / stock SGD time: {results['caffe_sgd_over_keras_sgd']:.2f}x")
    for v in variants:
        if v not in ("caffe_sgd", "keras_sgd"):
            print(f"speed of {v} relative to caffe_sgd: {results[f'{v}_speedup_vs_caffe_sgd']:.2f}x")
    return results


if __name__ == "__main__":
    main()
