"""``tsn train``: train a TSN from a recipe with ``model.fit``; a killed run continues with ``--run-dir``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tsn_keras.errors import ConfigError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="recipe YAML, or the name of a bundled one (e.g. ucf101_rgb); "
                             "default with --run-dir: the run's config.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set data.root=data/ucf101_split2 (repeatable)")
    parser.add_argument("--run-dir", default=None,
                        help="run folder; an existing one is continued from its last finished epoch "
                             "(default: <train.output_dir>/<name>-<timestamp>)")
    parser.add_argument("--no-resume", action="store_true",
                        help="refuse to continue a run folder that holds an unfinished run")
    parser.add_argument("--check", action="store_true",
                        help="check the recipe against its data, print the resolved recipe and exit without training")
    parser.add_argument("--verbose", default="auto", choices=("auto", "0", "1", "2"),
                        help="Keras progress output: 1 progress bar, 2 one line per epoch, 0 silent (default: auto)")


def run(args: argparse.Namespace) -> int:
    from tsn_keras.config import load_config

    recipe = args.config
    if recipe is None:
        stored = Path(args.run_dir) / "config.yaml" if args.run_dir else None
        if stored is None or not stored.is_file():
            raise ConfigError("give --config <recipe> (or --run-dir of a run folder that has a config.yaml)")
        recipe = stored
    config = load_config(recipe, args.overrides)
    if args.check:
        from tsn_keras.checks import check_data
        from tsn_keras.training import resolved

        data = check_data(config)
        print(resolved(config).to_yaml(), end="")
        print(f"# ok: {data.train_videos} training videos, {data.val_videos} validation videos, "
              f"{len(data.classes)} classes")
        return 0

    from tsn_keras.training import train

    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    result = train(config, args.run_dir, resume=not args.no_resume, verbose=verbose)
    last = {key: values[-1] for key, values in result.history.items() if values}
    shown = ", ".join(f"{key} {last[key]:.4g}" for key in ("loss", "accuracy", "val_loss", "val_accuracy") if key in last)
    print(f"trained {int(last.get('iteration', 0))} iterations: {shown}")
    print(f"run folder {result.run_dir} (model {result.model_path.name})")
    return 0
