"""`tsn convert`: a video dataset -> TFRecord shards (RGB, optical flow, warped flow) + manifest.json.

Examples::

    tsn convert --format ucf101 --split 1 --modalities rgb,flow --present-classes-only data/ shards/
    tsn convert --format list --list train=train.txt --list test=test.txt --classes classes.txt videos/ shards/
    tsn convert --format folder --val-fraction 0.2 --flow dis my_videos/ shards/
    tsn convert --format folder --group-by ucf101 --val-fraction 0.1 --test-fraction 0.2 my_videos/ shards/
    tsn convert --format kinetics --annotations kinetics400/ --short-side 256 kinetics400/videos/ shards/
    tsn convert --format ucf101 --runner beam \
        --beam-options "--direct_num_workers=2 --direct_running_mode=multi_processing" data/ shards/

A run that is interrupted resumes when started again with the same options.
"""

from __future__ import annotations

import argparse
import os

from tfrecords_tools.datasets import FORMATS
from tfrecords_tools.flow import ALGORITHMS as FLOWS
from tfrecords_tools.flow_engines import ENGINES as FLOW_ENGINES
from tfrecords_tools.splitting import GROUP_PRESETS
from tsn_keras.commands import frame_size
from tsn_keras.errors import ConfigError
from tsn_keras.vocab import CONVERTED_MODALITIES

RUNNERS = ("local", "beam")
BEAM_MISSING = "--runner beam needs Apache Beam: pip install 'tsn-keras[beam]' (apache-beam, google-crc32c)"


def _modalities(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in CONVERTED_MODALITIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown modality {unknown or text!r}; choose from {', '.join(CONVERTED_MODALITIES)}")
    return names


def _lists(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    lists = {}
    for item in items:
        split, sep, path = item.partition("=")
        if not sep or not split or not path:
            raise ConfigError(f"--list {item!r}: expected SPLIT=FILE, e.g. --list train=train.txt")
        if split in lists:
            raise ConfigError(f"--list: split {split!r} given twice")
        lists[split] = path
    return lists


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument("source", help="dataset folder (ucf101: UCF-101 or the folder that contains it)")
    parser.add_argument("out", help="output folder (resumed when it holds an interrupted conversion)")
    parser.add_argument("--format", choices=FORMATS, default="folder",
                        help="ucf101 / hmdb51 (official split files), folder (<root>/<class>/<video>), "
                             "list (<relative path> <label> files), kinetics (official CSVs, clips named "
                             "<youtube_id>_<start:06d>_<end:06d>.mp4 anywhere under SOURCE) [folder]")
    parser.add_argument("--split", type=int, choices=(1, 2, 3), default=1, help="official split (ucf101, hmdb51) [1]")
    parser.add_argument("--annotations", metavar="DIR",
                        help="folder of the official split files (default: ucfTrainTestlist / "
                             "testTrainMulti_7030_splits / the Kinetics train,validate,test CSVs in or beside SOURCE)")
    parser.add_argument("--list", action="append", metavar="SPLIT=FILE", dest="lists",
                        help="format list: a split's list file, repeatable (--list train=a.txt --list test=b.txt)")
    parser.add_argument("--classes", metavar="FILE", help="format list: class names, one per line or '<1-based idx> <name>'")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="share of each class's train groups moved to a seeded 'val' split (groups: the "
                             "official rule for ucf101/hmdb51, --group-by for folder/list) [0]")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="folder, list without a test list: share of each class's train groups moved to a "
                             "seeded 'test' split, after val [0]")
    parser.add_argument("--group-by", default="none", metavar="RULE",
                        help="folder, list: what keeps clips together in the val/test carves: "
                             f"{', '.join(GROUP_PRESETS)} (ucf101: the _gXX_ of the name; hmdb51: the name before "
                             "_<class>_, the source movie) or regex:PATTERN (its first group, searched in the "
                             "relative path) [none: each clip alone]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the val/test carves and of the train order [0]")
    parser.add_argument("--modalities", type=_modalities, default=("rgb",),
                        help=f"comma-separated: {', '.join(CONVERTED_MODALITIES)} [rgb]")
    parser.add_argument("--flow", choices=FLOWS, default="tvl1",
                        help="optical flow: tvl1 (the paper's), dis (fast), farneback [tvl1]")
    parser.add_argument("--flow-engine", choices=FLOW_ENGINES, default="auto",
                        help="who computes TV-L1: tf (TensorFlow, XLA, CPU or GPU), opencv (CPU, ~1 s/frame); "
                             "auto: tf for tvl1, opencv for dis/farneback [auto]")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--frame-size", type=frame_size, default=(340, 256), metavar="WxH",
                      help="stored frame size [340x256, the paper's]")
    size.add_argument("--short-side", type=int, help="resize to this shorter side instead, keeping the aspect ratio")
    size.add_argument("--original-size", action="store_true", help="store frames at their decoded size")
    parser.add_argument("--shard-size-mb", type=float, default=200.0, help="target shard size in MB [200]")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1..100 [90]")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"worker processes of the local runner [number of CPUs: {os.cpu_count() or 1}]")
    parser.add_argument("--runner", choices=RUNNERS, default="local",
                        help="local: a process pool on this machine; beam: an Apache Beam pipeline (DirectRunner "
                             "or a cluster runner, see --beam-options); both write the same bytes [local]")
    parser.add_argument("--beam-options", metavar="FLAGS", default="",
                        help="Beam pipeline flags for --runner beam, e.g. \"--direct_num_workers=2 "
                             "--direct_running_mode=multi_processing\" or \"--runner=DataflowRunner --project=P ...\"; "
                             "a single flag needs the = form: --beam-options=--runner=FlinkRunner")
    parser.add_argument("--state-dir", default=None,
                        help="--runner beam with a remote OUT (gs://...): the local folder of the journal a rerun "
                             "resumes [~/.cache/tsn-keras/beam-journals/<hash of OUT>]")
    parser.add_argument("--present-classes-only", action="store_true",
                        help="keep only classes with at least one video on disk, relabelled 0..n-1")
    parser.add_argument("--strict", action="store_true", help="exit with code 2 if any video was rejected or missing")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous conversion in OUT instead of resuming")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the local runner shows one)")


def run(args: argparse.Namespace) -> int:
    import time

    from tfrecords_tools.conversion import strict_error, summary_line
    from tfrecords_tools.convert import convert_dataset

    options = dict(
        format=args.format, split=args.split, lists=_lists(args.lists), classes_file=args.classes,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, group_by=args.group_by, seed=args.seed, modalities=args.modalities, flow=args.flow,
        flow_engine=args.flow_engine,
        frame_size=None if args.original_size else args.frame_size, short_side=args.short_side,
        shard_size_mb=args.shard_size_mb, jpeg_quality=args.jpeg_quality,
        present_classes_only=args.present_classes_only, strict=False, annotations=args.annotations,
        overwrite=args.overwrite,
    )
    start = time.perf_counter()
    if args.runner == "beam":
        if args.workers is not None:
            raise ConfigError("--workers is for --runner local; with beam pass the runner's own flags, e.g. "
                              "--beam-options \"--direct_num_workers=N --direct_running_mode=multi_processing\"")
        try:
            from tfrecords_tools.beam_runner import convert_dataset_beam
        except ImportError as err:
            if (err.name or "").split(".")[0] not in ("apache_beam", "google_crc32c"):
                raise
            raise ConfigError(BEAM_MISSING) from None
        manifest = convert_dataset_beam(args.source, args.out, beam_options=args.beam_options,
                                        state_folder=args.state_dir, **options)
        how = "beam"
    else:
        if args.beam_options or args.state_dir:
            raise ConfigError(f"{'--beam-options' if args.beam_options else '--state-dir'} is for --runner beam")
        workers = args.workers if args.workers is not None else os.cpu_count() or 1
        manifest = convert_dataset(args.source, args.out, workers=workers, progress=not args.no_progress, **options)
        how = f"{workers} worker{'s' if workers != 1 else ''}"
    print(f"{summary_line(manifest, args.out)} [{time.perf_counter() - start:.1f} s, {how}]")
    error = strict_error(manifest, args.out)
    if args.strict and error is not None:
        raise error
    return 0
