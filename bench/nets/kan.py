"""Kolmogorov-Arnold layers on a uniform B-spline grid (SPEC 5).

Per edge (input i -> output o), as in pykan and efficient-kan:

    y_o = sum_i  w_b[o,i] * SiLU(x_i)  +  w_s[o,i] * sum_j c[o,i,j] * B_j(x_i)

with B_j the order-k B-splines on a uniform grid of G intervals over [lo, hi], extended by k knots on each
side (G + k bases). Trainable parameters per layer: in * out * (G + k + 2); no bias. Without the SiLU path
(`base_activation=False`, the "spline-only" ablation) it is in * out * (G + k + 1).

Speed. On a uniform grid every B-spline is a translate of one cardinal B-spline N_k, which has a closed form
for any order: folded about its centre, N_k(d) = sum_m w_m * max(c_m - |d|, 0)^k with ceil((k+1)/2) terms
(k = 3: (max(2 - |d|, 0)^3 - 4 max(1 - |d|, 0)^3) / 6). So no Cox-de Boor recursion runs: a custom autograd
function evaluates all G + k bases from the distance of x to their centres, with the closed-form derivative
kept for the backward pass, in a (..., slot, in) layout whose elementwise ops run over contiguous rows (a
variant that computed only the k + 1 non-zero bases and scattered them was slower on CPU: scatter, gather
and masks over a last dim of 4 cost more than the dense arithmetic). The features [SiLU(x); B_0(x); ...]
then meet one combined weight [w_b; w_s * c], built once per forward, in a single matmul (bmm for an
ensemble), so a layer costs about what an nn.Linear with the same parameter count costs: forward + backward
of KANLinear 256 -> 256 at batch 256 on 2 CPU cores took 1.15x the time of nn.Linear 256 -> 2560 and half
the time of efficient-kan's Cox-de Boor layer (`python -m bench speed nets`).

Initialization follows efficient-kan's `KANLinear.reset_parameters` (Blealtan/efficient-kan,
src/efficient_kan/kan.py): base weights kaiming-uniform with a = sqrt(5) (the nn.Linear default,
U(-1/sqrt(in), 1/sqrt(in))), spline coefficients fitted by least squares to uniform noise of amplitude
scale_noise / G = 0.02 at the G + 1 grid points (a near-zero curve), and the spline scaler w_s kaiming-uniform
like the base weights (efficient-kan's current choice; pykan starts w_s at a constant 1/sqrt(in)). So a fresh
layer is close to Linear(SiLU(x)) plus a small spline perturbation.

Out-of-grid inputs. Outside the extended grid [lo - k*h, hi + k*h] every basis is zero and only the SiLU path
carries signal; within k*h outside [lo, hi] the bases no longer sum to one. z-scored states and unbounded
hidden activations leave [-1, 1] often, so the grid range and an optional input squashing are part of
`KANOptions` and so of every architecture spec. `input_norm` transforms the input of the spline path only
(the SiLU path keeps the raw input and so its near-linear response far out): "tanh" maps every input into
(-1, 1), so it never leaves a grid over [-1, 1]; "layernorm" (no affine parameters, so the count stays
exact) standardizes each sample across the layer's inputs.

The default, grid_range (-3, 3) without input normalization, comes from a measurement: 20,000 Walker2d-v4
states from random-action rollouts, z-scored as CQL does; KAN bodies trained with Adam (lr 1e-3, batch 256,
3,000 steps, 3 seeds) to regress a fixed random tanh-MLP teacher (12 outputs, unit variance); fractions of
the spline inputs outside [lo, hi] | outside the extended grid (`out_of_grid_fraction`), on held-out states,
and the held-out MSE relative to the teacher's variance (mean +- std over seeds):

    options                   states      kan[4] hidden trained  kan[4] rel. MSE   kan[8,8] rel. MSE
    (-1, 1), none             33% | 2.3%  16% | 0.2%             0.197 +- 0.002    0.043 +- 0.000
    (-2, 2), none             3.8% | 0%   9.9% | 0%              0.193 +- 0.001    0.037 +- 0.001
    (-3, 3), none (default)   0.5% | 0%   4.8% | 0%              0.192 +- 0.001    0.036 +- 0.000
    (-1, 1), tanh             0% | 0%     0% | 0%                0.196 +- 0.002    0.042 +- 0.001
    (-2, 2), layernorm        3.8% | 0%   0% | 0%                0.212 +- 0.003    0.048 +- 0.001

efficient-kan's (-1, 1) leaves a third of the z-scored state inputs off the core of the grid and 2.3% with no
spline signal at all; (-3, 3) keeps 99.5% of them inside [lo, hi], hidden activations stay on the extended
grid after training, and it fit best in both networks. tanh and layernorm stay available for ablations.

Grid update. pykan's `update_grid_from_samples` and efficient-kan's `update_grid` move the knots to sample
quantiles, which makes the grid non-uniform and would rule out the closed-form basis. `update_grid` here keeps
every input's grid uniform and moves its range (lo, hi) to the samples' [tail, 1 - tail] quantiles widened by
a margin, then refits the coefficients by least squares so that each edge's curve is preserved on the
samples; the base path and w_s are untouched.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from bench.errors import BenchError

INPUT_NORMS = ("none", "layernorm", "tanh")


@dataclass(frozen=True)
class KANOptions:
    """The settings every KAN layer of an architecture shares; part of the architecture spec."""

    grid_size: int = 5
    spline_order: int = 3
    grid_range: tuple[float, float] = (-3.0, 3.0)
    input_norm: str = "none"
    base_activation: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.grid_size, bool) or not isinstance(self.grid_size, int) or self.grid_size < 1:
            raise BenchError(f"KAN grid_size {self.grid_size!r}: use a positive integer (default 5)")
        if (
            isinstance(self.spline_order, bool)
            or not isinstance(self.spline_order, int)
            or not 1 <= self.spline_order <= 7
        ):
            raise BenchError(f"KAN spline_order {self.spline_order!r}: use an integer from 1 to 7 (default 3)")
        lo, hi = _as_range(self.grid_range)
        object.__setattr__(self, "grid_range", (lo, hi))
        if self.input_norm not in INPUT_NORMS:
            raise BenchError(f"KAN input_norm {self.input_norm!r}: use one of {', '.join(INPUT_NORMS)}")
        if not isinstance(self.base_activation, bool):
            raise BenchError(f"KAN base_activation {self.base_activation!r}: use true or false")

    @property
    def num_bases(self) -> int:
        """B-splines per edge: G + k."""
        return self.grid_size + self.spline_order

    @property
    def params_per_edge(self) -> int:
        """Trainable parameters per edge: G + k coefficients, w_s, and w_b unless spline-only."""
        return self.num_bases + 1 + int(self.base_activation)

    def summary(self) -> str:
        """One line for tables, e.g. 'G=5 k=3 grid=[-3, 3] norm=none base=SiLU'."""
        lo, hi = self.grid_range
        base = "SiLU" if self.base_activation else "none (spline-only)"
        grid = f"grid=[{lo:g}, {hi:g}]"
        return f"G={self.grid_size} k={self.spline_order} {grid} norm={self.input_norm} base={base}"


def _as_range(value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise BenchError(f"KAN grid_range {value!r}: use two numbers [lo, hi] with lo < hi") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise BenchError(f"KAN grid_range {value!r}: use two finite numbers [lo, hi] with lo < hi")
    return lo, hi


def _centred_terms(order: int) -> list[tuple[float, float]]:
    """(offset, weight) pairs with N_k(centre + d) = sum weight * max(offset - |d|, 0)^k.

    N_k is the cardinal B-spline of order k on the integer knots 0..k+1, centred at (k+1)/2. Its
    truncated-power form N_k(x) = 1/k! sum_m (-1)^m C(k+1, m) (x - m)_+^k, folded onto its symmetry axis,
    keeps the terms with m < (k+1)/2; for k = 3 that is (max(2 - |d|, 0)^3 - 4 max(1 - |d|, 0)^3) / 6.
    """
    centre = (order + 1) / 2
    return [
        (centre - m, (-1) ** m * math.comb(order + 1, m) / math.factorial(order))
        for m in range(order + 1)
        if centre - m > 0
    ]


class _SplineFeatures(torch.autograd.Function):
    """[SiLU(x_base); B_0(x_spline); ..; B_{G+k-1}(x_spline)] per input: (..., base_slots + G + k, in).

    The slot dim sits before the input dim so that every elementwise op runs over contiguous rows of `in`
    values; the combined weight is laid out to match.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x_base: Tensor | None,
        x_spline: Tensor,
        lo: Tensor,
        hi: Tensor,
        grid_size: int,
        order: int,
        base_slots: int,
    ) -> Tensor:
        num_bases = grid_size + order
        inv_h = grid_size / (hi - lo)
        # B_j is centred on lo + (j + (1 - k) / 2) h; d is the distance to it in grid steps.
        centres = torch.arange(num_bases, dtype=x_spline.dtype, device=x_spline.device) + (1 - order) / 2
        d = ((x_spline - lo) * inv_h).unsqueeze(-2) - centres.unsqueeze(-1)
        dist = d.abs()
        out = x_spline.new_zeros(*x_spline.shape[:-1], base_slots + num_bases, x_spline.shape[-1])
        basis = out[..., base_slots:, :]
        slope = None
        for offset, weight in _centred_terms(order):
            t = torch.clamp_min_(offset - dist, 0.0)
            if order == 1:
                basis.add_(t, alpha=weight)
                t_pow = (t > 0).to(t.dtype)
            else:
                t_pow = t * t if order > 2 else t  # t^(k-1); repeated products beat pow() here
                for _ in range(order - 3):
                    t_pow = t_pow * t
                basis.addcmul_(t_pow, t, value=weight)
            if ctx.needs_input_grad[1]:
                # d/d|d| of weight * t^k is -k * weight * t^(k-1); the minus sign comes in backward.
                if slope is None:
                    slope = t_pow.mul_(order * weight)
                else:
                    slope.add_(t_pow, alpha=order * weight)
        shared = x_base is None
        if shared:
            x_base = x_spline
        if base_slots:
            out[..., 0, :] = F.silu(x_base)
        if slope is not None:
            # The sign of d turns d/d|d| into d/dd; the minus sign and 1/h are applied in backward.
            slope.copysign_(d)
        ctx.save_for_backward(x_base if base_slots else None, slope, inv_h)
        ctx.base_slots = base_slots
        ctx.shared = shared
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x_base, slope, inv_h = ctx.saved_tensors
        base_slots = ctx.base_slots
        grad_base = grad_spline = None
        if slope is not None:
            grad_spline = (grad_out[..., base_slots:, :] * slope).sum(-2).mul_(-inv_h)
        if base_slots and ctx.needs_input_grad[1 if ctx.shared else 0]:
            sig = torch.sigmoid(x_base)
            grad_base = grad_out[..., 0, :] * sig * (1.0 + x_base * (1.0 - sig))
        if ctx.shared and grad_base is not None:
            # One input feeds both paths: its gradient is their sum, as autograd would add them up.
            grad_spline = grad_base if grad_spline is None else grad_spline.add_(grad_base)
            grad_base = None
        return grad_base, grad_spline, None, None, None, None, None


def spline_features(
    x_base: Tensor | None, x_spline: Tensor, lo: Tensor, hi: Tensor, grid_size: int, order: int, base_slots: int
) -> Tensor:
    """The features one KAN layer multiplies by its combined weight, (..., base_slots + G + k, in).

    Slot 0 (when base_slots is 1) is SiLU(x_base); the others are the G + k B-splines of order k on the
    uniform grid over [lo, hi] at x_spline. `lo` and `hi` broadcast against the inputs. `x_base=None` means
    the SiLU path reads x_spline too: pass None rather than the same tensor twice, which torch.compile cannot
    trace into the custom autograd function (it would break the graph at every KAN layer).
    """
    return _SplineFeatures.apply(x_base, x_spline, lo, hi, grid_size, order, base_slots)


def spline_features_plain(
    x_base: Tensor, x_spline: Tensor, lo: Tensor, hi: Tensor, grid_size: int, order: int, base_slots: int
) -> Tensor:
    """`spline_features` in plain out-of-place torch ops, without the custom autograd function: the form a graph
    exporter (`torch.onnx.export`) turns into standard operators. For inference: the same values up to float
    rounding, but autograd's derivative rather than the closed-form backward, and no in-place buffers.
    """
    inv_h = grid_size / (hi - lo)
    centres = torch.arange(grid_size + order, dtype=x_spline.dtype, device=x_spline.device) + (1 - order) / 2
    dist = (((x_spline - lo) * inv_h).unsqueeze(-2) - centres.unsqueeze(-1)).abs()
    basis: Tensor | None = None
    for offset, weight in _centred_terms(order):
        t = torch.clamp_min(offset - dist, 0.0)
        term = t
        for _ in range(order - 1):
            term = term * t
        basis = weight * term if basis is None else basis + weight * term
    assert basis is not None  # every order has at least one term
    if base_slots:
        basis = torch.cat([F.silu(x_base).unsqueeze(-2), basis], dim=-2)
    return basis


def normalize_spline_input(x: Tensor, input_norm: str) -> Tensor:
    """The spline path's input for `KANOptions.input_norm`: x, tanh(x), or x standardized across its last dim."""
    if input_norm == "tanh":
        return torch.tanh(x)
    if input_norm == "layernorm":
        return F.layer_norm(x, (x.shape[-1],))
    return x


def bspline_basis(x: Tensor, lo: Tensor | float, hi: Tensor | float, grid_size: int, order: int) -> Tensor:
    """The G + k B-splines of order k on the uniform grid over [lo, hi] at x: (..., G + k), differentiable."""
    lo_t = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
    hi_t = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
    flat = x.reshape(-1, 1)
    return spline_features(None, flat, lo_t, hi_t, grid_size, order, 0).reshape(*x.shape, -1)


class KANLinear(nn.Module):
    """One KAN layer, (..., in) -> (..., out); with `ensemble_size=E`, (E, ..., in) -> (E, ..., out).

    Parameters, with a leading E dim for an ensemble: `base_weight` w_b (out, in) (None when spline-only),
    `spline_scaler` w_s (out, in) and `spline_weight` c stored as (out, G + k, in), so that c[o, i, j] of the
    formula is `spline_weight[o, j, i]` (the layout the fast combined weight needs). Buffers `grid_lo` and
    `grid_hi` hold each input's grid range, (in,) or (E, 1, in), which `update_grid` moves per input.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        options: KANOptions | None = None,
        ensemble_size: int | None = None,
        scale_noise: float = 0.1,
    ) -> None:
        super().__init__()
        self.options = options = options or KANOptions()
        if options.input_norm == "layernorm" and in_features < 2:
            raise BenchError(
                f"KAN input_norm 'layernorm' on a layer with {in_features} input: it would map every input "
                "to 0; use a width of at least 2 or input_norm 'none' or 'tanh'"
            )
        self.in_features, self.out_features = in_features, out_features
        self.ensemble_size = ensemble_size
        self.scale_noise = scale_noise
        lead = () if ensemble_size is None else (ensemble_size,)
        if options.base_activation:
            self.base_weight = nn.Parameter(torch.empty(*lead, out_features, in_features))
        else:
            self.register_parameter("base_weight", None)
        self.spline_weight = nn.Parameter(torch.empty(*lead, out_features, options.num_bases, in_features))
        self.spline_scaler = nn.Parameter(torch.empty(*lead, out_features, in_features))
        grid_shape = (in_features,) if ensemble_size is None else (ensemble_size, 1, in_features)
        lo, hi = options.grid_range
        self.register_buffer("grid_lo", torch.full(grid_shape, lo))
        self.register_buffer("grid_hi", torch.full(grid_shape, hi))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """efficient-kan's initialization (module docstring), independently per ensemble member."""
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform(a=sqrt(5)), nn.Linear's default
        g = self.options.grid_size
        with torch.no_grad():
            if self.base_weight is not None:
                self.base_weight.uniform_(-bound, bound)
            self.spline_scaler.uniform_(-bound, bound)
            # Noise at the G + 1 grid points of every edge, fitted by its G + k coefficients.
            lead = self.spline_weight.shape[:-3]
            lo = self.grid_lo.reshape(*lead, 1, self.in_features)
            hi = self.grid_hi.reshape(*lead, 1, self.in_features)
            steps = torch.linspace(0.0, 1.0, g + 1, device=lo.device).unsqueeze(-1)
            points = lo + steps * (hi - lo)  # (..., G + 1, in)
            noise = torch.rand(*lead, g + 1, self.in_features, self.out_features, device=lo.device) - 0.5
            self.spline_weight.copy_(self._fit_coefficients(points, noise * self.scale_noise / g, lo, hi))

    def normalize_input(self, x: Tensor) -> Tensor:
        """The spline path's input: x, tanh(x), or x standardized across the inputs (no affine)."""
        return normalize_spline_input(x, self.options.input_norm)

    def basis(self, x: Tensor) -> Tensor:
        """The B-splines of every input at x (after `input_norm`), (..., in, G + k)."""
        x_spline = self.normalize_input(x)
        return self._basis(x_spline, self.grid_lo, self.grid_hi)

    def _basis(self, x_spline: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        g, k = self.options.grid_size, self.options.spline_order
        return spline_features(None, x_spline, lo, hi, g, k, 0).transpose(-1, -2)

    def combined_weight(self) -> Tensor:
        """[w_b; w_s * c] as (out, (base_slots + G + k) * in), matching the features (leading E: ensemble)."""
        weight = self.spline_scaler.unsqueeze(-2) * self.spline_weight
        if self.base_weight is not None:
            weight = torch.cat([self.base_weight.unsqueeze(-2), weight], dim=-2)
        return weight.flatten(-2)

    def forward(self, x: Tensor) -> Tensor:
        o = self.options
        lead = x.shape[:-1]
        if self.ensemble_size is not None:
            if x.shape[0] != self.ensemble_size:
                raise ValueError(
                    f"ensemble KANLinear expects a leading dim of {self.ensemble_size}, got shape {tuple(x.shape)}"
                )
            # (E, N, in), the layout the per-member grids (E, 1, in) broadcast against.
            x = x.reshape(self.ensemble_size, -1, self.in_features)
        x_spline = self.normalize_input(x)
        features = spline_features(
            None if x_spline is x else x,
            x_spline,
            self.grid_lo,
            self.grid_hi,
            o.grid_size,
            o.spline_order,
            int(o.base_activation),
        )
        weight = self.combined_weight()
        if self.ensemble_size is None:
            return F.linear(features.flatten(-2), weight)
        flat = features.reshape(self.ensemble_size, -1, weight.shape[-1])
        return torch.bmm(flat, weight.transpose(1, 2)).reshape(*lead, self.out_features)

    def _fit_coefficients(self, x: Tensor, y: Tensor, lo: Tensor, hi: Tensor, ridge: float = 1e-8) -> Tensor:
        """Coefficients (..., out, G + k, in) of the curves on the grid [lo, hi] that fit y (..., N, in, out)
        at x (..., N, in), by least squares per input.

        Ridge-regularized normal equations in float64: a basis that no sample reaches gets coefficient 0
        instead of making the system singular.
        """
        a = self._basis(x.double(), lo.double(), hi.double()).movedim(-2, -3)  # (..., in, N, G + k)
        b = y.double().movedim(-2, -3)  # (..., in, N, out)
        gram = a.transpose(-1, -2) @ a
        scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)[..., None, None]
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        coeff = torch.linalg.solve(gram + ridge * scale * eye, a.transpose(-1, -2) @ b)  # (..., in, G+k, out)
        d = coeff.dim()
        return coeff.permute(*range(d - 3), d - 1, d - 2, d - 3).to(self.spline_weight.dtype)

    @torch.no_grad()
    def update_grid(self, x: Tensor, tail: float = 0.01, margin: float = 0.01) -> None:
        """Move every input's uniform grid to its samples' [tail, 1 - tail] quantiles +- margin.

        x: (N, in), or (E, N, in) for an ensemble (each member gets its own grids). The coefficients are refit
        by least squares on the samples so that every edge's spline curve is preserved where the samples are.
        """
        if not 0.0 <= tail < 0.5:
            raise ValueError(f"tail must be in [0, 0.5), got {tail}")
        lead = () if self.ensemble_size is None else (self.ensemble_size,)
        x_spline = self.normalize_input(x.reshape(*lead, -1, self.in_features))
        # Per edge (o, i) the curve sum_j c[o, j, i] B_j(x_i), without the w_s factor, which stays.
        old_basis = self._basis(x_spline, self.grid_lo, self.grid_hi)
        old_curves = torch.einsum("...nij,...oji->...nio", old_basis, self.spline_weight)
        q = torch.tensor([tail, 1.0 - tail], dtype=x_spline.dtype, device=x_spline.device)
        lo, hi = torch.quantile(x_spline, q, dim=-2)  # each (..., in)
        lo = lo - margin
        hi = torch.maximum(hi + margin, lo + 1e-3)  # a feature constant on the samples still needs a width
        lo, hi = lo.reshape(self.grid_lo.shape), hi.reshape(self.grid_hi.shape)
        self.spline_weight.copy_(self._fit_coefficients(x_spline, old_curves, lo, hi))
        self.grid_lo.copy_(lo)
        self.grid_hi.copy_(hi)

    def extra_repr(self) -> str:
        ensemble = "" if self.ensemble_size is None else f", ensemble_size={self.ensemble_size}"
        return f"{self.in_features} -> {self.out_features}, {self.options.summary()}{ensemble}"


class KAN(nn.Module):
    """KANLinear layers in_dim -> hidden... -> out_dim, nothing between them (the splines are activations)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: tuple[int, ...] | list[int] = (),
        options: KANOptions | None = None,
        ensemble_size: int | None = None,
    ) -> None:
        super().__init__()
        widths = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(
            KANLinear(a, b, options, ensemble_size=ensemble_size) for a, b in itertools.pairwise(widths)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def update_grid(self, x: Tensor, tail: float = 0.01, margin: float = 0.01) -> None:
        """`KANLinear.update_grid` layer by layer, each on its input computed after the previous update."""
        for layer in self.layers:
            layer.update_grid(x, tail=tail, margin=margin)
            x = layer(x)


def out_of_grid_fraction(layer: KANLinear, x: Tensor) -> tuple[float, float]:
    """Fractions of the layer's spline inputs outside [lo, hi] and outside the extended grid (no spline)."""
    x_spline = layer.normalize_input(x)
    lo, hi = layer.grid_lo, layer.grid_hi
    k_h = layer.options.spline_order * (hi - lo) / layer.options.grid_size
    outside = ((x_spline < lo) | (x_spline > hi)).float().mean().item()
    beyond = ((x_spline < lo - k_h) | (x_spline >= hi + k_h)).float().mean().item()
    return outside, beyond
