"""The benchmarks run: every Makefile target names a module that exists, and every
``benchmarks/bench_*.py`` finishes its ``--quick`` smoke run and prints its table."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from benchmarks import run_all
from tests.conftest import REPO

BENCHMARKS = sorted(path.stem for path in (REPO / "benchmarks").glob("bench_*.py"))
NUMBER = r"[\d.]+"
# What each benchmark's table must show; a benchmark not listed here must print at least one ratio.
PRINTED = {
    "bench_backbones": [rf"^\s+tiny\s+{NUMBER} frames/s\s+{NUMBER} M trainable\s+{NUMBER} x \w+"],
    "bench_convert": [rf"RGB conversion, 1 worker:\s+{NUMBER} frames/s = {NUMBER} x the bound",
                      rf"RGB conversion, 2 workers:\s+{NUMBER} frames/s = {NUMBER} x 1 worker",
                      rf"^flow tvl1\s+{NUMBER} frames/s = {NUMBER} x dis",
                      rf"^warped flow \(dis\)\s+{NUMBER} frames/s = {NUMBER} x plain dis"],
    "bench_folding": [rf"folded / stock TimeDistributed \(S unknown, vectorized_map\): {NUMBER}x",
                      rf"folded / stock TimeDistributed \(S fixed to K, unrolled\):\s+{NUMBER}x"],
    "bench_pipeline": [rf"ratio pipeline x3 / bare decode loop:\s+{NUMBER}",
                       rf"ratio 1000-frame / 100-frame clips/s:\s+{NUMBER}",
                       rf"parallel decode, device_resize: {NUMBER}",
                       rf"streamed reader .* ratio {NUMBER}",
                       r"peak memory of the pipeline .*: \d+ MB anonymous"],
    "bench_peers": [rf"bn_inception\s+training\s+keras\s+{NUMBER} frames/s .* ratio {NUMBER}x",
                    rf"bn_inception\s+testing\s+keras\s+{NUMBER} frames/s .* ratio {NUMBER}x",
                    r"efficientnet_lite0\s+(training|not available)", rf"peak: .* = {NUMBER} GFLOP/s"],
    "bench_evaluate": [rf"ratio evaluate / bare forward pass \(frames/s\): {NUMBER}"],
    "bench_training": [rf"CaffeSGD \(L2 \+ clipping\) time / stock SGD time: {NUMBER}x",
                       *[rf"speed of {v} relative to caffe_sgd: {NUMBER}x" for v in ("accumulated", "bfloat16", "xla")]],
}
ANY_RATIO = rf"\d\.\d+ ?x\b|ratio:? +{NUMBER}"
NEEDS_SHARED_DATA = {"bench_pipeline"}  # real UCF101 frames; the others fall back to synthetic input
QUICK_TIMEOUT_S = 300  # a few seconds each on idle cores; a loaded shared machine is several times slower


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose package is missing
        return False


def test_module_lookup_tells_missing_modules():
    assert _module_exists("benchmarks.run_all") and _module_exists("pytest")
    assert not _module_exists("benchmarks.no_such_benchmark") and not _module_exists("no_such_package.run")


def test_every_python_module_the_makefile_runs_exists():
    makefile = (REPO / "Makefile").read_text()
    modules = set(re.findall(r"python\)?\s+-m\s+([A-Za-z_][\w.]*)", makefile, flags=re.IGNORECASE))
    assert {"benchmarks.run_all", "benchmarks.results", "pytest"} <= modules, modules  # the pattern finds them
    missing = sorted(name for name in modules if not _module_exists(name))
    assert not missing, f"the Makefile runs modules that do not exist: {', '.join(missing)}"


def test_run_all_runs_every_benchmark_file_and_forwards_quick(monkeypatch, capsys):
    assert run_all.benchmark_names() == BENCHMARKS
    assert {"bench_backbones", "bench_convert", "bench_folding", "bench_pipeline", "bench_training"} <= set(BENCHMARKS)
    commands = []

    def fake_run(command, cwd):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1 if command[2] == "benchmarks.bench_folding" else 0)

    monkeypatch.setattr(run_all.subprocess, "run", fake_run)
    assert run_all.main(["--quick"]) == 1  # one failed; the others still ran
    assert [c[2] for c in commands] == [f"benchmarks.{name}" for name in BENCHMARKS]
    assert all(c[0] == sys.executable and c[1] == "-m" and c[3:] == ["--quick"] for c in commands)
    out = capsys.readouterr()
    assert "bench_folding: FAILED (exit code 1)" in out.out and "failed: bench_folding" in out.err
    commands.clear()
    assert run_all.main(["--only", "pipeline,bench_convert"]) == 0
    assert commands == [[sys.executable, "-m", "benchmarks.bench_convert"],
                        [sys.executable, "-m", "benchmarks.bench_pipeline"]]
    with pytest.raises(SystemExit):
        run_all.main(["--only", "no_such"])
    assert "no benchmark named no_such" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_run_prints_its_table(name, request):
    if name in NEEDS_SHARED_DATA:
        request.getfixturevalue("shared_data")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=QUICK_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    out = result.stdout
    for pattern in PRINTED.get(name, [ANY_RATIO]):
        assert re.search(pattern, out, flags=re.MULTILINE), f"{name} --quick did not print /{pattern}/:\n{out}"
    assert not re.search(r"\bnan\b|\binf\b", out), f"{name} --quick printed a non-finite figure:\n{out}"


@pytest.mark.slow
def test_gpu_script_dry_run_prints_its_table():
    """``benchmarks/gpu.py --dry-run``: every GPU measurement, on CPU at tiny sizes, one table."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--dry-run"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=2 * QUICK_TIMEOUT_S)  # five benchmarks in one
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    out = result.stdout[result.stdout.index("benchmarks.gpu on"):]
    for pattern in (rf"training tiny float32 \+ XLA\s+{NUMBER} frames/s", rf"training tiny bfloat16\s+{NUMBER} frames/s",
                    rf"folded / stock TimeDistributed \(S unknown\)\s+{NUMBER}x",
                    rf"input pipeline, float views, \d+ host cores .* {NUMBER} clips/s = {NUMBER}x",
                    rf"input pipeline, uint8 crops, device_resize, .* {NUMBER} clips/s = {NUMBER}x",
                    rf"evaluation, 5 snippets x 10 crops\s+{NUMBER} videos/s = {NUMBER}x",
                    r"TV-L1"):
        assert re.search(pattern, out), f"gpu.py --dry-run did not print /{pattern}/:\n{out}"
    assert not re.search(r"\bnan\b|\binf\b", out), out


def test_bench_flow_takes_a_frame_size_and_refuses_a_malformed_one(capsys):
    import pytest

    from benchmarks import bench_flow

    assert bench_flow._size("170x128") == (170, 128)
    for bad in ("170", "axb", "8x8"):
        with pytest.raises(SystemExit):
            bench_flow.main(["--size", bad])
        assert "--size" in capsys.readouterr().err
