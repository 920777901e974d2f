"""`tsn convert` under faults (issue 16): --overwrite next to other files and symbolic links,
two runs into one folder, output folders that cannot be written, a full disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tfrecords_tools.conftest import panning_frames, shard_bytes, write_video
from tfrecords_tools.convert import convert_dataset
from tfrecords_tools.journal import JOURNAL_NAME, lock_folder
from tfrecords_tools.manifest import load_manifest
from tsn_keras.cli import main as tsn
from tsn_keras.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
OPTIONS = dict(format="folder", frame_size=(32, 24), shard_size_mb=0.001, progress=False, workers=1)


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory) -> Path:
    """Two classes of two 5-frame 32x24 videos (``<root>/<class>/<video>.avi``)."""
    root = tmp_path_factory.mktemp("tiny_videos")
    for c, name in enumerate(("walk", "run")):
        for i in range(2):
            write_video(root / name / f"{name}_{i}.avi", panning_frames(5, (1, c), size=(32, 24), seed=i))
    return root


def _convert(source: Path, out: Path, **options) -> dict:
    return convert_dataset(source, out, **{**OPTIONS, **options})


def test_overwrite_deletes_only_its_own_files_and_never_follows_a_link(tiny_videos, tmp_path):
    out = tmp_path / "out"
    _convert(tiny_videos, out)
    # A victim folder outside OUT, reached through a link inside OUT, with files of the same kinds.
    victim = tmp_path / "victim"
    victim.mkdir()
    kept = [victim / "train-00000.tfrecord", victim / "train-00000.tfrecord.index", victim / "x.tmp"]
    for path in kept:
        path.write_bytes(b"precious")
    (out / "elsewhere").symlink_to(victim, target_is_directory=True)
    # Files of the same kinds in a subfolder of OUT that the conversion did not write.
    other = out / "mine"
    other.mkdir()
    (other / "a.tfrecord").write_bytes(b"mine")
    (other / "a.tfrecord.index").write_bytes(b"mine")
    (other / "notes.tmp").write_bytes(b"mine")
    stray = out / "train" / "foreign.tfrecord"
    stray.write_bytes(b"mine")

    manifest = _convert(tiny_videos, out, overwrite=True, jpeg_quality=80)
    assert manifest["options"]["jpeg_quality"] == 80
    assert all(path.read_bytes() == b"precious" for path in kept)
    assert all(p.read_bytes() == b"mine" for p in (other / "a.tfrecord", other / "a.tfrecord.index",
                                                    other / "notes.tmp", stray))
    assert (out / "elsewhere").is_symlink()


def test_a_split_folder_that_is_a_link_is_refused(tiny_videos, tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    (victim / "train-00000.tfrecord").write_bytes(b"precious")
    out.mkdir()
    (out / "train").symlink_to(victim, target_is_directory=True)
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="symbolic link"):
            _convert(tiny_videos, out, overwrite=overwrite)
    assert (victim / "train-00000.tfrecord").read_bytes() == b"precious"


def test_a_second_conversion_into_the_same_folder_is_refused(tiny_videos, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = lock_folder(out)  # as a running `tsn convert` holds it
    try:
        with pytest.raises(ConfigError, match="another tsn convert"):
            _convert(tiny_videos, out)
        assert tsn(["convert", str(tiny_videos), str(out), "--no-progress"]) == 2
        assert "another tsn convert" in capsys.readouterr().err
    finally:
        os.close(holder)
    assert not (out / JOURNAL_NAME).exists()
    manifest = _convert(tiny_videos, out)  # the lock is free again
    assert manifest["splits"]["train"]["videos"] == 4


def test_two_concurrent_processes_one_refused_and_the_journal_not_doubled(tiny_videos, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tsn_keras.cli", "convert", str(tiny_videos), str(out), "--frame-size", "32x24",
               "--shard-size-mb", "0.001", "--workers", "1", "--no-progress"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out.mkdir()
    holder = lock_folder(out)
    try:
        # Both started while a run holds the lock: neither may write.
        runs = [subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
                for _ in range(2)]
    finally:
        os.close(holder)
    assert [r.returncode for r in runs] == [2, 2]
    assert all("another tsn convert" in r.stderr and "Traceback" not in r.stderr for r in runs)
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    lines = (out / JOURNAL_NAME).read_text().splitlines()
    manifest = load_manifest(out)
    assert manifest["splits"]["train"]["videos"] == 4
    assert len(lines) == 1 + len(manifest["splits"]["train"]["shards"])


@pytest.mark.parametrize("case", ["file", "under_file"])
def test_output_folder_that_cannot_be_made_is_one_line(tiny_videos, tmp_path, capsys, case):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if case == "file" else blocker / "out"
    assert tsn(["convert", str(tiny_videos), str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(blocker) in err
    assert blocker.read_text() == "a file"


def _cli_convert(source: Path, out: Path) -> int:
    return tsn(["convert", str(source), str(out), "--frame-size", "32x24", "--shard-size-mb", "0.001",
                "--workers", "1", "--no-progress"])


def test_disk_full_is_one_line_and_the_conversion_resumes_to_the_same_bytes(tiny_videos, small_fs, capsys, tmp_path):
    fs = small_fs("12k")  # room for the journal and a shard or two, not for all four
    out = fs / "out"
    assert _cli_convert(tiny_videos, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and "Traceback" not in err
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "a partial file was left behind"
    small_fs.remount(fs, size="4m")
    assert _cli_convert(tiny_videos, out) == 0
    reference = _convert(tiny_videos, tmp_path / "reference")
    assert shard_bytes(out) == shard_bytes(tmp_path / "reference")
    assert load_manifest(out)["splits"] == reference["splits"]


def test_read_only_output_is_one_line(tiny_videos, small_fs, capsys):
    fs = small_fs("1m")
    small_fs.remount(fs, readonly=True)
    assert _cli_convert(tiny_videos, fs / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err


def test_a_header_that_over_counts_is_reported_with_how_much_and_why_it_is_harmless():
    from tfrecords_tools.conversion import truncation_note

    # Every JHMDB clip: the AVI header declares 48 frames, 40 decode.
    note = truncation_note([{"path": f"a/{i}.avi", "split": "train", "decoded": 40, "declared": 48} for i in range(3)])
    assert note.startswith("3 kept with fewer frames than their file header declares (24 frames in all")
    assert "at least 83%" in note and "harmless" in note


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_workers_of_a_killed_conversion_stop_with_it(tmp_path):
    import signal
    import time

    # Videos that keep a worker busy for many seconds: OpenCV TV-L1 at 160x120, 80 frames each.
    source = tmp_path / "videos"
    for c, name in enumerate(("walk", "run")):
        write_video(source / name / f"{name}.avi", panning_frames(80, (1, c), size=(160, 120), seed=c))
    command = [sys.executable, "-m", "tsn_keras.cli", "convert", str(source), str(tmp_path / "out"), "--format",
               "folder", "--modalities", "flow", "--flow", "tvl1", "--flow-engine", "opencv", "--original-size",
               "--workers", "2", "--no-progress"]
    parent = subprocess.Popen(command, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"spawn_main" in cmdline and f"\nPPid:\t{parent.pid}\n" in status:
                found.append(int(entry.name))
        return found

    try:
        deadline = time.monotonic() + 120
        while len(busy := workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(busy) == 2, "the pool did not start"
        time.sleep(1.5)  # both are converting a video now
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in busy) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in busy if Path(f"/proc/{pid}").exists()], "workers outlived the killed conversion"
    finally:
        parent.kill()
