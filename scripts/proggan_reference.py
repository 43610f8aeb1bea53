"""PyTorch reference of the Progressive GAN generator, written from GAN Dissection's
proggan.py specification. Used only to make test fixtures and as the benchmark's eager
baseline; the Rust crate never runs Python.

    z [N, D] -> [N, D, 1, 1]
    block  = PixelNorm -> [nearest x2] -> conv(bias=False) -> WScale -> LeakyReLU(0.2)
    WScale = x * gain / sqrt(in_channels) + b,  gain = sqrt(2) / kernel (1 for output)
    output = PixelNorm -> conv1x1 -> WScale(gain 1)
"""
import math
from collections import OrderedDict

import torch
from torch import nn


class PixelNorm(nn.Module):
    def forward(self, x):
        return x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class WScale(nn.Module):
    def __init__(self, size, fan_in, gain):
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)
        self.b = nn.Parameter(torch.randn(size))

    def forward(self, x):
        return x * self.scale + self.b.view(1, -1, 1, 1)


class Block(nn.Module):
    def __init__(self, cin, cout, kernel, padding, upsample=False, activation=True, gain=None):
        super().__init__()
        self.norm = PixelNorm()
        self.upsample = upsample
        self.conv = nn.Conv2d(cin, cout, kernel, 1, padding, bias=False)
        self.wscale = WScale(cout, cin, math.sqrt(2) / kernel if gain is None else gain)
        self.activation = activation

    def forward(self, x):
        x = self.norm(x)
        if self.upsample:
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        x = self.wscale(self.conv(x))
        if self.activation:
            x = nn.functional.leaky_relu(x, 0.2)
        return x


class ProgGan(nn.Sequential):
    """channels: [z_dim, c4, c8, ..., cR]"""

    def __init__(self, channels):
        z, widths = channels[0], channels[1:]
        layers = [("layer1", Block(z, widths[0], 4, 3)), ("layer2", Block(widths[0], widths[0], 3, 1))]
        for k in range(1, len(widths)):
            layers.append((f"layer{2 * k + 1}", Block(widths[k - 1], widths[k], 3, 1, upsample=True)))
            layers.append((f"layer{2 * k + 2}", Block(widths[k], widths[k], 3, 1)))
        r = 4 << (len(widths) - 1)
        layers.append((f"output_{r}x{r}", Block(widths[-1], 3, 1, 0, activation=False, gain=1.0)))
        super().__init__(OrderedDict(layers))

    def forward(self, z):
        x = z.view(z.shape[0], z.shape[1], 1, 1)
        return super().forward(x)

    def features(self, z, layer):
        x = z.view(z.shape[0], z.shape[1], 1, 1)
        for name, module in self.named_children():
            x = module(x)
            if name == layer:
                return x
        raise KeyError(layer)


def z_for_ids(ids, dim):
    """GAN Dissection's latents: row i of RandomState(1).standard_normal((N, dim))."""
    import numpy

    n = max(ids) + 1
    rows = numpy.random.RandomState(1).standard_normal(n * dim).reshape(n, dim)
    return torch.from_numpy(rows[list(ids)]).float()
