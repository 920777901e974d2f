"""Run every benchmark (``benchmarks/bench_*.py``) in turn and print their tables.

    python -m benchmarks.run_all              # or: make bench
    python -m benchmarks.run_all --quick      # each benchmark's smoke run (seconds each)
    python -m benchmarks.run_all --only pipeline,folding

Each benchmark runs in its own process, as ``python -m benchmarks.<name>`` would, so that one
does not measure what another left behind (TensorFlow's thread pools, traced functions,
memory). A new ``bench_*.py`` file is picked up without being listed here. The exit code is 1
when any benchmark failed; the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmark_names() -> list[str]:
    """The module names of the benchmarks: every ``bench_*.py`` beside this file, sorted."""
    return sorted(path.stem for path in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (a smoke run)")
    parser.add_argument("--only", default=None,
                        help="comma-separated benchmarks to run, with or without the bench_ prefix (default: all)")
    args = parser.parse_args(argv)
    names = benchmark_names()
    if args.only:
        wanted = {name.strip().removeprefix("bench_") for name in args.only.split(",") if name.strip()}
        unknown = wanted - {name.removeprefix("bench_") for name in names}
        if unknown:
            parser.error(f"no benchmark named {', '.join(sorted(unknown))} (have: {', '.join(names)})")
        names = [name for name in names if name.removeprefix("bench_") in wanted]
    failed = []
    for name in names:
        command = [sys.executable, "-m", f"benchmarks.{name}"] + (["--quick"] if args.quick else [])
        print(f"\n== python -m benchmarks.{name}{' --quick' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, cwd=HERE.parent).returncode
        print(f"== {name}: {'ok' if code == 0 else f'FAILED (exit code {code})'} in {time.perf_counter() - start:.0f} s",
              flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
