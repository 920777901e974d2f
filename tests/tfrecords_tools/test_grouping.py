"""Custom datasets split by source video: --group-by (presets, regex) and val/test fractions by group."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.tfrecords_tools.conftest import panning_frames, write_video
from tfrecords_tools.datasets import make_plan, ucf_group
from tfrecords_tools.manifest import load_manifest
from tsn_keras.cli import main as tsn
from tsn_keras.errors import ConfigError

# Groups per class (clips per group vary): fractions are of groups, per class.
GROUPS = {"Archery": 10, "Drumming": 7, "Juggle": 3}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # parsing never decodes a video
    return path


@pytest.fixture
def ucf_named(tmp_path) -> Path:
    """``<root>/<Class>/v_<Class>_gXX_cYY.avi``: 1 to 3 clips per group."""
    for name, groups in GROUPS.items():
        for g in range(1, groups + 1):
            for c in range(1, 2 + g % 3):
                _touch(tmp_path / name / f"v_{name}_g{g:02d}_c{c:02d}.avi")
    return tmp_path


def _groups(entries) -> set[tuple[int, str]]:
    return {(e.label, ucf_group(e.rel)) for e in entries}


def test_folder_group_by_ucf101_keeps_groups_whole_and_fractions_per_class(ucf_named):
    plan = make_plan("folder", ucf_named, val_fraction=0.2, test_fraction=0.3, seed=5, group_by="ucf101")
    assert set(plan.splits) == {"train", "val", "test"}
    groups = {name: _groups(entries) for name, entries in plan.splits.items()}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]  # no source video straddles two splits
    assert all(e.split == name for name, entries in plan.splits.items() for e in entries)
    assert sum(len(v) for v in plan.splits.values()) == sum(1 for _ in ucf_named.rglob("*.avi"))
    for label, name in enumerate(plan.classes):
        count = {split: sum(1 for lab, _ in g if lab == label) for split, g in groups.items()}
        n = GROUPS[name]
        assert count["val"] == max(round(0.2 * n), 1)
        assert count["test"] == min(max(round(0.3 * n), 1), n - 1 - count["val"])  # train keeps a group
        assert count["train"] == n - count["val"] - count["test"] >= 1
    again = make_plan("folder", ucf_named, val_fraction=0.2, test_fraction=0.3, seed=5, group_by="ucf101")
    assert {k: [e.rel for e in v] for k, v in again.splits.items()} == {k: [e.rel for e in v] for k, v in plan.splits.items()}
    # val does not depend on whether a test split is carved after it
    val_only = make_plan("folder", ucf_named, val_fraction=0.2, seed=5, group_by="ucf101")
    assert [e.rel for e in val_only.splits["val"]] == [e.rel for e in plan.splits["val"]]
    assert "test" not in val_only.splits
    other = make_plan("folder", ucf_named, val_fraction=0.2, test_fraction=0.3, seed=6, group_by="ucf101")
    assert _groups(other.splits["test"]) != groups["test"]


def test_without_group_by_clips_of_one_source_video_are_carved_alone(ucf_named):
    plan = make_plan("folder", ucf_named, test_fraction=0.5, seed=0)
    assert _groups(plan.splits["train"]) & _groups(plan.splits["test"])  # the leak --group-by prevents
    assert "val" not in plan.splits


def test_regex_group_first_capture_or_whole_match(tmp_path):
    for person in ("ann", "bob", "cid", "dee"):
        for take in range(3):
            _touch(tmp_path / "wave" / f"{person}-take{take}.mp4")
    _touch(tmp_path / "wave" / "README")  # unmatched: a group of its own
    for rule in (r"regex:/([a-z]+)-take", r"regex:(?<=/)[a-z]+(?=-)"):
        plan = make_plan("folder", tmp_path, test_fraction=0.5, seed=2, group_by=rule)
        people = {name: {Path(e.rel).name.split("-")[0] for e in v} for name, v in plan.splits.items()}
        assert not people["train"] & people["test"]
        tested = [Path(e.rel).name.split("-")[0] for e in plan.splits["test"]]
        assert len(set(tested)) == 2  # round(0.5 * 5 groups), README being one
        assert all(tested.count(person) == 3 for person in set(tested) - {"README"})


@pytest.mark.parametrize("rule, message", [
    ("regex:(unclosed", "not a regular expression"),
    ("regex:_g(\\d+)_", "matches none of the 13 listed videos"),
    ("movie", "choose one of none, ucf101, hmdb51 or regex:<pattern>"),
])
def test_a_bad_group_rule_is_one_line_naming_the_option(tmp_path, rule, message):
    for i in range(13):
        _touch(tmp_path / "a" / f"clip{i}.mp4")
    with pytest.raises(ConfigError, match="--group-by") as err:
        make_plan("folder", tmp_path, val_fraction=0.2, group_by=rule)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_list_format_carves_val_and_test_from_the_train_list(ucf_named, tmp_path):
    rels = sorted(str(p.relative_to(ucf_named)) for p in ucf_named.rglob("*.avi"))
    classes = sorted(GROUPS)
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{rel} {classes.index(rel.split('/')[0])}\n" for rel in rels))
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(classes))  # the carve is seeded per class name
    plan = make_plan("list", ucf_named, lists={"train": train}, classes_file=names, val_fraction=0.2,
                     test_fraction=0.3, seed=5, group_by="ucf101")
    folder = make_plan("folder", ucf_named, val_fraction=0.2, test_fraction=0.3, seed=5, group_by="ucf101")
    assert {k: [e.rel for e in v] for k, v in plan.splits.items()} == {k: [e.rel for e in v] for k, v in folder.splits.items()}
    test = tmp_path / "test.txt"
    test.write_text(f"{rels[0]} 0\n")
    with pytest.raises(ConfigError, match="a test list was given"):
        make_plan("list", ucf_named, lists={"train": train, "test": test}, test_fraction=0.3)
    with_test = make_plan("list", ucf_named, lists={"train": train, "test": test}, val_fraction=0.2, group_by="ucf101")
    assert set(with_test.splits) == {"train", "val", "test"}
    with pytest.raises(ConfigError, match="from the train list: pass one"):
        make_plan("list", ucf_named, lists={"test": test}, val_fraction=0.2)


def test_fraction_and_format_errors(ucf_named, shared_data):
    with pytest.raises(ConfigError, match="test_fraction must be in"):
        make_plan("folder", ucf_named, test_fraction=1.0)
    with pytest.raises(ConfigError, match="must be below 1"):
        make_plan("folder", ucf_named, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match="official test split"):
        make_plan("ucf101", shared_data, test_fraction=0.2)
    with pytest.raises(ConfigError, match="--group-by"):
        make_plan("ucf101", shared_data, group_by="ucf101")


def _tiny_ucf_named(root: Path) -> Path:
    """Two classes, three groups of two 4-frame 32x24 clips each."""
    for c, name in enumerate(("Walk", "Run")):
        for g in range(1, 4):
            for i in range(1, 3):
                write_video(root / name / f"v_{name}_g{g:02d}_c{i:02d}.avi",
                            panning_frames(4, (1, c), size=(32, 24), seed=g * 10 + i))
    return root


def test_cli_group_by_and_test_fraction_reach_the_manifest_and_guard_resume(tmp_path, capsys):
    source, out = _tiny_ucf_named(tmp_path / "videos"), tmp_path / "out"
    flags = ["--frame-size", "32x24", "--shard-size-mb", "0.001", "--workers", "1", "--no-progress"]
    assert tsn(["convert", str(source), str(out), "--group-by", "ucf101", "--test-fraction", "0.34", *flags]) == 0
    manifest = load_manifest(out)
    assert {name: s["videos"] for name, s in manifest["splits"].items()} == {"train": 8, "test": 4}
    assert manifest["options"]["group_by"] == "ucf101" and manifest["options"]["test_fraction"] == 0.34
    capsys.readouterr()
    assert tsn(["convert", str(source), str(out), "--group-by", "regex:_(g\\d+)_", "--test-fraction", "0.34", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "group_by" in err and "other options" in err
    for bad in (["--group-by", "regex:("], ["--format", "ucf101", "--test-fraction", "0.2"]):
        assert tsn(["convert", str(source), str(tmp_path / "out2"), *bad, *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and ("--group-by" in err or "--test-fraction" in err)
    with pytest.raises(SystemExit) as exit_:
        tsn(["convert", str(source), str(out), "--test-fraction", "a third"])
    assert exit_.value.code == 2


def test_val_carves_are_those_of_earlier_versions(shared_data):
    """Pinned from carve_validation before carve_splits: existing conversions keep their val split."""
    plan = make_plan("ucf101", shared_data, val_fraction=0.2, seed=3, present_classes_only=True)
    assert sorted({(plan.classes[e.label], ucf_group(e.rel)) for e in plan.splits["val"]}) == [
        (name, f"g{g:02d}") for name, groups in (("Archery", (8, 10, 13, 18)), ("BasketballDunk", (8, 9, 20, 21)),
                                                 ("PlayingPiano", (9, 10, 21, 25)), ("PlayingViolin", (12, 15, 19, 24)))
        for g in groups]
    val = make_plan("folder", shared_data / "UCF-101", val_fraction=0.1, seed=7).splits["val"]
    digest = hashlib.sha256("\n".join(e.rel for e in val).encode()).hexdigest()[:16]
    assert (len(val), digest) == (47, "552ea09569aa65ec")
