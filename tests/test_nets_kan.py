"""KANLinear: closed-form basis against Cox-de Boor, gradients, grid update, fitting, out-of-grid inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.nets.kan import KAN, KANLinear, KANOptions, bspline_basis, out_of_grid_fraction, spline_features
from bench.nets.speed import CoxDeBoorKANLinear, run_speed_benchmark


def cox_de_boor(x: torch.Tensor, knots: list[float], order: int) -> torch.Tensor:
    """Textbook recursion on an explicit knot vector, independent of the library: (..., #knots - order - 1)"""
    x = x.unsqueeze(-1)
    t = torch.tensor(knots, dtype=x.dtype)
    bases = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)
    for p in range(1, order + 1):
        n = bases.shape[-1] - 1
        new = []
        for i in range(n):
            left = (x[..., 0] - t[i]) / (t[i + p] - t[i]) * bases[..., i]
            right = (t[i + p + 1] - x[..., 0]) / (t[i + p + 1] - t[i + 1]) * bases[..., i + 1]
            new.append(left + right)
        bases = torch.stack(new, dim=-1)
    return bases


def extended_knots(lo: float, hi: float, grid_size: int, order: int) -> list[float]:
    h = (hi - lo) / grid_size
    return [lo + (m - order) * h for m in range(grid_size + 2 * order + 1)]


def kan_layer(in_features: int = 3, out_features: int = 2, ensemble_size: int | None = None, **options):
    torch.manual_seed(0)
    return KANLinear(in_features, out_features, KANOptions(**options), ensemble_size=ensemble_size).double()


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("grid_size", [1, 3, 5, 8])
def test_basis_matches_cox_de_boor(order: int, grid_size: int) -> None:
    lo, hi = -1.3, 2.1
    x = torch.linspace(-6.0, 7.0, 1301, dtype=torch.float64)
    expected = cox_de_boor(x, extended_knots(lo, hi, grid_size, order), order)
    actual = bspline_basis(x, lo, hi, grid_size, order)
    assert actual.shape == (x.numel(), grid_size + order)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_layer_basis_uses_each_inputs_grid_and_order_five() -> None:
    layer = kan_layer(in_features=2, grid_size=4, spline_order=5)
    with torch.no_grad():
        layer.grid_lo.copy_(torch.tensor([-1.0, 0.5]))
        layer.grid_hi.copy_(torch.tensor([1.0, 3.0]))
    x = torch.stack([torch.linspace(-4, 4, 101), torch.linspace(-3, 6, 101)], dim=-1).double()
    basis = layer.basis(x)
    for i, (lo, hi) in enumerate([(-1.0, 1.0), (0.5, 3.0)]):
        torch.testing.assert_close(
            basis[:, i], cox_de_boor(x[:, i], extended_knots(lo, hi, 4, 5), 5), atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("order", [1, 2, 3])
def test_partition_of_unity_inside_the_grid(order: int) -> None:
    x = torch.linspace(-2.0, 3.0, 777, dtype=torch.float64)
    total = bspline_basis(x, -2.0, 3.0, 5, order).sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-12, rtol=0)


def test_outside_the_extended_grid_only_the_silu_path_remains() -> None:
    layer = kan_layer(in_features=3, out_features=4, grid_range=(-1.0, 1.0))  # extended grid [-2.2, 2.2]
    x = torch.tensor([[-2.3, 2.2, 50.0], [-1e3, 1e3, -7.5]], dtype=torch.float64)
    assert torch.all(layer.basis(x) == 0)
    torch.testing.assert_close(layer(x), F.linear(F.silu(x), layer.base_weight))
    assert out_of_grid_fraction(layer, x) == (1.0, 1.0)


def test_parameter_count_per_edge() -> None:
    assert sum(p.numel() for p in KANLinear(17, 4).parameters()) == 17 * 4 * 10
    spline_only = KANLinear(17, 4, KANOptions(grid_size=7, spline_order=2, base_activation=False))
    assert sum(p.numel() for p in spline_only.parameters()) == 17 * 4 * (7 + 2 + 1)
    net = KAN(17, 12, (4,), KANOptions())
    assert sum(p.numel() for p in net.parameters()) == 1_160
    ensemble = KANLinear(23, 8, KANOptions(), ensemble_size=2)
    assert sum(p.numel() for p in ensemble.parameters()) == 2 * 23 * 8 * 10


@pytest.mark.parametrize(
    "options",
    [{}, {"spline_order": 2, "input_norm": "tanh"}, {"input_norm": "layernorm"}, {"base_activation": False}],
)
def test_gradcheck_plain_layer(options: dict) -> None:
    layer = kan_layer(grid_range=(-1.0, 1.0), **options)
    x = (torch.randn(5, 3, dtype=torch.float64) * 1.5).requires_grad_()
    params = [p for p in layer.parameters()]
    assert torch.autograd.gradcheck(
        lambda x, *ps: torch.func.functional_call(layer, _named(layer, ps), (x,)), (x, *params)
    )


def test_gradcheck_ensemble_layer() -> None:
    layer = kan_layer(ensemble_size=2, grid_range=(-1.0, 1.0))
    x = (torch.randn(2, 4, 3, dtype=torch.float64) * 1.5).requires_grad_()
    params = [p for p in layer.parameters()]
    assert torch.autograd.gradcheck(
        lambda x, *ps: torch.func.functional_call(layer, _named(layer, ps), (x,)), (x, *params)
    )


def _named(layer: torch.nn.Module, params: tuple) -> dict:
    return dict(zip([name for name, _ in layer.named_parameters()], params, strict=True))


def test_ensemble_member_equals_standalone_layer() -> None:
    ensemble = kan_layer(in_features=3, out_features=2, ensemble_size=3)
    x = torch.randn(3, 7, 3, dtype=torch.float64) * 2
    out = ensemble(x)
    for member in range(3):
        single = kan_layer(in_features=3, out_features=2)
        single.load_state_dict(
            {name: value[member].reshape(getattr(single, name).shape) for name, value in ensemble.state_dict().items()}
        )
        torch.testing.assert_close(out[member], single(x[member]))


def test_matches_the_cox_de_boor_reference_layer() -> None:
    layer = kan_layer(in_features=6, out_features=5, grid_range=(-1.5, 1.0))
    with torch.no_grad():
        layer.spline_weight.normal_()
    reference = CoxDeBoorKANLinear.from_kan(layer).double()
    x = torch.randn(64, 6, dtype=torch.float64) * 2
    torch.testing.assert_close(layer(x), reference(x))


def test_update_grid_preserves_the_function() -> None:
    layer = kan_layer(in_features=3, out_features=4, grid_range=(-1.0, 1.0))
    with torch.no_grad():
        layer.spline_weight.normal_()
    torch.manual_seed(1)
    x = torch.rand(2000, 3, dtype=torch.float64) * 2.2 - 1.1
    before = layer(x)
    layer.update_grid(x, tail=0.01, margin=0.01)
    q = torch.quantile(x, torch.tensor([0.01, 0.99], dtype=torch.float64), dim=0)
    torch.testing.assert_close(layer.grid_lo, q[0] - 0.01)
    torch.testing.assert_close(layer.grid_hi, q[1] + 0.01)
    error = (layer(x) - before).square().mean().sqrt() / before.std()
    assert error < 0.05
    # Refitting on the grid the curves already live on reproduces them exactly.
    lo, hi = layer.grid_lo.clone(), layer.grid_hi.clone()
    before = layer(x)
    with torch.no_grad():
        layer.spline_weight.copy_(
            layer._fit_coefficients(x, torch.einsum("nij,oji->nio", layer.basis(x), layer.spline_weight), lo, hi)
        )
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=0)


def test_update_grid_per_ensemble_member_and_network() -> None:
    layer = kan_layer(in_features=2, out_features=3, ensemble_size=2)
    x = torch.stack([torch.randn(500, 2), 3 * torch.randn(500, 2) + 1]).double()
    before = layer(x)
    layer.update_grid(x)
    assert layer.grid_lo.shape == (2, 1, 2)
    assert torch.all(layer.grid_hi[1] - layer.grid_lo[1] > 2 * (layer.grid_hi[0] - layer.grid_lo[0]))
    assert (layer(x) - before).abs().max() < 0.05 * before.abs().max()
    torch.manual_seed(0)
    net = KAN(3, 2, (4,), KANOptions()).double()
    x = torch.randn(400, 3, dtype=torch.float64)
    before = net(x)
    net.update_grid(x)
    assert (net(x) - before).abs().max() < 0.05 * before.abs().max()


def test_tiny_kan_fits_sin() -> None:
    torch.manual_seed(0)
    net = KAN(1, 1, (2,), KANOptions(grid_range=(-2.0, 2.0)))
    x = torch.linspace(-2, 2, 256).unsqueeze(-1)
    y = torch.sin(3 * x)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(400):
        loss = (net(x) - y).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x_test = torch.rand(1000, 1) * 4 - 2
    assert (net(x_test) - torch.sin(3 * x_test)).square().mean() < 1e-3


def test_huge_inputs_give_finite_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    net = KAN(3, 2, (4,), KANOptions(input_norm="none"))
    x = torch.tensor([[1e3, -1e3, 0.5], [-1e3, 3.0, 1e3], [float("1e30"), 0.0, -2.0]], requires_grad=True)
    out = net(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_shared_input_gives_the_sum_of_both_paths_gradients() -> None:
    # x_base=None (one input for the SiLU and the spline path) must give what two separate inputs give, the
    # gradient being their sum, to the last bit: eager training is unchanged by the shared form.
    torch.manual_seed(0)
    x = torch.randn(6, 5, 4) * 2
    lo, hi = torch.tensor(-3.0), torch.tensor(3.0)
    grad = torch.randn(6, 5, 9, 4)
    shared = x.clone().requires_grad_()
    spline_features(None, shared, lo, hi, 5, 3, 1).backward(grad)
    base, spline = x.clone().requires_grad_(), x.clone().requires_grad_()
    separate = spline_features(base, spline, lo, hi, 5, 3, 1)
    separate.backward(grad)
    assert torch.equal(spline_features(None, x, lo, hi, 5, 3, 1), separate.detach())
    assert torch.equal(shared.grad, spline.grad + base.grad)


@pytest.mark.parametrize("options", [{}, {"input_norm": "tanh"}, {"base_activation": False}])
def test_an_ensemble_kan_compiles_into_one_graph(options: dict) -> None:
    # A graph break at each KAN layer left its features to eager mode inside a compiled step.
    torch.manual_seed(0)
    net = KAN(5, 1, (4,), KANOptions(**options), ensemble_size=2)
    explanation = torch._dynamo.explain(net)(torch.randn(2, 8, 5))
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grid_size": 0}, "grid_size 0"),
        ({"spline_order": 9}, "spline_order 9"),
        ({"grid_range": (1.0, -1.0)}, "grid_range (1.0, -1.0)"),
        ({"grid_range": "wide"}, "grid_range 'wide'"),
        ({"input_norm": "batchnorm"}, "input_norm 'batchnorm'"),
    ],
)
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        KANOptions(**options)


def test_speed_benchmark_reports_every_group() -> None:
    report = run_speed_benchmark(batch_size=8, repeats=1, threads=1)
    for text in ("KANLinear 256 -> 256", "Cox-de Boor", "kan[4]", "ensemble", "equal-parameter Linear"):
        assert text in report
