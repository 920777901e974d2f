"""`tsn convert --runner beam`: the same bytes as the local runner, rejects, resuming, option errors."""

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("apache_beam", reason="the beam extra is not installed")

from tests.tfrecords_tools.conftest import shard_bytes
from tfrecords_tools import beam_runner
from tfrecords_tools.convert import convert_dataset
from tfrecords_tools.manifest import load_manifest
from tsn_keras.cli import main as tsn
from tsn_keras.errors import ConfigError

# The shortest clips of the shared subset (35-51 frames), stored at 32 pixels high.
CLIPS = [
    "BasketballDunk/v_BasketballDunk_g07_c02.avi",
    "BasketballDunk/v_BasketballDunk_g07_c05.avi",
    "BasketballDunk/v_BasketballDunk_g13_c01.avi",
    "Archery/v_Archery_g05_c04.avi",
    "Archery/v_Archery_g07_c03.avi",
    "Archery/v_Archery_g07_c04.avi",
]
OPTIONS = dict(format="folder", val_fraction=0.34, modalities=("rgb", "flow"), flow="dis", short_side=32,
               shard_size_mb=0.03)
MULTI_PROCESSING = "--direct_num_workers=2 --direct_running_mode=multi_processing"


@pytest.fixture(scope="module")
def videos(shared_data, tmp_path_factory) -> Path:
    """Class folders of symlinks to short real clips, plus a garbage file and a truncated clip."""
    root = tmp_path_factory.mktemp("beam_videos")
    for rel in CLIPS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(shared_data / "UCF-101" / rel)
    (root / "Archery" / "garbage.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI not really a video" * 40)
    whole = (shared_data / "UCF-101" / CLIPS[3]).read_bytes()
    (root / "Archery" / "truncated.avi").write_bytes(whole[: len(whole) // 3])
    return root


@pytest.fixture(scope="module")
def local_conversion(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("beam_local") / "out"
    convert_dataset(videos, out, workers=2, progress=False, **OPTIONS)
    return out


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_beam_multiprocessing_writes_the_local_runners_bytes(videos, local_conversion, tmp_path):
    out = tmp_path / "beam"
    manifest = beam_runner.convert_dataset_beam(videos, out, beam_options=MULTI_PROCESSING, **OPTIONS)
    local = load_manifest(local_conversion)
    assert json.loads(json.dumps(manifest)) == {k: v for k, v in local.items() if k not in ("format", "version")}
    # Every file: shards, byte indexes, journal and manifest; no work folder is left behind.
    assert _files(out) == _files(local_conversion)
    assert len(local["splits"]["train"]["shards"]) >= 3 and local["splits"]["val"]["videos"] >= 1
    reasons = {Path(r["path"]).name: r["reason"] for r in local["rejects"]}
    assert "garbage.avi" in reasons and reasons == {Path(r["path"]).name: r["reason"] for r in manifest["rejects"]}


@pytest.mark.slow
def test_rerun_reuses_converted_videos_and_complete_shards(videos, local_conversion, tmp_path, monkeypatch):
    out = tmp_path / "resumed"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a driver killed after the pipeline, before the journal was written

    with monkeypatch.context() as patch:
        patch.setattr(beam_runner, "_finished_chunks", crash)
        with pytest.raises(KeyboardInterrupt):
            beam_runner.convert_dataset_beam(videos, out, **OPTIONS)
    assert not (out / "manifest.json").exists() and (out / beam_runner.WORK_DIR).is_dir()
    shards = sorted(out.rglob("*.tfrecord"))
    shards[-1].unlink()  # one shard lost: it is written again, the others are kept
    kept = {p: p.stat().st_mtime_ns for p in shards[:-1]}
    converted = []
    original = beam_runner._ConvertVideo._convert
    monkeypatch.setattr(beam_runner._ConvertVideo, "_convert",
                        lambda self, entry, name: converted.append(entry.rel) or original(self, entry, name))
    beam_runner.convert_dataset_beam(videos, out, **OPTIONS)
    assert converted == []
    assert {p: p.stat().st_mtime_ns for p in shards[:-1]} == kept
    assert shard_bytes(out) == shard_bytes(local_conversion)
    assert _files(out) == _files(local_conversion)


def test_plan_chunks_follows_the_local_rule():
    def video(position, size):
        return {"position": position, "size": size, "reject": None, "truncated": None,
                "video": {"id": f"v{position}", "label": 0, "frames": 3, "shard": None, "path": f"v{position}"}}

    reject = {"position": 12, "size": 0, "video": None, "truncated": None,
              "reject": {"path": "bad", "split": "train", "reason": "cannot open"}}
    summaries = [video(10, 60), video(11, 50), reject, video(13, 200), video(14, 10)]
    chunks = beam_runner.plan_chunks("train", reversed(summaries), start=10, shard_number=4, target_bytes=100)
    assert [(c["end"], c["shard"] and c["shard"]["members"]) for c in chunks] == [(12, [10, 11]), (14, [13]),
                                                                                  (15, [14])]
    assert chunks[1]["rejects"] == [reject["reject"]]
    assert [v["shard"] for v in chunks[0]["videos"]] == ["train/train-00004.tfrecord"] * 2
    only_reject = beam_runner.plan_chunks("val", [dict(reject, position=0)], 0, 0, 100)
    assert only_reject == [{"split": "val", "end": 1, "shard": None, "videos": [], "rejects": [reject["reject"]],
                            "truncated": []}]


def test_frame_record_matches_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    with tf.io.TFRecordWriter(str(tmp_path / "a.tfrecord")) as writer:
        writer.write(b"some bytes")
    assert beam_runner.frame_record(b"some bytes") == (tmp_path / "a.tfrecord").read_bytes()


def test_unknown_beam_option_is_an_error():
    with pytest.raises(ConfigError, match="--direct_num_worker"):
        beam_runner.pipeline_options("--direct_num_worker=2")
    assert beam_runner.pipeline_options(MULTI_PROCESSING).get_all_options()["direct_num_workers"] == 2


@pytest.mark.parametrize("args, message", [
    (["--runner", "beam", "--workers", "2"], "--workers is for --runner local"),
    (["--beam-options", "--direct_num_workers=2 --direct_running_mode=multi_processing"],
     "--beam-options is for --runner beam"),
    (["--runner", "beam", "--beam-options=--no_such_flag=1"], "unknown Beam option"),
    (["--state-dir", "journals"], "--state-dir is for --runner beam"),
])
def test_cli_option_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "videos" / "a").mkdir(parents=True)
    code = tsn(["convert", str(tmp_path / "videos"), str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_a_videos_bytes_do_not_depend_on_the_video_converted_before(shared_data):
    # OpenCV's DIS object carries state from call to call; runners schedule videos to workers in any order.
    from tfrecords_tools.plan import VideoEntry
    from tfrecords_tools.worker import VideoConverter, VideoSettings

    converter = VideoConverter(VideoSettings(modalities=("flow", "warped_flow"), flow="dis", frame_size=None,
                                             short_side=32))
    first, other = (VideoEntry(str(shared_data / "UCF-101" / rel), rel, rel, 0, "train") for rel in CLIPS[1:3])
    alone = converter(first, "a").record.frames
    converter(other, "a")
    assert converter(first, "a").record.frames == alone


# --- an output folder that is not a local path ----------------------------------------------

def _bucket_filesystem(root: Path):
    """A Beam file system for ``testbucket://PATH``, kept in ``root``: a stand-in for ``gs://``.

    Nothing in the conversion can open such a URL with local file I/O, so a conversion into it
    shows that the shards, work files and manifest all go through Beam's ``FileSystems``.
    """
    from apache_beam.io.filesystem import FileMetadata, MatchResult
    from apache_beam.io.localfilesystem import LocalFileSystem

    prefix = "testbucket://"

    def local(path):
        # LocalFileSystem's own methods call the others with local paths: those pass through.
        return str(root / path[len(prefix):]) if path.startswith(prefix) else path

    def url(path):
        return prefix + str(Path(path).relative_to(root))

    class BucketFileSystem(LocalFileSystem):
        @classmethod
        def scheme(cls):
            return "testbucket"

        def join(self, basepath, *paths):
            return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

        def split(self, path):
            head, _, tail = path.rstrip("/").rpartition("/")
            return head, tail

        def has_dirs(self):
            return False  # as a bucket

        def mkdirs(self, path):
            return super().mkdirs(local(path))

        def create(self, path, *args, **kwargs):
            return super().create(local(path), *args, **kwargs)

        def open(self, path, *args, **kwargs):
            return super().open(local(path), *args, **kwargs)

        def rename(self, sources, destinations):
            return super().rename([local(p) for p in sources], [local(p) for p in destinations])

        def delete(self, paths):  # as a bucket: files only
            for path in paths:
                Path(local(path)).unlink()

        def exists(self, path):
            return super().exists(local(path))

        def size(self, path):
            return super().size(local(path))

        def match(self, patterns, limits=None):
            results = super().match([local(p) for p in patterns], limits)
            return [MatchResult(pattern, [FileMetadata(url(m.path), m.size_in_bytes, m.last_updated_in_seconds)
                                          for m in result.metadata_list])
                    for pattern, result in zip(patterns, results, strict=True)]

    return BucketFileSystem


@pytest.mark.slow
def test_beam_writes_to_a_remote_output_folder(videos, local_conversion, tmp_path, monkeypatch):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    filesystem = _bucket_filesystem(bucket)  # registered with Beam while it exists (a subclass)
    state = tmp_path / "state"
    manifest = beam_runner.convert_dataset_beam(videos, "testbucket://kinetics/shards", state_folder=state, **OPTIONS)
    assert json.loads(json.dumps(manifest)) == {k: v for k, v in load_manifest(local_conversion).items()
                                                if k not in ("format", "version")}
    # The local runner's files, byte for byte, except the journal and its lock: they stay on this machine.
    remote = _files(bucket / "kinetics" / "shards")
    assert remote == {k: v for k, v in _files(local_conversion).items() if k not in ("convert-journal.jsonl", ".lock")}
    assert (state / "convert-journal.jsonl").is_file()

    # A rerun resumes from the journal (nothing to do); another machine's journal is not this one's.
    assert beam_runner.convert_dataset_beam(videos, "testbucket://kinetics/shards", state_folder=state,
                                            **OPTIONS) == manifest
    with pytest.raises(ConfigError, match="already holds converted data and this machine has no journal"):
        beam_runner.convert_dataset_beam(videos, "testbucket://kinetics/shards", state_folder=tmp_path / "other",
                                         **OPTIONS)
    # --overwrite deletes what the remote manifest lists, then converts again.
    stray = bucket / "kinetics" / "shards" / "notes.txt"
    stray.write_text("not ours")
    again = beam_runner.convert_dataset_beam(videos, "testbucket://kinetics/shards", state_folder=tmp_path / "other",
                                             overwrite=True, **OPTIONS)
    assert again == manifest and stray.read_text() == "not ours"
    assert _files(bucket / "kinetics" / "shards") == {**remote, "notes.txt": _files(bucket / "kinetics" / "shards")["notes.txt"]}
    del filesystem
