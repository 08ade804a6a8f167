"""The RBF-basis (FastKAN-style) KAN layer: its formula, its parameter count, ensembles and training in CQL."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.agents.cql import CQL, CQLConfig
from bench.nets.kan import KANOptions
from bench.nets.rbf import RBFKANLinear
from bench.nets.spec import Architecture, build_network, count_parameters, parse_network_spec
from tests.test_train_group import random_batch


def test_the_layer_computes_silu_plus_gaussians_of_the_normalized_input() -> None:
    torch.manual_seed(0)
    options = KANOptions(grid_size=2, spline_order=1, grid_range=(-1.0, 1.0))  # 3 Gaussians at -1, 0, 1
    layer = RBFKANLinear(2, 1, options).double()
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    z = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)
    w = layer.weight.detach()[:, 0]  # slots (SiLU, g=-1, g=0, g=1) x inputs, slot-major
    expected = 0.0
    for i in range(2):
        expected += w[i] * F.silu(x[0, i])
        for j, centre in enumerate((-1.0, 0.0, 1.0)):
            expected += w[(j + 1) * 2 + i] * math.exp(-(((z[0, i] - centre) / 1.0) ** 2))
    torch.testing.assert_close(layer(x)[0, 0], expected)


def test_parameter_count_matches_the_b_spline_layer_plus_the_norm() -> None:
    network = build_network(parse_network_spec("rbf[4]"), 17, 12, KANOptions())
    # Per edge G + k = 8 Gaussians and the SiLU weight (the B-spline layer also has w_s: 10 per edge); 2 per input.
    assert count_parameters(network) == 17 * 4 * 9 + 2 * 17 + 4 * 12 * 9 + 2 * 4 == 1086
    spline_only = build_network(parse_network_spec("rbf[4]"), 17, 12, KANOptions(base_activation=False))
    assert count_parameters(spline_only) == 17 * 4 * 8 + 2 * 17 + 4 * 12 * 8 + 2 * 4


def test_ensemble_members_compute_what_single_layers_compute() -> None:
    torch.manual_seed(0)
    ensemble = build_network(parse_network_spec("rbf[5]"), 6, 3, KANOptions(), ensemble_size=3)
    x = torch.randn(3, 4, 6)
    out = ensemble(x)
    for member in range(3):
        single = build_network(parse_network_spec("rbf[5]"), 6, 3, KANOptions())
        single.load_state_dict({k: v[member] for k, v in ensemble.state_dict().items()})
        torch.testing.assert_close(single(x[member]), out[member])


def test_an_rbf_actor_trains_in_a_population() -> None:
    arch = Architecture("rbf-actor", parse_network_spec("rbf[4]"), parse_network_spec("mlp[16]"))
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(CQL(11, 3, arch, CQLConfig(batch_size=8, cql_n_actions=2)))
    population = CQL.from_members(members)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert torch.isfinite(population.update(random_batch(2, 8, g))).all()
    obs = torch.randn(5, 11)
    alone = population.actor.member(0, arch.actor, arch.kan)
    torch.testing.assert_close(alone(obs, deterministic=True)[0], population.act(obs.expand(2, 5, 11))[0])
