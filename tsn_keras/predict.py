"""Top-k classes for one video file, from an RGB, flow or two-stream model.

The video goes through what the converter did to the training data, so the model sees the same
kind of input: frames decoded and resized to the conversion's stored size, JPEG-encoded at its
quality; for flow models, optical flow with the conversion's algorithm, quantised to bytes
(bound 20) and JPEG-encoded. Flow is computed only for the fields the 25 test snippets read.
Then the test protocol runs (``evaluation``), and two streams are fused with the paper's weights.

Example:
    >>> result = predict_video("v_Archery_g01_c01.avi", "runs/rgb", flow_model="runs/flow")  # doctest: +SKIP
    >>> result["top"][0]  # doctest: +SKIP
    {'class': 'Archery', 'probability': 0.97, 'logit': 8.1}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tsn_keras.errors import ConfigError, DataError

PAPER_FRAME_SIZE = (340, 256)
DEFAULT_JPEG_QUALITY = 90


# --- the video, as the converter would have stored it ------------------------------------------

def conversion_options(data_root: str | os.PathLike | None) -> dict[str, Any]:
    """``frame_size``, ``short_side``, ``jpeg_quality`` and ``flow`` of a conversion (paper defaults without one)."""
    options = {"frame_size": PAPER_FRAME_SIZE, "short_side": None, "jpeg_quality": DEFAULT_JPEG_QUALITY,
               "flow": "tvl1"}
    if data_root is None or not (Path(data_root) / "manifest.json").is_file():
        return options
    from tsn_keras.data.records import load_manifest

    manifest = load_manifest(data_root)
    stored = manifest.get("options")
    if stored:  # written by `tsn convert`: null frame_size and short_side mean "original size"
        options["short_side"] = stored.get("short_side")
        frame_size = stored.get("frame_size")
        options["frame_size"] = tuple(frame_size) if frame_size and options["short_side"] is None else None
        options["jpeg_quality"] = int(stored.get("jpeg_quality") or DEFAULT_JPEG_QUALITY)
        options["flow"] = stored.get("flow") or "tvl1"
    elif manifest.get("frame_size"):
        options["frame_size"] = tuple(manifest["frame_size"])
    return options


def stored_size(data_root: str | os.PathLike | None) -> dict[str, Any]:
    """The ``frame_size`` / ``short_side`` keyword arguments of ``read_video`` for a conversion."""
    options = conversion_options(data_root)
    return {"frame_size": options["frame_size"], "short_side": options["short_side"]}


def read_video(path: str | os.PathLike, frame_size: tuple[int, int] | None = PAPER_FRAME_SIZE,
               short_side: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video file frame by frame (BGR ``uint8``), resized like the converter did.

    A file that cannot be read as a video is a ``DataError`` naming the file and the reason.
    """
    from tfrecords_tools.video import VideoError, VideoReader

    try:
        reader = VideoReader(path, frame_size=frame_size, short_side=short_side)
        yield from reader
        reader.check_complete()
    except VideoError as err:
        raise DataError(f"cannot read video {path}: {err}") from None


def encode_video(path: str | os.PathLike, needs: dict[str, int], *, num_snippets: int = 25,
                 options: dict[str, Any] | None = None) -> tuple[dict[str, list[bytes]], int]:
    """The stored frame lists of one video, as ``tsn convert`` would have written them.

    Args:
        path: the video file.
        needs: modality -> new_length of every stream that will read the video.
        num_snippets: T; flow fields that none of the T test snippets reads are not computed
            (their places hold the JPEG of the nearest computed field, so the lists keep the
            converter's length N-1 and every index the protocol reads is exact).
        options: ``conversion_options`` of the conversion the models were trained on.

    Returns:
        ``({stored key: [JPEG bytes]}, number of frames)``.
    """
    import cv2

    from tfrecords_tools.flow import FlowEstimator, WarpedFlowEstimator, quantize_flow
    from tfrecords_tools.video import encode_jpeg

    options = options or conversion_options(None)
    quality = options["jpeg_quality"]
    flows = {m: length for m, length in needs.items() if m in ("flow", "warped_flow")}
    rgb: list[bytes] = []
    grays: list[np.ndarray] = []
    for frame in read_video(path, options["frame_size"], options["short_side"]):
        rgb.append(encode_jpeg(frame, quality))
        if flows:
            grays.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    out: dict[str, list[bytes]] = {}
    if "rgb" in needs or "rgb_diff" in needs:
        out["rgb"] = rgb
    if not flows:
        return out, len(rgb)
    if len(grays) < 2:
        raise DataError(f"{path} has {len(grays)} frame(s); optical flow needs at least 2")
    estimator = FlowEstimator(options["flow"])
    warped = WarpedFlowEstimator(estimator) if "warped_flow" in flows else None
    num_fields = len(grays) - 1
    wanted = {m: _needed_fields(num_fields, num_snippets, length) for m, length in flows.items()}
    fields: dict[str, dict[int, tuple[bytes, bytes]]] = {m: {} for m in flows}
    for i in _progress(sorted(set().union(*wanted.values())), "optical flow"):
        plain = estimator(grays[i], grays[i + 1])
        if i in wanted.get("flow", ()):
            fields["flow"][i] = _quantised(plain, quality, quantize_flow, encode_jpeg)
        if warped is not None and i in wanted["warped_flow"]:
            fields["warped_flow"][i] = _quantised(warped(grays[i], grays[i + 1], plain)[0], quality,
                                                  quantize_flow, encode_jpeg)
    for modality, computed in fields.items():
        keys = np.array(sorted(computed))
        nearest = [int(keys[np.abs(keys - i).argmin()]) for i in range(num_fields)]
        out[f"{modality}_x"] = [computed[j][0] for j in nearest]
        out[f"{modality}_y"] = [computed[j][1] for j in nearest]
    return out, len(rgb)


def _quantised(field: np.ndarray, quality: int, quantize, encode) -> tuple[bytes, bytes]:
    return encode(quantize(field[..., 0]), quality), encode(quantize(field[..., 1]), quality)


def _needed_fields(num_fields: int, num_snippets: int, new_length: int) -> list[int]:
    from tsn_keras.data.sampling import sample_offsets, snippet_frames

    starts = sample_offsets(num_fields, num_snippets, new_length, "test")
    return sorted(set(np.asarray(snippet_frames(starts, new_length, num_fields)).ravel().tolist()))


def _progress(items, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="field", leave=False)


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
    conversion: dict[str, Any]
    score: Callable[[dict[str, list[bytes]]], np.ndarray]  # frame lists -> video logits [classes]


def load_stream(source: str | os.PathLike, *, num_crops: int | None = None,
                classes: str | os.PathLike | None = None) -> Stream:
    """A run folder, ``.keras`` file or export folder (``tsn export``) as a scoring stream."""
    import tensorflow as tf

    from tsn_keras.data.records import MODALITY_KEYS
    from tsn_keras.export import EXPORT_INFO, JPEG_SIGNATURE, jpeg_inputs, load_export_info

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
                      info["num_snippets"], info["num_crops"], conversion, score_export)

    from tsn_keras.data.pipeline import test_views
    from tsn_keras.evaluation import video_scorer
    from tsn_keras.runs import load_run, read_class_names

    run = load_run(path, classes=classes)
    data_root = run.config.data.root if run.config is not None and run.config.data.root else None
    names = run.class_names or (read_class_names(data_root) if data_root else None)
    if names is None:
        raise ConfigError(f"no class names for {path}: pass --classes (a classes.json, text file or conversion folder)")
    num_snippets = run.config.evaluate.num_snippets if run.config is not None else 25
    crops = num_crops or (run.config.evaluate.num_crops if run.config is not None else 10)
    scorer = video_scorer(run.model, crops, num_snippets)
    keys = MODALITY_KEYS[run.modality]

    def score_run(frames: dict[str, list[bytes]]) -> np.ndarray:
        lists = tuple(tf.constant(frames[key], tf.string) for key in keys)
        views = test_views(lists if len(lists) > 1 else lists[0], None, run.modality, run.new_length, num_snippets,
                           crops, run.input_size, run.normalization)
        return np.asarray(scorer(views[None]))[0]

    return Stream(str(path), run.modality, run.new_length, names, num_snippets, crops,
                  conversion_options(data_root), score_run)


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
    from tsn_keras.evaluation import default_fusion_weights

    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    if not Path(video).is_file():
        raise DataError(f"video file {video} not found")
    streams = [load_stream(model, num_crops=num_crops, classes=classes)]
    if flow_model is not None:
        streams.append(load_stream(flow_model, num_crops=num_crops, classes=classes))
        if streams[1].modality not in ("flow", "warped_flow"):
            raise ConfigError(f"--flow-model {flow_model} is a {streams[1].modality} model; give a flow or warped_flow model")
        if streams[1].class_names != streams[0].class_names:
            raise DataError(f"{model} and {flow_model} were trained on different classes; they cannot be fused")
    if weights is None:
        weights = default_fusion_weights([s.modality for s in streams]) if len(streams) > 1 else [1.0]
    if len(weights) != len(streams):
        raise ConfigError(f"--weights needs one weight per model: {len(streams)} model(s), {len(weights)} weight(s)")
    logits = None
    frames_cache: dict[str, tuple[dict[str, list[bytes]], int]] = {}
    num_frames = 0
    for stream, weight in zip(streams, weights):
        key = json.dumps(stream.conversion, sort_keys=True, default=list) + str(stream.num_snippets)
        needs = {s.modality: s.new_length for s in streams if s.conversion == stream.conversion}
        if key not in frames_cache:
            frames_cache[key] = encode_video(video, needs, num_snippets=stream.num_snippets, options=stream.conversion)
        frames, num_frames = frames_cache[key]
        stream_logits = float(weight) * stream.score(frames).astype(np.float64)
        logits = stream_logits if logits is None else logits + stream_logits
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
