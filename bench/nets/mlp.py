"""MLP bodies, single or as an ensemble of independent members evaluated with one batched matmul per layer."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import BenchError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "gelu": nn.GELU}


class EnsembleLinear(nn.Module):
    """E independent linear layers, (E, ..., in) -> (E, ..., out), as one `torch.baddbmm`.

    `weight` is (E, in, out), the transpose of each member's nn.Linear weight, and `bias` (E, 1, out); each
    member is initialized as nn.Linear initializes itself.
    """

    def __init__(self, in_features: int, out_features: int, ensemble_size: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.ensemble_size = in_features, out_features, ensemble_size
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear: kaiming_uniform(a=sqrt(5)) on the weight and U(-1/sqrt(in), 1/sqrt(in)) on the bias,
        # which both come to U(-1/sqrt(in), 1/sqrt(in)).
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        e = self.ensemble_size
        if x.shape[0] != e:
            raise ValueError(f"EnsembleLinear expects a leading dim of {e}, got shape {tuple(x.shape)}")
        flat = x.reshape(e, -1, self.in_features)
        out = torch.bmm(flat, self.weight) if self.bias is None else torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"{self.in_features} -> {self.out_features}, ensemble_size={self.ensemble_size}, bias={bias}"


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine (weight, bias) per ensemble member."""

    def __init__(self, width: int, ensemble_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.width, self.eps = width, eps
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, width))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, width))

    def forward(self, x: Tensor) -> Tensor:
        e = self.weight.shape[0]
        flat = F.layer_norm(x.reshape(e, -1, self.width), (self.width,), eps=self.eps)
        return (flat * self.weight + self.bias).reshape(x.shape)


class MLP(nn.Module):
    """in_dim -> hidden... -> out_dim with `activation` (and optionally LayerNorm) after every hidden layer.

    `layers` holds the linear layers (nn.Linear, or EnsembleLinear when `ensemble_size` is set, in which case
    inputs are (E, ..., in_dim)); the last one has no activation.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: tuple[int, ...] | list[int] = (),
        activation: str = "relu",
        layer_norm: bool = False,
        ensemble_size: int | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise BenchError(f"MLP activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        widths = [in_dim, *hidden, out_dim]
        self.ensemble_size = ensemble_size
        self.layers = nn.ModuleList(_linear(a, b, ensemble_size) for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(
            (nn.LayerNorm(w) if ensemble_size is None else EnsembleLayerNorm(w, ensemble_size))
            for w in (hidden if layer_norm else ())
        )
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        *hidden_layers, last = self.layers
        for i, layer in enumerate(hidden_layers):
            x = layer(x)
            if self.norms:
                x = self.norms[i](x)
            x = self.activation(x)
        return last(x)


def _linear(in_features: int, out_features: int, ensemble_size: int | None) -> nn.Module:
    if ensemble_size is None:
        return nn.Linear(in_features, out_features)
    return EnsembleLinear(in_features, out_features, ensemble_size)
