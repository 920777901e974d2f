"""`tsn demo --quick`: every stage runs through the real entry points and leaves its artifacts."""

import json

import numpy as np
import pytest
from matplotlib import image

from tsn_keras.cli import main


@pytest.mark.slow
def test_quick_demo_writes_every_artifact_and_the_table(tmp_path, capsys):
    run = tmp_path / "demo"
    assert main(["demo", "--quick", "--run-dir", str(run), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    for stream in ("RGB ", "flow ", "RGB + flow "):
        assert f"\n{stream}" in out
    assert f"everything is under {run}" in out
    assert (run / "shards" / "manifest.json").is_file()
    manifest = json.loads((run / "shards" / "manifest.json").read_text())
    assert manifest["modalities"] == ["rgb", "flow"]
    assert {split: info["videos"] for split, info in manifest["splits"].items()} == {"train": 80, "val": 16, "test": 32}
    for stream in ("rgb", "flow"):
        assert (run / stream / "model.keras").is_file()
        assert (run / "eval" / stream / "scores.npz").is_file()
    assert (run / "export" / "saved_model" / "saved_model.pb").is_file()
    fused = json.loads((run / "eval" / "fused" / "metrics.json").read_text())
    assert fused["num_videos"] == 32
    summary = json.loads((run / "demo.json").read_text())
    assert set(summary["accuracy"]) == {"RGB", "flow", "RGB + flow"}
    pngs = sorted((run / "plots").rglob("*.png"))
    assert len(pngs) >= 3
    for png in pngs:
        pixels = image.imread(png)
        assert pixels.shape[0] > 200 and np.std(pixels) > 0.01
