"""``tsn plot``: training curves, confusion matrix, per-class accuracy and TSN sampling as PNG/SVG."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder, an evaluation folder or a metrics.json (e.g. of `tsn fuse`)")
    parser.add_argument("--video", default=None,
                        help="video file or video id (in the run's converted data) for the sampling picture; "
                             "default: the first test video of the run's data")
    parser.add_argument("--metrics", default=None, help="metrics.json to plot instead of the run's newest evaluation")
    parser.add_argument("--out", default=None, help="output folder (default: <run>/plots)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training draw in the sampling picture")
    parser.add_argument("--formats", nargs="+", choices=("png", "svg"), default=["png", "svg"],
                        help="file formats to write")


def run(args: argparse.Namespace) -> int:
    from tsn_keras.plots import plot_run

    written, skipped = plot_run(args.run, args.out, video=args.video, metrics=args.metrics, seed=args.seed,
                                formats=tuple(args.formats))
    for path in written:
        print(f"wrote {path}")
    for reason in skipped:
        print(f"skipped {reason}")
    return 0 if written else 1
