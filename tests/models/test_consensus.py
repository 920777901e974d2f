"""SegmentConsensus: every mode against a NumPy computation of its definition."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tsn_keras.errors import ConfigError
from tsn_keras.models.consensus import SegmentConsensus
from tsn_keras.vocab import CONSENSUS_MODES

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(2, 5, 4)).astype(np.float32)  # B=2, S=5 snippets, 4 classes
FEATURES = RNG.normal(size=(2, 5, 6)).astype(np.float32)  # D=6


def _run(layer, inputs):
    return keras.ops.convert_to_numpy(layer(inputs))


def test_average_and_max():
    np.testing.assert_allclose(_run(SegmentConsensus("avg"), LOGITS), LOGITS.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(_run(SegmentConsensus("max"), LOGITS), LOGITS.max(axis=1))


@pytest.mark.parametrize("k", [1, 2, 3, 9])
def test_topk_averages_the_k_largest_per_class(k):
    expected = np.sort(LOGITS, axis=1)[:, ::-1][:, : min(k, 5)].mean(axis=1)  # k clipped to S = 5
    np.testing.assert_allclose(_run(SegmentConsensus("topk", k=k), LOGITS), expected, rtol=1e-6)


def test_weighted_uses_one_learned_weight_per_segment():
    layer = SegmentConsensus("weighted", num_segments=5)
    layer.build(LOGITS.shape)
    weights = np.array([0.5, -1.0, 2.0, 0.1, 3.0], np.float32)
    layer.segment_weights.assign(weights)
    expected = (LOGITS * weights[None, :, None]).sum(axis=1)
    np.testing.assert_allclose(_run(layer, LOGITS), expected, rtol=1e-5, atol=1e-6)


def test_weighted_maps_snippets_to_segments_when_their_numbers_differ():
    layer = SegmentConsensus("weighted", num_segments=2)
    layer.build(LOGITS.shape)
    weights = np.array([0.25, 4.0], np.float32)
    layer.segment_weights.assign(weights)
    segment = np.floor(np.arange(5) * 2 / 5).astype(int)  # [0, 0, 0, 1, 1]
    expected = (LOGITS * weights[segment][None, :, None]).sum(axis=1) * 2 / 5
    np.testing.assert_allclose(_run(layer, LOGITS), expected, rtol=1e-5, atol=1e-6)


def test_weighted_starts_as_the_average():
    layer = SegmentConsensus("weighted", num_segments=3)
    np.testing.assert_allclose(_run(layer, LOGITS), LOGITS.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_attention_is_a_softmax_over_snippets_of_projected_features():
    layer = SegmentConsensus("attention")
    layer.build([FEATURES.shape, LOGITS.shape])
    kernel = RNG.normal(size=(6, 1)).astype(np.float32)
    layer.attention_kernel.assign(kernel)
    layer.attention_bias.assign(np.array([0.3], np.float32))
    scores = FEATURES @ kernel + 0.3
    attention = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    expected = (attention * LOGITS).sum(axis=1)
    np.testing.assert_allclose(_run(layer, [FEATURES, LOGITS]), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, LOGITS.mean(axis=1))


def test_gru_head_reads_features_and_gives_class_logits():
    layer = SegmentConsensus("gru", num_classes=7)
    out = _run(layer, FEATURES)
    assert out.shape == (2, 7)
    # The order of snippets matters to a GRU, unlike to the averaging consensuses.
    assert not np.allclose(out, _run(layer, FEATURES[:, ::-1]))


def test_identity_returns_snippet_logits():
    np.testing.assert_array_equal(_run(SegmentConsensus("identity"), LOGITS), LOGITS)


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        SegmentConsensus("median")
    assert all(mode in str(err.value) for mode in CONSENSUS_MODES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "weighted"}, "num_segments"),
        ({"mode": "gru"}, "num_classes"),
        ({"mode": "topk", "k": 0}, "consensus_k"),
    ],
)
def test_missing_mode_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SegmentConsensus(**kwargs)
