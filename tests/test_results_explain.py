"""The results document's "look inside" step on tiny runs: the Fig. 3 grid and one `tsn explain`."""

from __future__ import annotations

import pytest

from tests.probe import conversion_root, save_run

CLASSES = ["Archery", "BasketballDunk", "PlayingPiano", "PlayingViolin"]


@pytest.mark.slow
def test_look_inside_draws_the_grid_and_explains_a_real_clip(shared_data, tmp_path):
    import keras

    from benchmarks.results_explain import MAX_FIGURE_BYTES, look_inside, section
    from tsn_keras.models import build_tsn

    root = conversion_root(tmp_path / "data", CLASSES, frame_size=(170, 128))
    runs = {}
    for name, modality in (("pt_rgb", "rgb"), ("pt_rgb_k1", "rgb"), ("pt_flow", "flow")):
        keras.utils.set_random_seed(len(runs))
        model = build_tsn(4, modality, backbone="tiny", input_size=32, class_names=CLASSES)
        runs[name] = {"run_dir": str(save_run(tmp_path / "runs" / name, model, root, num_snippets=5))}
    clip = shared_data / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi"
    work, out = tmp_path / "work", tmp_path / "docs" / "results"
    record = look_inside(work, out, runs, clip, CLASSES[:2], quick=True)

    assert record["visualize"]["rows"] == ["RGB, pre-trained only (ImageNet, K = 1)", "RGB, TSN (ImageNet, K = 3)",
                                           "flow, TSN (cross-modality, K = 3)"]
    assert record["missing"] == ["RGB, without pre-training", "flow, without pre-training"]
    assert record["visualize"]["command"].startswith(f"tsn visualize {runs['pt_rgb_k1']['run_dir']} --classes "
                                                     "Archery,BasketballDunk")
    assert set(record["explain"]["figures"]) == {"rgb_gradcam", "flow_gradcam", "timeline"}
    assert f"--flow-model {runs['pt_flow']['run_dir']}" in record["explain"]["command"]
    figures = sorted(out.glob("*.png"))
    assert [f.name for f in figures] == ["explain_flow_gradcam.png", "explain_rgb_gradcam.png",
                                         "explain_timeline.png", "visualization.png"]
    assert all(0 < f.stat().st_size < MAX_FIGURE_BYTES for f in figures)
    text = "\n".join(section(record))
    assert record["visualize"]["command"] in text and "](results/visualization.png)" in text

    # A second run reuses the drawings and puts the figures back (results.py clears docs/results/ first).
    for figure in figures:
        figure.unlink()
    assert look_inside(work, out, runs, clip, CLASSES[:2], quick=True) == record
    assert sorted(out.glob("*.png")) == figures
