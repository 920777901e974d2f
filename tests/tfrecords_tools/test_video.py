"""Decoding: frame counts from the decoder, stored sizes, and the reasons broken files are refused."""

import cv2
import numpy as np
import pytest

from tests.tfrecords_tools.conftest import panning_frames, write_video
from tfrecords_tools.video import VideoError, VideoReader, decode_jpeg, encode_jpeg, target_size

CLIP = "UCF-101/Archery/v_Archery_g05_c04.avi"  # 51 frames, 320x240, 25 fps


def test_target_size():
    assert target_size(320, 240) == (340, 256)  # the paper's fixed size by default
    assert target_size(320, 240, frame_size=(171, 128)) == (171, 128)
    assert target_size(320, 240, short_side=128) == (171, 128)
    assert target_size(240, 320, short_side=128) == (128, 171)  # portrait keeps its aspect
    assert target_size(320, 240, frame_size=(340, 256), short_side=64) == (85, 64)  # short side wins
    assert target_size(320, 240, frame_size=None) == (320, 240)


def test_real_clip_decodes_every_frame_at_the_stored_size(shared_data):
    reader = VideoReader(shared_data / CLIP)
    frames = list(reader)
    reader.check_complete()
    assert len(frames) == reader.decoded == 51
    assert reader.info.fps == 25.0 and (reader.info.width, reader.info.height) == (320, 240)
    assert all(f.shape == (256, 340, 3) and f.dtype == np.uint8 for f in frames)
    assert not reader.truncated


def test_jpeg_round_trip_keeps_colour_order():
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 2] = 200  # red in BGR
    decoded = decode_jpeg(encode_jpeg(image, 95))
    assert decoded[8, 8, 2] > 190 and decoded[8, 8, :2].max() < 15


def test_synthetic_video_round_trip(tmp_path):
    frames = panning_frames(7, (1, 0), size=(64, 48))
    reader = VideoReader(write_video(tmp_path / "v.avi", frames), frame_size=None)
    decoded = list(reader)
    assert len(decoded) == 7
    assert np.array_equal(decoded[3], frames[3])  # FFV1 is lossless, no resize


@pytest.fixture()
def broken(tmp_path, shared_data):
    data = (shared_data / CLIP).read_bytes()
    (tmp_path / "text.avi").write_text("this is not a video\n" * 20)
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "cut_early.avi").write_bytes(data[: len(data) * 3 // 10])
    (tmp_path / "cut_late.avi").write_bytes(data[: len(data) * 9 // 10])
    writer = cv2.VideoWriter(str(tmp_path / "zero.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 25, (32, 24))
    writer.release()
    (tmp_path / "folder.avi").mkdir()
    return tmp_path


def _reason(path) -> str:
    with pytest.raises(VideoError) as info:
        reader = VideoReader(path, short_side=32)
        for _ in reader:
            pass
        reader.check_complete()
    return str(info.value)


def test_broken_files_are_refused_with_a_reason(broken):
    assert "not a video" in _reason(broken / "text.avi")
    assert "empty file" in _reason(broken / "empty.avi")
    assert "no decodable frames" in _reason(broken / "zero.avi")
    assert "is a directory" in _reason(broken / "folder.avi")
    assert "No such file" in _reason(broken / "absent.avi")
    assert "truncated: decoded" in _reason(broken / "cut_early.avi")


def test_mildly_truncated_video_is_kept_and_flagged(broken):
    reader = VideoReader(broken / "cut_late.avi", short_side=32)
    count = sum(1 for _ in reader)
    reader.check_complete()  # >= 50% of the declared frames: kept
    assert reader.truncated and 25 <= count < 51
    assert reader.info.declared_frames == 51


def test_flow_for_a_few_fields_streams_the_video(tmp_path):
    # tsn predict with a flow model computes flow only for the fields its snippets read; the
    # grayscale frames between them must not be kept (240 frames of 640x480 would be 74 MB).
    import tracemalloc

    from tfrecords_tools.worker import VideoConverter, VideoSettings

    width, height, count = 640, 480, 240
    texture = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (height, width + count), np.uint8), (9, 9), 3)
    path = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for t in range(count):
        writer.write(cv2.cvtColor(np.ascontiguousarray(texture[:, t:t + width]), cv2.COLOR_GRAY2BGR))
    writer.release()

    converter = VideoConverter(VideoSettings(modalities=("flow",), flow="dis", frame_size=None))
    tracemalloc.start()
    try:
        encoded = converter.encode(path, flow_fields=[0, 100, 238])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert encoded.reader.decoded == count and len(encoded.frames["flow_x"]) == count - 1
    assert len(set(encoded.frames["flow_x"])) <= 3  # every other field holds its nearest computed one
    assert peak < 20 * 2**20, f"{peak / 2**20:.1f} MB traced while encoding"
