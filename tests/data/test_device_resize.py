"""``ClipSpec(device_resize=True)``: uint8 crops from the host, resized and normalised on the device,
give exactly the views of the host path (same seed, same clips, bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest

from tsn_keras.errors import ConfigError


def _pairs(shards, mode, normalization, batch_size=4, batches=3):
    from tsn_keras.data.clips import ClipSpec
    from tsn_keras.data.pipeline import make_dataset

    def clips(device_resize):
        spec = ClipSpec("rgb", mode, input_size=32, scales=(1, 0.875, 0.75, 0.66), normalization=normalization,
                        device_resize=device_resize)
        return make_dataset(shards, spec, split="train", batch_size=batch_size, seed=3, repeat=True), spec

    (host, _), (device, spec) = clips(False), clips(True)
    return [(h, d, spec) for h, d, _ in zip(host, device, range(batches))]


@pytest.mark.parametrize("mode,normalization", [("train", "caffe_bgr"), ("train", "keras_torch"), ("val", "keras_tf")])
def test_device_views_equal_host_views_bit_for_bit(tiny_shards, mode, normalization):
    sizes, flips = set(), set()
    for (x_host, y_host), (x_device, y_device), spec in _pairs(tiny_shards, mode, normalization):
        np.testing.assert_array_equal(y_device.numpy(), y_host.numpy())
        assert x_device["crops"].dtype.name == "uint8" and x_device["crop_size"].shape == (4, 2)
        views = spec.device_views(x_device["crops"], x_device["crop_size"], x_device["flip"]).numpy()
        assert views.shape == x_host.shape == (4, 3, 32, 32, 3)
        np.testing.assert_array_equal(views, x_host.numpy())
        sizes |= {tuple(s) for s in x_device["crop_size"].numpy()}
        flips |= set(x_device["flip"].numpy().tolist())
    if mode == "train":  # several crop sizes and both flips: padding, per-clip weights, mirror exercised
        assert len(sizes) > 1 and flips == {True, False}, (sizes, flips)


def test_model_behind_device_views_gives_the_models_logits(tiny_shards, tmp_path):
    import keras

    from tsn_keras.models.tsn import build_tsn, with_device_views

    keras.utils.set_random_seed(0)
    model = build_tsn(4, "rgb", backbone="tiny", input_size=32, normalization="caffe_bgr")
    wrapped = with_device_views(model)
    (x_host, _), (x_device, _), _ = _pairs(tiny_shards, "train", "caffe_bgr", batches=1)[0]
    np.testing.assert_array_equal(np.asarray(wrapped(x_device, training=False)), np.asarray(model(x_host, training=False)))
    assert wrapped.get_layer(model.name) is model  # training the wrapper trains the TSN's own weights
    wrapped.save(tmp_path / "wrapped.keras")
    reloaded = keras.saving.load_model(tmp_path / "wrapped.keras")
    np.testing.assert_allclose(np.asarray(reloaded(x_device, training=False)),
                               np.asarray(model(x_host, training=False)), atol=1e-6)


def test_device_resize_is_for_rgb_train_and_val():
    from tsn_keras.data.clips import ClipSpec

    for modality, mode in (("flow", "train"), ("rgb", "test")):
        with pytest.raises(ConfigError, match="device_resize"):
            ClipSpec(modality, mode, device_resize=True)
