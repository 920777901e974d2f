"""The settings of ``tsn visualize`` and ``tsn predict --untrimmed``, as typed dataclasses.

TensorFlow-free, so the command line builds its parsers (and their defaults) from them without
loading TensorFlow. The tools themselves are ``tsn_keras.visualize`` and ``tsn_keras.untrimmed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsn_keras.errors import ConfigError


@dataclass(frozen=True)
class DrawConfig:
    """How a class visualisation is drawn (DeepDraw-style regularised gradient ascent; the defaults,
    3 octaves of 60 steps, take seconds for the tiny backbone and minutes for BN-Inception on a CPU).

    Args:
        steps: gradient steps per octave.
        octaves: side of the picture in each octave, as a fraction of the model's input size,
            coarse to fine; the last is usually 1.
        step_size: mean absolute change per pixel and step, in pixel units (0..255).
        jitter: largest random shift (pixels, at full size) applied before each step.
        blur_every: steps between two Gaussian blurs (0: never).
        blur_start, blur_end: blur sigma (pixels, at full size) at the start and the end of each
            octave, decreasing linearly, as DeepDraw's start/end sigma.
        decay: fraction of the distance to the neutral picture removed each step (L2 penalty).
        noise: standard deviation of the starting white noise, in pixel units.
        seed: the same seed gives the same pictures.
    """

    steps: int = 60
    octaves: tuple[float, ...] = (0.5, 0.75, 1.0)
    step_size: float = 3.0
    jitter: int = 4
    blur_every: int = 4
    blur_start: float = 1.0
    blur_end: float = 0.3
    decay: float = 0.005
    noise: float = 16.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "octaves", tuple(float(o) for o in self.octaves))
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (bool(self.octaves) and all(0 < o <= 1 for o in self.octaves),
             f"octaves must be fractions of the input size in (0, 1], got {list(self.octaves)}"),
            (self.step_size > 0, f"step_size must be > 0, got {self.step_size}"),
            (self.jitter >= 0, f"jitter must be >= 0, got {self.jitter}"),
            (self.blur_every >= 0, f"blur_every must be >= 0, got {self.blur_every}"),
            (self.blur_start >= 0 and self.blur_end >= 0, "blur sigmas must be >= 0"),
            (0 <= self.decay < 1, f"decay must be in [0, 1), got {self.decay}"),
            (self.noise >= 0, f"noise must be >= 0, got {self.noise}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)



@dataclass(frozen=True)
class UntrimmedConfig:
    """How an untrimmed video is sampled and integrated.

    Args:
        rate: snippets per second of video.
        windows: window lengths in seconds (several scales; each at least one snippet).
        top_k: window scores averaged per class at each scale.
        smooth: snippets over which probabilities are averaged before the time ranges are cut.
        batch_size: snippets per forward pass.
    """

    rate: float = 1.0
    windows: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    top_k: int = 3
    smooth: int = 3
    batch_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(float(w) for w in self.windows))
        if not self.rate > 0:
            raise ConfigError(f"--rate must be > 0 snippets per second, got {self.rate}")
        if not self.windows or any(not w > 0 for w in self.windows):
            raise ConfigError(f"window lengths must be > 0 seconds, got {list(self.windows)}")
        for name in ("top_k", "smooth", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
