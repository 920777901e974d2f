"""BN-Inception against a PyTorch model with the ``pretrainedmodels`` layout, through `tsn convert-weights`."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.models.torch_bn_inception import randomised  # noqa: E402
from tsn_keras.cli import main  # noqa: E402
from tsn_keras.errors import ConfigError, DataError  # noqa: E402
from tsn_keras.models.backbones import build_backbone  # noqa: E402
from tsn_keras.models.bn_inception import BNInception  # noqa: E402
from tsn_keras.models.pytorch_weights import load_state_dict  # noqa: E402
from tsn_keras.models.transfer import cross_modality_weights  # noqa: E402


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A random PyTorch BN-Inception, its checkpoint, and the Keras weights converted by the CLI."""
    folder = tmp_path_factory.mktemp("bn_inception")
    model = randomised(seed=0)
    checkpoint = folder / "bn_inception.pth"
    torch.save(model.state_dict(), checkpoint)
    output = folder / "bn_inception.weights.h5"
    assert main(["convert-weights", str(checkpoint), str(output)]) == 0
    return model, checkpoint, output


def _caffe_input(seed: int, size: int) -> np.ndarray:
    """BGR 0..255 minus the means, as the ``caffe_bgr`` preset gives (NHWC)."""
    return (np.random.default_rng(seed).random((2, size, size, 3)) * 255 - 128).astype(np.float32)


def _torch(x: np.ndarray):
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def test_converted_weights_give_the_pytorch_outputs(converted):
    model, _, weights = converted
    keras_model = BNInception((224, 224, 3), weights=weights, include_top=True)
    x = _caffe_input(0, 224)
    with torch.no_grad():
        expected = model(_torch(x)).numpy()
    assert keras_model.output_shape == (None, 1000)
    assert np.abs(expected).max() > 1.0  # the comparison is not between two near-zero outputs
    np.testing.assert_array_less(np.abs(keras_model.predict(x, verbose=0) - expected).max(), 1e-4)


def test_parameter_counts_match_pytorch(converted):
    model = converted[0]
    keras_model = BNInception((224, 224, 3), include_top=True)
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    assert trainable == sum(p.numel() for p in model.parameters()) == 11_295_240
    assert keras_model.count_params() == trainable + buffers


def test_ceil_mode_pools_match_at_an_odd_grid(converted):
    # At 226 px pool1 sees 113x113: ceil mode gives 56, Keras "same" pooling would give 57.
    model, _, weights = converted
    keras_model = BNInception((226, 226, 3), weights=weights, pooling=None)
    x = _caffe_input(1, 226)[:1]
    with torch.no_grad():
        expected = model.features(_torch(x)).numpy().transpose(0, 2, 3, 1)
    actual = keras_model.predict(x, verbose=0)
    assert actual.shape == expected.shape == (1, 7, 7, 1024)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_backbone_without_classifier_loads_the_converted_file_into_flow_channels(converted):
    model, _, weights = converted
    flow = build_backbone("bn_inception", (96, 96, 10), weights=weights)
    assert flow.output_shape == (None, 1024)
    rgb_kernel = model.conv1_7x7_s2.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_allclose(flow.get_layer("conv1_7x7_s2").kernel.numpy(), cross_modality_weights(rgb_kernel, 10))
    np.testing.assert_array_equal(flow.get_layer("conv1_7x7_s2").bias.numpy(), model.conv1_7x7_s2.bias.detach().numpy())
    np.testing.assert_array_equal(
        flow.get_layer("inception_5b_pool_proj_bn").moving_variance.numpy(),
        model.inception_5b_pool_proj_bn.running_var.numpy(),
    )


def test_state_dict_with_missing_or_unexpected_keys_is_refused(converted):
    model = converted[0]
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    keras_model = BNInception((224, 224, 3), include_top=True)
    del state["inception_4a_3x3_bn.running_var"]
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(DataError, match=r"inception_4a_3x3_bn\.running_var.*extra\.weight"):
        load_state_dict(keras_model, state)


def test_state_dict_with_a_wrong_shape_is_refused(converted):
    state = {k: v.numpy() for k, v in converted[0].state_dict().items()}
    state["conv2_3x3.weight"] = np.zeros((192, 64, 5, 5), np.float32)
    with pytest.raises(DataError, match=r"conv2_3x3\.weight"):
        load_state_dict(BNInception((224, 224, 3), include_top=True), state)


def test_convert_weights_without_torch_names_the_extra(converted, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    assert main(["convert-weights", str(converted[1]), str(tmp_path / "x.weights.h5")]) == 2
    assert "tsn-keras[torch]" in capsys.readouterr().err


def test_convert_weights_needs_a_weights_h5_output(converted, tmp_path):
    from tsn_keras.commands.convert_weights import run

    with pytest.raises(ConfigError, match=r"\.weights\.h5"):
        run(argparse.Namespace(input=str(converted[1]), output=str(tmp_path / "x.h5")))


def test_input_sizes_the_original_cannot_take_are_refused():
    # At 112 px, 4e concatenates a 4x4 conv output with a 3x3 ceil-mode pool (in PyTorch as well).
    with pytest.raises(ConfigError, match="32n-1 to 32n"):
        BNInception((112, 112, 3))
