"""`tsn visualize`: gradient ascent from noise makes each modality's model see the chosen class."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.probe import colour_inputs, conversion_root, probe_model, save_run
from tsn_keras.cli import main

# Per modality, three classes told apart by the mean of each input channel (pixel units):
# colours for RGB, motion directions (quantised bytes, 128 = still) for flow, colour changes for
# RGB difference.
PATTERNS = {
    "rgb": [(200, 60, 60), (60, 200, 60), (60, 60, 200)],
    "flow": [(190, 128) * 5, (128, 190) * 5, (66, 128) * 5],
    "warped_flow": [(128, 66) * 5, (190, 128) * 5, (128, 190) * 5],
    "rgb_diff": [(60, 0, 0) * 5, (0, 60, 0) * 5, (0, 0, 60) * 5],
}
FAST = dict(steps=20, octaves=(0.5, 1.0), step_size=4.0, jitter=1)


def _model(modality):
    from tsn_keras.pictures import input_scale

    scale = input_scale(modality, "keras_tf", 1 if modality == "rgb" else 5)
    return probe_model(colour_inputs(scale, PATTERNS[modality]), modality)


@pytest.mark.parametrize("modality", list(PATTERNS))
def test_the_drawn_input_is_scored_as_its_class(modality):
    from tsn_keras.tool_config import DrawConfig
    from tsn_keras.visualize import draw_classes

    drawings = draw_classes(_model(modality), [0, 1, 2], DrawConfig(**FAST), progress=False)
    for index, drawing in enumerate(drawings):
        assert drawing.top[0][0] == f"class{index}", drawing.top
        assert drawing.probability > min(drawing.start_probability, 0.99), drawing
        assert drawing.pixels.shape[-1] == len(PATTERNS[modality][0])
    # At least one class starts far from the top and climbs a long way.
    assert max(d.probability - d.start_probability for d in drawings) > 0.5


def test_same_seed_same_picture_and_another_seed_another():
    from tsn_keras.tool_config import DrawConfig
    from tsn_keras.visualize import draw_classes

    model = _model("rgb")
    first, again = (draw_classes(model, [1], DrawConfig(**FAST), progress=False)[0] for _ in range(2))
    other = draw_classes(model, [1], DrawConfig(**FAST, seed=1), progress=False)[0]
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert np.abs(first.pixels - other.pixels).mean() > 1.0


def test_pictures_follow_fig_3():
    """Flow as x (top row) and y maps of each stacked field in grayscale; RGB un-normalised to RGB order."""
    from tsn_keras.pictures import input_scale, mosaic, snippet_pictures

    pixels = np.zeros((8, 8, 10), np.float32)
    pixels[..., 0::2], pixels[..., 1::2] = 200, 50  # every x map bright, every y map dark
    image = mosaic(snippet_pictures(pixels, "flow", "keras_tf"), "flow")
    assert image.shape == (2 * 8 + 2, 5 * 8 + 4 * 2, 3)
    assert (image[:8, :8] == 200).all() and (image[10:, :8] == 50).all()
    scale = input_scale("rgb", "caffe_bgr", 1)  # BGR, means 104/117/128
    red = scale.to_input(np.array([[[0.0, 0.0, 255.0]]]))  # red in the model's BGR order
    assert snippet_pictures(scale.to_pixels(red), "rgb", "caffe_bgr")[0][1].tolist() == [[[255, 0, 0]]]


def test_visualize_cli_writes_pictures_scores_and_the_grid(tmp_path, capsys):
    root = conversion_root(tmp_path / "data", ["class0", "class1", "class2"])
    rgb = save_run(tmp_path / "rgb_run", _model("rgb"), root)
    flow = save_run(tmp_path / "flow_run", _model("flow"), root)
    out = tmp_path / "out"
    flags = ["--steps", "10", "--octaves", "0.5", "1", "--step-size", "4", "--jitter", "1"]
    assert main(["visualize", str(rgb), "--classes", "class1,class2", "--out", str(out), "--compare", str(flow),
                 *flags]) == 0
    record = json.loads((out / "scores.json").read_text())
    assert [r["label"] for r in record["runs"]] == ["rgb_run", "flow_run"]
    assert record["config"]["steps"] == 10 and record["config"]["octaves"] == [0.5, 1.0]
    for run in record["runs"]:
        for picture in run["pictures"]:
            assert len(picture["top5"]) == 3 and 0 <= picture["probability"] <= 1
            assert (out / picture["file"]).stat().st_size > 0
    import cv2

    assert cv2.imread(str(out / "rgb_run" / "class1.png")).shape == (32, 32, 3)
    assert cv2.imread(str(out / "flow_run" / "class1.png")).shape == (2 * 32 + 2, 5 * 32 + 8, 3)  # x row, y row
    assert (out / "visualization.png").is_file() and (out / "visualization.svg").is_file()

    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err

    capsys.readouterr()
    fails(["visualize", str(rgb), "--classes", "class1,Diving", "--out", str(out)], "unknown class 'Diving'")
    fails(["visualize", str(tmp_path / "data"), "--classes", "class1", "--out", str(out)], "is not a run folder")
    fails(["visualize", str(rgb), "--classes", "class1", "--out", str(out), "--octaves", "0"], "octaves must be")
