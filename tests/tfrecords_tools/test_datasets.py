"""Split-file parsers: UCF101, HMDB51, class folders, list files; missing videos; validation carving."""

import os
from pathlib import Path

import pytest

from tfrecords_tools.datasets import hmdb_group, make_plan, read_classes_file, ucf_group
from tsn_keras.errors import ConfigError, DataError

SUBSET = ["Archery", "BasketballDunk", "PlayingPiano", "PlayingViolin"]


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_official_ucf101_split_on_the_real_subset(shared_data):
    plan = make_plan("ucf101", shared_data, split=1)
    assert len(plan.classes) == 101 and plan.classes[2] == "Archery"  # classInd is 1-based
    assert {name: len(v) for name, v in plan.splits.items()} == {"train": 347, "test": 134}
    listed = sum(1 for name in ("trainlist01.txt", "testlist01.txt")
                 for line in (shared_data / "ucfTrainTestlist" / name).read_text().splitlines() if line.strip())
    assert len(plan.missing) == listed - 481  # every listed video not on disk is reported
    assert {m["split"] for m in plan.missing} == {"train", "test"}
    entry = next(e for e in plan.splits["train"] if e.video_id == "v_Archery_g08_c01")
    assert entry.label == 2 and Path(entry.path).is_file()
    assert {plan.classes[e.label] for e in plan.splits["test"]} == set(SUBSET)


def test_present_classes_only_relabels_in_the_original_order(shared_data):
    plan = make_plan("ucf101", shared_data, split=2, present_classes_only=True)
    assert plan.classes == SUBSET
    labels = {e.video_id.split("_")[1]: (e.label, e.original_label) for e in plan.splits["train"]}
    assert labels == {"Archery": (0, 2), "BasketballDunk": (1, 8), "PlayingPiano": (2, 63), "PlayingViolin": (3, 66)}
    assert plan.missing == []  # all listed videos of the four classes are on disk
    assert len(plan.dropped_classes) == 97
    dropped = {d["class"]: d for d in plan.dropped_classes}
    assert dropped["Basketball"]["original_label"] == 7 and dropped["Basketball"]["listed"]["train"] > 0


def test_ucf_validation_is_carved_by_group_and_seeded(shared_data):
    plan = make_plan("ucf101", shared_data, val_fraction=0.2, seed=3, present_classes_only=True)
    train, val = plan.splits["train"], plan.splits["val"]
    assert len(train) + len(val) == 347 and all(e.split == "val" for e in val)
    for label in range(4):
        train_groups = {ucf_group(e.rel) for e in train if e.label == label}
        val_groups = {ucf_group(e.rel) for e in val if e.label == label}
        assert val_groups and not train_groups & val_groups  # no group on both sides
        assert len(val_groups) == round(0.2 * 18)  # 18 train groups (g08..g25) per class
    again = make_plan("ucf101", shared_data, val_fraction=0.2, seed=3, present_classes_only=True)
    other = make_plan("ucf101", shared_data, val_fraction=0.2, seed=4, present_classes_only=True)
    assert [e.rel for e in again.splits["val"]] == [e.rel for e in val]
    assert [e.rel for e in other.splits["val"]] != [e.rel for e in val]


def test_ucf_list_errors_name_file_and_line(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    _touch(lists / "classInd.txt", b"1 Archery\n2 Bowling\n")
    _touch(lists / "trainlist01.txt", b"Archery/v_Archery_g01_c01.avi 2\n")
    _touch(lists / "testlist01.txt", b"")
    with pytest.raises(DataError, match=r"trainlist01.txt:1: label 2 does not match class 'Archery'"):
        make_plan("ucf101", tmp_path)
    _touch(lists / "classInd.txt", b"1 Archery\n3 Bowling\n")
    with pytest.raises(DataError, match=r"classInd.txt:2"):
        make_plan("ucf101", tmp_path)
    with pytest.raises(DataError, match="--annotations"):
        make_plan("hmdb51", tmp_path / "ucfTrainTestlist")


def test_listed_paths_are_found_despite_case_differences(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    _touch(lists / "classInd.txt", b"1 HandstandPushups\n")
    _touch(lists / "trainlist01.txt", b"HandstandPushups/v_HandStandPushups_g08_c01.avi 1\n")
    _touch(lists / "testlist01.txt", b"HandstandPushups/v_HandStandPushups_g01_c01.avi\n")
    video = _touch(tmp_path / "UCF-101" / "handstandpushups" / "v_HandStandPushups_g08_c01.avi")
    plan = make_plan("ucf101", tmp_path)
    assert [e.path for e in plan.splits["train"]] == [str(video)]
    assert plan.missing == [{"path": "HandstandPushups/v_HandStandPushups_g01_c01.avi", "split": "test",
                             "class": "HandstandPushups"}]


def test_hmdb51_split_files(tmp_path):
    lists = tmp_path / "testTrainMulti_7030_splits"
    _touch(lists / "brush_hair_test_split1.txt", b"a_brush_hair_u_0.avi 1\na_brush_hair_u_1.avi 2\nb_brush_0.avi 0\n")
    _touch(lists / "cartwheel_test_split1.txt", b"c_cartwheel_f_0.avi 1 \nc_cartwheel_f_1.avi 1\n")
    _touch(lists / "brush_hair_test_split2.txt", b"a_brush_hair_u_0.avi 2\n")
    for name in ("brush_hair/a_brush_hair_u_0.avi", "brush_hair/a_brush_hair_u_1.avi", "cartwheel/c_cartwheel_f_0.avi"):
        _touch(tmp_path / "hmdb51_org" / name)
    plan = make_plan("hmdb51", tmp_path, split=1)
    assert plan.classes == ["brush_hair", "cartwheel"]
    assert [(e.video_id, e.label) for e in plan.splits["train"]] == [("a_brush_hair_u_0", 0), ("c_cartwheel_f_0", 1)]
    assert [e.video_id for e in plan.splits["test"]] == ["a_brush_hair_u_1"]
    assert plan.missing == [{"path": "cartwheel/c_cartwheel_f_1.avi", "split": "train", "class": "cartwheel"}]
    # The source movie: the part before _<class>_, whatever the per-clip tags after it.
    assert hmdb_group("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi") == "April_09"
    assert hmdb_group("brush_hair/April_09_brush_hair_h_cm_np2_le_med_0.avi") == "April_09"
    assert hmdb_group("April_09_brush_hair_u_nm_np1_ba_goo_2.avi") == "April_09_brush_hair_u_nm_np1_ba_goo"
    _touch(lists / "cartwheel_test_split1.txt", b"c_cartwheel_f_0.avi 3\n")
    with pytest.raises(DataError, match=r"cartwheel_test_split1.txt:1"):
        make_plan("hmdb51", tmp_path, split=1)


def test_folder_format_lists_every_file_and_carves_val_per_class(tmp_path):
    for c, n in (("walk", 10), ("run", 5)):
        for i in range(n):
            _touch(tmp_path / c / f"{c}{i:02d}.mp4")
    _touch(tmp_path / "walk" / ".DS_Store")  # hidden: skipped
    _touch(tmp_path / "walk" / "notes.txt")  # listed; the converter rejects it with a reason
    plan = make_plan("folder", tmp_path, val_fraction=0.2, seed=1)
    assert plan.classes == ["run", "walk"]
    val = plan.splits["val"]
    assert sorted(e.label for e in val) == [0, 1, 1]  # round(0.2*5)=1, round(0.2*11)=2
    assert len(plan.splits["train"]) + len(val) == 16
    assert any(e.rel == "walk/notes.txt" for e in plan.splits["train"] + val)
    assert [e.rel for e in make_plan("folder", tmp_path, val_fraction=0.2, seed=1).splits["val"]] == [e.rel for e in val]
    assert "val" not in make_plan("folder", tmp_path).splits


def _lock(folder: Path, monkeypatch) -> None:
    """Make ``folder`` unlistable: chmod 000, or (as root, who reads through that) a failing listdir."""
    if os.geteuid() != 0:
        folder.chmod(0)
        return
    real_listdir = os.listdir

    def listdir(path="."):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)


def test_unreadable_class_folder_is_rejected_not_fatal(tmp_path, monkeypatch):
    _touch(tmp_path / "a" / "a0.mp4")
    locked = tmp_path / "b"
    _touch(locked / "b0.mp4")
    _lock(locked, monkeypatch)
    try:
        plan = make_plan("folder", tmp_path)
    finally:
        locked.chmod(0o755)
    assert plan.classes == ["a", "b"]
    assert [e.rel for e in plan.splits["train"]] == ["a/a0.mp4"]
    assert plan.rejects == [{"path": "b", "split": None, "reason": "cannot list directory: Permission denied"}]


def test_listed_video_in_an_unreadable_folder_is_rejected_not_missing(tmp_path, monkeypatch):
    _touch(tmp_path / "ok" / "v0.mp4")
    locked = tmp_path / "locked"
    _touch(locked / "v1.mp4")
    _touch(tmp_path / "list.txt", b"ok/v0.mp4 0\nlocked/v1.mp4 1\n")
    _lock(locked, monkeypatch)
    try:
        plan = make_plan("list", tmp_path, lists={"train": tmp_path / "list.txt"})
    finally:
        locked.chmod(0o755)
    assert [e.rel for e in plan.splits["train"]] == ["ok/v0.mp4"] and plan.missing == []
    assert plan.rejects == [{"path": "locked/v1.mp4", "split": "train",
                             "reason": f"cannot list directory {locked}: Permission denied"}]


def test_list_format_with_classes_files(tmp_path):
    _touch(tmp_path / "x" / "one.mp4")
    _touch(tmp_path / "y" / "one.mp4")
    _touch(tmp_path / "lists" / "train.txt", b"x/one.mp4 0\ny/one.mp4 2\nmy videos/with space.mp4 1\n")
    _touch(tmp_path / "lists" / "test.txt", b"y/one.mp4 2\n")
    lists = {"train": tmp_path / "lists" / "train.txt", "test": tmp_path / "lists" / "test.txt"}
    plan = make_plan("list", tmp_path, lists=lists)
    assert plan.classes == ["class0", "class1", "class2"]
    # Stems collide (one.mp4 twice), so ids are the relative paths without extension.
    # y/one is listed in test too: kept there, refused in train (it would leak), and reported.
    assert [(e.video_id, e.label) for e in plan.splits["train"]] == [("x/one", 0)]
    assert [e.video_id for e in plan.splits["test"]] == ["y/one"]
    assert [(r["path"], r["split"]) for r in plan.rejects] == [("y/one.mp4", "train")]
    assert "train/test overlap" in plan.rejects[0]["reason"]
    assert plan.missing == [{"path": "my videos/with space.mp4", "split": "train", "class": "class1"}]
    _touch(tmp_path / "names.txt", b"jump\nrun\nswim\n")
    _touch(tmp_path / "classInd.txt", b"1 jump\r\n2 run\r\n3 swim\r\n")
    assert read_classes_file(tmp_path / "names.txt") == read_classes_file(tmp_path / "classInd.txt") == ["jump", "run", "swim"]
    assert make_plan("list", tmp_path, lists=lists, classes_file=tmp_path / "names.txt").classes == ["jump", "run", "swim"]
    _touch(tmp_path / "two.txt", b"jump\nrun\n")
    with pytest.raises(DataError, match="names only 2 classes"):
        make_plan("list", tmp_path, lists=lists, classes_file=tmp_path / "two.txt")
    _touch(tmp_path / "bad.txt", b"x/one.mp4 0\nx/one.mp4 walk\n")
    with pytest.raises(DataError, match=r"bad.txt:2: expected '<relative path> <label>'"):
        make_plan("list", tmp_path, lists={"train": tmp_path / "bad.txt"})


def test_option_errors_name_the_option(tmp_path):
    with pytest.raises(ConfigError, match="ucf101, hmdb51, folder, list, kinetics"):
        make_plan("something_something", tmp_path)
    with pytest.raises(ConfigError, match="val_fraction"):
        make_plan("folder", tmp_path, val_fraction=1.0)
    with pytest.raises(ConfigError, match="format 'list'"):
        make_plan("folder", tmp_path, lists={"train": "a.txt"})
    with pytest.raises(ConfigError, match=r"--list train=train\.txt"):
        make_plan("list", tmp_path, lists={})
    with pytest.raises(ConfigError, match="split must be 1, 2 or 3"):
        make_plan("ucf101", tmp_path, split=4)
    with pytest.raises(DataError, match="does not exist"):
        make_plan("folder", tmp_path / "nope")
    assert ucf_group("Archery/v_Archery_g05_c04.avi") == "g05"


def test_a_video_listed_twice_in_a_split_is_kept_once_and_reported(tmp_path):
    _touch(tmp_path / "x" / "one.mp4")
    _touch(tmp_path / "train.txt", b"x/one.mp4 0\nx/one.mp4 0\n")
    plan = make_plan("list", tmp_path, lists={"train": tmp_path / "train.txt"})
    assert [e.rel for e in plan.splits["train"]] == ["x/one.mp4"]
    assert plan.rejects == [{"path": "x/one.mp4", "split": "train", "reason": "listed twice in split 'train'"}]
