"""`tsn demo`: synthetic dataset -> shards -> RGB and flow TSNs -> evaluation, fusion, export, plots."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default=None,
                        help="folder for everything the demo writes (default: runs/demo-<timestamp>)")
    parser.add_argument("--quick", action="store_true",
                        help="a much smaller dataset and schedule (a smoke test, not a result)")
    parser.add_argument("--workers", type=int, default=2, help="conversion worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data generation and training")


def run(args: argparse.Namespace) -> int:
    from tsn_keras.demo import format_table, run_demo

    result = run_demo(args.run_dir, quick=args.quick, workers=args.workers, seed=args.seed)
    protocol = "test split; 25 snippets x 10 crops, logits averaged over crops and snippets; fusion RGB 1 : flow 1.5"
    if args.quick:
        protocol = "--quick: tiny dataset and schedule, 5 snippets x 1 crop; not a result"
    print("\n" + format_table(result, protocol))
    print("\nwritten:")
    for name, path in result.artifacts.items():
        print(f"  {name:<12} {path}")
    minutes, secs = divmod(round(result.seconds["total"]), 60)
    print(f"\ndemo finished in {minutes} min {secs:02d} s; everything is under {result.run_dir}")
    return 0
