"""The "look inside" step of ``benchmarks/results.py``: a Fig. 3-style grid and one ``tsn explain``.

Kept apart from ``results.py`` (which trains and tests) because it only reads the runs that
step wrote. Given the finished runs (``{name: record}`` with ``run_dir``), it draws:

- a grid of class visualisations (``tsn visualize``) for 2-4 classes, one row per run that
  exists among the paper's three settings, with EfficientNet-Lite0 (``results_pretrained``):
  without pre-training (``pt_rgb_scratch``, ``pt_flow_scratch``), pre-trained only (ImageNet,
  no TSN: a single snippet, ``pt_rgb_k1``) and TSN (``pt_rgb``, ``pt_flow``); a setting whose
  run does not exist is listed as missing;
- one ``tsn explain`` figure (Grad-CAM over the snippets, and the timeline) on a real test clip;

each with the command line that makes it, into ``docs/results/`` as PNGs small enough to keep in
the repository. Finished work is cached in ``<work>/explain.json`` like every other step.

    python -m benchmarks.results_explain --runs results/runs --out /tmp/look   # on its own
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

# Rows of the grid: (run name in results.py, the paper's setting it stands for).
SETTINGS = (
    ("pt_rgb_scratch", "RGB, without pre-training"),
    ("pt_rgb_k1", "RGB, pre-trained only (ImageNet, K = 1)"),
    ("pt_rgb", "RGB, TSN (ImageNet, K = 3)"),
    ("pt_flow_scratch", "flow, without pre-training"),
    ("pt_flow", "flow, TSN (cross-modality, K = 3)"),
)
MAX_FIGURE_BYTES = 300_000


def _shrink(source: Path, target: Path) -> Path:
    """Copy a PNG figure; over the repository's size limit, re-encode it with a 128-colour palette and,
    if that is not enough (pictures drawn from noise hardly compress), scale it down until it fits."""
    shutil.copy(source, target)
    if target.stat().st_size <= MAX_FIGURE_BYTES:
        return target
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        while True:
            image.quantize(colors=128).save(target, optimize=True)
            if target.stat().st_size <= MAX_FIGURE_BYTES or min(image.size) < 200:
                return target
            image = image.resize((int(image.width * 0.85), int(image.height * 0.85)), Image.Resampling.LANCZOS)


def look_inside(work: Path, out_dir: Path, runs: dict[str, dict], clip: Path, classes: list[str], *,
                quick: bool = False) -> dict:
    """Draw the grid and the explain figure; returns ``{"visualize", "explain", "missing"}`` records."""
    from tsn_keras.explain import explain_video
    from tsn_keras.tool_config import DrawConfig
    from tsn_keras.visualize import visualize_runs

    record_path = work / "explain.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    present = [(name, title) for name, title in SETTINGS if name in runs]
    missing = [title for name, title in SETTINGS if name not in runs]
    if record_path.is_file():  # drawn before: only copy the figures again (results.py clears out_dir) ...
        record = json.loads(record_path.read_text())
        if record.get("present") == [name for name, _ in present]:  # ... unless more runs have finished since
            for source, target in record["copies"]:
                _shrink(Path(source), out_dir / target)
            return record
    start = time.perf_counter()
    record: dict = {"missing": missing, "present": [name for name, _ in present], "classes": classes, "copies": []}
    config = DrawConfig(steps=10, octaves=(0.5, 1.0)) if quick else DrawConfig()
    rows = [runs[name]["run_dir"] for name, _ in present]
    if rows:
        look = work / "look" / "visualize"
        result = visualize_runs(rows, classes, look, config, formats=("png",))
        grid = _shrink(look / "visualization.png", out_dir / "visualization.png")
        record["copies"].append([str(look / "visualization.png"), grid.name])
        flags = f"--steps {config.steps} --octaves {' '.join(f'{o:g}' for o in config.octaves)}"
        record["visualize"] = {
            "figure": f"results/{grid.name}", "bytes": grid.stat().st_size,
            "rows": [title for _, title in present],
            "command": f"tsn visualize {rows[0]} --classes {','.join(classes)} --out {look}"
                       + (f" --compare {' '.join(map(str, rows[1:]))}" if len(rows) > 1 else "") + f" {flags}",
            "probabilities": {entry["label"]: {p["class"]: round(p["probability"], 3) for p in entry["pictures"]}
                              for entry in result["runs"]},
        }
    if "pt_rgb" in runs:
        look = work / "look" / "explain"
        flow = runs.get("pt_flow", {}).get("run_dir")
        result = explain_video(clip, runs["pt_rgb"]["run_dir"], flow_model=flow, out_dir=look, formats=("png",))
        figures = {}
        for name in ("rgb_gradcam", "flow_gradcam", "timeline"):
            if (look / f"{name}.png").is_file():
                copy = _shrink(look / f"{name}.png", out_dir / f"explain_{name}.png")
                record["copies"].append([str(look / f"{name}.png"), copy.name])
                figures[name] = f"results/{copy.name}"
        record["explain"] = {
            "figures": figures, "clip": clip.name, "class": result["class"],
            "fused_probability": result["fused"]["probability"],
            "command": f"tsn explain {clip} --model {runs['pt_rgb']['run_dir']}"
                       + (f" --flow-model {flow}" if flow else "") + f" --out {look}",
        }
    record["seconds"] = time.perf_counter() - start
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _relative(command: str) -> str:
    """A command as a reader of the repository would type it: paths relative to its root."""
    repo = Path(__file__).resolve().parents[1]
    return command.replace(f"{repo}/", "").replace(f"{repo.parent}/shared/", "../shared/")


def section(record: dict) -> list[str]:
    """The Markdown section of ``docs/RESULTS.md`` for ``look_inside``'s record."""
    lines = ["## Looking inside the models (Sec. 4.5, Fig. 3)", ""]
    visual = record.get("visualize")
    if visual:
        lines += [
            f"Class visualisations drawn from noise by gradient ascent (`tsn visualize`), for "
            f"{', '.join(record['classes'])}; rows: {'; '.join(visual['rows'])}. "
            "The paper's rows are without pre-training, with pre-training only, and with TSN. "
            + (f"missing here: {'; '.join(record['missing'])} (not trained yet when this was drawn, or, for "
               "flow, no K = 1 run). " if record["missing"] else "")
            + "All rows are EfficientNet-Lite0 at 112 px. The paper reports little visual structure without "
              "pre-training and, with TSN, pictures that focus on the people and the action; above each picture "
              "is the probability its model gives the target class.",
            "",
            f"`{_relative(visual['command'])}`",
            "",
            f"![class visualisations]({visual['figure']})",
            "",
        ]
    explained = record.get("explain")
    if explained:
        lines += [
            f"Grad-CAM over the 25 test snippets of {explained['clip']} for the predicted class "
            f"{explained['class']!r} (fused probability {100 * explained['fused_probability']:.1f}%), and each "
            "snippet's class probabilities along the clip (`tsn explain`):",
            "",
            f"`{_relative(explained['command'])}`",
            "",
            *[f"![{name}]({path})" for name, path in explained["figures"].items()],
            "",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.results_explain", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="results.py's runs folder (<work>/runs)")
    parser.add_argument("--clip", type=Path, required=True, help="a test video")
    parser.add_argument("--classes", required=True, help="2-4 class names, comma-separated")
    parser.add_argument("--out", type=Path, required=True, help="where the figures and explain.json go")
    parser.add_argument("--quick", action="store_true", help="a few drawing steps: a smoke run")
    args = parser.parse_args(argv)
    runs = {path.name: {"run_dir": str(path)} for path in sorted(args.runs.iterdir()) if (path / "model.keras").is_file()}
    record = look_inside(args.out, args.out / "results", runs, args.clip, args.classes.split(","), quick=args.quick)
    print("\n".join(section(record)))


if __name__ == "__main__":
    main()
