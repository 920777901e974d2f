"""`--format kinetics`: official annotation CSVs, clip names of the download scripts, missing clips."""

from pathlib import Path

import pytest

from tfrecords_tools.convert import convert_dataset
from tfrecords_tools.datasets import make_plan
from tfrecords_tools.kinetics import clip_name
from tsn_keras.cli import main as tsn

# (label, youtube_id, start, end) rows, and the shared clip each one is made from (None: not on disk).
TRAIN = [
    ("shooting basketball", "dunk-aaaaa1", 4, 14, "BasketballDunk/v_BasketballDunk_g07_c02.avi"),
    ("shooting basketball", "dunk_bbbbb2", 120, 130, "BasketballDunk/v_BasketballDunk_g07_c05.avi"),
    ("archery", "arch-ccccc3", 0, 10, "Archery/v_Archery_g05_c04.avi"),
    ("archery", "arch-ddddd4", 31, 41, None),
    ('playing piano, "grand"', "pian-eeeee5", 7, 17, "PlayingPiano/v_PlayingPiano_g19_c03.avi"),
]
VALIDATE = [
    ("archery", "arch-fffff6", 2, 12, "Archery/v_Archery_g07_c03.avi"),
    ("shooting basketball", "dunk-ggggg7", 5, 15, None),
]
TEST = [("test-hhhhh8", 1, 11)]


def _csv(path: Path, rows, split: str) -> None:
    lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
    for label, youtube_id, start, end, _ in rows:
        quoted = '"' + label.replace('"', '""') + '"' if "," in label or '"' in label else label
        lines.append(f"{quoted},{youtube_id},{start},{end},{split},0")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def kinetics_root(shared_data, tmp_path) -> Path:
    """CSVs in ``annotations/``; train clips as ``videos/train/<label>/<clip>.mp4``, val clips flat."""
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    _csv(annotations / "kinetics_400_train.csv", TRAIN, "train")
    _csv(annotations / "kinetics_400_validate.csv", VALIDATE, "val")
    (annotations / "kinetics_400_test.csv").write_text(
        "youtube_id,time_start,time_end,split\n" + "".join(f"{y},{s},{e},test\n" for y, s, e in TEST))
    videos = tmp_path / "videos"
    for rows, folder in ((TRAIN, "train"), (VALIDATE, "val")):
        for label, youtube_id, start, end, clip in rows:
            if clip is None:
                continue
            target = videos / folder / (label.replace(" ", "_") if folder == "train" else "")
            target.mkdir(parents=True, exist_ok=True)
            # The real clips are AVI: the extension does not matter to the decoder.
            (target / f"{clip_name(youtube_id, start, end)}.mp4").symlink_to(shared_data / "UCF-101" / clip)
    return tmp_path


def test_clip_names_follow_the_download_scripts():
    assert clip_name("abc-_DEF123", 14, 24) == "abc-_DEF123_000014_000024"
    assert clip_name("x", "7.0", "17.0") == "x_000007_000017"


def test_labels_splits_and_missing_clips(kinetics_root):
    plan = make_plan("kinetics", kinetics_root / "videos", annotations=kinetics_root / "annotations")
    assert plan.classes == ["archery", 'playing piano, "grand"', "shooting basketball"]
    train = {e.video_id: (plan.classes[e.label], e.rel) for e in plan.splits["train"]}
    assert train == {
        "dunk-aaaaa1_000004_000014": ("shooting basketball", "train/shooting_basketball/dunk-aaaaa1_000004_000014.mp4"),
        "dunk_bbbbb2_000120_000130": ("shooting basketball", "train/shooting_basketball/dunk_bbbbb2_000120_000130.mp4"),
        "arch-ccccc3_000000_000010": ("archery", "train/archery/arch-ccccc3_000000_000010.mp4"),
        "pian-eeeee5_000007_000017": ('playing piano, "grand"',
                                      'train/playing_piano,_"grand"/pian-eeeee5_000007_000017.mp4'),
    }
    assert [(e.video_id, e.rel, plan.classes[e.label]) for e in plan.splits["val"]] == [
        ("arch-fffff6_000002_000012", "val/arch-fffff6_000002_000012.mp4", "archery")]
    assert plan.missing == [
        {"path": "arch-ddddd4_000031_000041.mp4", "split": "train", "class": "archery"},
        {"path": "dunk-ggggg7_000005_000015.mp4", "split": "val", "class": "shooting basketball"},
    ]
    assert "test" not in plan.splits
    assert plan.rejects == [{"path": "kinetics_400_test.csv", "split": "test",
                             "reason": "no label column: the 1 unlabelled clips are not converted"}]


@pytest.mark.slow
def test_kinetics_conversion_reports_missing_clips(kinetics_root, capsys):
    out = kinetics_root / "out"
    manifest = convert_dataset(kinetics_root / "videos", out, format="kinetics", annotations=kinetics_root / "annotations",
                               short_side=32, workers=1, progress=False)
    assert manifest["splits"]["train"]["per_class"] == {"archery": 1, 'playing piano, "grand"': 1,
                                                        "shooting basketball": 2}
    assert manifest["splits"]["val"]["videos"] == 1 and len(manifest["missing"]) == 2
    assert manifest["options"]["format"] == "kinetics" and manifest["short_side"] == 32


def test_kinetics_errors_are_one_line_exit_2(kinetics_root, capsys):
    bad = kinetics_root / "annotations" / "kinetics_400_validate.csv"
    bad.write_text(bad.read_text() + "juggling,zzz,0,10,val,0\n")
    code = tsn(["convert", "--format", "kinetics", "--annotations", str(kinetics_root / "annotations"),
                str(kinetics_root / "videos"), str(kinetics_root / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "kinetics_400_validate.csv:4: label 'juggling' is not a class of the training CSV" in err
    code = tsn(["convert", "--format", "kinetics", str(kinetics_root / "videos"), str(kinetics_root / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "annotation CSVs (train.csv, validate.csv, test.csv) not found" in err
