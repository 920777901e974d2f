"""Tiny TSNs whose decision is known: a random ``tiny`` backbone and a classifier set by hand.

The classifier is a nearest-class-mean rule on the backbone's pooled features of example
inputs (``logit_c = (mu_c . f - |mu_c|^2 / 2) / t``), so a class means "looks like its
examples" with no training, deterministically and in a fraction of a second. Tests of the
visualisation, Grad-CAM and untrimmed scoring use it to know what the right answer is.
"""

from __future__ import annotations

import numpy as np

INPUT_SIZE = 32


def probe_model(examples: list[np.ndarray], modality: str = "rgb", *, input_size: int = INPUT_SIZE, seed: int = 0,
                class_names: list[str] | None = None, new_length: int | None = None):
    """A tiny TSN whose ``fc`` is the nearest-mean classifier of ``examples``.

    Args:
        examples: per class, normalised model inputs ``(n, S, S, C)``.
    """
    import keras

    from tsn_keras.models import build_tsn
    from tsn_keras.models.transfer import find_backbone

    keras.utils.set_random_seed(seed)
    names = class_names or [f"class{c}" for c in range(len(examples))]
    model = build_tsn(len(examples), modality, new_length=new_length, backbone="tiny", input_size=input_size,
                      partial_bn=False, class_names=names)
    backbone = find_backbone(model)
    means = np.stack([np.asarray(backbone(x, training=False)).mean(axis=0) for x in examples])
    features = np.concatenate([np.asarray(backbone(x, training=False)) for x in examples])
    centre = means.mean(axis=0)
    means, features = means - centre, features - centre
    # Temperature: the typical gap between class means, so margins are a few logits.
    spread = np.mean([np.sum((a - b) ** 2) for i, a in enumerate(means) for b in means[i + 1:]])
    kernel = (means.T / spread * 8.0).astype("float32")
    bias = (-0.5 * np.sum(means ** 2, axis=1) / spread * 8.0 + (-centre @ kernel)).astype("float32")
    model.get_layer("fc").set_weights([kernel, bias])
    return model


def colour_inputs(model_scale, colours, n: int = 8, size: int = INPUT_SIZE, seed: int = 0) -> list[np.ndarray]:
    """Per class, ``n`` noisy frames of one colour (pixel units, BGR or RGB as the channels are) -> inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for colour in colours:
        pixels = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 20, (n, size, size, len(colour))), 0, 255)
        out.append(model_scale.to_input(pixels).astype("float32"))
    return out


def conversion_root(root, class_names: list[str], frame_size=(64, 48), flow: str = "dis"):
    """A conversion folder holding only its manifest: the stored frame size and flow algorithm that
    prediction must follow (``worker.stored_video_settings``)."""
    from pathlib import Path

    from tfrecords_tools.manifest import write_manifest

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    options = {"flow": flow, "frame_size": list(frame_size), "short_side": None, "jpeg_quality": 90}
    write_manifest(root, {"classes": list(class_names), "modalities": ["rgb", "flow"],
                          "stored_keys": ["rgb", "flow_x", "flow_y"], "frame_size": list(frame_size),
                          "options": options, "splits": {}, "rejects": [], "missing": []})
    return root


def save_run(run_dir, model, data_root, *, num_snippets: int = 25, num_crops: int = 1):
    """``model`` as a run folder of ``tsn train`` (model.keras, config.yaml, classes.json)."""
    import json
    from pathlib import Path

    from tsn_keras.config import Config, DataConfig, EvalConfig, ModelConfig

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    config = Config(name=f"probe_{model.modality}",
                    data=DataConfig(root=str(data_root), modality=model.modality, input_size=model.input_size,
                                    new_length=None if model.modality == "rgb" else model.new_length),
                    model=ModelConfig(backbone="tiny"),
                    evaluate=EvalConfig(num_snippets=num_snippets, num_crops=num_crops))
    (run / "config.yaml").write_text(config.to_yaml())
    (run / "classes.json").write_text(json.dumps(model.class_names))
    model.save(run / "model.keras")
    return run
