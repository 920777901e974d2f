"""The experiment steps of ``benchmarks.results``: convert the UCF101 subset, train and test a
recipe, fuse streams, and format a row. Each step keeps its record under the work folder and is
reused when the results are regenerated, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TSN_SHARED_DATA", REPO.parent / "shared" / "data"))
FRAME_SIZE = (170, 128)  # half the paper's 340x256: the CPU recipes crop 112 px where the paper crops 224
TVL1_SHARD_MB = 16  # ~5% of the subset's TV-L1 flow per shard: hours of work, resumed shard by shard
# The UCF101 subset every results conversion makes (the same split: videos, order, val carve-out).
SUBSET = dict(format="ucf101", split=1, present_classes_only=True, val_fraction=0.2, frame_size=FRAME_SIZE)
QUICK_OVERRIDES = ["train.max_iterations=6", "train.lr_steps=[4]", "train.validate_every=1"]


@dataclass
class Experiment:
    name: str
    title: str
    recipe: str
    overrides: list[str] = field(default_factory=list)
    crops: tuple[int, ...] = (1,)


def log(text: str) -> None:
    print(f"[results {time.strftime('%H:%M:%S')}] {text}", flush=True)


def record_json(path: Path, data=None):
    if data is None:
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


# --- the steps ------------------------------------------------------------------------------------

def convert(work: Path, workers: int) -> dict:
    from tfrecords_tools.convert import convert_dataset

    out = work / "ucf101_subset"
    record = work / "convert.json"
    if record.is_file() and (out / "manifest.json").is_file():
        return record_json(record)
    log(f"converting {SHARED_DATA / 'UCF-101'} -> {out}")
    start = time.perf_counter()
    manifest = convert_dataset(SHARED_DATA, out, **SUBSET, modalities=("rgb", "flow"), flow="dis", workers=workers)
    seconds = time.perf_counter() - start
    return record_json(record, {"root": str(out), "seconds": seconds, **_summary(manifest),
                                "classes": manifest["classes"], "rejects": len(manifest["rejects"]),
                                "workers": workers})


def _summary(manifest: dict) -> dict:
    """Videos per split and frames in all of a conversion's manifest."""
    return {"splits": {name: info["videos"] for name, info in manifest["splits"].items()},
            "frames": sum(info["frames"]["total"] for info in manifest["splits"].values())}


def convert_tvl1(work: Path, workers: int) -> dict:
    """The flow of the same subset and split with the paper's TV-L1, on the TensorFlow engine
    (issue: the TV-L1 flow TSN beside the DIS one). Hours on 2 cores, so resumable: the
    conversion continues from its journal, and its wall time adds up over the attempts
    (``convert_tvl1.seconds`` is updated every 30 s while it runs)."""
    import threading

    from tfrecords_tools.convert import convert_dataset

    out, record, spent_file = work / "ucf101_subset_tvl1", work / "convert_tvl1.json", work / "convert_tvl1.seconds"
    if record.is_file() and (out / "manifest.json").is_file():
        return record_json(record)
    spent = float(spent_file.read_text()) if spent_file.is_file() else 0.0
    log(f"converting {SHARED_DATA / 'UCF-101'} -> {out} (TV-L1, TensorFlow engine; {spent / 3600:.1f} h spent so far)")
    start, done = time.perf_counter(), threading.Event()

    def keep_time():
        while not done.wait(30):
            spent_file.write_text(f"{spent + time.perf_counter() - start:.1f}\n")

    clock = threading.Thread(target=keep_time, daemon=True)
    clock.start()
    try:
        manifest = convert_dataset(SHARED_DATA, out, **SUBSET, modalities=("flow",), flow="tvl1", flow_engine="tf",
                                   workers=workers, progress=False,
                                   # Small shards: a shard is the unit a resumed conversion keeps.
                                   shard_size_mb=TVL1_SHARD_MB)
    finally:
        done.set()
        spent_file.write_text(f"{spent + time.perf_counter() - start:.1f}\n")
    return record_json(record, {"root": str(out), "seconds": float(spent_file.read_text()), **_summary(manifest),
                                "flow": "tvl1", "engine": "tf", "workers": workers, "commit": _commit()})


def compare_flow_engines(work: Path) -> dict:
    """Frame pairs/s of the TensorFlow TV-L1 engine against OpenCV's, side by side on 16 real
    pairs at the subset's frame size (``benchmarks.bench_flow``): what converting the subset with
    OpenCV's TV-L1 would take, without spending the hours."""
    from benchmarks import bench_flow

    record = work / "flow_engines.json"
    if record.is_file():
        return record_json(record)
    log(f"timing the TV-L1 engines side by side at {FRAME_SIZE[0]}x{FRAME_SIZE[1]}")
    result = bench_flow.run(pairs=16, batch_sizes=(1,), size=FRAME_SIZE)
    return record_json(record, {**result["rows"][0], "size": list(FRAME_SIZE), "pairs": result["pairs"],
                                "agreement": result["agreement"]})


def run_experiment(exp: Experiment, work: Path, data_root: str, quick: bool) -> dict:
    """Train and test ``exp`` (or reuse its record), in a process of its own.

    One process per experiment: memory that a training run or the 10-crop test leaves behind
    (TensorFlow's caches, retraced functions) accumulated over a dozen runs in one process and
    ended one results job out of memory (24 GB on a 24 GB machine).
    """
    import subprocess
    import sys

    record = work / "runs" / f"{exp.name}.json"
    if not record.is_file() or _untested(record_json(record), exp):
        spec = json.dumps({"name": exp.name, "title": exp.title, "recipe": exp.recipe, "overrides": exp.overrides,
                           "crops": list(exp.crops)})
        command = [sys.executable, "-m", "benchmarks.experiments", spec, str(work), data_root, *(["--quick"] if quick else [])]
        if subprocess.run(command, cwd=REPO).returncode != 0 or not record.is_file():
            raise SystemExit(f"experiment {exp.name} failed (its output is above); rerun to resume")
    return record_json(record)


def _untested(record: dict, exp: Experiment) -> list[int]:
    """The crop counts ``exp`` asks for that ``record`` has no test of yet."""
    return [crops for crops in exp.crops if str(crops) not in record["evaluations"]]


def _test(exp: Experiment, work: Path, data_root: str, quick: bool, crops: int) -> dict:
    """The test split's scores of the trained ``exp`` with ``crops`` crops per snippet."""
    from tsn_keras.evaluation import evaluate

    log(f"testing {exp.name}: 25 snippets x {crops} crop(s)")
    start, out = time.perf_counter(), work / "eval" / exp.name / f"crops{crops}"
    metrics = evaluate(work / "runs" / exp.name, data_root, "test", num_snippets=5 if quick else 25, num_crops=crops,
                       batch_size=4, output_dir=out)
    return {"top1": metrics["top1"], "top5": metrics["top5"], "mean_class_accuracy": metrics["mean_class_accuracy"],
            "per_class": metrics["per_class"], "seconds": time.perf_counter() - start,
            "scores": str(out / "scores.npz"), "metrics": str(out / "metrics.json")}


def _run_experiment_here(exp: Experiment, work: Path, data_root: str, quick: bool) -> dict:
    from tsn_keras.config import load_config
    from tsn_keras.training import train

    record = work / "runs" / f"{exp.name}.json"
    if record.is_file():  # finished; a test with more crops may have been asked for since
        done = record_json(record)
        for crops in _untested(done, exp):
            done["evaluations"][str(crops)] = _test(exp, work, data_root, quick, crops)
        return record_json(record, done)
    run_dir = work / "runs" / exp.name
    trained = work / "runs" / f"{exp.name}.trained.json"  # training finished, testing not (yet)
    overrides = [f"data.root={data_root}", f"train.output_dir={work / 'runs'}", *exp.overrides]
    config = load_config(exp.recipe, overrides + (QUICK_OVERRIDES if quick else []))
    if trained.is_file() and (run_dir / "model.keras").is_file():
        log(f"reusing the trained {exp.name}")
        train_record = record_json(trained)
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an interrupted training: retrain from scratch so the wall time is honest
        log(f"training {exp.name}: {exp.recipe} {' '.join(exp.overrides)}")
        start = time.perf_counter()
        result = train(config, run_dir=run_dir, verbose=2)
        train_record = record_json(trained, {"train_seconds": time.perf_counter() - start,
                                             "history": {k: list(map(float, v)) for k, v in result.history.items()}})
    train_seconds = train_record["train_seconds"]
    evaluations = {str(crops): _test(exp, work, data_root, quick, crops) for crops in exp.crops}
    history = train_record["history"]
    val = [v for v in history.get("val_accuracy", []) if v == v]
    return record_json(record, {
        "name": exp.name, "title": exp.title, "recipe": exp.recipe, "overrides": exp.overrides,
        "backbone": config.model.backbone, "input_size": config.data.input_size,
        "weights": config.model.weights, "num_segments": config.data.num_segments,
        "iterations": config.train.max_iterations, "batch_size": config.train.batch_size,
        "lr": config.train.lr, "lr_steps": list(config.train.lr_steps), "clip_norm": config.train.clip_norm,
        "dropout": config.model.resolved_dropout(config.data.modality), "consensus": config.model.consensus,
        "partial_bn": config.model.partial_bn,
        "epochs": len(history.get("loss", [])), "train_seconds": train_seconds,
        "final_train_loss": history["loss"][-1] if history.get("loss") else None,
        "final_val_accuracy": val[-1] if val else None,
        "run_dir": str(run_dir), "evaluations": evaluations, "commit": _commit(),
    })


def _commit() -> str | None:
    """The commit the step ran at (a reused record says which code produced it)."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def fuse_streams(work: Path, runs: dict[str, dict], fusions) -> dict[str, dict]:
    """Fuse the 10-crop scores of each ``(name, title, streams, weights)`` in ``fusions``."""
    from tsn_keras.scores import fuse

    out = {}
    for name, title, streams, weights in fusions:
        files = [runs[s]["evaluations"]["10"]["scores"] for s in streams]
        metrics = fuse(files, weights=list(weights), output_dir=work / "eval" / name)
        out[name] = {"title": title, "streams": list(streams), "top1": metrics["top1"],
                     "mean_class_accuracy": metrics["mean_class_accuracy"],
                     "metrics": str(work / "eval" / name / "metrics.json"),
                     "seconds": sum(runs[s]["train_seconds"] + runs[s]["evaluations"]["10"]["seconds"]
                                    for s in streams)}
    return out


# --- formatting -------------------------------------------------------------------------------------

def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def row(run: dict, crops: str = "1") -> str:
    ev = run["evaluations"][crops]
    pretraining = "none" if run["weights"] is None else run["weights"]
    return (f"| {run['title']} | {pct(ev['top1'])} | {pct(ev['mean_class_accuracy'])} | {run['backbone']} | "
            f"{run['input_size']} | K={run['num_segments']} | {pretraining} | {run['epochs']} | "
            f"{minutes(run['train_seconds'] + ev['seconds'])} |")


TABLE_HEAD = ("| experiment | top-1 | mean class | backbone | input | segments | pre-training | epochs | wall time |\n"
              "|---|---|---|---|---|---|---|---|---|")


def compare(a: float, b: float, better: str, worse: str, same: str, margin: float = 0.01) -> str:
    if a - b > margin:
        return better
    if b - a > margin:
        return worse
    return same


if __name__ == "__main__":  # one experiment in this process: python -m benchmarks.experiments SPEC WORK DATA [--quick]
    import sys

    values = json.loads(sys.argv[1])
    values["crops"] = tuple(values["crops"])
    _run_experiment_here(Experiment(**values), Path(sys.argv[2]), sys.argv[3], "--quick" in sys.argv[4:])
