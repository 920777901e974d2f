"""Where and when a TSN looks: Grad-CAM over the test snippets and class scores along the video.

For the T snippets the test protocol samples (the run's own sampling, centre crop, input size
and normalisation: ``evaluation.test_clip_spec`` + ``pipeline.test_views``, on the frames
``predict.encode_video`` stores), ``explain_video`` gives

- a Grad-CAM heat map (Selvaraju et al., 2017) on the backbone's last convolutional block for
  one class, over each sampled frame (flow: over the colour-coded flow field);
- each snippet's class probabilities along the video's timeline;
- the consensus score, the model's own output for those T snippets (any consensus mode).

The backbone is a functional ``keras.Model`` inside the ``FoldedTimeDistributed`` layer. Grad-CAM
needs its last 4-D feature map: the model is cut after the last layer with a rank-4 output,
and the layers after it (global pooling) are applied by hand under a gradient tape, followed
by the TSN's head (dropout, an identity at inference, then ``fc``). Heat maps are scaled by
their maximum over all snippets, so they also show which snippets carry the evidence.

Example:
    >>> result = explain_video("v_Archery_g01_c01.avi", "runs/rgb", out_dir="explain")  # doctest: +SKIP
    >>> result["class"], result["streams"][0]["consensus"]["probability"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps

from tfrecords_tools.worker import stored_video_settings
from tsn_keras.data.clips import ClipSpec
from tsn_keras.data.pipeline import test_views
from tsn_keras.errors import ConfigError, DataError
from tsn_keras.evaluation import test_clip_spec
from tsn_keras.models.transfer import find_backbone
from tsn_keras.models.tsn import FC_LAYER, TSN
from tsn_keras.pictures import flow_picture, input_scale, snippet_pictures
from tsn_keras.plots import FORMATS, new_figure, save_figure
from tsn_keras.predict import encode_video
from tsn_keras.runs import RunInfo, load_run
from tsn_keras.scores import default_fusion_weights, fuse_logits
from tsn_keras.vocab import MODALITY_KEYS, is_flow

RESULT_FILE = "explain.json"
HEAT_ALPHA = 0.45  # opacity of the heat map over the frame


# --- Grad-CAM ----------------------------------------------------------------------------------

class GradCam:
    """Grad-CAM on the last convolutional block of a TSN's backbone, plus per-snippet logits.

    Args:
        model: a TSN with a per-snippet classifier (every consensus but ``gru``).
    """

    def __init__(self, model: TSN):
        backbone = find_backbone(model)
        try:
            self.fc = model.get_layer(FC_LAYER)
        except ValueError:
            raise ConfigError(f"model {model.name!r} has no per-snippet classifier ({FC_LAYER!r} layer; "
                              "the gru consensus has none), so there is no class score to explain per snippet") from None
        ranks = [len(layer.output.shape) for layer in backbone.layers]
        last = max((i for i, rank in enumerate(ranks) if rank == 4), default=0)
        if last == 0:
            raise ConfigError(f"backbone {backbone.name!r} has no convolutional feature map to explain")
        self.tail = backbone.layers[last + 1:]
        for layer in self.tail:
            inbound = layer._inbound_nodes[0].input_tensors if layer._inbound_nodes else []
            if len(inbound) != 1:
                raise ConfigError(f"backbone {backbone.name!r}: layer {layer.name!r} after the last feature map "
                                  "takes several inputs; Grad-CAM needs a plain pooling head")
        self.layer_name = backbone.layers[last].name
        self.features = keras.Model(backbone.inputs, backbone.layers[last].output, name=f"{backbone.name}_features")

    @tf.function(reduce_retracing=True)
    def __call__(self, views, class_index):
        """``(T, S, S, C)`` views -> (heat maps ``(T, h, w)`` >= 0, snippet logits ``(T, classes)``)."""
        maps = self.features(views, training=False)
        with tf.GradientTape() as tape:
            tape.watch(maps)
            pooled = maps
            for layer in self.tail:
                pooled = layer(pooled, training=False)
            logits = tf.cast(self.fc(pooled), tf.float32)
            target = tf.gather(logits, class_index, axis=1)
        gradients = tf.cast(tape.gradient(target, maps), tf.float32)
        weights = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)  # one weight per channel and snippet
        heat = tf.nn.relu(tf.reduce_sum(weights * tf.cast(maps, tf.float32), axis=-1))
        return heat, logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def overlay(picture: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """An RGB ``uint8`` picture with a heat map in ``[0, 1]`` (any size: resized bilinearly) laid over it."""
    heat = cv2.resize(heat.astype(np.float32), (picture.shape[1], picture.shape[0]), interpolation=cv2.INTER_LINEAR)
    coloured = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * picture + alpha * coloured, 0, 255).astype(np.uint8)


# --- one stream --------------------------------------------------------------------------------

@dataclass
class StreamExplanation:
    """Grad-CAM and scores of one model on one video."""

    run: RunInfo
    source: str
    frames: list[int]  # the first stored frame of each snippet
    pictures: np.ndarray  # (T, S, S, 3) uint8: the frame (or flow field) each heat map lies over
    heat: np.ndarray  # (T, h, w) in [0, 1], scaled by the maximum over all snippets
    snippet_logits: np.ndarray  # (T, classes)
    consensus_logits: np.ndarray  # (classes,)
    feature_layer: str  # the backbone layer whose feature map Grad-CAM weighs


@dataclass
class _Views:
    """A run's test views of one video (one centre crop) and the model's consensus on them."""

    run: RunInfo
    source: str
    clip: ClipSpec
    views: tf.Tensor  # (T, S, S, C)
    indices: np.ndarray  # the stored frames read, snippet by snippet
    consensus_logits: np.ndarray


def _views(source: str, run: RunInfo, frames: dict[str, list[bytes]], num_snippets: int | None) -> _Views:
    clip = test_clip_spec(run, num_snippets=num_snippets, num_crops=1)
    lists = tuple(tf.constant(frames[key], tf.string) for key in MODALITY_KEYS[run.modality])
    views = test_views(lists if len(lists) > 1 else lists[0], clip)
    consensus = np.asarray(run.model(views[None], training=False), np.float32)[0]
    return _Views(run, source, clip, views, clip.frame_indices(len(lists[0])).numpy(), consensus)


def _display_pictures(sampled: _Views, frames: dict[str, list[bytes]]) -> np.ndarray:
    """What each snippet's heat map is drawn over: its frame, or its middle flow field in colour."""
    run, clip = sampled.run, sampled.clip
    pixels = input_scale(run.modality, run.normalization, run.new_length).to_pixels(sampled.views)
    if is_flow(run.modality):
        return np.stack([flow_picture(p) for p in pixels])
    if run.modality == "rgb":
        return np.stack([snippet_pictures(p, "rgb", run.normalization)[0][1] for p in pixels])
    # RGB difference holds no frame: show the snippet's middle frame, cropped like the differences.
    middle = sampled.indices.reshape(clip.num_snippets, clip.frames_per_snippet)[:, clip.frames_per_snippet // 2]
    rgb_clip = ClipSpec("rgb", "test", input_size=clip.input_size, normalization=clip.normalization,
                        num_snippets=clip.num_snippets, num_crops=1)
    rgb_views = rgb_clip.make_views(tf.gather(tf.constant(frames["rgb"], tf.string), middle)[None]).numpy()
    rgb_scale = input_scale("rgb", run.normalization, 1)
    return np.stack([snippet_pictures(rgb_scale.to_pixels(v), "rgb", run.normalization)[0][1] for v in rgb_views])


def explain_stream(sampled: _Views, frames: dict[str, list[bytes]], class_index: int) -> StreamExplanation:
    """Grad-CAM for ``class_index`` and per-snippet scores of one run on its sampled views."""
    cam = GradCam(sampled.run.model)
    heat, logits = cam(sampled.views, tf.constant(class_index))
    heat = heat.numpy()
    heat = heat / heat.max() if heat.max() > 0 else heat
    starts = sampled.indices.reshape(sampled.clip.num_snippets, sampled.clip.frames_per_snippet)[:, 0]
    return StreamExplanation(sampled.run, sampled.source, [int(s) for s in starts],
                             _display_pictures(sampled, frames), heat, logits.numpy(), sampled.consensus_logits,
                             cam.layer_name)


# --- a video, one or two streams ------------------------------------------------------------------

def _video_fps(path: str | os.PathLike) -> float:
    capture = cv2.VideoCapture(os.fspath(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    return fps if math.isfinite(fps) and fps > 0 else 0.0


def explain_video(video: str | os.PathLike, model: str | os.PathLike, *, flow_model: str | os.PathLike | None = None,
                  class_name: str | None = None, num_snippets: int | None = None, out_dir: str | os.PathLike,
                  classes: str | os.PathLike | None = None, formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Explain a video file: Grad-CAM per snippet, per-snippet scores along the timeline, consensus.

    Args:
        video: a video file.
        model: a run folder or ``.keras`` file (any modality).
        flow_model: a second, flow or warped-flow, run; the two are fused with the paper's weights.
        class_name: the class to explain; ``None``: the predicted class (fused for two streams).
        num_snippets: T; default the run's ``evaluate.num_snippets`` (25). One centre crop.
        out_dir: where ``<stream>_gradcam.png/.svg``, ``timeline.png/.svg`` and ``explain.json`` go.
        classes: class names for bare ``.keras`` models.

    Returns:
        The content of ``explain.json``.
    """
    if not Path(video).is_file():
        raise DataError(f"video file {video} not found")
    runs = [(str(model), load_run(model, classes=classes))]
    if flow_model is not None:
        runs.append((str(flow_model), load_run(flow_model, classes=classes)))
        if not is_flow(runs[1][1].modality):
            raise ConfigError(f"--flow-model {flow_model} is a {runs[1][1].modality} model; give a flow or warped_flow model")
        if runs[1][1].class_names != runs[0][1].class_names:
            raise DataError(f"{model} and {flow_model} were trained on different classes")
    names = runs[0][1].class_names or [str(i) for i in range(runs[0][1].model.num_classes)]
    if class_name is not None and class_name not in names:
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise ConfigError(f"unknown class {class_name!r} (classes: {shown})")
    settings = stored_video_settings(runs[0][1].data_root)
    needs = {run.modality: run.new_length for _, run in runs}
    protocol_snippets = num_snippets or runs[0][1].protocol.num_snippets
    frames, num_frames = encode_video(video, needs, num_snippets=protocol_snippets, settings=settings)
    fps = _video_fps(video)

    sampled = [_views(source, run, frames, num_snippets) for source, run in runs]
    weights = default_fusion_weights([run.modality for _, run in runs]) if len(runs) > 1 else [1.0]
    fused = _softmax(fuse_logits([s.consensus_logits for s in sampled], weights))
    # Without --class, the class the model predicts (the fused prediction for two streams).
    target = names.index(class_name) if class_name is not None else int(np.argmax(fused))
    streams = [explain_stream(s, frames, target) for s in sampled]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for stream in streams:
        figures += plot_gradcam(stream, target, names, fps, out, name=f"{stream.run.modality}_gradcam",
                                formats=formats)
    figures += plot_timeline(streams, target, names, fps, num_frames, out, formats=formats)
    result = {
        "video": str(video), "num_frames": num_frames, "fps": fps, "class": names[target], "class_index": target,
        "fused": {"weights": [float(w) for w in weights], "probability": float(fused[target]),
                  "top5": _top(fused, names)},
        "streams": [_stream_record(s, target, names, fps) for s in streams],
        "figures": [str(p.relative_to(out)) for p in figures],
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _top(probabilities: np.ndarray, names: list[str], k: int = 5) -> list[dict[str, Any]]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class": names[i], "probability": float(probabilities[i])} for i in order]


def _time(frame: int, fps: float) -> float:
    return frame / fps if fps else float(frame)


def _stream_record(stream: StreamExplanation, target: int, names: list[str], fps: float) -> dict[str, Any]:
    probabilities = _softmax(stream.snippet_logits)
    consensus = _softmax(stream.consensus_logits)
    h, w = stream.heat.shape[1:]
    snippets = []
    for t, frame in enumerate(stream.frames):
        peak = np.unravel_index(int(np.argmax(stream.heat[t])), (h, w))
        snippets.append({"snippet": t, "frame": frame, "time": _time(frame, fps),
                         "probability": float(probabilities[t, target]), "top5": _top(probabilities[t], names),
                         "heat_peak": [(peak[0] + 0.5) / h, (peak[1] + 0.5) / w],  # (y, x) as fractions of the crop
                         "heat": np.round(stream.heat[t], 4).tolist()})
    return {"model": stream.source, "modality": stream.run.modality, "feature_layer": stream.feature_layer,
            "consensus": {"probability": float(consensus[target]), "top5": _top(consensus, names)},
            "snippets": snippets}


# --- figures -----------------------------------------------------------------------------------------

def plot_gradcam(stream: StreamExplanation, target: int, names: list[str], fps: float, out_dir: str | os.PathLike, *,
                 name: str = "gradcam", formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """The heat map of every sampled snippet over its frame (or flow field), with its class probability."""
    count = len(stream.frames)
    columns = min(count, 5)
    rows = math.ceil(count / columns)
    figure = new_figure(2.0 * columns, 2.2 * rows + 0.4)
    probabilities = _softmax(stream.snippet_logits)[:, target]
    for t in range(rows * columns):
        axis = figure.add_subplot(rows, columns, t + 1)
        axis.set_axis_off()
        if t >= count:
            continue
        axis.imshow(overlay(stream.pictures[t], stream.heat[t]), interpolation="bilinear")
        axis.set_title(f"{_time(stream.frames[t], fps):.1f}{'s' if fps else ''}  p={probabilities[t]:.2f}", fontsize=8)
    figure.suptitle(f"Grad-CAM for {names[target]!r}: {stream.run.modality} model, {count} snippets", fontsize=10)
    return save_figure(figure, out_dir, name, formats)


def plot_timeline(streams: list[StreamExplanation], target: int, names: list[str], fps: float, num_frames: int,
                  out_dir: str | os.PathLike, *, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Each snippet's probability of the explained class (and the runner-up classes) along the video."""
    figure = new_figure(8, 2.4 * len(streams) + 0.6)
    axes = figure.subplots(len(streams), 1, squeeze=False)[:, 0]
    for axis, stream in zip(axes, streams):
        probabilities = _softmax(stream.snippet_logits)
        consensus = _softmax(stream.consensus_logits)
        times = [_time(f, fps) for f in stream.frames]
        shown = [target, *[int(i) for i in np.argsort(-consensus, kind="stable") if i != target][:2]]
        for rank, index in enumerate(shown):
            line = axis.plot(times, probabilities[:, index], marker="o", markersize=3, lw=2.0 if rank == 0 else 1.0,
                             label=names[index])[0]
            axis.axhline(consensus[index], color=line.get_color(), ls="--", lw=0.8)
        axis.set_xlim(0, _time(num_frames, fps))
        axis.set_ylim(0, 1.02)
        axis.set_ylabel(f"{stream.run.modality}\nprobability")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("time (s)" if fps else "frame")
    figure.suptitle("per-snippet class probabilities (dashed: the consensus over all snippets)", fontsize=10)
    return save_figure(figure, out_dir, "timeline", formats)
