"""A layer type registered from outside the package: a Chebyshev-polynomial KAN (ChebyKAN-style).

Per edge (input i -> output o): y_o = sum_i sum_d c[o, i, d] T_d(tanh(x_i)), T_d the Chebyshev polynomials of
degree d <= 4, so in * out * 5 parameters per layer. This file is the whole plug-in: importing it (or naming
it in $BENCH_LAYER_PLUGINS) makes `cheby[4]` a network spec.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from bench.nets.layers import register_layer_type

DEGREE = 4


class ChebyKANLinear(nn.Module):
    """(..., in) -> (..., out); with `ensemble_size=E`, (E, ..., in) -> (E, ..., out), E independent members."""

    def __init__(self, in_features: int, out_features: int, ensemble_size: int | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.ensemble_size = in_features, out_features, ensemble_size
        lead = () if ensemble_size is None else (ensemble_size,)
        fan_in = in_features * (DEGREE + 1)
        self.coefficients = nn.Parameter(torch.randn(*lead, fan_in, out_features) / math.sqrt(fan_in))

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        t = torch.tanh(x)
        polynomials = [torch.ones_like(t), t]
        for _ in range(2, DEGREE + 1):
            polynomials.append(2.0 * t * polynomials[-1] - polynomials[-2])
        features = torch.stack(polynomials, dim=-1).flatten(-2)  # (..., in * (DEGREE + 1))
        if self.ensemble_size is None:
            return features @ self.coefficients
        flat = features.reshape(self.ensemble_size, -1, features.shape[-1])
        return torch.bmm(flat, self.coefficients).reshape(*lead, self.out_features)


class ChebyKAN(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...], ensemble_size: int | None) -> None:
        super().__init__()
        widths = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(ChebyKANLinear(a, b, ensemble_size) for a, b in itertools.pairwise(widths))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


register_layer_type(
    "cheby",
    lambda in_dim, out_dim, hidden, kan, ensemble_size: ChebyKAN(in_dim, out_dim, hidden, ensemble_size),
    "Chebyshev-polynomial KAN, degree 4, on tanh-squashed inputs",
)
