"""Top-k classes for one video file, from an RGB, flow or two-stream model.

The video goes through the converter's own per-video code (``tfrecords_tools.worker``) with
the settings of the conversion the model was trained on (stored frame size, JPEG quality, flow
algorithm), so the model sees the same kind of input; optical flow is computed only for the
fields the test snippets read, frame by frame, so memory does not grow with the video. Then the
test protocol runs (``evaluation``), and two streams are fused with the paper's weights
(``scores.fuse_logits``).

Example:
    >>> result = predict_video("v_Archery_g01_c01.avi", "runs/rgb", flow_model="runs/flow")  # doctest: +SKIP
    >>> result["top"][0]  # doctest: +SKIP
    {'class': 'Archery', 'probability': 0.97, 'logit': 8.1}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfrecords_tools.video import VideoError
from tfrecords_tools.worker import VideoConverter, VideoSettings, read_video, stored_video_settings
from tsn_keras.data.pipeline import test_views
from tsn_keras.data.sampling import sample_offsets, snippet_frames
from tsn_keras.errors import ConfigError, DataError
from tsn_keras.evaluation import test_clip_spec, video_scorer
from tsn_keras.export import EXPORT_INFO, JPEG_SIGNATURE, MAX_FRAME_SIDE, jpeg_inputs, load_export_info
from tsn_keras.runs import load_run, read_class_names
from tsn_keras.scores import default_fusion_weights, fuse_logits
from tsn_keras.vocab import CONVERTED_MODALITIES, MODALITY_KEYS, is_flow

# --- the video, as the converter would have stored it ------------------------------------------

def encode_video(path: str | os.PathLike, needs: dict[str, int], *, num_snippets: int = 25,
                 settings: VideoSettings | None = None) -> tuple[dict[str, list[bytes]], int]:
    """The stored frame lists of one video, as ``tsn convert`` would have written them.

    Args:
        path: the video file.
        needs: modality -> new_length of every stream that will read the video.
        num_snippets: T; flow fields that none of the T test snippets reads are not computed
            (their places hold the JPEGs of the nearest computed field, so the lists keep the
            converter's length N-1 and every index the protocol reads is exact).
        settings: the conversion's ``VideoSettings`` (``worker.stored_video_settings``).

    Returns:
        ``({stored key: [JPEG bytes]}, number of frames)``.
    """
    # Bounded like the export's JPEG signature, whatever size the conversion kept.
    settings = replace(settings or VideoSettings(), max_side=MAX_FRAME_SIDE)
    converted = {"rgb" if m == "rgb_diff" else m for m in needs}
    settings = replace(settings, modalities=tuple(m for m in CONVERTED_MODALITIES if m in converted))
    flows = {m: length for m, length in needs.items() if is_flow(m)}
    fields = None
    if flows:  # a first, cheap pass counts the frames, so only the sampled fields get flow
        num_fields = sum(1 for _ in read_video(path, settings)) - 1
        if num_fields < 1:
            raise DataError(f"{path} has {num_fields + 1} frame(s); optical flow needs at least 2")
        fields = set().union(*(_needed_fields(num_fields, num_snippets, length) for length in flows.values()))
    try:
        encoded = VideoConverter(settings).encode(path, flow_fields=fields)
    except VideoError as err:
        raise DataError(f"cannot read video {path}: {err}") from None
    return encoded.frames, encoded.reader.decoded


def _needed_fields(num_fields: int, num_snippets: int, new_length: int) -> list[int]:
    starts = sample_offsets(num_fields, num_snippets, new_length, "test")
    return sorted(set(np.asarray(snippet_frames(starts, new_length, num_fields)).ravel().tolist()))


# --- models: a run, a .keras file or an export folder -----------------------------------------

@dataclass
class Stream:
    """One model ready to score a video's stored frame lists."""

    source: str
    modality: str
    new_length: int
    class_names: list[str]
    num_snippets: int
    num_crops: int
    settings: VideoSettings  # how the model's training videos were stored
    score: Callable[[dict[str, list[bytes]]], np.ndarray]  # frame lists -> video logits [classes]


def load_stream(source: str | os.PathLike, *, num_crops: int | None = None,
                classes: str | os.PathLike | None = None) -> Stream:
    """A run folder, ``.keras`` file or export folder (``tsn export``) as a scoring stream."""
    path = Path(source)
    if (path / EXPORT_INFO).is_file():
        info = load_export_info(path)
        if num_crops is not None and num_crops != info["num_crops"]:
            raise ConfigError(f"{path} was exported with {info['num_crops']} crops; export it again for {num_crops}")
        signature = tf.saved_model.load(str(path / "saved_model")).signatures[JPEG_SIGNATURE]
        keys, names = MODALITY_KEYS[info["modality"]], jpeg_inputs(info["modality"])

        def score_export(frames: dict[str, list[bytes]]) -> np.ndarray:
            inputs = {name: tf.constant(frames[key], tf.string) for name, key in zip(names, keys)}
            return signature(**inputs)["logits"].numpy()[0]

        conversion = dict(info["conversion"])
        conversion["frame_size"] = tuple(conversion["frame_size"]) if conversion.get("frame_size") else None
        return Stream(str(path), info["modality"], info["new_length"], list(info["class_names"]),
                      info["num_snippets"], info["num_crops"], VideoSettings(**conversion), score_export)

    run = load_run(path, classes=classes)
    names = run.class_names or (read_class_names(run.data_root) if run.data_root else None)
    if names is None:
        raise ConfigError(f"no class names for {path}: pass --classes (a classes.json, text file or conversion folder)")
    clip = test_clip_spec(run, num_crops=num_crops)
    scorer = video_scorer(run.model, clip.num_crops, clip.num_snippets)
    keys = MODALITY_KEYS[run.modality]

    def score_run(frames: dict[str, list[bytes]]) -> np.ndarray:
        lists = tuple(tf.constant(frames[key], tf.string) for key in keys)
        views = test_views(lists if len(lists) > 1 else lists[0], clip)
        return np.asarray(scorer(views[None]))[0]

    return Stream(str(path), run.modality, run.new_length, names, clip.num_snippets, clip.num_crops,
                  stored_video_settings(run.data_root), score_run)


# --- prediction ---------------------------------------------------------------------------------

def predict_video(video: str | os.PathLike, model: str | os.PathLike, *, flow_model: str | os.PathLike | None = None,
                  weights: list[float] | None = None, top: int = 5, num_crops: int | None = None,
                  classes: str | os.PathLike | None = None) -> dict[str, Any]:
    """The top classes of a video file for one model or two fused streams.

    Args:
        video: a video file.
        model: a run folder, ``.keras`` file or export folder (any modality).
        flow_model: a second, flow or warped-flow, model to fuse with ``model``.
        weights: stream weights; default the paper's (RGB 1 : flow 1.5).
        top: how many classes to report.
        num_crops: 1, 3 or 10; default the run's ``evaluate.num_crops`` (or the export's).
        classes: class names for bare ``.keras`` models.

    Returns:
        ``{"video", "num_frames", "streams": [...], "top": [{"class", "probability", "logit"}]}``.
    """
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    if not Path(video).is_file():
        raise DataError(f"video file {video} not found")
    streams = [load_stream(model, num_crops=num_crops, classes=classes)]
    if flow_model is not None:
        streams.append(load_stream(flow_model, num_crops=num_crops, classes=classes))
        if not is_flow(streams[1].modality):
            raise ConfigError(f"--flow-model {flow_model} is a {streams[1].modality} model; give a flow or warped_flow model")
        if streams[1].class_names != streams[0].class_names:
            raise DataError(f"{model} and {flow_model} were trained on different classes; they cannot be fused")
    if weights is None:
        weights = default_fusion_weights([s.modality for s in streams]) if len(streams) > 1 else [1.0]
    if len(weights) != len(streams):
        raise ConfigError(f"--weights needs one weight per model: {len(streams)} model(s), {len(weights)} weight(s)")
    # Streams trained on the same conversion read the same stored frames: encode the video once for them.
    frames_cache: dict[tuple, tuple[dict[str, list[bytes]], int]] = {}
    stream_logits = []
    num_frames = 0
    for stream in streams:
        key = (_stored_as(stream.settings), stream.num_snippets)
        if key not in frames_cache:
            needs = {s.modality: s.new_length for s in streams if _stored_as(s.settings) == key[0]}
            frames_cache[key] = encode_video(video, needs, num_snippets=stream.num_snippets, settings=stream.settings)
        frames, num_frames = frames_cache[key]
        stream_logits.append(stream.score(frames))
    logits = fuse_logits(stream_logits, weights)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    names = streams[0].class_names
    order = np.argsort(-logits, kind="stable")[:top]
    return {
        "video": str(video),
        "num_frames": num_frames,
        "streams": [{"model": s.source, "modality": s.modality, "weight": float(w), "num_snippets": s.num_snippets,
                     "num_crops": s.num_crops} for s, w in zip(streams, weights)],
        "top": [{"class": names[i], "probability": float(probabilities[i]), "logit": float(logits[i])} for i in order],
    }


def _stored_as(settings: VideoSettings) -> tuple:
    """The settings that decide the stored bytes of a video, whatever modalities are computed."""
    return settings.frame_size, settings.short_side, settings.jpeg_quality, settings.flow
