"""The test protocol batched across videos and split over replicas gives the one-video-at-a-time scores.

The mirrored case needs two logical CPU devices, which must be configured before TensorFlow
starts, so it runs in a fresh process (this module is also the script:
``python -m tests.test_evaluation_distributed <shards>``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240
SNIPPETS, CROPS = 3, 10


def _scores(model, shards, batch_size, strategy=None):
    from tests.test_evaluation import INPUT_SIZE
    from tsn_keras.data.clips import ClipSpec
    from tsn_keras.data.pipeline import make_dataset
    from tsn_keras.evaluation import replica_model, score_dataset

    clip = ClipSpec("rgb", "test", input_size=INPUT_SIZE, normalization="keras_tf", num_snippets=SNIPPETS,
                    num_crops=CROPS)
    data = make_dataset(shards, clip, split="test", batch_size=batch_size, return_ids=True)
    ids, labels, logits = score_dataset(replica_model(model, strategy), data, num_crops=CROPS, num_snippets=SNIPPETS,
                                        strategy=strategy)
    return {"ids": ids.tolist(), "labels": labels.tolist(), "logits": logits.tolist()}


def _mirrored(shards: str) -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.test_evaluation import make_model
    from tsn_keras.distribute import make_strategy

    strategy = make_strategy("mirrored")
    model = make_model()
    return {"replicas": strategy.num_replicas_in_sync,
            "one_by_one": _scores(model, shards, 1),
            "mirrored_3": _scores(model, shards, 3, strategy),  # 8 videos: 3, 3 and 2, padded to 2 + 2
            "mirrored_1": _scores(model, shards, 1, strategy)}  # each video padded to one per replica


def _same(a: dict, b: dict) -> None:
    assert a["ids"] == b["ids"] and a["labels"] == b["labels"]
    np.testing.assert_allclose(np.array(b["logits"]), np.array(a["logits"]), rtol=1e-6, atol=1e-6)


def test_batched_scores_equal_one_video_at_a_time(tiny_shards):
    from tests.test_evaluation import make_model

    model = make_model()
    one_by_one = _scores(model, tiny_shards, 1)
    assert len(one_by_one["ids"]) == 8 and np.abs(np.array(one_by_one["logits"])).max() > 0.5
    _same(one_by_one, _scores(model, tiny_shards, 3))  # batches of 3, 3 and 2 videos
    _same(one_by_one, _scores(model, tiny_shards, 8))


@pytest.mark.slow
def test_mirrored_scores_equal_one_video_at_a_time(tiny_shards):
    process = subprocess.run([sys.executable, "-m", "tests.test_evaluation_distributed", str(tiny_shards)], cwd=REPO,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True,
                             timeout=TIMEOUT)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, f"exit {process.returncode}\n{process.stdout[-3000:]}\n{process.stderr[-5000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    _same(result["one_by_one"], result["mirrored_3"])
    _same(result["one_by_one"], result["mirrored_1"])


if __name__ == "__main__":
    print("RESULT " + json.dumps(_mirrored(sys.argv[1])))
