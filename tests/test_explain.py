"""`tsn explain`: Grad-CAM finds the region a decision depends on; the command's files and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.probe import probe_model
from tsn_keras.cli import main

SIZE = 96
SQUARE = 20


def _frames(rng, n, square_at=None):
    """Grey noise frames (pixel units, 0..255), with a bright square at ``(y, x)`` if given."""
    frames = np.clip(110 + rng.normal(0, 12, (n, SIZE, SIZE, 3)), 0, 255)
    if square_at is not None:
        y, x = square_at
        frames[:, y:y + SQUARE, x:x + SQUARE] = 245
    return frames


def test_gradcam_peaks_where_the_decision_is_made():
    """Class 0 is "a bright square": its heat map must peak in the quadrant that holds the square.

    The square is shown top-right and bottom-left, so that swapped axes or a flipped map fail.
    """
    import tensorflow as tf

    from tsn_keras.explain import GradCam
    from tsn_keras.pictures import input_scale

    scale = input_scale("rgb", "keras_tf", 1)
    rng = np.random.default_rng(0)
    places = rng.integers(0, SIZE - SQUARE, (8, 2))
    square = np.concatenate([_frames(rng, 1, tuple(at)) for at in places])
    model = probe_model([scale.to_input(square), scale.to_input(_frames(rng, 8))], input_size=SIZE)
    corner = SIZE - SQUARE - 6
    cases = {(0, 1): (6, corner), (1, 0): (corner, 6)}  # quadrant (row, column) -> square (y, x)
    tests = np.concatenate([_frames(rng, 1, at) for at in cases.values()])
    heat, logits = GradCam(model)(tf.constant(scale.to_input(tests), tf.float32), tf.constant(0))
    heat, logits = heat.numpy(), logits.numpy()
    assert (logits.argmax(axis=1) == 0).all()
    h, w = heat.shape[1:]
    for quadrant, snippet in zip(cases, heat):
        y, x = np.unravel_index(int(snippet.argmax()), (h, w))
        assert (int(y >= h // 2), int(x >= w // 2)) == quadrant, snippet.round(2)
        means = {(r, c): snippet[r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2].mean()
                 for r in (0, 1) for c in (0, 1)}
        assert max(means, key=means.get) == quadrant, snippet.round(2)


@pytest.mark.slow
def test_explain_cli_on_a_video_with_two_streams(tmp_path, capsys):
    from tests.probe import colour_inputs, conversion_root, save_run
    from tsn_keras.pictures import input_scale
    from tsn_keras.synthetic import CLASSES, render_video, write_video

    names = ["class0", "class1", "class2"]
    root = conversion_root(tmp_path / "data", names)
    rgb_scale, flow_scale = input_scale("rgb", "keras_tf", 1), input_scale("flow", "keras_tf", 5)
    rgb = save_run(tmp_path / "rgb", probe_model(colour_inputs(rgb_scale, [(200, 60, 60), (60, 200, 60), (90, 90, 90)]),
                                                 class_names=names), root, num_snippets=5)
    flow = save_run(tmp_path / "flow", probe_model(colour_inputs(flow_scale, [(150, 128) * 5, (128, 150) * 5,
                                                                             (128, 128) * 5]),
                                                   "flow", class_names=names), root, num_snippets=5)
    video = tmp_path / "clip.avi"
    write_video(video, render_video(CLASSES[0], np.random.default_rng(0), 30, (64, 48)), fps=10.0)
    out = tmp_path / "out"
    assert main(["explain", str(video), "--model", str(rgb), "--flow-model", str(flow), "--class", "class1",
                 "--out", str(out)]) == 0
    result = json.loads((out / "explain.json").read_text())
    assert result["class"] == "class1" and result["num_frames"] == 30 and result["fps"] == pytest.approx(10.0)
    assert [s["modality"] for s in result["streams"]] == ["rgb", "flow"]
    for stream in result["streams"]:
        snippets = stream["snippets"]
        assert len(snippets) == 5  # the run's protocol (evaluate.num_snippets)
        frames = [s["frame"] for s in snippets]
        assert frames == sorted(frames) and frames[-1] > frames[0]
        assert all(np.asarray(s["heat"]).shape == (2, 2) for s in snippets)  # tiny at 32 px: a 2x2 map
        assert max(np.asarray(s["heat"]).max() for s in snippets) == pytest.approx(1.0)
        assert 0 <= stream["consensus"]["probability"] <= 1
    for name in ("rgb_gradcam", "flow_gradcam", "timeline"):
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.svg").is_file()

    # Without --class: the predicted class of the fused streams.
    assert main(["explain", str(video), "--model", str(rgb), "--snippets", "3", "--out", str(tmp_path / "o2")]) == 0
    predicted = json.loads((tmp_path / "o2" / "explain.json").read_text())
    assert predicted["class"] == predicted["fused"]["top5"][0]["class"]
    assert len(predicted["streams"][0]["snippets"]) == 3

    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err

    capsys.readouterr()
    fails(["explain", str(video), "--model", str(rgb), "--class", "Diving", "--out", str(out)], "unknown class 'Diving'")
    fails(["explain", str(video), "--model", str(tmp_path / "data"), "--out", str(out)], "is not a run folder")
    not_video = tmp_path / "notes.avi"
    not_video.write_text("these are notes, not a video\n" * 20)
    fails(["explain", str(not_video), "--model", str(rgb), "--out", str(out)], f"cannot read video {not_video}")
