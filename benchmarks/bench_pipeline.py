"""How fast the input pipeline is, as ratios measured in one run (this machine is shared and noisy).

1. Train-mode RGB clips/s x frames per clip (K = 3), divided by the frames/s of a bare
   ``decode_jpeg`` loop over frames of the same videos (one thread, the issue's yardstick), and
   divided by the same decodes run in parallel on every core through tf.data (the stricter
   bound: all the pipeline does besides decoding, at equal parallelism). The CPU-time version
   of the second ratio is printed too: it is less disturbed by other processes on the machine.
   Both for the float views made on the host and for ``device_resize`` clips (uint8 crops whose
   resize and normalisation run on the accelerator, as the model's first step).
2. Train-mode clips/s on 1,000-frame videos divided by clips/s on 100-frame videos: TSN's cost
   must not grow with video length. Measured for the indexed reader (the default) and, for
   contrast, the streamed reader that reads whole records.
3. The pipeline's peak memory, for the indexed reader on the 1,000-frame videos, in a fresh
   process so that nothing else this script did is counted: anonymous memory above the
   baseline, and the resident pages of the memory-mapped shards (page cache the kernel can drop).

Shards are built in a temporary folder from real UCF101 clips (OpenCV decode, resize to 340x256,
JPEG quality 90); the 1,000-frame videos loop the real frames of each clip.

    python -m benchmarks.bench_pipeline [--quick] [--data DIR]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
from tqdm import tqdm

SHARED_DATA = Path(os.environ.get("TSN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SIZE = (340, 256)
SHORT, LONG = 100, 1000
NUM_SEGMENTS = 3
DCT_METHOD = "INTEGER_ACCURATE"  # as the pipeline decodes
WARM_UP_S = 1.5  # tf.data's autotuning settles within about a second


def _clips(data: Path, count: int) -> list[Path]:
    ucf = data / "UCF-101"
    if not ucf.is_dir():
        raise SystemExit(f"UCF101 clips not found under {data} (set TSN_SHARED_DATA or pass --data)")
    per_class = [sorted(c.glob("*.avi")) for c in sorted(ucf.iterdir()) if c.is_dir()]
    return [clip for group in zip(*per_class) for clip in group][:count]  # round-robin over classes


def _frames(clip: Path, limit: int) -> list[bytes]:
    """Up to ``limit`` frames of ``clip``: decoded, resized to 340x256, JPEG-encoded."""
    capture, frames = cv2.VideoCapture(str(clip)), []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frame = cv2.resize(frame, SIZE, interpolation=cv2.INTER_LINEAR)
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    capture.release()
    return frames


def _write_sets(clips: list[Path], root: Path) -> tuple[list[str], list[str], list[bytes]]:
    """Shards of 100-frame and 1,000-frame versions of each clip; also returns the short set's frames."""
    from tfrecords_tools.schema import VideoRecord
    from tfrecords_tools.shards import ShardWriter

    short_paths, long_paths, all_frames = [], [], []
    per_shard = max(1, len(clips) // 4)
    writers: dict[str, ShardWriter] = {}
    for i, clip in enumerate(tqdm(clips, desc="building shards", unit="video")):
        frames = _frames(clip, SHORT)
        all_frames += frames
        for name, length, paths in (("short", SHORT, short_paths), ("long", LONG, long_paths)):
            if i % per_shard == 0:
                if name in writers:
                    writers[name].close()
                paths.append(str(root / name / f"{name}-{i // per_shard:05d}.tfrecord"))
                writers[name] = ShardWriter(paths[-1])
            looped = [frames[j % len(frames)] for j in range(length)]  # loop real frames to the length
            writers[name].write(VideoRecord(f"{clip.stem}_{length}", i % 4, "c", length, 25.0, SIZE[1], SIZE[0],
                                            frames={"rgb": looped}))
    for writer in writers.values():
        writer.close()
    return short_paths, long_paths, all_frames


class _MemorySampler:
    """Peak RSS (and its anonymous part) of this process, sampled every 20 ms."""

    def __init__(self):
        self.peak = (0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> tuple[int, int]:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "RssAnon:")):
                name, value = line.split(":")
                fields[name] = int(value.split()[0]) * 1024
        return fields.get("VmRSS", 0), fields.get("RssAnon", 0)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            rss, anon = self.read()
            self.peak = (max(self.peak[0], rss), max(self.peak[1], anon))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _memory_probe(paths: list[str], batch_size: int, seconds: float) -> tuple[float, float, float]:
    """In a process that only runs the pipeline: peak RSS and peak anonymous RSS above the
    baseline, and the resident pages of the memory-mapped shards at the end, in MB."""
    import tensorflow as tf

    tf.constant(0)  # the runtime's own memory belongs to the baseline
    baseline = _MemorySampler.read()
    with _MemorySampler() as memory:
        _clip_rate(paths, "index", seconds, batch_size)
    mapped, current = 0, None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line; its path is the last field
            current = fields[-1] if len(fields) >= 6 else None
        elif fields[0] == "Rss:" and current in paths:
            mapped += int(fields[1]) * 1024
    return ((memory.peak[0] - baseline[0]) / 2**20, (memory.peak[1] - baseline[1]) / 2**20, mapped / 2**20)


class _Clock:
    """Wall and process CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _decode_loop(frames: list[bytes], seconds: float) -> tuple[float, float]:
    """A bare loop: ``decode_jpeg`` on one frame after another. Returns (frames/s, CPU s per frame)."""
    import tensorflow as tf

    tensors = [tf.constant(f) for f in frames]
    for jpeg in tensors[:10]:
        tf.io.decode_jpeg(jpeg, channels=3, dct_method=DCT_METHOD)
    count = 0
    with _Clock() as clock:
        while time.perf_counter() - clock.wall < seconds:
            tf.io.decode_jpeg(tensors[count % len(tensors)], channels=3, dct_method=DCT_METHOD)
            count += 1
    return count / clock.wall, clock.cpu / count


def _decode_parallel(frames: list[bytes], seconds: float) -> tuple[float, float]:
    """``decode_jpeg`` alone, parallel over all cores like the pipeline (tf.data, AUTOTUNE)."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(frames).repeat()
    decoded = data.map(lambda j: tf.io.decode_jpeg(j, channels=3, dct_method=DCT_METHOD),
                       num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(2)
    return _rate(decoded, seconds, 32)


def _clip_rate(paths: list[str], read_mode: str, seconds: float, batch_size: int,
               device_resize: bool = False) -> tuple[float, float]:
    from tsn_keras.data.clips import ClipSpec
    from tsn_keras.data.pipeline import make_dataset

    clip = ClipSpec(modality="rgb", mode="train", num_segments=NUM_SEGMENTS, input_size=224, device_resize=device_resize)
    ds = make_dataset(paths, clip, batch_size=batch_size, seed=0, repeat=True, read_mode=read_mode)
    return _rate(ds, seconds, batch_size)


def _rate(ds, seconds: float, per_batch: int) -> tuple[float, float]:
    """(items/s, CPU seconds per item) over ``seconds`` after a warm-up."""
    gc.collect()  # the previous measurement's iterator and its threads are gone before this one starts
    iterator = iter(ds)
    start = time.perf_counter()
    warm_up = min(WARM_UP_S, seconds)  # a --quick run measures for less than autotuning needs anyway
    for i in itertools.count():  # warm-up: tracing, thread pools, autotuning
        next(iterator)
        if i >= 2 and time.perf_counter() - start > warm_up:
            break
    count = 0
    with _Clock() as clock:
        while time.perf_counter() - clock.wall < seconds:
            next(iterator)
            count += per_batch
    return count / clock.wall, clock.cpu / count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds: 4 videos, 0.5 s measurements")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder holding UCF-101/")
    parser.add_argument("--videos", type=int, default=None, help="videos per set (default 24, 4 with --quick)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    videos = args.videos or (4 if args.quick else 24)
    seconds, rounds, batch = (0.5, 1, 4) if args.quick else (6.0, 5, 32)

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        short, long, frames = _write_sets(_clips(args.data, videos), Path(tmp))
        shard_mb = sum(os.path.getsize(p) for p in long) / 2**20
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process: TensorFlow not yet loaded
            peak_rss, peak_anon, mapped_shards = pool.apply(_memory_probe, (long, batch, seconds))
        measures = {
            "decode_loop": lambda: _decode_loop(frames, seconds),
            "decode_parallel": lambda: _decode_parallel(frames, seconds),
            "index_100": lambda: _clip_rate(short, "index", seconds, batch),
            "device_100": lambda: _clip_rate(short, "index", seconds, batch, device_resize=True),
            "index_1000": lambda: _clip_rate(long, "index", seconds, batch),
            "stream_100": lambda: _clip_rate(short, "stream", seconds / 2, batch),
            "stream_1000": lambda: _clip_rate(long, "stream", seconds / 2, batch),
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in measures}
        # Rounds alternate the measurements so that load from other processes hits all alike.
        for _ in tqdm(range(rounds), desc="measuring", unit="round"):
            for name, measure in measures.items():
                runs[name].append(measure())

    rate = {name: statistics.median(r for r, _ in values) for name, values in runs.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in runs.items()}
    frames_per_clip = NUM_SEGMENTS
    results = {
        "decode_loop_frames_per_s": rate["decode_loop"],
        "decode_parallel_frames_per_s": rate["decode_parallel"],
        "train_clips_per_s_100": rate["index_100"],
        "train_clips_per_s_1000": rate["index_1000"],
        "pipeline_vs_decode_loop": rate["index_100"] * frames_per_clip / rate["decode_loop"],
        "pipeline_vs_decode_parallel": rate["index_100"] * frames_per_clip / rate["decode_parallel"],
        "pipeline_vs_decode_cpu": cpu["decode_parallel"] * frames_per_clip / cpu["index_100"],
        "device_clips_per_s_100": rate["device_100"],
        "device_vs_decode_parallel": rate["device_100"] * frames_per_clip / rate["decode_parallel"],
        "device_vs_decode_cpu": cpu["decode_parallel"] * frames_per_clip / cpu["device_100"],
        "device_cpu_ms_per_clip": 1e3 * cpu["device_100"],
        "length_1000_vs_100": rate["index_1000"] / rate["index_100"],
        "stream_clips_per_s_100": rate["stream_100"],
        "stream_clips_per_s_1000": rate["stream_1000"],
        "stream_length_1000_vs_100": rate["stream_1000"] / rate["stream_100"],
        "cpu_ms_per_clip": 1e3 * cpu["index_100"],
        "cpu_ms_per_decoded_frame": 1e3 * cpu["decode_parallel"],
        "peak_rss_mb": peak_rss,
        "peak_anon_mb": peak_anon,
        "mapped_shard_pages_mb": mapped_shards,
        "long_shards_mb": shard_mb,
        "videos_per_set": videos,
        "cpus": os.cpu_count(),
    }
    r = results
    print(f"\ninput pipeline, train mode, RGB, K={NUM_SEGMENTS} frames per clip, 224x224 crops of 340x256 UCF101 "
          f"frames, batch {batch}, {videos} videos per set, {os.cpu_count()} CPUs, median of {rounds} rounds")
    print(f"  bare decode_jpeg loop (one thread):    {rate['decode_loop']:8.1f} frames/s")
    print(f"  decode_jpeg in parallel (tf.data):     {rate['decode_parallel']:8.1f} frames/s, "
          f"{r['cpu_ms_per_decoded_frame']:.2f} ms CPU per frame")
    print(f"  pipeline, 100-frame videos:            {rate['index_100']:8.1f} clips/s, "
          f"{r['cpu_ms_per_clip']:.2f} ms CPU per clip")
    print(f"  pipeline, 1000-frame videos:           {rate['index_1000']:8.1f} clips/s")
    print(f"  pipeline, uint8 crops (device_resize): {rate['device_100']:8.1f} clips/s, "
          f"{r['device_cpu_ms_per_clip']:.2f} ms CPU per clip (mirror, resize and normalisation left to the accelerator)")
    print(f"  ratio pipeline x{frames_per_clip} / bare decode loop:         {r['pipeline_vs_decode_loop']:.2f}"
          "   (target >= 0.8)")
    print(f"  ratio pipeline x{frames_per_clip} / parallel decode:          {r['pipeline_vs_decode_parallel']:.2f}"
          f"   (CPU time: {r['pipeline_vs_decode_cpu']:.2f})")
    print(f"  ratio pipeline x{frames_per_clip} / parallel decode, device_resize: {r['device_vs_decode_parallel']:.2f}"
          f"   (CPU time: {r['device_vs_decode_cpu']:.2f}; target >= 0.6, goal 0.8)")
    print(f"  ratio 1000-frame / 100-frame clips/s:         {r['length_1000_vs_100']:.2f}   (target >= 0.8)")
    print(f"  streamed reader (whole records), for contrast: {rate['stream_100']:.1f} vs "
          f"{rate['stream_1000']:.1f} clips/s, ratio {r['stream_length_1000_vs_100']:.2f}")
    print(f"  peak memory of the pipeline (indexed reader, 1000-frame videos, batch {batch}): "
          f"{r['peak_anon_mb']:.0f} MB anonymous ({r['peak_rss_mb']:.0f} MB RSS with file pages: TensorFlow's "
          f"code, and {r['mapped_shard_pages_mb']:.0f} MB resident of the {shard_mb:.0f} MB of mapped shards)")
    return results


if __name__ == "__main__":
    main()
