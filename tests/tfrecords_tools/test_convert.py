"""End-to-end conversion: the real UCF101 slice, broken files, determinism, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.tfrecords_tools.conftest import SLICE_OPTIONS, panning_frames, shard_bytes, write_video
from tfrecords_tools.convert import convert_dataset
from tfrecords_tools.flow import BOUND, dequantize_flow
from tfrecords_tools.journal import JOURNAL_NAME
from tfrecords_tools.manifest import load_manifest, split_shards
from tfrecords_tools.shards import ShardIndex, index_path
from tsn_keras.cli import main as tsn
from tsn_keras.data.reader import parse_video
from tsn_keras.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
STEP = 2 * BOUND / 255


def _records(shard: Path):
    for record in tf.data.TFRecordDataset(str(shard)):
        context, frames = parse_video(record)
        yield {k: v.numpy() for k, v in context.items()}, {k: v.numpy() for k, v in frames.items()}


@pytest.mark.slow
def test_real_slice_is_converted_with_counts_labels_and_frames(reference_conversion, shared_data):
    out = reference_conversion
    manifest = load_manifest(out)
    assert manifest["classes"] == ["Archery", "BasketballDunk", "PlayingPiano", "PlayingViolin"]
    assert manifest["stored_keys"] == ["rgb", "flow_x", "flow_y", "warped_flow_x", "warped_flow_y"]
    assert manifest["splits"]["train"]["per_class"] == {"Archery": 2, "BasketballDunk": 2, "PlayingPiano": 1,
                                                        "PlayingViolin": 1}
    assert manifest["splits"]["test"]["videos"] == 2
    assert manifest["missing"] == [{"path": "Archery/v_Archery_g99_c01.avi", "split": "train", "class": "Archery"}]
    dropped = {d["class"]: d["listed"] for d in manifest["dropped_classes"]}
    assert len(dropped) == 97 and dropped["ApplyEyeMakeup"] == {"train": 1} and dropped["Bowling"] == {}
    assert manifest["rejects"] == [] and manifest["truncated"] == []
    assert manifest["short_side"] == 48 and manifest["frame_size"] is None
    assert manifest["options"]["flow"] == "dis" and manifest["library_version"]
    # Several shards: the 0.25 MB target closes them as they fill.
    assert len(manifest["splits"]["train"]["shards"]) >= 3
    seen = {}
    for split in ("train", "test"):
        listed = {v["id"]: v for v in manifest["videos"][split]}
        for shard in split_shards(out, split):
            assert shard.name.startswith(f"{split}-") and index_path(shard).is_file()
            for context, frames in _records(shard):
                video_id = context["video_id"].decode()
                path = shared_data / "UCF-101" / listed[video_id]["path"]
                expected = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
                n = int(context["num_frames"])
                assert n == expected == listed[video_id]["frames"]
                assert len(frames["rgb"]) == n
                assert all(len(frames[k]) == n - 1 for k in ("flow_x", "flow_y", "warped_flow_x", "warped_flow_y"))
                assert (int(context["width"]), int(context["height"])) == (64, 48)
                image = tf.io.decode_jpeg(frames["rgb"][0]).numpy()
                assert image.shape == (48, 64, 3)
                assert context["label_name"].decode() == manifest["classes"][int(context["label"])]
                assert listed[video_id]["original_label"] == {0: 2, 1: 8, 2: 63, 3: 66}[int(context["label"])]
                seen[video_id] = split
    assert sorted(seen) == sorted(v["id"] for s in ("train", "test") for v in manifest["videos"][s])
    # The train split is written in a seeded random order, not class by class.
    train_labels = [v["label"] for v in manifest["videos"]["train"]]
    assert train_labels != sorted(train_labels)


@pytest.mark.slow
def test_same_bytes_with_two_workers_and_on_a_rerun(reference_conversion, ucf_slice, tmp_path):
    source, lists = ucf_slice
    out = tmp_path / "two_workers"
    convert_dataset(source, out, annotations=lists, workers=2, **SLICE_OPTIONS)
    assert shard_bytes(out) == shard_bytes(reference_conversion)
    assert (out / "manifest.json").read_bytes() == (reference_conversion / "manifest.json").read_bytes()
    # Running again over a finished conversion redoes nothing and changes nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.tfrecord")}
    convert_dataset(source, out, annotations=lists, workers=1, **SLICE_OPTIONS)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tfrecord")} == before


def _cli_convert(source, out, lists) -> list[str]:
    o = SLICE_OPTIONS
    return [sys.executable, "-m", "tsn_keras.cli", "convert", str(source), str(out), "--format", o["format"],
            "--annotations", str(lists), "--modalities", ",".join(o["modalities"]), "--flow", o["flow"],
            "--short-side", str(o["short_side"]), "--shard-size-mb", str(o["shard_size_mb"]),
            "--present-classes-only", "--workers", "2", "--no-progress"]


def _journaled(out: Path) -> list[dict]:
    path = out / JOURNAL_NAME
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[1:-1]
    return [json.loads(line) for line in lines]


def _start_and_kill(command: list[str], out: Path, after_shards: int) -> None:
    """Run ``command`` and SIGKILL it (workers included) once ``after_shards`` shards are journaled."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 90
    try:
        while sum(c["shard"] is not None for c in _journaled(out)) < after_shards:
            assert process.poll() is None, f"convert ended before the kill: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no shard appeared in 90 s"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_shards_without_redoing_finished_ones(reference_conversion, ucf_slice,
                                                                                tmp_path):
    source, lists = ucf_slice
    out = tmp_path / "killed"
    command = _cli_convert(source, out, lists)
    total_shards = sum(len(s["shards"]) for s in load_manifest(reference_conversion)["splits"].values())

    _start_and_kill(command, out, after_shards=1)
    assert not (out / "manifest.json").exists()
    done = [c["shard"]["file"] for c in _journaled(out) if c["shard"]]
    assert 1 <= len(done) < total_shards  # really interrupted
    finished = {f: (out / f).stat() for f in done}

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "converted 8 videos (train 6, test 2)" in result.stdout
    assert shard_bytes(out) == shard_bytes(reference_conversion)
    assert (out / "manifest.json").read_bytes() == (reference_conversion / "manifest.json").read_bytes()
    for name, stat in finished.items():  # finished shards were not written again
        now = (out / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_torn_journal_and_partial_files_are_redone(reference_conversion, ucf_slice, tmp_path):
    """The state a kill can leave mid-shard: a half-written shard, an unjournaled one, a torn line."""
    source, lists = ucf_slice
    out = tmp_path / "torn"
    convert_dataset(source, out, annotations=lists, **SLICE_OPTIONS)
    journal = (out / JOURNAL_NAME).read_text().split("\n")
    # Keep the header and the first two chunks, then a torn line.
    (out / JOURNAL_NAME).write_text("\n".join(journal[:3]) + "\n" + journal[3][: len(journal[3]) // 2])
    (out / "manifest.json").unlink()
    third = out / "train" / "train-00002.tfrecord"
    third.write_bytes(b"garbage from another run")  # complete name but not journaled: rewritten
    (out / "train" / "train-00003.tfrecord.tmp").write_bytes(b"half a shard")
    kept = (out / "train" / "train-00000.tfrecord").stat().st_mtime_ns
    convert_dataset(source, out, annotations=lists, **SLICE_OPTIONS)
    assert shard_bytes(out) == shard_bytes(reference_conversion)
    assert (out / "train" / "train-00000.tfrecord").stat().st_mtime_ns == kept
    assert (out / JOURNAL_NAME).read_text().endswith("\n")


@pytest.mark.slow
def test_changed_options_are_refused_on_resume_and_overwrite_starts_over(reference_conversion, ucf_slice, tmp_path):
    source, lists = ucf_slice
    out = tmp_path / "changed"
    options = dict(SLICE_OPTIONS, modalities=("rgb",))
    convert_dataset(source, out, annotations=lists, **options)
    with pytest.raises(ConfigError, match=r"jpeg_quality: 90 -> 70.*--overwrite"):
        convert_dataset(source, out, annotations=lists, **dict(options, jpeg_quality=70))
    manifest = convert_dataset(source, out, annotations=lists, overwrite=True, **dict(options, jpeg_quality=70))
    assert manifest["options"]["jpeg_quality"] == 70 and manifest["stored_keys"] == ["rgb"]
    (out / JOURNAL_NAME).unlink()
    with pytest.raises(ConfigError, match="no resumable journal"):
        convert_dataset(source, out, annotations=lists, **options)


@pytest.fixture()
def broken_dataset(tmp_path, shared_data):
    """A class-folder dataset with one good video per class and every kind of bad input."""
    root = tmp_path / "videos"
    write_video(root / "pan" / "good.avi", panning_frames(6, (2, 1), size=(48, 32)))
    write_video(root / "still" / "good2.avi", panning_frames(5, (0, 0), size=(48, 32), seed=2))
    (root / "pan" / "notes.txt").write_text("not a video\n" * 10)
    (root / "pan" / "empty.avi").write_bytes(b"")
    clip = (shared_data / "UCF-101" / "Archery" / "v_Archery_g05_c04.avi").read_bytes()
    (root / "still" / "cut.avi").write_bytes(clip[: len(clip) * 3 // 10])
    (root / "still" / "mostly.avi").write_bytes(clip[: len(clip) * 9 // 10])
    writer = cv2.VideoWriter(str(root / "still" / "zero.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 25, (32, 24))
    writer.release()
    write_video(root / "pan" / "single.avi", panning_frames(1, (0, 0), size=(48, 32)))
    return root


@pytest.mark.slow
def test_bad_input_is_rejected_with_reasons_and_good_videos_are_kept(broken_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    code = tsn(["convert", str(broken_dataset), str(out), "--format", "folder", "--modalities", "rgb,flow",
                "--flow", "dis", "--original-size", "--workers", "1", "--no-progress"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "converted 3 videos (train 3) into 1 shards" in summary and "5 rejected, 0 missing" in summary
    assert "1 kept with fewer frames than their file header declares" in summary
    manifest = load_manifest(out)
    reasons = {r["path"]: r["reason"] for r in manifest["rejects"]}
    assert sorted(reasons) == ["pan/empty.avi", "pan/notes.txt", "pan/single.avi", "still/cut.avi", "still/zero.avi"]
    assert "not a video" in reasons["pan/notes.txt"] and "empty file" in reasons["pan/empty.avi"]
    assert "optical flow needs at least 2" in reasons["pan/single.avi"]
    assert "truncated: decoded" in reasons["still/cut.avi"] and "no decodable frames" in reasons["still/zero.avi"]
    assert [t["path"] for t in manifest["truncated"]] == ["still/mostly.avi"]
    assert sorted(v["id"] for v in manifest["videos"]["train"]) == ["good", "good2", "mostly"]
    # --strict turns the same run into exit code 2 (the manifest is still written).
    code = tsn(["convert", str(broken_dataset), str(tmp_path / "strict"), "--modalities", "rgb", "--original-size",
                "--workers", "1", "--no-progress", "--strict"])
    assert code == 2
    assert "strict: 4 video(s) rejected" in capsys.readouterr().err
    assert (tmp_path / "strict" / "manifest.json").is_file()
    with pytest.raises(DataError, match="strict"):
        convert_dataset(broken_dataset, tmp_path / "strict2", modalities=("rgb",), strict=True, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["dis", "tvl1"])
def test_flow_of_a_known_shift_decodes_back_to_it(tmp_path, algorithm):
    shift = (3, -2)
    # TV-L1 is ~1 s per full-size frame: 3 small frames keep the paper's algorithm checked.
    frames, size = (3, (64, 48)) if algorithm == "tvl1" else (6, (96, 72))
    write_video(tmp_path / "videos" / "pan" / "pan.avi", panning_frames(frames, shift, size=size))
    out = tmp_path / "out"
    convert_dataset(tmp_path / "videos", out, modalities=("flow", "warped_flow"), flow=algorithm, frame_size=None,
                    jpeg_quality=95, progress=False)
    manifest = load_manifest(out)
    assert manifest["stored_keys"] == ["flow_x", "flow_y", "warped_flow_x", "warped_flow_y"]
    (context, stored), = _records(split_shards(out, "train")[0])
    assert int(context["num_frames"]) == frames and len(stored["flow_x"]) == frames - 1
    for i in range(frames - 1):
        for key, expected in (("flow_x", shift[0]), ("flow_y", shift[1])):
            decoded = dequantize_flow(tf.io.decode_jpeg(stored[key][i]).numpy()[8:-8, 8:-8, 0])
            assert abs(np.median(decoded) - expected) <= STEP / 2 + 1e-5
        # A pure camera pan: warped flow cancels it.
        for key in ("warped_flow_x", "warped_flow_y"):
            decoded = dequantize_flow(tf.io.decode_jpeg(stored[key][i]).numpy()[8:-8, 8:-8, 0])
            assert abs(np.median(decoded)) <= STEP / 2 + 1e-5
    assert manifest["warped_flow"]["fields"] == frames - 1 and manifest["warped_flow"]["fallbacks"] == 0


def test_workers_do_not_import_tensorflow(tmp_path):
    video = write_video(tmp_path / "c" / "v.avi", panning_frames(3, (1, 0), size=(32, 24)))
    code = (
        "import sys\n"
        "from tfrecords_tools.plan import VideoEntry\n"
        "from tfrecords_tools.worker import VideoSettings, convert_video, init_worker\n"
        "init_worker(VideoSettings(modalities=('rgb', 'flow', 'warped_flow'), flow='dis'))\n"
        f"result = convert_video((VideoEntry({str(video)!r}, 'c/v.avi', 'v', 0, 'train'), 'c'))\n"
        "assert result.record is not None and len(result.record.frames['flow_x']) == 2, result.reason\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_option_errors(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError, match="rgb, flow, warped_flow"):
        convert_dataset(tmp_path, tmp_path / "o", modalities=("rgb", "depth"))
    with pytest.raises(ConfigError, match="tvl1, dis, farneback"):
        convert_dataset(tmp_path, tmp_path / "o", flow="brox")
    with pytest.raises(ConfigError, match="jpeg_quality"):
        convert_dataset(tmp_path, tmp_path / "o", jpeg_quality=0)
    with pytest.raises(ConfigError, match="workers"):
        convert_dataset(tmp_path, tmp_path / "o", workers=0)
    assert tsn(["convert", str(tmp_path), str(tmp_path / "o"), "--list", "train"]) == 2


def test_index_points_into_converted_shards(reference_conversion):
    shard = split_shards(reference_conversion, "test")[0]
    raw = shard.read_bytes()
    index = ShardIndex.load(index_path(shard))
    (_, frames), *_ = _records(shard)
    first = index.start("flow_y")[0]
    for j, jpeg in enumerate(frames["flow_y"]):
        offset, length = index.offset["flow_y"][first + j], index.length["flow_y"][first + j]
        assert raw[offset: offset + length] == jpeg


def test_results_come_in_input_order_with_bounded_work_in_flight(tmp_path):
    from tfrecords_tools.convert import _results
    from tfrecords_tools.plan import VideoEntry
    from tfrecords_tools.worker import VideoSettings

    video = write_video(tmp_path / "c" / "v.avi", panning_frames(3, (1, 0), size=(32, 24)))
    pulled = []

    def tasks():
        for i in range(12):
            pulled.append(i)
            yield VideoEntry(str(video), "c/v.avi", f"v{i}", 0, "train"), "c"

    received = []
    for result in _results(tasks(), VideoSettings(), workers=2):
        received.append(result.entry.video_id)
        # Memory does not grow with the dataset: at most 2 * workers videos ahead of the writer.
        assert len(pulled) <= len(received) + 4
    assert received == [f"v{i}" for i in range(12)]
