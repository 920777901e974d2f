"""A PyTorch BN-Inception with the state-dict keys and layout of ``pretrainedmodels``' ``bninception``.

Written for the tests from the published facts of that port (layer names, channel counts,
ceil-mode max pools, padding-counting average pools, BN eps 1e-5, a max-pool branch in 5b, a
7x7 average pool and ``last_linear``), since the package itself needs torchvision, which has no
CPU wheel here. Every convolution's input channels are spelled out, so a wrong channel count
in a block fails here independently of the Keras model's own table.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# name, input channels, 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool projection, pool
_INCEPTION = [
    ("3a", 192, 64, 64, 64, 64, 96, 32, "avg"),
    ("3b", 256, 64, 64, 96, 64, 96, 64, "avg"),
    ("4a", 576, 224, 64, 96, 96, 128, 128, "avg"),
    ("4b", 576, 192, 96, 128, 96, 128, 128, "avg"),
    ("4c", 576, 160, 128, 160, 128, 160, 128, "avg"),
    ("4d", 608, 96, 128, 192, 160, 192, 128, "avg"),
    ("5a", 1056, 352, 192, 320, 160, 224, 128, "avg"),
    ("5b", 1024, 352, 192, 320, 192, 224, 128, "max"),
]
# name, input channels, 3x3 reduce, 3x3 (stride 2), double reduce, double 3x3 (second one stride 2)
_REDUCTION = [("3c", 320, 128, 160, 64, 96), ("4e", 608, 128, 192, 192, 256)]
_ORDER = ["3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]


class TorchBNInception(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv("conv1_7x7_s2", 3, 64, 7, stride=2)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3)
        self.inception = {row[0]: row for row in _INCEPTION}
        self.reduction = {row[0]: row for row in _REDUCTION}
        for name, cin, c1, c3r, c3, cdr, cd, proj, _ in _INCEPTION:
            p = f"inception_{name}"
            self._conv(f"{p}_1x1", cin, c1, 1)
            self._conv(f"{p}_3x3_reduce", cin, c3r, 1)
            self._conv(f"{p}_3x3", c3r, c3, 3)
            self._conv(f"{p}_double_3x3_reduce", cin, cdr, 1)
            self._conv(f"{p}_double_3x3_1", cdr, cd, 3)
            self._conv(f"{p}_double_3x3_2", cd, cd, 3)
            self._conv(f"{p}_pool_proj", cin, proj, 1)
        for name, cin, c3r, c3, cdr, cd in _REDUCTION:
            p = f"inception_{name}"
            self._conv(f"{p}_3x3_reduce", cin, c3r, 1)
            self._conv(f"{p}_3x3", c3r, c3, 3, stride=2)
            self._conv(f"{p}_double_3x3_reduce", cin, cdr, 1)
            self._conv(f"{p}_double_3x3_1", cdr, cd, 3)
            self._conv(f"{p}_double_3x3_2", cd, cd, 3, stride=2)
        self.last_linear = nn.Linear(1024, num_classes)

    def _conv(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        self.add_module(name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(cout, eps=1e-5, momentum=0.9))

    def _cbr(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.relu(getattr(self, f"{name}_bn")(getattr(self, name)(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self._cbr(x, "conv1_7x7_s2"), 3, stride=2, ceil_mode=True)
        x = self._cbr(self._cbr(x, "conv2_3x3_reduce"), "conv2_3x3")
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for name in _ORDER:
            p = f"inception_{name}"
            if name in self.reduction:
                b1 = self._cbr(self._cbr(x, f"{p}_3x3_reduce"), f"{p}_3x3")
                b2 = self._cbr(x, f"{p}_double_3x3_reduce")
                b2 = self._cbr(self._cbr(b2, f"{p}_double_3x3_1"), f"{p}_double_3x3_2")
                b3 = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
                x = torch.cat([b1, b2, b3], 1)
                continue
            b1 = self._cbr(x, f"{p}_1x1")
            b2 = self._cbr(self._cbr(x, f"{p}_3x3_reduce"), f"{p}_3x3")
            b3 = self._cbr(x, f"{p}_double_3x3_reduce")
            b3 = self._cbr(self._cbr(b3, f"{p}_double_3x3_1"), f"{p}_double_3x3_2")
            if self.inception[name][-1] == "avg":
                b4 = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            else:
                b4 = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
            b4 = self._cbr(b4, f"{p}_pool_proj")
            x = torch.cat([b1, b2, b3, b4], 1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(self.features(x), 7, stride=1, ceil_mode=True, count_include_pad=True)
        return self.last_linear(pooled.flatten(1))


def randomised(seed: int = 0, num_classes: int = 1000) -> TorchBNInception:
    """A randomly initialised instance whose BN affine parameters and statistics are random too.

    Gamma and beta are drawn first; the running statistics are then set from one batch of
    noise (so activations stay of order one through the 60 layers, as in a trained network)
    and perturbed at random.
    """
    torch.manual_seed(seed)
    model = TorchBNInception(num_classes)
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in batch_norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.momentum = 1.0  # running stats := the statistics of the next batch
        model.train()
        model.features(torch.rand(2, 3, 128, 128) * 255 - 128)
        for bn in batch_norms:
            bn.running_mean.add_(0.05 * bn.running_var.sqrt() * torch.randn_like(bn.running_mean))
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.9, 1.1))
    return model.eval()
