"""`tsn inspect DIR`: summary of a conversion, verification of every shard, optional contact sheet.

Exits with code 2 when a shard is missing, changed (size or sha256), unparsable, holds other
records than the manifest says, or its byte index does not match the file.
"""

from __future__ import annotations

import argparse
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a folder written by `tsn convert` (holds manifest.json)")
    parser.add_argument("--dump", metavar="PNG", help="write a contact sheet of RGB frames and colour-coded flow")
    parser.add_argument("--videos", type=int, default=4, help="videos on the contact sheet [4]")
    parser.add_argument("--frames", type=int, default=6, help="frames per video on the contact sheet [6]")
    parser.add_argument("--no-verify", action="store_true", help="only the summary (and --dump): skip reading the shards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tfrecords_tools.inspect import contact_sheet, summarize, verify
    from tfrecords_tools.manifest import load_manifest
    from tsn_keras.errors import ConfigError

    if args.videos < 1 or args.frames < 1:
        raise ConfigError(f"--videos and --frames must be at least 1, got {args.videos} and {args.frames}")
    manifest = load_manifest(args.dir)
    print(summarize(manifest, args.dir))
    status = 0
    if not args.no_verify:
        problems, shards, records = verify(args.dir, progress=not args.no_progress)
        if problems:
            print(f"FAILED: {len(problems)} problem(s) in {shards} shards:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            status = 2
        else:
            print(f"verified: {shards} shards, {records} records (checksums, records, frame counts, byte index)")
    if args.dump:
        path = contact_sheet(args.dir, args.dump, videos=args.videos, frames=args.frames)
        print(f"contact sheet: {path}")
    return status
