"""Packaging facts: import without TensorFlow, the `tsn` command's dispatch and its error contract."""

import subprocess
import sys
from pathlib import Path

import pytest

from tsn_keras import cli
from tsn_keras.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_import_without_tensorflow_is_one_clear_sentence():
    # -S drops site-packages (and with it TensorFlow); only the repo is importable.
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import tsn_keras"],
        cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO)},
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: tsn-keras needs TensorFlow >= 2.16")
    assert "tsn-keras[cpu]" in last_line and "tsn-keras[gpu]" in last_line


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_every_command_has_a_parser_and_a_runner():
    for name in cli.COMMANDS:
        parser = cli.build_parser(name)
        assert parser.prog == f"tsn {name}"
        assert callable(parser.get_default("_run"))


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys):
    def failing_run(args):
        raise ConfigError("train.lr must be > 0, got -1")

    parser = cli.build_parser("fuse")
    parser.set_defaults(_run=failing_run)
    monkeypatch.setattr(cli, "build_parser", lambda name: parser)
    code = cli.main(["fuse", "a.npz", "b.npz"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "tsn fuse: error: train.lr must be > 0, got -1\n"


def test_console_script_is_installed():
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "tsn"), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("tsn-keras ")
