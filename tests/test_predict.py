"""`tsn predict` on a real video: same input as the converter, same scores as `tsn evaluate`, fusion, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_evaluation import make_run, save_image_classifier
from tfrecords_tools.worker import VideoSettings, stored_video_settings
from tsn_keras.cli import main
from tsn_keras.predict import encode_video, predict_video

VIDEO = "UCF-101/BasketballDunk/v_BasketballDunk_g07_c02.avi"  # 35 frames: the shortest clip


# DIS instead of TV-L1 keeps the test fast (TV-L1 takes ~0.2 s per field even at 64x48); the
# conversion's choice is what prediction must follow, whichever it is.
OPTIONS = {"flow": "dis", "frame_size": [64, 48], "short_side": None, "jpeg_quality": 85}


@pytest.fixture(scope="module")
def converted(shared_data, tmp_path_factory):
    """The clip converted by the converter's own worker into a one-video test split."""
    from tfrecords_tools.manifest import write_manifest
    from tfrecords_tools.plan import VideoEntry
    from tfrecords_tools.shards import ShardWriter
    from tfrecords_tools.worker import VideoConverter, VideoSettings

    root = tmp_path_factory.mktemp("converted")
    video = shared_data / VIDEO
    settings = VideoSettings(modalities=("rgb", "flow"), flow=OPTIONS["flow"], frame_size=tuple(OPTIONS["frame_size"]),
                             jpeg_quality=OPTIONS["jpeg_quality"])
    result = VideoConverter(settings)(VideoEntry(str(video), video.name, video.stem, 0, "test"), "class0")
    assert result.record is not None, result.reason
    with ShardWriter(root / "test" / "test-00000.tfrecord") as writer:
        writer.write(result.record)
    info = writer.info
    write_manifest(root, {"classes": [f"class{c}" for c in range(4)], "modalities": ["rgb", "flow"],
                          "stored_keys": ["rgb", "flow_x", "flow_y"], "frame_size": OPTIONS["frame_size"],
                          "options": OPTIONS,
                          "splits": {"test": {"videos": 1, "shards": [
                              {"file": f"test/{info.file}", "records": 1, "bytes": info.bytes, "sha256": info.sha256}]}},
                          "rejects": [], "missing": []})
    return root, result.record


@pytest.fixture(scope="module")
def runs(converted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict_runs")
    return {"rgb": make_run(folder / "rgb", converted[0], "rgb", seed=5),
            "flow": make_run(folder / "flow", converted[0], "flow", seed=6)}


@pytest.mark.slow
def test_prediction_sees_what_the_converter_stored_and_scores_like_evaluate(shared_data, converted, runs, tmp_path):
    from tsn_keras.scores import Scores

    video = shared_data / VIDEO
    root, stored = converted
    settings = stored_video_settings(root)
    assert settings == VideoSettings(("rgb",), flow="dis", frame_size=(64, 48), short_side=None, jpeg_quality=85)
    frames, num_frames = encode_video(video, {"rgb": 1, "flow": 5}, settings=settings)
    assert num_frames == stored.num_frames == len(frames["rgb"])
    assert frames["rgb"] == stored.frames["rgb"]
    assert len(frames["flow_x"]) == num_frames - 1
    from tsn_keras.predict import _needed_fields

    needed = _needed_fields(num_frames - 1, 25, 5)
    for key in ("flow_x", "flow_y"):
        assert [frames[key][i] for i in needed] == [stored.frames[key][i] for i in needed]

    single = {}
    for name, run in runs.items():
        out = tmp_path / f"eval_{name}"
        assert main(["evaluate", str(run), "--out", str(out)]) == 0
        evaluated = Scores.load(out / "scores.npz").logits[0]
        result = predict_video(video, run, top=4)
        single[name] = {entry["class"]: entry["logit"] for entry in result["top"]}
        np.testing.assert_allclose([single[name][f"class{c}"] for c in range(4)], evaluated, atol=1e-4)

    fused = predict_video(video, runs["rgb"], flow_model=runs["flow"], top=3)
    assert [s["weight"] for s in fused["streams"]] == [1.0, 1.5]
    logits = {c: single["rgb"][c] + 1.5 * single["flow"][c] for c in single["rgb"]}
    ranked = sorted(logits, key=logits.get, reverse=True)
    assert [entry["class"] for entry in fused["top"]] == ranked[:3]
    values = np.array(list(logits.values()))
    softmax = np.exp(values - values.max()) / np.exp(values - values.max()).sum()
    for entry in fused["top"]:
        assert entry["logit"] == pytest.approx(logits[entry["class"]], abs=1e-4)
        assert entry["probability"] == pytest.approx(softmax[list(logits).index(entry["class"])], abs=1e-5)


def test_predict_cli_json_and_errors(shared_data, runs, tmp_path, capsys):
    video = shared_data / VIDEO
    assert main(["predict", str(video), "--model", str(runs["rgb"]), "--json", "--top", "2", "--crops", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["top"]) == 2 and result["streams"][0]["num_crops"] == 1
    assert result["top"][0]["probability"] >= result["top"][1]["probability"]

    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1

    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF not really a video" * 10)
    fails(["predict", str(broken), "--model", str(runs["rgb"])], f"cannot read video {broken}")
    fails(["predict", str(tmp_path / "missing.avi"), "--model", str(runs["rgb"])], "not found")
    fails(["predict", str(video), "--model", str(runs["rgb"]), "--flow-model", str(runs["rgb"])],
          "is a rgb model; give a flow or warped_flow model")
    fails(["predict", str(video), "--model", str(runs["rgb"]), "--weights", "1", "2"], "one weight per model")
    fails(["predict", str(video), "--model", str(save_image_classifier(tmp_path / "image.keras"))],
          "is not a TSN written by tsn-keras")
