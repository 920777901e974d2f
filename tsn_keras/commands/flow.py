"""`tsn flow VIDEO OUT`: the optical flow of one video as float arrays, stored JPEG pairs or colour pictures.

Examples::

    tsn flow v_Archery_g01_c01.avi flow/                      # TV-L1, float32 .npy per field
    tsn flow clip.mp4 flow/ --format jpeg                     # the bytes `tsn convert` stores
    tsn flow clip.mp4 flow/ --format png --algorithm dis      # colour-coded, fast
    tsn flow clip.mp4 flow/ --engine opencv --max-frames 10   # OpenCV's CPU TV-L1 on 10 frames

Frames are resized to 340x256 (as `tsn convert` stores them) unless --original-size.
"""

from __future__ import annotations

import argparse

from tfrecords_tools.flow import ALGORITHMS
from tfrecords_tools.flow_engines import ENGINES
from tfrecords_tools.flow_video import FORMATS
from tsn_keras.commands import frame_size


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument("video", help="a video file")
    parser.add_argument("out", help="output folder (created; files of the same names are replaced)")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="tvl1", help="optical flow algorithm [tvl1]")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="tf (TensorFlow TV-L1, CPU or GPU), opencv; auto: tf for tvl1, else opencv [auto]")
    parser.add_argument("--format", choices=FORMATS, default="npy", dest="fmt",
                        help="npy: float32 (H, W, 2) per field; jpeg: quantised flow_x/flow_y as the shards "
                             "store them; png: colour-coded [npy]")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--frame-size", type=frame_size, default=(340, 256), metavar="WxH",
                      help="resize frames to this size first [340x256]")
    size.add_argument("--original-size", action="store_true", help="keep the decoded frame size")
    parser.add_argument("--max-frames", type=int, help="only the first N frames (N-1 flow fields)")
    parser.add_argument("--batch-size", type=int, help="frame pairs per TensorFlow call [1 on CPU, 32 on GPU]")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of --format jpeg [90]")


def run(args: argparse.Namespace) -> int:
    from tfrecords_tools.flow_video import write_video_flow
    from tfrecords_tools.video import VideoError
    from tsn_keras.errors import ConfigError, DataError

    if args.max_frames is not None and args.max_frames < 2:
        raise ConfigError(f"--max-frames must be at least 2 (flow needs two frames), got {args.max_frames}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 1 <= args.jpeg_quality <= 100:
        raise ConfigError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    try:
        result = write_video_flow(args.video, args.out, algorithm=args.algorithm, engine=args.engine, fmt=args.fmt,
                                  frame_size=None if args.original_size else args.frame_size,
                                  jpeg_quality=args.jpeg_quality, max_frames=args.max_frames,
                                  batch_size=args.batch_size)
    except VideoError as err:
        raise DataError(f"{args.video}: {err}") from None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    except OSError as err:  # the output folder cannot be created or written
        raise DataError(f"{args.out}: {err.strerror or err}") from None
    width, height = result.size
    print(f"wrote {result.fields} flow fields of {width}x{height} ({args.algorithm}, {result.engine} engine) "
          f"as {args.fmt} to {args.out} [{result.seconds:.1f} s, {result.fields / result.seconds:.2f} pairs/s]")
    return 0
