"""tsn-keras: Temporal Segment Networks (Wang et al., ECCV 2016) for Keras 3 / TensorFlow.

The package is organised along the data flow:

- ``tfrecords_tools`` (a sibling package): video files -> frames and optical flow -> TFRecord shards.
- ``tsn_keras.data``: the shards -> TSN segment sampling and augmentation -> batches (tf.data).
- ``tsn_keras.models``: backbones, the segment consensus and ``build_tsn``.
- ``tsn_keras.training``, ``tsn_keras.evaluation``, ``tsn_keras.export``, ``tsn_keras.plots``.

Importing this package is cheap: TensorFlow is only checked for here, and imported by the
submodules that need it. The library's Keras classes (``TSN``, its layers) are registered as
soon as Keras is imported, before or after this package, so ``keras.saving.load_model`` reads
every ``.keras`` file the library writes after a plain ``import tsn_keras``.
"""

import importlib.abc
import importlib.util
import os
import sys

from tsn_keras.version import __version__

MIN_TENSORFLOW = (2, 16)

_INSTALL_HINT = "`pip install 'tsn-keras[cpu]'` (CPU) or `pip install 'tsn-keras[gpu]'` (NVIDIA GPUs)"


def _installed_tensorflow_version() -> str | None:
    """The version of whichever TensorFlow distribution is installed, without importing it."""
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-nightly"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


if importlib.util.find_spec("tensorflow") is None:
    raise ImportError(f"tsn-keras needs TensorFlow >= 2.16, which is not installed: install it with {_INSTALL_HINT}.")
_tf_version = _installed_tensorflow_version()
if _tf_version is not None and tuple(int(p) for p in _tf_version.split(".")[:2] if p.isdigit()) < MIN_TENSORFLOW:
    raise ImportError(
        f"tsn-keras needs TensorFlow >= 2.16 (Keras 3) but found {_tf_version}: upgrade it with {_INSTALL_HINT}."
    )

# Keras 3 is multi-backend; this library is written for the TensorFlow backend (tf.data input,
# SavedModel export, tf.distribute). Respect an explicit choice only if it is TensorFlow.
if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    raise ImportError(
        f"tsn-keras runs on the TensorFlow backend of Keras, but KERAS_BACKEND={os.environ['KERAS_BACKEND']!r}; "
        "unset it or set KERAS_BACKEND=tensorflow."
    )
os.environ["KERAS_BACKEND"] = "tensorflow"


def _register_keras_classes() -> None:
    import tsn_keras.models  # noqa: F401  (defining the classes registers them with Keras)


class _RegisterAfterKerasLoads(importlib.abc.MetaPathFinder):
    """Finds ``keras`` like the next finder would, and registers the library's classes right after
    the module has run: loading a model needs them, importing this package should not cost Keras."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register_keras_classes()

    def __getattr__(self, name):  # resource readers and the like: the original loader's
        return getattr(self._loader, name)


if "keras" in sys.modules:
    _register_keras_classes()
else:
    sys.meta_path.insert(0, _RegisterAfterKerasLoads())

__all__ = ["MIN_TENSORFLOW", "__version__"]
