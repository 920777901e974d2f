"""SavedModel export for serving: the trained TSN with the test protocol inside the graph.

``export_saved_model`` writes, under ``out_dir``:

- ``saved_model/``: a TensorFlow SavedModel that loads with ``tf.saved_model.load`` without
  tsn-keras (or Keras) installed, with three signatures:

  ``serving_default``
      ``snippets``: float32 ``(batch, snippets, H, W, C)``, already normalised, any number of
      snippets -> ``logits``, ``probabilities`` ``(batch, classes)``: the model's own consensus.
  ``serve_jpeg_frames``
      one video's encoded JPEG frames, any count: ``frames`` (1-D string) for RGB and RGB
      difference; ``flow_x``, ``flow_y`` (1-D string, quantised flow JPEGs as ``tsn convert``
      stores them) for flow and warped flow -> ``logits``, ``probabilities`` ``(1, classes)``.
      Samples the T test snippets, cuts the crops and normalises with the same graph functions
      as ``make_dataset`` in test mode (``pipeline.test_views``), and scores like ``evaluate``:
      logits averaged over crops and snippets, then softmax.
  ``class_names``
      no input -> ``class_names`` (string ``[classes]``, index = class).

- ``model.keras``: the Keras model;
- ``export.json``: the protocol (modality, new_length, input size, normalisation, snippets,
  crops, the stored frame size and JPEG quality) and the class names.

Example:
    >>> export_saved_model("runs/ucf101_rgb-20240101-120000", "exported/rgb")  # doctest: +SKIP
    >>> served = tf.saved_model.load("exported/rgb/saved_model")  # doctest: +SKIP
    >>> served.signatures["serve_jpeg_frames"](frames=tf.constant(jpegs))["probabilities"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tfrecords_tools.shards import atomic_write_bytes
from tfrecords_tools.worker import stored_video_settings
from tsn_keras.checkpoints import save_model_atomically
from tsn_keras.data.pipeline import test_views
from tsn_keras.errors import ConfigError, DataError
from tsn_keras.evaluation import test_clip_spec, video_scorer
from tsn_keras.runs import load_run, read_class_names
from tsn_keras.version import __version__
from tsn_keras.vocab import is_flow

SNIPPETS_SIGNATURE = "serving_default"
JPEG_SIGNATURE = "serve_jpeg_frames"
CLASSES_SIGNATURE = "class_names"
EXPORT_INFO = "export.json"
EXPORT_FORMAT = "tsn-keras-export"
# The JPEG signature refuses frames with a longer side above this: decoding is the signature's
# memory, and T x crops views of a 2048 px frame took 1.8 GB. Clients send frames resized as
# the conversion stored them (export.json "conversion"), a few hundred pixels a side.
MAX_FRAME_SIDE = 1024
_EXPORT_FILES = ("saved_model", "model.keras", EXPORT_INFO)


def jpeg_inputs(modality: str) -> tuple[str, ...]:
    """Input names of the JPEG signature: ``frames``, or ``flow_x`` and ``flow_y`` for flow models."""
    return ("flow_x", "flow_y") if is_flow(modality) else ("frames",)


def export_saved_model(model_or_run, out_dir: str | os.PathLike, *, class_names: list[str] | str | None = None,
                       num_snippets: int | None = None, num_crops: int | None = None,
                       overwrite: bool = False) -> Path:
    """Export a trained TSN as a SavedModel with a snippet signature and a JPEG-frames signature.

    Args:
        model_or_run: a run folder, a ``.keras`` file or a ``TSN``.
        out_dir: output folder (``saved_model/``, ``model.keras``, ``export.json``).
        class_names: a list of names or a file/conversion folder holding them, for a model that
            holds none; default: the model's, the run's ``classes.json``, else the classes of the
            run's converted data.
        num_snippets, num_crops: the test protocol of the JPEG signature; default the recipe's
            ``evaluate:`` section (the paper's T = 25, 10 crops for a bare model).
        overwrite: replace the export already in ``out_dir`` (its three entries, nothing else);
            without it an existing export is a ``ConfigError`` rather than a mix of two.

    Returns:
        The path of the SavedModel folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder for the export")
    existing = [name for name in _EXPORT_FILES if (out / name).exists() or (out / name).is_symlink()]
    if existing and not overwrite:
        raise ConfigError(f"{out} already holds an export ({', '.join(existing)}); pass --overwrite "
                          "(overwrite=True) to replace it, or choose another folder")
    run = load_run(model_or_run)
    clip = test_clip_spec(run, num_snippets, num_crops)
    names = _class_names(run, class_names)
    model, size, channels = run.model, run.input_size, run.model.channels
    score = video_scorer(model, clip.num_crops, clip.num_snippets)
    names_tensor = tf.constant(names, dtype=tf.string)

    def outputs(logits):
        logits = tf.cast(logits, tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def serve_snippets(snippets):
        return outputs(model(snippets, training=False))

    def serve_frames(*frames):
        for name, value in zip(jpeg_inputs(run.modality), frames):
            tf.debugging.assert_positive(tf.size(value), message=f"{name} holds no JPEG frame")
            # Reads only the JPEG header: a frame too large is refused before anything is decoded.
            shapes = tf.map_fn(tf.io.extract_jpeg_shape, value, fn_output_signature=tf.TensorSpec([3], tf.int32))
            tf.debugging.assert_less_equal(
                tf.reduce_max(shapes[:, :2]), MAX_FRAME_SIDE,
                message=f"{name}: a frame is larger than {MAX_FRAME_SIDE} px a side; resize frames as the "
                        "conversion stored them (export.json 'conversion')")
        views = test_views(tuple(frames) if len(frames) > 1 else frames[0], clip)
        return outputs(score(views[None]))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SNIPPETS_SIGNATURE, serve_snippets, input_signature=[
        tf.TensorSpec((None, None, size, size, channels), tf.float32, name="snippets")])
    archive.add_endpoint(JPEG_SIGNATURE, serve_frames, input_signature=[
        tf.TensorSpec((None,), tf.string, name=name) for name in jpeg_inputs(run.modality)])
    archive.add_endpoint(CLASSES_SIGNATURE, lambda: {"class_names": names_tensor}, input_signature=[])

    out.mkdir(parents=True, exist_ok=True)
    saved = out / "saved_model"
    # Written beside, then swapped in: a kill or a full disk leaves the previous export whole.
    staging = out / f".saved_model.tmp-{os.getpid()}"
    try:
        archive.write_out(str(staging), verbose=False)
        _remove_export_entry(saved)
        os.replace(staging, saved)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    save_model_atomically(model, out / "model.keras")
    settings = stored_video_settings(run.data_root)
    conversion = {name: getattr(settings, name) for name in ("frame_size", "short_side", "jpeg_quality", "flow")}
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT, "version": 1, "library_version": __version__,
        "modality": run.modality, "new_length": run.new_length, "input_size": size, "channels": channels,
        "normalization": run.normalization, "num_snippets": clip.num_snippets, "num_crops": clip.num_crops,
        "signatures": {SNIPPETS_SIGNATURE: ["snippets"], JPEG_SIGNATURE: list(jpeg_inputs(run.modality)),
                       CLASSES_SIGNATURE: []},
        "conversion": {k: list(v) if isinstance(v, tuple) else v for k, v in conversion.items()},
        "class_names": names,
        "source": str(run.model_path) if run.model_path else model.name,
    }
    atomic_write_bytes(out / EXPORT_INFO, (json.dumps(info, indent=2) + "\n").encode())
    return saved


def _remove_export_entry(path: Path) -> None:
    """Remove one entry of a previous export (a link itself, never what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def load_export_info(path: str | os.PathLike) -> dict[str, Any]:
    """The ``export.json`` of an export folder; a folder that is not one is a ``DataError``."""
    path = Path(path)
    info_path = path / EXPORT_INFO
    if not info_path.is_file() or not (path / "saved_model").is_dir():
        raise DataError(f"{path} is not an export folder (needs {EXPORT_INFO} and saved_model/; run `tsn export`)")
    try:
        info = json.loads(info_path.read_text())
    except ValueError as err:
        raise DataError(f"cannot read {info_path}: {err}") from None
    if info.get("format") != EXPORT_FORMAT:
        raise DataError(f"{info_path} is not a tsn-keras export description (format {info.get('format')!r})")
    return info


def _class_names(run, class_names) -> list[str]:
    if isinstance(class_names, (list, tuple)):
        names = [str(c) for c in class_names]
    elif class_names is not None:
        names = read_class_names(class_names)
    elif run.class_names is not None:
        names = run.class_names
    elif run.data_root is not None:
        names = read_class_names(run.data_root)
    else:
        raise ConfigError("no class names for this model: pass class_names (--classes) with a classes.json, "
                          "a text file or the conversion folder")
    classes = run.model.num_classes
    if len(names) != classes:
        raise DataError(f"the model has {classes} classes but {len(names)} class names were given")
    return names
