"""``tsn evaluate``: the paper's test protocol (25 snippets x 1, 3 or 10 crops) on a converted split."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (model.keras, config.yaml, classes.json) or a .keras file")
    parser.add_argument("--data", default=None, help="conversion folder (default: the run's data.root)")
    parser.add_argument("--split", default="test", help="split to test on (default: test)")
    parser.add_argument("--snippets", type=int, default=25, help="T, snippets per video (default: 25, the paper's)")
    parser.add_argument("--crops", type=int, choices=(1, 3, 10), default=10,
                        help="1 (centre), 3, or 10 (4 corners + centre and their flips; the paper's)")
    parser.add_argument("--batch-size", type=int, default=4, help="videos per forward pass (default: 4)")
    parser.add_argument("--out", default=None, help="folder for scores.npz and metrics.json (default: <run>/eval-<split>)")
    parser.add_argument("--classes", default=None, help="class names for a bare .keras model (classes.json, text, or a conversion folder)")
    parser.add_argument("--modality", default=None, choices=("rgb", "rgb_diff", "flow", "warped_flow"),
                        help="modality of a bare .keras model that takes more than 3 channels")
    parser.add_argument("--normalization", default=None,
                        choices=("caffe_bgr", "keras_caffe", "keras_tf", "keras_torch", "raw", "tf_lite"),
                        help="input normalisation (default: the run's config, else the backbone's)")
    parser.add_argument("--read-mode", default="auto", choices=("auto", "index", "stream"),
                        help="how shards are read (default: auto)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from tsn_keras.evaluation import evaluate, summary_line

    metrics = evaluate(args.run, args.data, args.split, num_snippets=args.snippets, num_crops=args.crops,
                       batch_size=args.batch_size, output_dir=args.out, classes=args.classes,
                       modality=args.modality, normalization=args.normalization, read_mode=args.read_mode)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    protocol = metrics["protocol"]
    print(f"{metrics['model']} on {metrics['data']['root']} [{metrics['data']['split']}], "
          f"{protocol['num_snippets']} snippets x {protocol['num_crops']} crops:")
    print(f"  {summary_line(metrics)}")
    print(f"  wrote {metrics['scores_file']} and metrics.json")
    return 0
