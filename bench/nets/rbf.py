"""An RBF-basis KAN layer, FastKAN-style (Li, 2024, "Kolmogorov-Arnold Networks are Radial Basis Function
Networks"): the network spec `rbf[...]`, the fast alternative to the B-spline KAN in the ablations.

Per layer: each input is standardized across the layer's inputs (a LayerNorm with a per-input affine), and every
edge (input i -> output o) is

    y_o = sum_i  w_b[o,i] * SiLU(x_i)  +  sum_j c[o,i,j] * exp(-((z_i - g_j) / h)^2)

with z the normalized input and g_j, j < G + k, evenly spaced centres over the architecture's KAN grid range
(the same number of bases per edge as the B-spline layer, `KANOptions.num_bases`, so the two layers have
about the same parameters: in * out * (G + k + 1) plus 2 * in for the affine; no bias). h is the spacing of the
centres. The SiLU path follows `KANOptions.base_activation`. The Gaussians are smooth and never zero, so one
exp over an (..., G + k, in) tensor and one matmul replace the spline evaluation.

With `ensemble_size=E` every parameter gains a leading E dim and inputs are (E, ..., in).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.nets.kan import KANOptions


class RBFKANLinear(nn.Module):
    """One RBF-basis KAN layer, (..., in) -> (..., out); with `ensemble_size=E`, (E, ..., in) -> (E, ..., out)."""

    def __init__(
        self, in_features: int, out_features: int, options: KANOptions, ensemble_size: int | None = None
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.ensemble_size = in_features, out_features, ensemble_size
        self.options = options
        lead = () if ensemble_size is None else (ensemble_size,)
        lo, hi = options.grid_range
        bases = options.num_bases
        # Not in the state dict (a function of the options), so ensembles stack and slice parameters only.
        self.register_buffer("centres", torch.linspace(lo, hi, bases).unsqueeze(-1), persistent=False)
        self.width = (hi - lo) / (bases - 1) if bases > 1 else hi - lo
        self.norm_weight = nn.Parameter(torch.ones(*lead, in_features))
        self.norm_bias = nn.Parameter(torch.zeros(*lead, in_features))
        slots = bases + int(options.base_activation)
        # [w_b; c] as one weight over the features [SiLU(x); phi_0(z); ...], laid out (slot, in) like KANLinear's.
        self.weight = nn.Parameter(torch.empty(*lead, slots * in_features, out_features))
        with torch.no_grad():
            # FastKAN initializes the spline weights with std 0.1; the SiLU path as nn.Linear does.
            self.weight.normal_(0.0, 0.1)
            if options.base_activation:
                bound = 1.0 / math.sqrt(in_features)
                self.weight[..., :in_features, :].uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        if self.ensemble_size is not None:
            x = x.reshape(self.ensemble_size, -1, self.in_features)
        scale, shift = self.norm_weight, self.norm_bias
        if self.ensemble_size is not None:
            scale, shift = scale.unsqueeze(1), shift.unsqueeze(1)  # (E, 1, in) against (E, N, in)
        z = F.layer_norm(x, (self.in_features,)) * scale + shift
        rbf = torch.exp(-(((z.unsqueeze(-2) - self.centres) / self.width) ** 2))  # (..., G + k, in)
        if self.options.base_activation:
            rbf = torch.cat([F.silu(x).unsqueeze(-2), rbf], dim=-2)
        features = rbf.flatten(-2)
        if self.ensemble_size is None:
            return features @ self.weight
        return torch.bmm(features, self.weight).reshape(*lead, self.out_features)


class RBFKAN(nn.Module):
    """RBFKANLinear layers in_dim -> hidden... -> out_dim."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: tuple[int, ...],
        options: KANOptions,
        ensemble_size: int | None = None,
    ) -> None:
        super().__init__()
        widths = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(RBFKANLinear(a, b, options, ensemble_size) for a, b in itertools.pairwise(widths))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
