"""`tsn demo`: the whole TSN workflow on the built-in synthetic dataset, in a few minutes on a CPU.

Steps, each through the library's real entry points: generate videos (``tsn_keras.synthetic``)
-> convert them to shards with RGB and optical flow (``tfrecords_tools.convert``) -> train an RGB
and a flow TSN (``tsn_keras.training``, recipes ``demo_rgb`` / ``demo_flow``) -> evaluate both
with the 25-snippet, 10-crop protocol -> fuse the streams -> export a SavedModel -> plot.
Everything goes under one run folder, named at the end with a table of per-stream accuracy.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tsn_keras.synthetic import CLASSES

# Smaller everything for the test suite's end-to-end check (`quick=True`).
QUICK_VIDEOS = {"train": 10, "val": 2, "test": 4}
QUICK_OVERRIDES = ["train.max_iterations=40", "evaluate.num_snippets=5", "evaluate.num_crops=1"]


@dataclass
class DemoResult:
    run_dir: Path
    accuracy: dict[str, dict[str, float]]  # stream -> {"all", "appearance", "motion"} accuracy
    artifacts: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _accuracy_by_cue(metrics: dict) -> dict[str, float]:
    """Overall accuracy and the mean per-class accuracy of the appearance and of the motion classes."""
    per_class = metrics["per_class"]
    out = {"all": float(metrics["top1"])}
    for cue in ("appearance", "motion"):
        values = [per_class[c.name] for c in CLASSES if c.cue == cue and c.name in per_class]
        out[cue] = float(sum(values) / len(values)) if values else float("nan")
    return out


def format_table(result: DemoResult, protocol: str) -> str:
    lines = [
        f"{'stream':<12}{'accuracy':>10}{'appearance classes':>21}{'motion classes':>17}",
    ]
    for stream, acc in result.accuracy.items():
        lines.append(f"{stream:<12}{acc['all']:>10.1%}{acc['appearance']:>21.1%}{acc['motion']:>17.1%}")
    lines.append(f"({protocol})")
    return "\n".join(lines)


def run_demo(run_dir: str | Path | None = None, *, quick: bool = False, workers: int = 2, seed: int = 0,
             verbose: bool = True) -> DemoResult:
    """Run the demo into ``run_dir`` (default ``runs/demo-<timestamp>``) and return its results."""
    from tfrecords_tools.convert import convert_dataset
    from tsn_keras.config import load_config
    from tsn_keras.evaluation import evaluate
    from tsn_keras.export import export_saved_model
    from tsn_keras.plots import plot_confusion, plot_history
    from tsn_keras.scores import fuse
    from tsn_keras.synthetic import generate_dataset
    from tsn_keras.training import train

    run = Path(run_dir or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S"))
    run.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    artifacts: dict[str, Path] = {}

    def say(text: str) -> None:
        if verbose:
            print(f"\n== {text}", flush=True)

    start = time.perf_counter()
    say("1/6 generating the synthetic dataset (8 classes: 4 by appearance, 4 by motion)")
    info = generate_dataset(run / "videos", videos_per_class=QUICK_VIDEOS if quick else None, seed=seed,
                            progress=verbose)
    artifacts["videos"] = run / "videos"
    seconds["generate"] = time.perf_counter() - start

    t = time.perf_counter()
    say("2/6 converting to TFRecord shards: RGB and optical flow (DIS, the fast CPU option)")
    shards = run / "shards"
    convert_dataset(run / "videos", shards, format="list", lists=info["lists"], classes_file=info["classes_file"],
                    modalities=("rgb", "flow"), flow="dis", frame_size=None, short_side=None,
                    workers=workers, seed=seed, progress=verbose)
    artifacts["shards"] = shards
    seconds["convert"] = time.perf_counter() - t

    metrics: dict[str, dict] = {}
    score_files = []
    for step, stream in ((3, "rgb"), (4, "flow")):
        t = time.perf_counter()
        say(f"{step}/6 training and evaluating the {stream.upper() if stream == 'rgb' else stream} TSN")
        overrides = [f"data.root={shards}", f"train.output_dir={run}", f"train.seed={seed}"]
        config = load_config(f"demo_{stream}", overrides + (QUICK_OVERRIDES if quick else []))
        result = train(config, run_dir=run / stream, verbose="auto" if verbose else 0)
        artifacts[f"{stream} run"] = result.run_dir
        out = run / "eval" / stream
        metrics[stream] = evaluate(result.run_dir, output_dir=out)  # the recipe's evaluate: section
        score_files.append(out / "scores.npz")
        seconds[stream] = time.perf_counter() - t

    t = time.perf_counter()
    say("5/6 fusing the two streams (RGB 1 : flow 1.5) and exporting the RGB model as a SavedModel")
    metrics["fused"] = fuse(score_files, output_dir=run / "eval" / "fused")
    export_dir = export_saved_model(artifacts["rgb run"], run / "export")
    artifacts["SavedModel"] = Path(export_dir)
    artifacts["scores"] = run / "eval"
    seconds["fuse+export"] = time.perf_counter() - t

    t = time.perf_counter()
    say("6/6 plotting")
    plots = run / "plots"
    for stream in ("rgb", "flow"):
        plot_history(artifacts[f"{stream} run"] / "history.csv", plots / stream)
    plot_confusion(run / "eval" / "fused" / "metrics.json", plots / "fused")
    artifacts["plots"] = plots
    seconds["plots"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start

    accuracy = {
        "RGB": _accuracy_by_cue(metrics["rgb"]),
        "flow": _accuracy_by_cue(metrics["flow"]),
        "RGB + flow": _accuracy_by_cue(metrics["fused"]),
    }
    result = DemoResult(run, accuracy, artifacts, seconds)
    (run / "demo.json").write_text(json.dumps(
        {"accuracy": accuracy, "seconds": seconds, "artifacts": {k: str(v) for k, v in artifacts.items()}},
        indent=2) + "\n")
    return result
