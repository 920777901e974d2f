"""The SavedModel export, loaded in a fresh Python process that cannot import tsn_keras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.test_evaluation import INPUT_SIZE, make_run, save_image_classifier
from tsn_keras.cli import main

# Runs with -I (no PYTHONPATH, no script folder on sys.path) and -S (no site: the editable
# install's .pth hook that would make tsn_keras importable is never run); only the folder of
# installed packages is put back, so TensorFlow loads and tsn_keras does not.
SERVE_SCRIPT = textwrap.dedent("""
    import importlib.util, sys
    site_packages, request, result = sys.argv[1:4]
    sys.path.append(site_packages)
    assert importlib.util.find_spec("tsn_keras") is None, "tsn_keras must not be importable here"
    assert importlib.util.find_spec("tests") is None
    import numpy as np
    import tensorflow as tf
    jobs = np.load(request, allow_pickle=False)
    out = {}
    for name in ("rgb", "flow"):
        served = tf.saved_model.load(str(jobs[name + "_path"]))
        sig = served.signatures
        out[name + "_classes"] = sig["class_names"]()["class_names"].numpy().astype(str)
        out[name + "_snippets"] = sig["serving_default"](snippets=tf.constant(jobs[name + "_snippets"]))["logits"].numpy()
        inputs = ("frames",) if name == "rgb" else ("flow_x", "flow_y")
        for v in range(2):
            feed = {k: tf.constant(jobs[f"{name}_{k}_{v}"]) for k in inputs}
            answer = sig["serve_jpeg_frames"](**feed)
            out[f"{name}_jpeg_{v}"] = answer["logits"].numpy()
            out[f"{name}_prob_{v}"] = answer["probabilities"].numpy()
    np.savez(result, **out)
""")


def video_jpegs(root: Path, video_id: str, key: str) -> np.ndarray:
    """The JPEG bytes of one stored frame list, read through the shard's byte index."""
    from tfrecords_tools.shards import ShardIndex, index_path

    for shard in sorted(root.glob("test/*.tfrecord")):
        index = ShardIndex.load(index_path(shard))
        hits = np.flatnonzero(index.video_id == video_id)
        if len(hits):
            i = int(hits[0])
            start, count = int(index.start(key)[i]), int(index.count[key][i])
            data = shard.read_bytes()
            spans = zip(index.offset[key][start:start + count], index.length[key][start:start + count])
            return np.array([data[o:o + n] for o, n in spans], dtype=object)
    raise AssertionError(f"{video_id} not in {root}")


@pytest.mark.slow
def test_saved_model_matches_keras_in_a_fresh_process(tiny_shards, tmp_path):
    from tsn_keras.runs import load_run
    from tsn_keras.scores import Scores

    runs = {"rgb": make_run(tmp_path / "rgb", tiny_shards, "rgb", consensus="max", seed=3),
            "flow": make_run(tmp_path / "flow", tiny_shards, "flow", consensus="attention", seed=4)}
    jobs, expected = {}, {}
    rng = np.random.default_rng(0)
    for name, run in runs.items():
        # The JPEG signature must give what `tsn evaluate` gives: same sampling, crops and averaging.
        assert main(["evaluate", str(run), "--snippets", "25", "--crops", "10", "--out", str(tmp_path / f"eval_{name}")]) == 0
        scores = Scores.load(tmp_path / f"eval_{name}" / "scores.npz")
        assert main(["export", str(run), "--out", str(tmp_path / f"export_{name}")]) == 0
        jobs[f"{name}_path"] = str(tmp_path / f"export_{name}" / "saved_model")
        model = load_run(run).model
        channels = 3 if name == "rgb" else 10
        snippets = rng.normal(size=(2, 7, INPUT_SIZE, INPUT_SIZE, channels)).astype("float32")
        jobs[f"{name}_snippets"] = snippets
        expected[f"{name}_snippets"] = np.asarray(model(snippets))
        for v, vid in enumerate(scores.video_ids[:2]):
            keys = {"frames": "rgb"} if name == "rgb" else {"flow_x": "flow_x", "flow_y": "flow_y"}
            for input_name, key in keys.items():
                jobs[f"{name}_{input_name}_{v}"] = video_jpegs(tiny_shards, vid, key).astype(bytes)
            expected[f"{name}_jpeg_{v}"] = scores.logits[v][None]
        info = json.loads((tmp_path / f"export_{name}" / "export.json").read_text())
        assert info["modality"] == name and info["num_crops"] == 10 and info["class_names"] == scores.class_names
        assert (tmp_path / f"export_{name}" / "model.keras").is_file()

    np.savez(tmp_path / "request.npz", **jobs)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SERVE_SCRIPT, sysconfig.get_paths()["purelib"],
         str(tmp_path / "request.npz"), str(tmp_path / "result.npz")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = np.load(tmp_path / "result.npz")
    for name in runs:
        assert list(result[f"{name}_classes"]) == [f"class{c}" for c in range(4)]
        np.testing.assert_allclose(result[f"{name}_snippets"], expected[f"{name}_snippets"], atol=1e-4, rtol=0)
        for v in range(2):
            np.testing.assert_allclose(result[f"{name}_jpeg_{v}"], expected[f"{name}_jpeg_{v}"], atol=1e-4, rtol=0)
            probabilities = result[f"{name}_prob_{v}"]
            np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)
            assert probabilities.argmax() == expected[f"{name}_jpeg_{v}"].argmax()
        assert np.abs(expected[f"{name}_snippets"]).max() > 0.5  # a comparison of logits of order 1, not ~0

    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run([str(cli), "show", "--all", "--dir", jobs["flow_path"]], capture_output=True, text=True,
                           timeout=300, env=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for signature in ("serving_default", "serve_jpeg_frames", "class_names"):
        assert f"signature_def['{signature}']" in shown.stdout
    assert "inputs['flow_x']" in shown.stdout and "inputs['snippets']" in shown.stdout


def test_export_errors_exit_2(tiny_shards, tmp_path, capsys):
    image = save_image_classifier(tmp_path / "image.keras")
    assert main(["export", str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is not a TSN written by tsn-keras" in err and "Traceback" not in err
    run = make_run(tmp_path / "run", tiny_shards, history=False)
    (run / "classes.json").unlink()
    (tmp_path / "two.txt").write_text("a\nb\n")
    assert main(["export", str(run), "--out", str(tmp_path / "out"), "--classes", str(tmp_path / "two.txt")]) == 2
    assert "4 classes but 2 class names" in capsys.readouterr().err
    assert not (tmp_path / "out" / "saved_model").exists()
