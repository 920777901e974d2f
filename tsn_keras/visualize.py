"""Class visualisation by gradient ascent on the input, as DeepDraw (Wang et al., Sec. 4.5, Fig. 3).

Starting from white noise, the backbone's input is changed step by step to raise the score of
one class; what comes out shows what the network looks for. The paper adapted DeepDraw to the
temporal network by optimising the stacked flow input and showing its x and y maps in grayscale.

Plain gradient ascent finds high-frequency patterns that no camera would record. The
regularisers are DeepDraw's and DeepDream's, every one a field of ``DrawConfig``:

- **octaves**: the picture starts small and is enlarged between octaves (the network always sees
  it resized to its input size), so coarse structure forms before detail;
- **jitter**: the picture is shifted by a random offset before each step (and back), so no
  pattern tied to one pixel grid survives;
- **blur**: a Gaussian blur every few steps, its sigma shrinking within an octave (DeepDraw's
  start/end sigma), a low-pass penalty on high frequencies;
- **decay** and **range**: a pull towards the neutral picture (grey, no motion) each step, an L2
  penalty on the norm, and clipping to the values a stored frame can hold.

The objective is the class's log-probability, not its logit: logits of all classes can rise
together, the log-softmax only rises when the class gains over the others, which is what "the
network scores the picture as that class" means. Steps are normalised gradients in pixel units
(``pictures.InputScale``), so one step size fits every preset and modality.

Example:
    >>> drawings = draw_classes(load_run("runs/rgb").model, [0, 3])  # doctest: +SKIP
    >>> drawings[0].probability > drawings[0].start_probability  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tsn_keras.errors import ConfigError
from tsn_keras.models.tsn import TSN
from tsn_keras.pictures import InputScale, input_scale, mosaic, snippet_pictures
from tsn_keras.plots import FORMATS, new_figure, save_figure
from tsn_keras.runs import RunInfo, load_run
from tsn_keras.tool_config import DrawConfig

SCORES_FILE, GRID_NAME = "scores.json", "visualization"
TOP = 5


@dataclass
class Drawing:
    """One class visualisation: the picture in pixel units and how the model scores it."""

    class_index: int
    class_name: str
    pixels: np.ndarray  # (S, S, C) pixel units, rounded to what a stored frame can hold
    start_probability: float  # the class's probability for the starting noise
    probability: float  # ... for the final picture
    top: list[tuple[str, float]] = field(default_factory=list)  # the top-5 classes of the final picture
    image: np.ndarray | None = None  # the picture as a person sees it (``pictures.mosaic``), RGB uint8


# --- the optimisation --------------------------------------------------------------------------

def _gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of ``(B, H, W, C)`` with reflected borders; sigma 0 leaves them unchanged."""
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    safe = tf.maximum(sigma, 1e-3)
    kernel = tf.exp(-0.5 * tf.square(offsets / safe))
    kernel = kernel / tf.reduce_sum(kernel)
    channels = tf.shape(images)[-1]
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    across = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    down = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, across, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, down, [1, 1, 1, 1], "VALID")


class _Ascent:
    """The compiled step and scoring functions for one model."""

    def __init__(self, model: TSN, scale: InputScale, config: DrawConfig):
        self.model, self.scale, self.config = model, scale, config
        self.size = model.input_size
        self.radius = max(1, math.ceil(3 * max(config.blur_start, config.blur_end)))
        self.offset = tf.constant(scale.offset)
        self.factor = tf.constant(scale.scale)
        self.low, self.high = tf.constant(scale.low), tf.constant(scale.high)
        self.neutral = tf.constant(scale.neutral)

    def log_probabilities(self, pixels: tf.Tensor) -> tf.Tensor:
        """``(B, h, w, C)`` pixel units -> log-probabilities ``(B, classes)``: one snippet per picture."""
        resized = tf.image.resize(pixels, [self.size, self.size])
        logits = self.model((resized - self.offset)[:, None] * self.factor, training=False)
        return tf.nn.log_softmax(tf.cast(logits, tf.float32))

    @tf.function(reduce_retracing=True)
    def step(self, pixels, targets, shift, sigma, blur):
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            # Rolling inside the tape shifts the gradient back with it: jitter without bookkeeping.
            shifted = tf.roll(pixels, shift, axis=[1, 2])
            objective = tf.reduce_sum(self.log_probabilities(shifted) * targets)
        gradient = tape.gradient(objective, pixels)
        gradient /= tf.reduce_mean(tf.abs(gradient), axis=[1, 2, 3], keepdims=True) + 1e-8
        pixels = pixels + self.config.step_size * gradient
        pixels = self.neutral + (pixels - self.neutral) * (1.0 - self.config.decay)
        pixels = tf.cond(blur, lambda: _gaussian_blur(pixels, sigma, self.radius), lambda: pixels)
        return tf.clip_by_value(pixels, self.low, self.high)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return np.exp(self.log_probabilities(tf.constant(pixels, tf.float32)).numpy())


def draw_classes(model: TSN, class_indices: list[int], config: DrawConfig | None = None, *,
                 progress: bool = True, desc: str = "visualize") -> list[Drawing]:
    """Class visualisations of a TSN, one per class index, all drawn together in one batch.

    Each picture starts from its own noise, seeded by ``(config.seed, class index)``; the jitter
    is seeded by ``config.seed``. The same call gives the same pictures; drawn in another batch,
    a picture may differ slightly (the backend's arithmetic depends on the batch size, and
    gradient ascent amplifies the differences).

    Args:
        model: a TSN (any modality; its input protocol says how pixels become input).
        class_indices: the classes to draw.
        config: the regularisers and their strengths; ``DrawConfig()`` by default.
        progress: show a progress bar.
        desc: the progress bar's label.

    Returns:
        One ``Drawing`` per class index, in order.
    """
    config = config or DrawConfig()
    if not isinstance(model, TSN):
        raise ConfigError(f"class visualisation needs a TSN written by tsn-keras, got {type(model).__name__}")
    for index in class_indices:
        if not 0 <= index < model.num_classes:
            raise ConfigError(f"class index {index} is out of range for a model of {model.num_classes} classes")
    scale = input_scale(model.modality, model.normalization, model.new_length)
    ascent = _Ascent(model, scale, config)
    size, channels = model.input_size, model.channels
    sides = [max(8, round(size * octave)) for octave in config.octaves]
    noise = np.stack([np.random.default_rng([config.seed, int(i)]).normal(0.0, 1.0, (sides[0], sides[0], channels))
                      for i in class_indices]).astype(np.float32)
    pixels = tf.constant(np.clip(scale.neutral + config.noise * noise, scale.low, scale.high), tf.float32)
    start = ascent.probabilities(pixels.numpy())
    targets = tf.one_hot(class_indices, model.num_classes, dtype=tf.float32)
    shifts = np.random.default_rng([config.seed, 1 << 20])
    with tqdm(total=config.steps * len(sides), desc=desc, unit="step", disable=not progress) as bar:
        for side in sides:
            pixels = tf.image.resize(pixels, [side, side])
            ratio = side / size  # jitter and blur are given at full size
            jitter = round(config.jitter * ratio)
            for step in range(config.steps):
                fraction = step / max(config.steps - 1, 1)
                sigma = (config.blur_start + (config.blur_end - config.blur_start) * fraction) * ratio
                blur = config.blur_every > 0 and (step + 1) % config.blur_every == 0
                shift = shifts.integers(-jitter, jitter + 1, size=2) if jitter else np.zeros(2, np.int64)
                pixels = ascent.step(pixels, targets, tf.constant(shift, tf.int32), tf.constant(sigma, tf.float32),
                                     tf.constant(blur))
                bar.update(1)
    # The picture a person sees is what a stored frame can hold: whole pixel values.
    final = np.clip(np.round(tf.image.resize(pixels, [size, size]).numpy()), scale.low, scale.high)
    probabilities = ascent.probabilities(final)
    names = _class_names(model)
    drawings = []
    for row, index in enumerate(class_indices):
        order = np.argsort(-probabilities[row], kind="stable")[:TOP]
        drawings.append(Drawing(int(index), names[index], final[row].astype(np.float32), float(start[row, index]),
                                float(probabilities[row, index]),
                                [(names[i], float(probabilities[row, i])) for i in order]))
    return drawings


def _class_names(model: TSN) -> list[str]:
    return list(model.class_names) if model.class_names else [str(i) for i in range(model.num_classes)]


def class_indices(run: RunInfo, classes: list[str]) -> list[int]:
    """The indices of class names in a run; an unknown name is a ``ConfigError`` listing the known ones."""
    names = run.class_names or _class_names(run.model)
    indices = []
    for name in classes:
        if name not in names:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise ConfigError(f"unknown class {name!r} for {run.model_path or run.model.name} (classes: {shown})")
        indices.append(names.index(name))
    return indices


# --- files and the grid figure -------------------------------------------------------------------

def _label(source: str | os.PathLike, taken: set[str]) -> str:
    path = Path(source)
    label = path.stem if path.suffix == ".keras" else path.name
    unique, n = label, 2
    while unique in taken:
        unique, n = f"{label}_{n}", n + 1
    taken.add(unique)
    return unique


def visualize_runs(runs: list[str | os.PathLike], classes: list[str], out_dir: str | os.PathLike,
                   config: DrawConfig | None = None, *, progress: bool = True,
                   formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Draw ``classes`` for each run; write the pictures, ``scores.json`` and the grid figure.

    Args:
        runs: run folders or ``.keras`` files (RGB, flow, warped flow or RGB difference); several
            runs make a grid like the paper's Fig. 3, one row per run.
        classes: class names, known to every run.
        out_dir: where ``<run>/<class>.png``, ``scores.json`` and ``visualization.png/.svg`` go.
        config: ``DrawConfig``; its values are recorded in ``scores.json``.
        formats: formats of the grid figure.

    Returns:
        The content of ``scores.json``.
    """
    if not classes:
        raise ConfigError("give at least one class to visualise (--classes NAME[,NAME...])")
    config = config or DrawConfig()
    out = Path(out_dir)
    loaded = [(source, load_run(source)) for source in runs]
    indices = [class_indices(run, classes) for _, run in loaded]  # every name checked before any drawing
    taken: set[str] = set()
    record: dict[str, Any] = {"config": asdict(config), "runs": []}
    rows = []
    for (source, run), wanted in zip(loaded, indices):
        label = _label(source, taken)
        drawings = draw_classes(run.model, wanted, config, progress=progress, desc=f"visualize {label}")
        pictures = []
        for drawing in drawings:
            image = mosaic(snippet_pictures(drawing.pixels, run.modality, run.normalization), run.modality)
            path = out / label / f"{_file_name(drawing.class_name)}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image[..., ::-1])
            pictures.append({"class": drawing.class_name, "file": str(path.relative_to(out)),
                             "probability": drawing.probability, "start_probability": drawing.start_probability,
                             "top5": [{"class": name, "probability": p} for name, p in drawing.top]})
            drawing.image = image
        record["runs"].append({"run": str(source), "label": label, "modality": run.modality,
                               "new_length": run.new_length, "normalization": run.normalization,
                               "pictures": pictures})
        rows.append((label, run.modality, drawings))
    record["figures"] = [str(p.relative_to(out)) for p in plot_grid(rows, out, formats=formats)]
    (out / SCORES_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_grid(rows: list[tuple[str, str, list[Drawing]]], out_dir: str | os.PathLike, *,
              formats: tuple[str, ...] = FORMATS, name: str = GRID_NAME) -> list[Path]:
    """Fig. 3 of the paper: one row per run, one column per class, each cell the class's picture.

    Args:
        rows: ``(label, modality, drawings)`` per run; each drawing needs its ``image`` (the mosaic).
    """
    columns = max(len(drawings) for _, _, drawings in rows)
    aspect = max(d.image.shape[1] / d.image.shape[0] for _, _, drawings in rows for d in drawings)
    cell = 2.2
    figure = new_figure(cell * aspect * columns + 1.0, (cell + 0.5) * len(rows))
    axes = np.atleast_2d(figure.subplots(len(rows), columns, squeeze=False))
    for r, (label, modality, drawings) in enumerate(rows):
        for c in range(columns):
            axis = axes[r, c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c >= len(drawings):
                axis.set_axis_off()
                continue
            drawing = drawings[c]
            axis.imshow(drawing.image, interpolation="nearest")
            axis.set_title(f"{drawing.class_name}\np = {drawing.probability:.2f}", fontsize=9)
            if c == 0:
                axis.set_ylabel(f"{label}\n({modality})", fontsize=9)
    figure.suptitle("class visualisations from noise (gradient ascent, DeepDraw-style)", fontsize=10)
    return save_figure(figure, out_dir, name, formats)
