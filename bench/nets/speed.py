"""`python -m bench speed nets`: forward + backward time of KAN layers and networks against MLPs on CPU.

Every ratio compares two models timed in the same run, so it holds across machines better than the raw
milliseconds. Groups:
(a) KANLinear 256 -> 256 (G=5, k=3: 655,360 parameters) against nn.Linear 256 -> 2560 without bias (the same
    655,360 parameters, the same matmul work) and against nn.Linear 256 -> 256;
(b) the Cox-de Boor reference below (efficient-kan's `KANLinear`: recursion over the extended knot vector,
    base and spline paths as two matmuls) against KANLinear;
(c) the paper's Walker2d actors, kan[4] against mlp[256] (sample, log-prob, backward);
(d) CQL's two critics mlp[256,256,256] as one ensemble network against two separate networks.
The layer inputs require grad (hidden-layer case), so the backward pass includes the input gradient.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch import Tensor, nn

from bench.nets.heads import EnsembleCritic, TanhGaussianActor
from bench.nets.kan import KANLinear, KANOptions
from bench.nets.spec import build_network, count_parameters, parse_network_spec

WALKER_OBS, WALKER_ACT = 17, 6
WARMUP = 5
EQUAL_LINEAR = "nn.Linear 256 -> 2560, no bias (equal parameters)"
PLAIN_LINEAR = "nn.Linear 256 -> 256"
KAN_LAYER = "KANLinear 256 -> 256 (G=5, k=3)"
COX_LAYER = "Cox-de Boor KANLinear 256 -> 256 (reference)"
MLP_ACTOR = "Walker2d actor mlp[256]"
SEPARATE_CRITICS = "2 separate critics mlp[256,256,256]"


class CoxDeBoorKANLinear(nn.Module):
    """The straightforward KAN layer (efficient-kan's `b_splines` and `forward`), the speed reference.

    Same parameters as a plain KANLinear, in efficient-kan's layout: `spline_weight` (out, in, G + k).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range=(-1, 1),
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.spline_order = in_features, out_features, spline_order
        lo, hi = grid_range
        h = (hi - lo) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1) * h + lo
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))

    @classmethod
    def from_kan(cls, layer: KANLinear) -> CoxDeBoorKANLinear:
        """The reference layer with the parameters of `layer` (plain, with a SiLU path, one grid range)."""
        o = layer.options
        ref = cls(layer.in_features, layer.out_features, o.grid_size, o.spline_order, o.grid_range)
        with torch.no_grad():
            ref.base_weight.copy_(layer.base_weight)
            ref.spline_weight.copy_(layer.spline_weight.transpose(-1, -2))
            ref.spline_scaler.copy_(layer.spline_scaler)
        return ref

    def b_splines(self, x: Tensor) -> Tensor:
        """(batch, in) -> (batch, in, G + k) by the Cox-de Boor recursion."""
        grid = self.grid
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            left = (x - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)])
            right = (grid[:, k + 1 :] - x) / (grid[:, k + 1 :] - grid[:, 1:(-k)])
            bases = left * bases[:, :, :-1] + right * bases[:, :, 1:]
        return bases

    def forward(self, x: Tensor) -> Tensor:
        base = F.linear(F.silu(x), self.base_weight)
        scaled = self.spline_weight * self.spline_scaler.unsqueeze(-1)
        spline = F.linear(self.b_splines(x).view(x.size(0), -1), scaled.view(self.out_features, -1))
        return base + spline


@dataclass
class _Timing:
    group: str
    name: str
    parameters: int
    ms: float


def _time_ms(step: Callable[[], Tensor], modules: list[nn.Module], inputs: list[Tensor], repeats: int) -> float:
    """Median milliseconds of forward + backward of step()'s scalar, gradients cleared outside the timing."""

    def clear() -> None:
        for module in modules:
            module.zero_grad(set_to_none=True)
        for tensor in inputs:
            tensor.grad = None

    for _ in range(WARMUP):
        clear()
        step().backward()
    times = []
    for _ in range(repeats):
        clear()
        start = time.perf_counter()
        step().backward()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _layers(batch_size: int, repeats: int) -> list[_Timing]:
    x = torch.randn(batch_size, 256, requires_grad=True)
    kan = KANLinear(256, 256, KANOptions(grid_size=5, spline_order=3, grid_range=(-1.0, 1.0)))
    models: list[tuple[str, str, nn.Module]] = [
        ("a", EQUAL_LINEAR, nn.Linear(256, 2560, bias=False)),
        ("a", PLAIN_LINEAR, nn.Linear(256, 256)),
        ("a", KAN_LAYER, kan),
        ("b", COX_LAYER, CoxDeBoorKANLinear.from_kan(kan)),
    ]
    out = []
    for group, name, model in models:
        ms = _time_ms(lambda m=model: m(x).square().mean(), [model], [x], repeats)
        out.append(_Timing(group, name, count_parameters(model), ms))
    return out


def _actors(batch_size: int, repeats: int) -> list[_Timing]:
    obs = torch.randn(batch_size, WALKER_OBS)
    out = []
    for text in ("mlp[256]", "kan[4]"):
        actor = TanhGaussianActor(WALKER_OBS, WALKER_ACT, parse_network_spec(text), KANOptions())

        def step(a: TanhGaussianActor = actor) -> Tensor:
            action, log_prob = a(obs)
            return action.square().mean() + log_prob.mean()

        ms = _time_ms(step, [actor], [], repeats)
        out.append(_Timing("c", f"Walker2d actor {text}", count_parameters(actor.network), ms))
    return out


def _critics(batch_size: int, repeats: int) -> list[_Timing]:
    spec, options = parse_network_spec("mlp[256,256,256]"), KANOptions()
    obs = torch.randn(batch_size, WALKER_OBS)
    actions = torch.rand(batch_size, WALKER_ACT) * 2 - 1
    inputs = torch.cat([obs, actions], dim=-1)
    separate = [build_network(spec, WALKER_OBS + WALKER_ACT, 1, options) for _ in range(2)]
    ensemble = EnsembleCritic(WALKER_OBS, WALKER_ACT, spec, options, num_critics=2)

    def step_separate() -> Tensor:
        return sum(critic(inputs).square().mean() for critic in separate)

    def step_ensemble() -> Tensor:
        return ensemble(obs, actions).square().mean(-1).sum()

    params = count_parameters(ensemble)
    return [
        _Timing("d", SEPARATE_CRITICS, params, _time_ms(step_separate, separate, [], repeats)),
        _Timing("d", "2 critics as one ensemble network", params, _time_ms(step_ensemble, [ensemble], [], repeats)),
    ]


def run_speed_benchmark(batch_size: int = 256, repeats: int = 50, threads: int | None = None) -> str:
    """Time every group (module docstring) and return the table with ratios and the targets' verdicts."""
    if batch_size < 1 or repeats < 1:
        raise ValueError("batch_size and repeats must be positive")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        timings = _layers(batch_size, repeats) + _actors(batch_size, repeats) + _critics(batch_size, repeats)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    return _report(timings, batch_size, repeats, used_threads)


def _report(timings: list[_Timing], batch_size: int, repeats: int, threads: int) -> str:
    ms = {t.name: t.ms for t in timings}
    kan, cox = ms[KAN_LAYER], ms[COX_LAYER]
    references = {"a": ms[EQUAL_LINEAR], "b": kan, "c": ms[MLP_ACTOR], "d": ms[SEPARATE_CRITICS]}
    rows = []
    for t in timings:
        reference = references[t.group]
        ratio = "1.00 (reference)" if t.ms == reference else f"{t.ms / reference:.2f}"
        rows.append([f"({t.group})", t.name, f"{t.parameters:,}", f"{t.ms:.3f}", ratio])
    headers = ["group", "model", "parameters", "ms / batch", "time ratio"]
    equal, speedup = kan / ms[EQUAL_LINEAR], cox / kan
    return "\n".join(
        [
            f"forward + backward on CPU, batch {batch_size}, median of {repeats}, {threads} torch threads",
            tabulate(rows, headers=headers, tablefmt="simple"),
            "",
            f"KANLinear vs equal-parameter Linear: {equal:.2f}x the time "
            f"(target at most 2x: {'met' if equal <= 2 else 'not met'})",
            f"KANLinear vs Linear 256 -> 256: {kan / ms[PLAIN_LINEAR]:.1f}x the time",
            f"Cox-de Boor reference vs KANLinear: {speedup:.2f}x the time "
            f"(target at least 3x: {'met' if speedup >= 3 else 'not met'})",
            f"Both run the equal-parameter Linear's matmul work, which caps that ratio at reference / "
            f"equal-parameter Linear = {cox / ms[EQUAL_LINEAR]:.2f}x on this machine",
        ]
    )
