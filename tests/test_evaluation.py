"""Metrics, score files and fusion on hand-made scores; the CLI's errors for `tsn fuse`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tsn_keras.cli import main
from tsn_keras.errors import ConfigError, DataError
from tsn_keras.evaluation import average_logits, video_scorer
from tsn_keras.scores import Scores, compute_metrics, default_fusion_weights, fuse, fuse_scores

CLASSES = ["a", "b", "c"]
INPUT_SIZE = 32


def make_model(num_classes=4, modality="rgb", consensus="avg", input_size=INPUT_SIZE, seed=0):
    """A tiny TSN whose classifier gives logits of order 1 (the paper's N(0, 0.001) init gives ~1e-4,
    too small for comparisons to mean anything)."""
    import keras

    from tsn_keras.models import build_tsn

    keras.utils.set_random_seed(seed)
    model = build_tsn(num_classes, modality, backbone="tiny", consensus=consensus, input_size=input_size)
    fc = model.get_layer("fc")
    rng = np.random.default_rng(seed)
    fc.set_weights([rng.normal(0, 1.0, w.shape).astype("float32") for w in fc.get_weights()])
    return model


def save_image_classifier(path) -> Path:
    """A per-image Keras classifier: the wrong input shape for a TSN (no snippet axis)."""
    import keras

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs))).save(path)
    return Path(path)


def make_run(run_dir, data_root, modality="rgb", consensus="avg", num_classes=4, seed=0, history=True,
             evaluate=None) -> Path:
    """A run folder in the layout of ``tsn train`` (model.keras, config.yaml, classes.json, history.csv)."""
    from tsn_keras.config import Config, DataConfig, EvalConfig, ModelConfig

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    config = Config(name=f"test_{modality}", data=DataConfig(root=str(data_root), modality=modality,
                                                             input_size=INPUT_SIZE, val_split="val"),
                    model=ModelConfig(backbone="tiny", consensus=consensus), evaluate=evaluate or EvalConfig())
    (run / "config.yaml").write_text(config.to_yaml())
    (run / "classes.json").write_text(json.dumps([f"class{c}" for c in range(num_classes)]))
    make_model(num_classes, modality, consensus, seed=seed).save(run / "model.keras")
    if history:
        rows = ["epoch,iteration,learning_rate,loss,accuracy,val_loss,val_accuracy"]
        rows += [f"{e},{10 * (e + 1)},{0.001 if e < 3 else 0.0001},{1.5 - 0.2 * e},{0.3 + 0.1 * e},"
                 f"{1.6 - 0.15 * e},{0.25 + 0.08 * e}" for e in range(5)]
        (run / "history.csv").write_text("\n".join(rows) + "\n")
    return run


def test_metrics_on_hand_made_logits():
    logits = np.array([
        [3.0, 1.0, 0.0],  # label a, predicted a
        [0.0, 2.0, 1.0],  # label a, predicted b, a ranked 3rd
        [0.0, 2.0, 1.0],  # label b, predicted b
        [1.0, 0.0, 2.0],  # label b, predicted c, b ranked 3rd
        [0.0, 1.0, 5.0],  # label c, predicted c
        [0.0, 1.0, 5.0],  # label c, predicted c
    ])
    labels = np.array([0, 0, 1, 1, 2, 2])
    m = compute_metrics(logits, labels, CLASSES)
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["top5_k"] == 3 and m["top5"] == 1.0  # top-5 clipped to the 3 classes
    assert m["per_class"] == {"a": 0.5, "b": 0.5, "c": 1.0}
    assert m["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert m["num_videos"] == 6


def test_top5_and_mean_class_accuracy_differ_from_top1():
    rng = np.random.default_rng(0)
    num_classes = 8
    labels = np.array([0] * 6 + [1, 2])
    logits = rng.normal(size=(8, num_classes))
    # Class 0: the label ranked 1st in 3 videos, 6th in 3 (outside the top 5).
    for i in range(6):
        order = np.argsort(-logits[i])
        target_rank = 0 if i < 3 else 5
        logits[i, [order[target_rank], 0]] = logits[i, [0, order[target_rank]]]
    logits[6] = np.eye(num_classes)[1] * 10  # class 1 right
    logits[7] = np.eye(num_classes)[3] * 10  # class 2 wrong (predicted 3), label ranked 2nd..8th
    m = compute_metrics(logits, labels, [f"c{i}" for i in range(num_classes)])
    assert m["top1"] == pytest.approx(4 / 8)
    expected_top5 = (3 + 1 + int((logits[7] > logits[7, 2]).sum() < 5)) / 8
    assert m["top5"] == pytest.approx(expected_top5)
    # Classes without videos are None and left out of the mean over classes.
    assert m["per_class"]["c5"] is None
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_metrics_reject_bad_shapes():
    with pytest.raises(DataError, match="logits must be"):
        compute_metrics(np.zeros((4, 2)), np.zeros(4, int), CLASSES)
    with pytest.raises(DataError, match="labels must be in"):
        compute_metrics(np.zeros((2, 3)), np.array([0, 3]), CLASSES)


def test_logits_are_averaged_not_probabilities():
    # Two snippets: one confident for class 0, one mildly for class 1 twice over.
    views = np.array([[[10.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0]]], np.float32)
    video = np.asarray(average_logits(views))
    np.testing.assert_allclose(video, views.mean(axis=1), rtol=1e-6)
    probabilities = np.exp(views) / np.exp(views).sum(-1, keepdims=True)
    # The two orders disagree on this video, so the test would catch averaging probabilities.
    assert video.argmax() == 0 and probabilities.mean(axis=1).argmax() == 1


def _scores(ids, labels, logits, modality, classes=CLASSES):
    return Scores(np.array(ids), np.array(labels), np.array(logits, np.float32), classes, modality)


def test_score_file_round_trip_and_errors(tmp_path):
    scores = _scores(["v1", "v2"], [0, 2], [[1, 2, 3], [4, 5, 6]], "flow")
    path = scores.save(tmp_path / "s.npz")
    loaded = Scores.load(path)
    assert list(loaded.video_ids) == ["v1", "v2"] and loaded.modality == "flow"
    assert loaded.class_names == CLASSES and loaded.labels.dtype == np.int64
    np.testing.assert_array_equal(loaded.logits, scores.logits)
    np.savez(tmp_path / "bad.npz", video_ids=np.array(["v"]), logits=np.zeros((1, 3)))
    with pytest.raises(DataError, match="missing labels, class_names, modality"):
        Scores.load(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="not found"):
        Scores.load(tmp_path / "nothing.npz")
    with pytest.raises(DataError, match="inconsistent"):
        _scores(["v1"], [0], [[1, 2]], "rgb")


def test_fusion_weights_and_alignment():
    rgb = _scores(["v1", "v2", "v3"], [0, 1, 2], [[2, 0, 0], [1.0, 0.9, 0], [0, 0, 1]], "rgb")
    # Flow lists the videos in another order; fusion must align by id.
    flow = _scores(["v3", "v1", "v2"], [2, 0, 1], [[0, 0, 2], [0, 1, 0], [0, 1, 0]], "flow")
    fused, weights = fuse_scores([rgb, flow])
    assert weights == [1.0, 1.5]
    np.testing.assert_allclose(fused.logits, [[2, 1.5, 0], [1.0, 2.4, 0], [0, 0, 4]])
    assert list(fused.video_ids) == ["v1", "v2", "v3"] and fused.modality == "fused"
    explicit, weights = fuse_scores([rgb, flow], [2.0, 0.5])
    assert weights == [2.0, 0.5]
    np.testing.assert_allclose(explicit.logits, [[4, 0.5, 0], [2.0, 2.3, 0], [0, 0, 3]])


def test_default_weights_with_warped_flow():
    assert default_fusion_weights(["rgb", "flow"]) == [1.0, 1.5]
    assert default_fusion_weights(["flow", "rgb", "warped_flow"]) == [1.0, 1.0, 0.5]
    with pytest.raises(ConfigError, match="rgb_diff"):
        default_fusion_weights(["rgb", "rgb_diff"])


def test_fusion_refuses_different_videos_or_classes():
    rgb = _scores(["v1", "v2", "v3"], [0, 1, 2], np.zeros((3, 3)), "rgb")
    other = _scores(["v1", "v2", "v9"], [0, 1, 2], np.zeros((3, 3)), "flow")
    with pytest.raises(DataError, match=r"1 only in file 2, 1 only in file 1 \(e.g. v9, v3\)"):
        fuse_scores([rgb, other])
    renamed = _scores(["v1", "v2", "v3"], [0, 1, 2], np.zeros((3, 3)), "flow", classes=["a", "b", "x"])
    with pytest.raises(DataError, match="different classes"):
        fuse_scores([rgb, renamed])
    relabelled = _scores(["v1", "v2", "v3"], [0, 1, 1], np.zeros((3, 3)), "flow")
    with pytest.raises(DataError, match="labels videos differently"):
        fuse_scores([rgb, relabelled])
    with pytest.raises(ConfigError, match="one weight per score file"):
        fuse_scores([rgb, rgb], [1.0])


def test_fuse_files_writes_metrics(tmp_path):
    rgb = _scores(["v1", "v2"], [0, 1], [[1, 0, 0], [1, 0.5, 0]], "rgb").save(tmp_path / "rgb.npz")
    flow = _scores(["v2", "v1"], [1, 0], [[0, 1, 0], [0, 0, 1]], "flow").save(tmp_path / "flow.npz")
    metrics = fuse([rgb, flow], output_dir=tmp_path / "fused")
    # v1: [1, 0, 1.5] -> c (wrong); v2: [1, 2, 0] -> b (right).
    assert metrics["top1"] == 0.5 and metrics["fusion"]["weights"] == [1.0, 1.5]
    assert metrics["fusion"]["streams_top1"] == [0.5, 0.5]
    written = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert written["confusion"] == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]
    np.testing.assert_allclose(Scores.load(tmp_path / "fused" / "scores.npz").logits, [[1, 0, 1.5], [1, 2, 0]])


def test_fuse_cli(tmp_path, capsys):
    rgb = _scores(["v1", "v2"], [0, 1], [[1, 0, 0], [0, 1, 0]], "rgb").save(tmp_path / "rgb.npz")
    flow = _scores(["v1", "v3"], [0, 1], [[1, 0, 0], [0, 1, 0]], "flow").save(tmp_path / "flow.npz")
    assert main(["fuse", str(rgb), str(flow)]) == 2
    err = capsys.readouterr().err
    assert "different videos" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["fuse", str(rgb), str(rgb), "--weights", "1", "2", "--out", str(tmp_path / "f")]) == 0
    assert "top-1 100.00%" in capsys.readouterr().out
    assert (tmp_path / "f" / "scores.npz").is_file()


# --- the protocol on models ---------------------------------------------------------------------

def test_scorer_averages_snippet_logits_for_every_reducing_consensus():
    from tsn_keras.models import snippet_model

    views = np.random.default_rng(1).normal(size=(2, 3 * 4, INPUT_SIZE, INPUT_SIZE, 3)).astype("float32")
    average = make_model(consensus="avg")
    # With avg consensus the model itself over all crops x snippets gives the mean of the snippet logits.
    np.testing.assert_allclose(video_scorer(average, 3, 4)(views), average(views), atol=1e-5)
    maximum = make_model(consensus="max", seed=1)
    expected = np.asarray(snippet_model(maximum)(views)).mean(axis=1)
    scored = np.asarray(video_scorer(maximum, 3, 4)(views))
    np.testing.assert_allclose(scored, expected, atol=1e-5)
    # ... and not the max the model was trained with (the original test script averaged too).
    assert np.abs(scored - np.asarray(maximum(views))).max() > 1e-3  # 100x the tolerance above


def test_scorer_runs_feature_heads_per_crop():
    views = np.random.default_rng(2).normal(size=(2, 3 * 4, INPUT_SIZE, INPUT_SIZE, 3)).astype("float32")
    model = make_model(consensus="attention", seed=2)
    per_crop = [np.asarray(model(views[:, c * 4:(c + 1) * 4])) for c in range(3)]
    np.testing.assert_allclose(video_scorer(model, 3, 4)(views), np.mean(per_crop, axis=0), atol=1e-5)


@pytest.fixture(scope="module")
def rgb_run(tiny_shards, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "rgb", tiny_shards)


def test_evaluate_writes_scores_and_metrics(rgb_run, tiny_shards, tmp_path):
    from tsn_keras.data.clips import ClipSpec
    from tsn_keras.data.pipeline import make_dataset
    from tsn_keras.runs import load_run

    out = tmp_path / "eval"
    assert main(["evaluate", str(rgb_run), "--crops", "3", "--snippets", "5", "--out", str(out)]) == 0
    scores = Scores.load(out / "scores.npz")
    metrics = json.loads((out / "metrics.json").read_text())
    assert scores.modality == "rgb" and len(scores.video_ids) == 8 and scores.class_names == metrics["class_names"]
    assert metrics["protocol"]["num_crops"] == 3 and metrics["protocol"]["num_snippets"] == 5
    recomputed = compute_metrics(scores.logits, scores.labels, scores.class_names)
    for key in ("top1", "top5", "mean_class_accuracy", "confusion", "per_class"):
        assert metrics[key] == recomputed[key]
    # Independent path: the avg-consensus model over all 15 views of each video.
    model = load_run(rgb_run).model
    data = make_dataset(tiny_shards, ClipSpec("rgb", mode="test", num_snippets=5, num_crops=3, input_size=INPUT_SIZE, normalization="keras_tf"), split="test", batch_size=8, return_ids=True)
    views, _, ids = next(iter(data))
    expected = dict(zip(ids.numpy().astype(str), np.asarray(model(views))))
    for vid, logits in zip(scores.video_ids, scores.logits):
        np.testing.assert_allclose(logits, expected[vid], atol=1e-5)
    assert np.abs(scores.logits).max() > 0.5  # logits, not probabilities, and not all ~0


def test_evaluate_errors_exit_2(rgb_run, tiny_shards, tmp_path, capsys):
    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1

    fails(["evaluate", str(tmp_path / "nothing")], "neither a run folder nor a .keras model file")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    fails(["evaluate", str(empty)], "model.keras not found")
    fails(["evaluate", str(save_image_classifier(tmp_path / "image.keras")), "--data", str(tiny_shards)], "is not a TSN written by tsn-keras")
    # Class names that do not fit the model.
    (tmp_path / "three.json").write_text(json.dumps(["a", "b", "c"]))
    fails(["evaluate", str(rgb_run / "model.keras"), "--classes", str(tmp_path / "three.json"),
           "--data", str(tiny_shards)], "the model has 4 classes but 3 class names")
    fails(["evaluate", str(rgb_run), "--split", "nope", "--out", str(tmp_path / "x")], "split 'nope'")


def test_evaluate_without_flags_follows_the_recipes_evaluate_section(tiny_shards, tmp_path, capsys):
    from tsn_keras.config import EvalConfig

    run = make_run(tmp_path / "run", tiny_shards, evaluate=EvalConfig(num_snippets=5, num_crops=1, batch_size=3))
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["protocol"]["num_snippets"], metrics["protocol"]["num_crops"]) == (5, 1)
    assert metrics["data"] == {"root": str(tiny_shards), "split": "test"}
    # Flags override the recipe.
    assert main(["evaluate", str(run), "--crops", "3", "--snippets", "2", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["protocol"]["num_snippets"], metrics["protocol"]["num_crops"]) == (2, 3)
