"""``tsn evaluate``: the paper's test protocol (25 snippets x 1, 3 or 10 crops) on a converted split."""

from __future__ import annotations

import argparse

from tsn_keras.vocab import CROP_COUNTS, READ_MODES, STRATEGIES


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (model.keras, config.yaml, classes.json) or a .keras file")
    parser.add_argument("--data", default=None, help="conversion folder (default: the run's data.root)")
    parser.add_argument("--split", default=None, help="split to test on (default: the run's data.test_split, else test)")
    parser.add_argument("--snippets", type=int, default=None,
                        help="T, snippets per video (default: the run's evaluate.num_snippets, else 25, the paper's)")
    parser.add_argument("--crops", type=int, choices=CROP_COUNTS, default=None,
                        help="1 (centre), 3, or 10 (4 corners + centre and their flips; the paper's) "
                             "(default: the run's evaluate.num_crops, else 10)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="videos per forward pass (default: the run's evaluate.batch_size, else 4)")
    parser.add_argument("--out", default=None, help="folder for scores.npz and metrics.json (default: <run>/eval-<split>)")
    parser.add_argument("--classes", default=None,
                        help="class names for a model that holds none (classes.json, text, or a conversion folder)")
    parser.add_argument("--read-mode", default="auto", choices=READ_MODES, help="how shards are read (default: auto)")
    parser.add_argument("--strategy", default="auto", choices=[s for s in STRATEGIES if s != "multi_worker"],
                        help="devices of the forward passes: auto (every local GPU, else the default device), "
                             "default (one device) or mirrored (default: auto)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from tsn_keras.evaluation import evaluate
    from tsn_keras.scores import summary_line

    metrics = evaluate(args.run, args.data, args.split, num_snippets=args.snippets, num_crops=args.crops,
                       batch_size=args.batch_size, output_dir=args.out, classes=args.classes,
                       read_mode=args.read_mode, strategy=args.strategy)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    protocol = metrics["protocol"]
    print(f"{metrics['model']} on {metrics['data']['root']} [{metrics['data']['split']}], "
          f"{protocol['num_snippets']} snippets x {protocol['num_crops']} crops:")
    print(f"  {summary_line(metrics)}")
    print(f"  wrote {metrics['scores_file']} and metrics.json")
    return 0
