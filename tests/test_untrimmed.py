"""`tsn predict --untrimmed`: classes found where they are shown, memory that does not grow, integration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.probe import conversion_root, probe_model, save_run
from tsn_keras.cli import main

FPS = 10.0
FRAME_SIZE = (64, 48)
NAMES = ["red_disc", "blue_disc", "green_disc"]


def _write_video(path, plan, seed=0):
    """An .avi (MJPG) showing ``[(class name, seconds), ...]`` one after another, synthetic.py's videos."""
    import cv2

    from tsn_keras.synthetic import CLASSES, render_video

    classes = {c.name: c for c in CLASSES}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, FRAME_SIZE)
    assert writer.isOpened()
    for k, (name, seconds) in enumerate(plan):
        # Several short clips per part, so the disc's place and background change as in real footage.
        for part in range(max(1, int(seconds) // 5)):
            rng = np.random.default_rng([seed, k, part])
            for frame in render_video(classes[name], rng, int(FPS * min(seconds, 5)), FRAME_SIZE):
                writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A tiny RGB run whose classes are synthetic.py's disc colours (nearest-mean classifier on its features)."""
    import cv2

    from tsn_keras.pictures import input_scale
    from tsn_keras.synthetic import CLASSES, render_video

    classes = {c.name: c for c in CLASSES}
    scale = input_scale("rgb", "keras_tf", 1)
    examples = []
    for k, name in enumerate(NAMES):
        frames = np.concatenate([render_video(classes[name], np.random.default_rng([99, k, i]), 4, FRAME_SIZE)
                                 for i in range(6)])
        # The centre crop the test protocol takes (short side scaled to 36, 32 px square), in RGB.
        crops = np.stack([cv2.resize(f, (48, 36), interpolation=cv2.INTER_AREA)[2:34, 8:40, ::-1] for f in frames])
        examples.append(scale.to_input(crops.astype(np.float32)).astype("float32"))
    folder = tmp_path_factory.mktemp("untrimmed")
    root = conversion_root(folder / "data", NAMES, FRAME_SIZE)
    return save_run(folder / "run", probe_model(examples, class_names=NAMES), root, num_crops=1)


def test_untrimmed_finds_each_class_where_it_is_shown(colour_run, tmp_path, capsys):
    video = _write_video(tmp_path / "aba.avi", [("red_disc", 10), ("blue_disc", 10), ("red_disc", 10)])
    out = tmp_path / "out"
    assert main(["predict", str(video), "--model", str(colour_run), "--untrimmed", "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["snippets"] == 30 and result["duration"] == pytest.approx(30.0)
    top = {entry["class"]: entry for entry in result["top"]}
    assert {r["class"] for r in result["top"][:2]} == {"red_disc", "blue_disc"}

    def overlap(ranges, start, end):
        return sum(max(0.0, min(r["end"], end) - max(r["start"], start)) for r in ranges)

    # Most of each part is found, and a class is never reported where the other was shown.
    assert overlap(top["red_disc"]["ranges"], 0, 10) >= 7 and overlap(top["red_disc"]["ranges"], 20, 30) >= 7
    assert overlap(top["blue_disc"]["ranges"], 10, 20) >= 7
    assert overlap(top["red_disc"]["ranges"], 11, 19) == 0
    assert overlap(top["blue_disc"]["ranges"], 0, 9) + overlap(top["blue_disc"]["ranges"], 21, 30) == 0
    written = json.loads((out / "untrimmed.json").read_text())
    assert written["top"] == result["top"]
    assert np.load(out / "snippet_scores.npz")["logits"].shape == (30, 3)
    assert (out / "untrimmed.png").stat().st_size > 0 and (out / "untrimmed.svg").is_file()


@pytest.mark.slow
def test_untrimmed_memory_does_not_grow_with_the_video(colour_run, tmp_path):
    """Python-side peak (tracemalloc: NumPy frames and buffers included) on a 10x longer video.

    The streaming loop is measured after a warm-up, so one-off costs (tracing the scoring
    functions) are not counted. Frames are stored at the paper's 340x256 (261 KB each): keeping
    them would add ~80 MB for the long video, keeping each snippet's JPEG ~3 MB. What does grow
    is bounded: CPython's tuple free lists fill up with TensorFlow's per-call temporaries
    (tens of KB), which ``gc.collect`` empties between the two measurements.
    """
    import gc
    import tracemalloc

    from tfrecords_tools.worker import VideoSettings
    from tsn_keras.runs import load_run
    from tsn_keras.untrimmed import _snippet_logits, _SnippetScorer

    short = _write_video(tmp_path / "short.avi", [("red_disc", 15), ("blue_disc", 15)])
    long = _write_video(tmp_path / "long.avi", [("red_disc", 150), ("blue_disc", 150)])
    settings = VideoSettings(frame_size=(340, 256))
    scorers = [_SnippetScorer(load_run(colour_run), settings, num_crops=1, batch_size=8)]
    _snippet_logits(short, scorers, settings, 1.0, False)  # warm-up
    peaks, counts = [], []
    tracemalloc.start()
    try:
        for video in (short, long):
            gc.collect()
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            logits, _, _ = _snippet_logits(video, scorers, settings, 1.0, False)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
            counts.append(len(logits[0]))
    finally:
        tracemalloc.stop()
    assert counts == [30, 300]
    assert peaks[0] > 340 * 256 * 3  # the frames are seen by the measurement
    assert peaks[1] <= 1.2 * peaks[0], peaks


def test_window_integration_and_ranges_on_hand_made_scores():
    from tsn_keras.untrimmed import time_ranges, window_integration

    probabilities = np.full((20, 3), 0.1)
    probabilities[:, 0] = 0.8  # background class 0 everywhere ...
    probabilities[8:10] = [0.05, 0.9, 0.05]  # ... class 1 for 2 s only
    scores = window_integration(probabilities, 1.0, (1.0, 4.0), top_k=2)
    # Max inside windows, top-2 across windows: a 2-second action scores its peak at every scale
    # (at 4 s, stride 2, two windows hold it); with top-3 a third, background, window joins in.
    assert scores[1] == pytest.approx(0.9)
    assert window_integration(probabilities, 1.0, (1.0, 4.0), top_k=3)[1] == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    assert scores[0] == pytest.approx(0.8)
    assert scores[2] == pytest.approx(0.1)
    ranges = time_ranges(probabilities, 1.0, 20.0, smooth=1)
    assert ranges == [(0, 0.0, 8.0), (1, 8.0, 10.0), (0, 10.0, 20.0)]


def test_untrimmed_errors_are_one_line(colour_run, tmp_path, capsys):
    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err

    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video" * 50)
    fails(["predict", str(broken), "--model", str(colour_run), "--untrimmed"], f"cannot read video {broken}")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    video = _write_video(tmp_path / "v.avi", [("red_disc", 5)])
    fails(["predict", str(video), "--model", str(empty), "--untrimmed"], "is not a run folder")
    fails(["predict", str(video), "--model", str(colour_run), "--untrimmed", "--rate", "0"], "--rate must be > 0")
    fails(["predict", str(video), "--model", str(colour_run), "--out", str(tmp_path / "o")], "add --untrimmed")
