"""`tsn flow` (each format, one-line errors) and `tsn convert --flow-engine tf` on tiny clips."""

import cv2
import numpy as np
import pytest

from tests.tfrecords_tools.conftest import panning_frames, shard_bytes, write_video
from tests.tfrecords_tools.test_tvl1 import TEST_SIZE
from tfrecords_tools.convert import convert_dataset
from tfrecords_tools.flow import BOUND, dequantize_flow
from tfrecords_tools.manifest import load_manifest, split_shards
from tsn_keras.cli import main as tsn
from tsn_keras.data.reader import parse_video
from tsn_keras.errors import ConfigError

SHIFT = (3, -2)
STEP = 2 * BOUND / 255


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory):
    """A lossless 3-frame pan of (3, -2) px per frame at the tests' compiled size."""
    root = tmp_path_factory.mktemp("pan")
    return write_video(root / "videos" / "pan" / "pan.avi", panning_frames(3, SHIFT, size=TEST_SIZE))


def _inner_median(flow):
    return np.median(flow[8:-8, 8:-8], axis=(0, 1))


@pytest.mark.slow
def test_tsn_flow_writes_each_format(pan_video, tmp_path, capsys):
    common = [str(pan_video), "--original-size", "--engine", "tf"]
    assert tsn(["flow", common[0], str(tmp_path / "npy"), *common[1:]]) == 0
    assert "wrote 2 flow fields of 64x48 (tvl1, tf engine) as npy" in capsys.readouterr().out
    fields = sorted((tmp_path / "npy").iterdir())
    assert [p.name for p in fields] == ["flow_00001.npy", "flow_00002.npy"]
    flow = np.load(fields[0])
    assert flow.shape == (48, 64, 2) and flow.dtype == np.float32
    assert np.abs(_inner_median(flow) - SHIFT).max() <= STEP / 2

    assert tsn(["flow", common[0], str(tmp_path / "jpeg"), *common[1:], "--format", "jpeg",
                "--jpeg-quality", "95"]) == 0
    names = sorted(p.name for p in (tmp_path / "jpeg").iterdir())
    assert names == ["flow_x_00001.jpg", "flow_x_00002.jpg", "flow_y_00001.jpg", "flow_y_00002.jpg"]
    for axis, expected in zip("xy", SHIFT):
        stored = cv2.imread(str(tmp_path / "jpeg" / f"flow_{axis}_00002.jpg"), cv2.IMREAD_GRAYSCALE)
        assert stored.shape == (48, 64)
        assert abs(np.median(dequantize_flow(stored)[8:-8, 8:-8]) - expected) <= STEP / 2 + 1e-5

    # Colour-coded, with DIS (OpenCV engine) and resized to a given size.
    assert tsn(["flow", common[0], str(tmp_path / "png"), "--format", "png", "--algorithm", "dis",
                "--frame-size", "48x32"]) == 0
    assert "(dis, opencv engine)" in capsys.readouterr().out
    picture = cv2.imread(str(tmp_path / "png" / "flow_00001.png"))
    assert picture.shape == (32, 48, 3) and picture.max() > 0


def test_tsn_flow_errors_are_one_line(tmp_path, capsys, pan_video):
    not_video = tmp_path / "notes.avi"
    not_video.write_text("not a video\n")
    for args in ([str(not_video), str(tmp_path / "o")],
                 [str(tmp_path / "missing.avi"), str(tmp_path / "o")],
                 [str(pan_video), str(tmp_path / "o"), "--algorithm", "dis", "--engine", "tf"],
                 [str(pan_video), str(tmp_path / "o"), "--max-frames", "1"],
                 [str(pan_video), str(tmp_path / "o"), "--engine", "opencv", "--batch-size", "8"]):
        assert tsn(["flow", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tsn flow: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_convert_refuses_the_tf_engine_for_dis(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError, match="tvl1 only"):
        convert_dataset(tmp_path, tmp_path / "o", modalities=("flow",), flow="dis", flow_engine="tf")


def _stored_flow(out):
    import tensorflow as tf

    (record,) = list(tf.data.TFRecordDataset(str(split_shards(out, "train")[0])))
    _, frames = parse_video(record)
    return {key: [tf.io.decode_jpeg(v).numpy()[..., 0] for v in frames[key].numpy()]
            for key in ("flow_x", "flow_y", "warped_flow_x", "warped_flow_y")}


@pytest.mark.slow
def test_convert_with_the_tf_engine(pan_video, tmp_path):
    videos = pan_video.parents[1]
    out = tmp_path / "tf"
    assert tsn(["convert", str(videos), str(out), "--modalities", "flow,warped_flow", "--flow", "tvl1",
                "--flow-engine", "tf", "--original-size", "--jpeg-quality", "95", "--workers", "1",
                "--no-progress"]) == 0
    manifest = load_manifest(out)
    assert manifest["options"]["flow_engine"] == "tf" and manifest["options"]["flow"] == "tvl1"
    stored = _stored_flow(out)
    assert len(stored["flow_x"]) == 2
    for x, y in zip(stored["flow_x"], stored["flow_y"]):
        assert abs(np.median(dequantize_flow(x)[8:-8, 8:-8]) - SHIFT[0]) <= STEP / 2 + 1e-5
        assert abs(np.median(dequantize_flow(y)[8:-8, 8:-8]) - SHIFT[1]) <= STEP / 2 + 1e-5
    # A pure pan: the warped flow cancels it, with the tf engine's second pass.
    for warped in stored["warped_flow_x"] + stored["warped_flow_y"]:
        assert abs(np.median(dequantize_flow(warped)[8:-8, 8:-8])) <= STEP / 2 + 1e-5
    assert manifest["warped_flow"]["fallbacks"] == 0

    # Deterministic: the same bytes again.
    again = tmp_path / "again"
    convert_dataset(videos, again, modalities=("flow", "warped_flow"), flow="tvl1", flow_engine="tf",
                    frame_size=None, jpeg_quality=95, progress=False)
    assert shard_bytes(out) == shard_bytes(again)

    # The OpenCV engine stores nearly the same bytes.
    opencv = tmp_path / "opencv"
    convert_dataset(videos, opencv, modalities=("flow", "warped_flow"), flow="tvl1", flow_engine="opencv",
                    frame_size=None, jpeg_quality=95, progress=False)
    assert load_manifest(opencv)["options"]["flow_engine"] == "opencv"
    reference = _stored_flow(opencv)
    for key in stored:
        diff = np.abs(np.stack(stored[key]).astype(int) - np.stack(reference[key]))
        assert diff.mean() <= 2.0, key
