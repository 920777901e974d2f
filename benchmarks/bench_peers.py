"""tsn-keras against the same TSN in PyTorch, side by side in one run, on the same CPU threads.

For each backbone (BN-Inception from the ``pretrainedmodels`` definition in
``tests/models/torch_bn_inception.py``; EfficientNet-Lite0 from ``efficientnet-lite-pytorch``
when this checkout has that Keras backbone) both frameworks run:

- a TSN training step: B clips x K segments, avg consensus, dropout 0.8, partial BN, the new
  classifier, SGD with momentum 0.9, L2 5e-4 on conv/dense kernels and global-norm clipping at
  40. Keras: the project's ``make_optimizer`` (``CaffeSGD``) and ``train_on_batch``; PyTorch:
  ``torch.optim.SGD`` with the same decay groups and ``clip_grad_norm_``. Both take their
  clips from one ``make_dataset`` iterator (the project's pipeline in the loop; PyTorch gets
  the same float tensors transposed to NCHW);
- a test pass: T snippets of one video (1 crop), logits averaged (``evaluation.video_scorer``
  against ``torch.inference_mode``).

Steps of the four are interleaved (``_timing.interleaved``) so that the ratios see the same
machine load. TensorFlow's intra/inter-op pools and ``torch.set_num_threads`` are set to the
same thread count. FLOP/s count the convolutions' and dense layers' multiply-adds from the
Keras model's layer shapes (``_flops``; training = 3 forward passes) against this CPU's fp32
peak, whose assumption is printed.

    python -m benchmarks.bench_peers [--quick] [--backbones bn_inception,efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

from benchmarks._defaults import default_help, resolve
from benchmarks._flops import TRAIN_FORWARD_MULTIPLE, forward_macs_per_frame, peak_flops
from benchmarks._timing import interleaved

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FULL = {"size": 224, "batch": 4, "snippets": 25, "rounds": 8}
QUICK = {"size": 96, "batch": 2, "snippets": 5, "rounds": 1}
BACKBONES = ("bn_inception", "efficientnet_lite0")
CLASSES, DROPOUT, CLIP_NORM, WEIGHT_DECAY, LR = 101, 0.8, 40.0, 5e-4, 0.001
# Where each PyTorch network comes from, and what must be importable for it.
TORCH_PACKAGES = {"bn_inception": "torch", "efficientnet_lite0": "efficientnet_lite_pytorch"}


def availability(backbone: str) -> str | None:
    """``None`` when both sides of ``backbone`` can be built here, else why not."""
    from tsn_keras.vocab import BACKBONES as KERAS_BACKBONES

    if backbone not in KERAS_BACKBONES:
        return f"not available: no Keras backbone {backbone!r} in tsn_keras.vocab.BACKBONES on this checkout"
    if importlib.util.find_spec(TORCH_PACKAGES[backbone]) is None:
        return f"not available: {TORCH_PACKAGES[backbone]} is not installed"
    return None


# --- the PyTorch side ---------------------------------------------------------------------------

def _torch_features(backbone: str):
    """The per-frame PyTorch feature extractor ``(N, 3, H, W) -> (N, D, h, w)`` and D."""
    if backbone == "bn_inception":
        from tests.models.torch_bn_inception import randomised

        # Random weights with BatchNorm statistics that keep activations of order one (as in a
        # trained network); the Keras side loads the same weights (``_share_weights``).
        net = randomised(seed=0, num_classes=CLASSES)
        del net.last_linear  # TSN puts its own classifier after dropout
        return net.features, net, 1024
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", num_classes=CLASSES)
    return net.extract_features, net, net._fc.in_features


def torch_tsn(backbone: str):
    """The TSN of tsn-pytorch around ``backbone``: folded snippets, global pooling, dropout, new fc, avg."""
    import torch
    from torch import nn

    features, net, dim = _torch_features(backbone)

    class TorchTSN(nn.Module):
        def __init__(self):
            super().__init__()
            self.base = net
            self.dropout = nn.Dropout(DROPOUT)
            self.fc = nn.Linear(dim, CLASSES)
            nn.init.normal_(self.fc.weight, 0, 0.001)
            nn.init.zeros_(self.fc.bias)

        def snippet_logits(self, x: torch.Tensor) -> torch.Tensor:
            b, s = x.shape[:2]
            pooled = features(x.flatten(0, 1)).mean((2, 3))
            return self.fc(self.dropout(pooled)).view(b, s, -1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.snippet_logits(x).mean(1)

    model = TorchTSN()
    model.train()
    # Partial BN as tsn-pytorch: every BatchNorm but the first in eval mode and frozen.
    for bn in [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][1:]:
        bn.eval()
        bn.weight.requires_grad_(False)
        bn.bias.requires_grad_(False)
    decayed = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ids = {id(p) for p in decayed}
    rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    optimizer = torch.optim.SGD([{"params": decayed, "weight_decay": WEIGHT_DECAY},
                                 {"params": rest, "weight_decay": 0.0}], lr=LR, momentum=0.9)
    return model, optimizer


# --- the two sides' steps -----------------------------------------------------------------------

def _keras_model(backbone: str, size: int):
    import keras

    from tsn_keras.config import TrainConfig
    from tsn_keras.models.tsn import build_tsn
    from tsn_keras.optimization import make_optimizer

    keras.utils.set_random_seed(0)
    model = build_tsn(CLASSES, "rgb", num_segments=3, backbone=backbone, input_size=size, dropout=DROPOUT,
                      partial_bn=True)
    optimizer = make_optimizer(TrainConfig(lr=LR, momentum=0.9, weight_decay=WEIGHT_DECAY, clip_norm=CLIP_NORM))
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _share_weights(backbone: str, model, net) -> None:
    """Give the Keras backbone the PyTorch one's weights, where a converter exists (BN-Inception),
    so both sides compute the same function on the same numbers."""
    if backbone != "bn_inception":
        return
    from tsn_keras.models.pytorch_weights import load_state_dict
    from tsn_keras.models.transfer import find_backbone

    state = {k: v.numpy() for k, v in net.base.state_dict().items()}
    load_state_dict(find_backbone(model), state)


def steps(backbone: str, args, iterator, views) -> dict:
    """The four timed callables of one backbone: Keras/PyTorch training steps and test passes."""
    import numpy as np
    import torch

    from tsn_keras.evaluation import video_scorer

    model = _keras_model(backbone, args.size)
    score = video_scorer(model, num_crops=1, num_snippets=args.snippets)
    net, optimizer = torch_tsn(backbone)
    _share_weights(backbone, model, net)
    loss_fn = torch.nn.CrossEntropyLoss()
    torch_views = torch.from_numpy(np.ascontiguousarray(np.transpose(views, (0, 1, 4, 2, 3))))

    def keras_train():
        x, y = next(iterator)
        model.train_on_batch(x, y)

    def torch_train():
        x, y = next(iterator)
        x = torch.from_numpy(x.numpy()).permute(0, 1, 4, 2, 3).contiguous()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), torch.from_numpy(y.numpy()).long())
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], CLIP_NORM)
        optimizer.step()

    def keras_test():
        np.asarray(score(views))

    def torch_test():
        net.eval()
        with torch.inference_mode():
            net.snippet_logits(torch_views).mean(1).numpy()
        net.train()
        for bn in [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)][1:]:
            bn.eval()

    return {"model": model, "keras_train": keras_train, "torch_train": torch_train,
            "keras_test": keras_test, "torch_test": torch_test}


# EfficientNet-Lite0's depthwise convolutions at 224 px: (input side, channels, kernel, stride).
LITE0_DEPTHWISE = ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 3, 1), (56, 144, 5, 2), (28, 240, 5, 1),
                   (28, 240, 3, 2), (14, 480, 3, 1), (14, 480, 5, 1), (14, 672, 5, 2), (7, 1152, 5, 1),
                   (7, 1152, 3, 1))


def depthwise_steps(frames: int, size: int) -> tuple[dict, int]:
    """Forward + backward of EfficientNet-Lite0's depthwise convolutions alone, Keras vs PyTorch.

    Depthwise convolutions are where TensorFlow on CPU is often weak; timing them apart from the
    rest of the network says whether a Lite0 gap comes from them. Returns the two timed
    callables and the layers' multiply-adds per frame.
    """
    import keras
    import numpy as np
    import tensorflow as tf
    import torch

    scale = size / 224
    shapes = [(max(1, round(side * scale)), c, k, s) for side, c, k, s in LITE0_DEPTHWISE]
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(frames, side, side, c)).astype(np.float32) for side, c, _, _ in shapes]
    layers = [keras.layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False) for _, _, k, s in shapes]
    for layer, x in zip(layers, inputs):
        layer.build(x.shape)
    tf_inputs = [tf.constant(x) for x in inputs]

    @tf.function
    def keras_step():
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(layer(x)) for layer, x in zip(layers, tf_inputs)])
        return tape.gradient(loss, [layer.kernel for layer in layers] + tf_inputs)

    convs = [torch.nn.Conv2d(c, c, k, stride=s, padding=k // 2, groups=c, bias=False) for _, c, k, s in shapes]
    torch_inputs = [torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_() for x in inputs]

    def torch_step():
        loss = sum(conv(x).sum() for conv, x in zip(convs, torch_inputs))
        loss.backward()

    macs = sum(((side + s - 1) // s) ** 2 * c * k * k for side, c, k, s in shapes)
    return {"keras_depthwise": lambda: keras_step(), "torch_depthwise": torch_step}, macs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_peers", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds: small input, 1 round")
    parser.add_argument("--backbones", default=",".join(BACKBONES),
                        help=f"comma-separated backbones (default {','.join(BACKBONES)})")
    parser.add_argument("--size", type=int, default=None, help="crop size in pixels " + default_help("size", FULL, QUICK))
    parser.add_argument("--batch", type=int, default=None, help="clips per training step " + default_help("batch", FULL, QUICK))
    parser.add_argument("--segments", type=int, default=3, help="segments K per clip (default 3)")
    parser.add_argument("--snippets", type=int, default=None,
                        help="snippets of the test pass " + default_help("snippets", FULL, QUICK))
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds " + default_help("rounds", FULL, QUICK))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each framework (default 2)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE"),
                        help="PyTorch's OpenMP threads: sleep (PASSIVE, default) or spin between parallel regions")
    args = resolve(parser.parse_args(argv), FULL, QUICK)

    # Read by OpenMP when torch loads. Spinning threads cost PyTorch up to 10x on a machine
    # shared with other processes (measured here: 1.5 s vs 0.1-0.25 s for one BN-Inception
    # forward of 5 frames at 96 px); sleeping ones are PyTorch's better setting here, so the
    # ratios printed are the conservative ones.
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    import tensorflow as tf
    import torch

    # Before TensorFlow runs any op: its pools cannot be resized afterwards.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    # TensorFlow's CPU kernels flush denormal floats to zero; without the same, PyTorch runs
    # several times slower whenever activations or gradients get tiny (measured: 0.3 frames/s).
    torch.set_flush_denormal(True)
    import numpy as np

    from benchmarks._data import write_conversion
    from tsn_keras.data.clips import ClipSpec
    from tsn_keras.data.pipeline import make_dataset
    from tsn_keras.vocab import backbone_preset

    peak, peak_words = peak_flops(args.threads)
    results: dict = {"threads": args.threads, "peak_flops": peak, "size": args.size, "batch": args.batch,
                     "segments": args.segments, "snippets": args.snippets}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp:
        root, real = write_conversion(Path(tmp), videos=4 if args.quick else 8, frames=24 if args.quick else 60,
                                      split="train")
        for backbone in [b.strip() for b in args.backbones.split(",") if b.strip()]:
            missing = availability(backbone)
            if missing:
                rows.append(f"  {backbone:<20} {missing}")
                continue
            clip = ClipSpec("rgb", "train", num_segments=args.segments, input_size=args.size,
                            normalization=backbone_preset(backbone))
            iterator = iter(make_dataset(root, clip, split="train", batch_size=args.batch, seed=0, repeat=True))
            views = np.random.default_rng(0).normal(0, 50, (1, args.snippets, args.size, args.size, 3)).astype(np.float32)
            side = steps(backbone, args, iterator, views)
            macs = forward_macs_per_frame(side.pop("model"))
            _, median = interleaved(side, args.rounds, desc=f"{backbone} rounds")
            train_frames = args.batch * args.segments
            fps = {"keras_train": train_frames / median["keras_train"], "torch_train": train_frames / median["torch_train"],
                   "keras_test": args.snippets / median["keras_test"], "torch_test": args.snippets / median["torch_test"]}
            flops = {name: rate * 2 * macs * (TRAIN_FORWARD_MULTIPLE if "train" in name else 1)
                     for name, rate in fps.items()}
            r = {f"{backbone}_{name}_frames_per_s": v for name, v in fps.items()}
            r.update({f"{backbone}_{name}_peak_fraction": v / peak for name, v in flops.items()})
            r[f"{backbone}_train_ratio"] = fps["keras_train"] / fps["torch_train"]
            r[f"{backbone}_test_ratio"] = fps["keras_test"] / fps["torch_test"]
            r[f"{backbone}_gmacs_per_frame"] = macs / 1e9
            results.update(r)
            for phase, target in (("train", 1.3 if backbone == "bn_inception" else 1.0),
                                  ("test", 2.0 if backbone == "bn_inception" else 1.0)):
                k, t = fps[f"keras_{phase}"], fps[f"torch_{phase}"]
                rows.append(f"  {backbone:<20} {phase + 'ing':<9} keras {k:7.1f} frames/s "
                            f"({100 * flops[f'keras_{phase}'] / peak:4.1f}% of peak)  pytorch {t:7.1f} frames/s "
                            f"({100 * flops[f'torch_{phase}'] / peak:4.1f}% of peak)  ratio {k / t:.2f}x  "
                            f"(target >= {target})")
            del side
        steps_dw, dw_macs = depthwise_steps(args.batch * args.segments, args.size)
        _, dw = interleaved(steps_dw, args.rounds, desc="depthwise rounds")
        dw_ratio = dw["torch_depthwise"] / dw["keras_depthwise"]
        results.update({"depthwise_train_ratio": dw_ratio, "depthwise_keras_s": dw["keras_depthwise"],
                        "depthwise_torch_s": dw["torch_depthwise"]})
        frames = args.batch * args.segments
        rows.append(f"  {'Lite0 depthwise convs':<20} {'fwd+bwd':<9} keras {frames / dw['keras_depthwise']:7.1f} frames/s "
                    f"({100 * 3 * 2 * dw_macs * frames / dw['keras_depthwise'] / peak:4.1f}% of peak)  pytorch "
                    f"{frames / dw['torch_depthwise']:7.1f} frames/s "
                    f"({100 * 3 * 2 * dw_macs * frames / dw['torch_depthwise'] / peak:4.1f}% of peak)  ratio "
                    f"{dw_ratio:.2f}x  (the depthwise layers of EfficientNet-Lite0 alone)")
    print(f"\nTSN in Keras vs PyTorch, {args.threads} threads each, RGB {args.size} px; training: {args.batch} clips x "
          f"{args.segments} segments, CaffeSGD vs torch SGD (momentum 0.9, L2 {WEIGHT_DECAY}, clip {CLIP_NORM:g}), "
          f"dropout {DROPOUT}, partial BN, pipeline in the loop ({'UCF101' if real else 'synthetic'} frames); "
          f"testing: {args.snippets} snippets x 1 crop; median of {args.rounds} interleaved rounds")
    print(f"  PyTorch {torch.__version__}, OMP_WAIT_POLICY={args.omp_wait_policy}; TensorFlow {tf.__version__}")
    print(f"  peak: {peak_words}; FLOPs: conv + dense multiply-adds x 2 from the Keras layer shapes, training = "
          f"{TRAIN_FORWARD_MULTIPLE} x forward")
    for backbone in BACKBONES:
        if f"{backbone}_gmacs_per_frame" in results:
            print(f"  {backbone}: {results[f'{backbone}_gmacs_per_frame']:.2f} GMACs per frame at {args.size} px")
    for row in rows:
        print(row)
    return results


if __name__ == "__main__":
    main()
