"""`tsn train` under faults (issue 16): a disk that fills up mid-run.

The run happens in a fresh process (this module is also the script: ``python -m
tests.test_train_faults <case> ...``), because a full disk used to end in a segmentation fault.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300


def _fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full."""
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        except OSError:
            pass


def _disk_full(recipe: str, run_dir: str, fill_after_epoch: str) -> None:
    """`tsn train` whose disk fills up at the end of an epoch (before that epoch's checkpoints)."""
    from tsn_keras import callbacks, cli

    log_epoch = callbacks.EpochLog.on_epoch_end

    def fill_then_log(self, epoch, logs=None):
        log_epoch(self, epoch, logs)
        if epoch == int(fill_after_epoch):
            _fill(Path(run_dir).parent)

    callbacks.EpochLog.on_epoch_end = fill_then_log
    sys.argv = ["tsn", "train", "--config", recipe, "--run-dir", run_dir, "--verbose", "0"]
    cli.entry_point()  # as the console script: leaves at once after the disk-full error


def main(argv: list[str]) -> None:
    case, *args = argv
    sys.exit({"disk_full": _disk_full}[case](*args))


@pytest.mark.slow
def test_disk_full_during_training_is_one_line_and_the_run_resumes(tiny_shards, small_fs, tmp_path):
    from tests.test_training import tiny_config
    from tsn_keras.cli import main as tsn
    from tsn_keras.history import read_rows

    fs = small_fs("128m")  # a tiny TSN and its optimiser state: ~15 MB per weights file
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_config(tiny_shards, train={"max_iterations": 6}).to_yaml())
    run = fs / "run"
    process = subprocess.run([sys.executable, "-m", "tests.test_train_faults", "disk_full", str(recipe), str(run), "1"],
                             cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True,
                             text=True, timeout=TIMEOUT)
    errors = [line for line in process.stderr.splitlines() if line.startswith("tsn train:")]
    assert process.returncode == 2, process.stderr[-4000:]
    assert len(errors) == 1 and "no space left" in errors[0], errors and "Traceback" not in process.stderr
    assert not [p for p in run.rglob("*") if ".tmp" in p.name], "a partial file was left behind"

    assert (fs / "filler").is_file(), errors
    (fs / "filler").unlink()
    assert tsn(["train", "--run-dir", str(run), "--verbose", "0"]) == 0
    assert [int(r["iteration"]) for r in read_rows(run / "history.csv")] == [2, 4, 6]
    assert (run / "model.keras").is_file()


@pytest.mark.slow
def test_the_plan_and_an_eta_are_on_the_console_and_redirected_output_has_no_progress_bar(tiny_shards, tmp_path,
                                                                                           capsys):
    from tests.test_training import tiny_config
    from tsn_keras.cli import main as tsn

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_config(tiny_shards, train={"max_iterations": 6}).to_yaml())
    assert tsn(["train", "--config", str(recipe), "--run-dir", str(tmp_path / "run")]) == 0  # --verbose auto
    out = capsys.readouterr().out  # not a terminal here
    assert "\x1b" not in out and "\r" not in out and "━" not in out
    head = out.splitlines()[:4]
    assert head[0].startswith("run folder ") and "16 training videos, 8 validation videos" in head[2]
    assert "iterations: 6 of 8 clips" in head[3] and "3 epochs" in head[3]
    assert "s per iteration: about" in out and "left for" in out
    assert sum(line.startswith("Epoch ") for line in out.splitlines()) == 3


if __name__ == "__main__":
    main(sys.argv[1:])
