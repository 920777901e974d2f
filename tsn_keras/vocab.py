"""The names of tsn-keras, written once: modalities, presets, backbones, consensus modes, protocol.

Every other module, the configuration and the CLI's ``choices=`` import their lists from here,
so there is nothing to keep in step. TensorFlow-free (the CLI and the converter read it without
loading TensorFlow). The stored frame lists each modality reads are the shard format's, owned
by ``tfrecords_tools.schema``, and re-exported here.

Defaults are the paper's (``TSN_SEMANTICS.md``): ``new_length`` 1 for RGB and 5 otherwise,
multi-scale crop scales, dropout 0.8 / 0.7.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfrecords_tools.errors import ConfigError
from tfrecords_tools.schema import CONVERTED_KEYS, MODALITIES, MODALITY_KEYS, SPLITS

__all__ = [
    "BACKBONES", "BACKBONE_PRESETS", "CONSENSUS_MODES", "CONVERTED_KEYS", "CONVERTED_MODALITIES", "CROP_COUNTS",
    "DEFAULT_DROPOUT", "DEFAULT_NEW_LENGTH", "DEFAULT_SCALES", "EFFICIENTNET_LITE", "FEATURE_MODES", "FLOW_MODALITIES", "MODALITIES",
    "MODALITY_KEYS", "MODES", "NORMALIZATIONS", "PRECISIONS", "PRESETS", "READ_MODES", "REDUCING_MODES",
    "STRATEGIES", "Preset", "backbone_preset", "check_choice", "frames_per_snippet", "input_channels", "is_flow",
    "new_length_from_channels", "resolve_new_length",
]

# --- modalities ------------------------------------------------------------------------------

FLOW_MODALITIES: tuple[str, ...] = ("flow", "warped_flow")
CONVERTED_MODALITIES: tuple[str, ...] = tuple(CONVERTED_KEYS)  # what `tsn convert` computes
DEFAULT_NEW_LENGTH = {"rgb": 1, "rgb_diff": 5, "flow": 5, "warped_flow": 5}
DEFAULT_SCALES = {
    "rgb": (1.0, 0.875, 0.75, 0.66),
    "rgb_diff": (1.0, 0.875, 0.75, 0.66),
    "flow": (1.0, 0.875, 0.75),
    "warped_flow": (1.0, 0.875, 0.75),
}
DEFAULT_DROPOUT = {"rgb": 0.8, "rgb_diff": 0.8, "flow": 0.7, "warped_flow": 0.7}


def check_choice(key: str, value, allowed) -> None:
    """``ConfigError`` naming ``key`` and the allowed values when ``value`` is not one of them."""
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def is_flow(modality: str) -> bool:
    """Optical flow or warped flow: two grayscale components per field, x inverted by a mirror."""
    return modality in FLOW_MODALITIES


def resolve_new_length(modality: str, new_length: int | None = None) -> int:
    """L: ``new_length`` or the modality's default, checked."""
    check_choice("modality", modality, MODALITIES)
    length = DEFAULT_NEW_LENGTH[modality] if new_length is None else new_length
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ConfigError(f"new_length must be an integer >= 1, got {length!r}")
    if modality == "rgb" and length != 1:
        raise ConfigError(f"new_length must be 1 for modality rgb (one frame per snippet), got {length}")
    return length


def input_channels(modality: str, new_length: int | None = None) -> int:
    """Channels of one snippet: 3 (rgb), 2L (flow, warped_flow), 3L (rgb_diff)."""
    length = resolve_new_length(modality, new_length)
    if modality == "rgb":
        return 3
    return 3 * length if modality == "rgb_diff" else 2 * length


def new_length_from_channels(modality: str, channels: int) -> int:
    """The L for which ``input_channels(modality, L) == channels``; ``ConfigError`` if none."""
    check_choice("modality", modality, MODALITIES)
    length = 1 if modality == "rgb" else channels // (3 if modality == "rgb_diff" else 2)
    if length < 1 or input_channels(modality, length) != channels:
        raise ConfigError(f"a {modality} model cannot take {channels} channels per snippet")
    return length


def frames_per_snippet(modality: str, new_length: int) -> int:
    """Stored frames one snippet reads: L, or L+1 for RGB difference (L differences)."""
    return new_length + 1 if modality == "rgb_diff" else new_length


# --- input normalisation --------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """``out = (x - mean) * scale`` per channel (in output channel order) on 0..255 input."""

    bgr: bool
    mean: tuple[float, float, float]
    scale: tuple[float, float, float]

    @property
    def flow_scale(self) -> float:
        """Flow is ``(q - 128) * flow_scale``: the preset's mean channel scale."""
        return sum(self.scale) / 3


_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

PRESETS: dict[str, Preset] = {
    # BN-Inception converted from Caffe: BGR, 0..255, mean (104, 117, 128), std 1 (TSN_SEMANTICS.md).
    "caffe_bgr": Preset(True, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0)),
    # keras.applications "caffe" mode (ResNet50, ...): BGR minus the ImageNet means.
    "keras_caffe": Preset(True, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
    # keras.applications "tf" mode (InceptionV3, MobileNetV2, ...): RGB scaled to [-1, 1].
    "keras_tf": Preset(False, (127.5, 127.5, 127.5), (1 / 127.5,) * 3),
    # keras.applications "torch" mode: RGB / 255, ImageNet mean and std.
    "keras_torch": Preset(False, tuple(255.0 * m for m in _TORCH_MEAN),
                          tuple(1 / (255.0 * s) for s in _TORCH_STD)),
    "raw": Preset(False, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    # Google's EfficientNet-Lite (efficientnet/lite/efficientnet_lite_builder.py): RGB, (x - 127) / 128.
    "tf_lite": Preset(False, (127.0, 127.0, 127.0), (1 / 128,) * 3),
}
NORMALIZATIONS: tuple[str, ...] = tuple(PRESETS)
# In a recipe, "auto" means the backbone's own preset (``backbone_preset``).
AUTO = "auto"

# --- models ------------------------------------------------------------------------------------

# The input normalisation each backbone's pre-trained weights expect. BN-Inception's weights
# come from Caffe: BGR, 0..255, means 104/117/128. The keys are the backbones.
EFFICIENTNET_LITE: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
BACKBONE_PRESETS: dict[str, str] = {
    "bn_inception": "caffe_bgr",
    # Google's EfficientNet-Lite input: RGB, (x - 127) / 128.
    **{name: "tf_lite" for name in EFFICIENTNET_LITE},
    "inception_v3": "keras_tf",
    "resnet50": "keras_caffe",
    "mobilenet_v2": "keras_tf",
    "tiny": "keras_tf",
}
BACKBONES: tuple[str, ...] = tuple(BACKBONE_PRESETS)

CONSENSUS_MODES: tuple[str, ...] = ("avg", "max", "weighted", "topk", "attention", "gru", "identity")
REDUCING_MODES: tuple[str, ...] = ("avg", "max", "weighted", "topk")  # a reduction of snippet logits
FEATURE_MODES: tuple[str, ...] = ("attention", "gru")  # read the snippet features, not only the logits


def backbone_preset(backbone: str) -> str:
    """The normalisation preset that matches a backbone's pre-trained weights.

    Example:
        >>> backbone_preset("bn_inception")
        'caffe_bgr'
    """
    check_choice("backbone", backbone, BACKBONES)
    return BACKBONE_PRESETS[backbone]


# --- data and protocol -------------------------------------------------------------------------

MODES: tuple[str, ...] = SPLITS  # sampling modes, each named after the split it is for
CROP_COUNTS: tuple[int, ...] = (1, 3, 10)  # test crops: centre; 3 along the long side; 4 corners + centre, x2 flips
READ_MODES: tuple[str, ...] = ("auto", "index", "stream")

# --- training -----------------------------------------------------------------------------------

STRATEGIES: tuple[str, ...] = ("auto", "default", "mirrored", "multi_worker")
PRECISIONS: tuple[str, ...] = ("float32", "float16", "bfloat16")
