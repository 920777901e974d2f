"""The figures: written as PNG and SVG, of a readable size and not blank."""

from __future__ import annotations

import numpy as np
import pytest

from tsn_keras.errors import DataError
from tsn_keras.plots import plot_confusion, plot_history, plot_per_class, plot_sampling
from tsn_keras.scores import compute_metrics


def assert_readable_png(path, min_width=400, min_height=250):
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert width >= min_width and height >= min_height
    # A blank (or nearly blank) canvas has almost no variance; a figure with curves and text does.
    assert pixels.std() > 10
    assert (pixels < 128).mean() > 0.003  # some dark ink: lines, text
    return width, height


def write_history(path, epochs=6):
    rows = ["epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"]
    for e in range(epochs):
        lr = 0.001 if e < 4 else 0.0001
        rows.append(f"{e},{0.3 + 0.1 * e},{lr},{2.0 - 0.3 * e},{0.25 + 0.08 * e},{2.1 - 0.25 * e}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_history_plot(tmp_path):
    paths = plot_history(write_history(tmp_path / "history.csv"), tmp_path / "out")
    assert [p.name for p in paths] == ["history.png", "history.svg"]
    assert_readable_png(paths[0])
    svg = paths[1].read_text()
    # Both curves, the lr panel and the axis titles are in the vector file.
    assert svg.startswith("<?xml") and "validation" in svg and "learning rate" in svg


def test_history_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        plot_history(tmp_path / "missing.csv", tmp_path)
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(DataError, match="no epochs"):
        plot_history(tmp_path / "empty.csv", tmp_path)


@pytest.mark.parametrize("num_classes", [4, 101])
def test_confusion_and_per_class_plots(tmp_path, num_classes):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(num_classes), 3)
    logits = rng.normal(size=(len(labels), num_classes)) + 3 * np.eye(num_classes)[labels]
    names = [f"Class{i:03d}" for i in range(num_classes)]
    metrics = compute_metrics(logits, labels, names)
    formats = ("png", "svg") if num_classes == 4 else ("png",)  # a 101-class SVG takes seconds to write
    confusion = plot_confusion(metrics, tmp_path, formats=formats)
    per_class = plot_per_class(metrics, tmp_path, formats=formats)
    _, height = assert_readable_png(confusion[0])
    if num_classes == 101:
        # One class per >= 12 pixels keeps 101 names legible.
        assert height >= 101 * 12
    assert_readable_png(per_class[0], min_height=250 if num_classes == 4 else 101 * 12)
    if num_classes == 4:
        assert names[-1] in confusion[1].read_text() and names[0] in per_class[1].read_text()


@pytest.mark.parametrize(("modality", "new_length", "positions"), [("rgb", 1, 40), ("flow", 5, 39)])
def test_sampling_plot(tmp_path, modality, new_length, positions):
    from tsn_keras.data.sampling import sample_offsets

    colours = np.linspace(0, 255, 40).astype(np.uint8)
    frames = [np.full((24, 32, 3), c, np.uint8) for c in colours]
    read = []

    def reader(i):
        read.append(i)
        return frames[i]

    paths = plot_sampling(reader, tmp_path, num_frames=len(frames), num_segments=3, new_length=new_length,
                          modality=modality, seed=1, formats=("png", "svg") if modality == "rgb" else ("png",))
    assert_readable_png(paths[0], min_width=1200, min_height=700)
    # Only the 3 training frames and the 25 test frames are read, not the whole video; flow
    # snippets are placed over the N-1 flow fields.
    assert len(read) == 3 + 25
    assert read[3:] == np.asarray(sample_offsets(positions, 25, new_length, "test")).tolist()
    if modality == "rgb":
        assert "segment 2" in paths[1].read_text()


def test_plot_run_cli_draws_every_figure(tiny_shards, tmp_path, capsys):
    from tests.test_evaluation import make_run
    from tsn_keras.cli import main

    run = make_run(tmp_path / "run", tiny_shards)
    assert main(["evaluate", str(run), "--crops", "1", "--snippets", "3"]) == 0
    assert main(["plot", str(run), "--formats", "png"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in (run / "plots").iterdir())
    assert names == ["confusion.png", "history.png", "per_class.png", "sampling.png"], out
    for name in names:
        assert_readable_png(run / "plots" / name)
    # The run's history has an iteration column: the curves are drawn against it.
    assert main(["plot", str(run / "eval-test" / "metrics.json"), "--out", str(tmp_path / "m")]) == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "confusion.png", "confusion.svg", "per_class.png", "per_class.svg"]
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "neither a run folder nor a metrics.json" in capsys.readouterr().err
    assert main(["plot", str(run), "--video", "no_such_video", "--out", str(tmp_path / "v")]) == 2
    assert "'no_such_video' not found" in capsys.readouterr().err


def test_sampling_picture_of_a_video_file(shared_data, tmp_path):
    from tsn_keras.plots import plot_run

    run = tmp_path / "run"
    run.mkdir()
    video = shared_data / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi"
    written, skipped = plot_run(run, video=str(video), formats=("png",))
    assert [p.name for p in written] == ["sampling.png"] and len(skipped) == 2
    assert_readable_png(written[0], min_width=1200, min_height=700)
