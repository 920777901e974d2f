"""Training-step speed of the folded time-distributed backbone vs stock ``keras.layers.TimeDistributed``.

Both models are the same TSN (backbone, dropout, new FC, average consensus, partial BN) on the
same batch of B clips x K segments; only the wrapper differs:

- ``folded``: ``FoldedTimeDistributed`` runs the backbone once on (B*K, H, W, C);
- ``stock``: ``keras.layers.TimeDistributed`` with the snippet axis unknown (S = None, as a TSN
  needs to take K segments in training and T snippets at test time), which Keras maps with
  ``vectorized_map``;
- ``stock_static``: ``keras.layers.TimeDistributed`` with S fixed to K, which Keras unrolls
  into K calls of the backbone (the model then only takes K snippets).

Steps of the three models are interleaved and the median step time of each is kept, so the
ratios are measured in one run under the same machine load.

    python -m benchmarks.bench_folding [--quick] [--backbone bn_inception] [--size 96]
"""

from __future__ import annotations

import argparse
import os

from benchmarks._defaults import default_help, resolve
from benchmarks._timing import interleaved_steps

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FULL = {"backbone": "bn_inception", "size": 96, "batch": 4, "steps": 10}
QUICK = {"backbone": "tiny", "size": 32, "batch": 2, "steps": 2}  # seconds: tracing BN-Inception alone takes longer


def _model(kind: str, backbone: str, size: int, channels: int, segments: int, classes: int, partial_bn: bool):
    import keras

    from tsn_keras.models.backbones import build_backbone
    from tsn_keras.models.consensus import SegmentConsensus
    from tsn_keras.models.layers import FoldedTimeDistributed
    from tsn_keras.models.tsn import set_partial_bn

    base = build_backbone(backbone, (size, size, channels))
    snippets = segments if kind == "stock_static" else None
    clips = keras.Input((snippets, size, size, channels))
    wrapper = FoldedTimeDistributed(base) if kind == "folded" else keras.layers.TimeDistributed(base)
    x = keras.layers.Dropout(0.8)(wrapper(clips))
    x = keras.layers.Dense(classes)(x)
    model = keras.Model(clips, SegmentConsensus("avg", dtype="float32")(x), name=kind)
    set_partial_bn(model, partial_bn)
    model.compile(
        optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_folding", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds: small model, 2 steps")
    parser.add_argument("--backbone", default=None, help="backbone name " + default_help("backbone", FULL, QUICK))
    parser.add_argument("--size", type=int, default=None, help="crop size in pixels " + default_help("size", FULL, QUICK))
    parser.add_argument("--batch", type=int, default=None, help="clips per batch " + default_help("batch", FULL, QUICK))
    parser.add_argument("--segments", type=int, default=3, help="segments K per clip (default 3)")
    parser.add_argument("--no-partial-bn", dest="partial_bn", action="store_false",
                        help="train every BatchNorm layer (default: partial BN, as TSN from pre-trained weights)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model " + default_help("steps", FULL, QUICK))
    args = resolve(parser.parse_args(argv), FULL, QUICK)

    import numpy as np

    steps = args.steps
    classes = 101
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.segments, args.size, args.size, 3)).astype(np.float32)
    y = rng.integers(0, classes, size=args.batch)

    kinds = ("folded", "stock", "stock_static")
    models = {kind: _model(kind, args.backbone, args.size, 3, args.segments, classes, args.partial_bn) for kind in kinds}
    first_step, step = interleaved_steps(models, x, y, steps)

    results = {
        "backbone": args.backbone,
        "input": [args.batch, args.segments, args.size, args.size, 3],
        "steps": steps,
        "folded_step_s": step["folded"],
        "stock_step_s": step["stock"],
        "stock_static_step_s": step["stock_static"],
        "folded_first_step_s": first_step["folded"],
        "stock_first_step_s": first_step["stock"],
        "stock_static_first_step_s": first_step["stock_static"],
        "speedup_vs_stock": step["stock"] / step["folded"],
        "speedup_vs_stock_static": step["stock_static"] / step["folded"],
    }
    print(f"backbone {args.backbone}, batch {args.batch} clips x {args.segments} segments at {args.size} px, "
          f"median of {steps} training steps each")
    for kind in kinds:
        print(f"  {kind:<13} {1000 * step[kind]:8.1f} ms/step  {args.batch / step[kind]:7.2f} clips/s  "
              f"(first step, with tracing: {first_step[kind]:.1f} s)")
    print(f"folded / stock TimeDistributed (S unknown, vectorized_map): {results['speedup_vs_stock']:.2f}x")
    print(f"folded / stock TimeDistributed (S fixed to K, unrolled):    {results['speedup_vs_stock_static']:.2f}x")
    return results


if __name__ == "__main__":
    main()
