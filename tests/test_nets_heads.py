"""Actor and critic heads: CORL's parameter counts, init, tanh-Gaussian log-probs, ensemble equivalence."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from bench.nets.heads import EnsembleCritic, TanhGaussianActor
from bench.nets.kan import KAN, KANLinear, KANOptions
from bench.nets.mlp import MLP, EnsembleLinear
from bench.nets.spec import build_network, count_parameters, parse_network_spec

OBS, ACT = 17, 6  # Walker2d
OPTIONS = KANOptions()


def actor(text: str = "mlp[256]", **kwargs) -> TanhGaussianActor:
    torch.manual_seed(0)
    return TanhGaussianActor(OBS, ACT, parse_network_spec(text), OPTIONS, **kwargs).double()


def critic(text: str = "mlp[32,32]", **kwargs) -> EnsembleCritic:
    torch.manual_seed(0)
    return EnsembleCritic(OBS, ACT, parse_network_spec(text), OPTIONS, **kwargs).double()


def test_walker2d_parameter_counts() -> None:
    assert count_parameters(actor("mlp[256]").network) == 7_692
    assert count_parameters(actor("kan[4]").network) == 1_160
    assert count_parameters(actor("mlp[256]")) == 7_692 + 2  # CORL's log-std multiplier and offset
    corl = critic("mlp[256,256,256]", num_critics=2)
    assert count_parameters(corl) == 2 * 137_985
    assert count_parameters(build_network(parse_network_spec("mlp[256,256,256]"), OBS + ACT, 1, OPTIONS)) == 137_985
    kan_critic = critic("kan[8,8]")
    assert count_parameters(kan_critic) == 2 * 10 * (23 * 8 + 8 * 8 + 8 * 1)


def standalone_member(ensemble: EnsembleCritic, member: int) -> torch.nn.Module:
    """A plain network with ensemble member `member`'s weights."""
    spec = parse_network_spec("mlp[32,32]") if isinstance(ensemble.network, MLP) else None
    single: torch.nn.Module
    if spec is not None:
        single = MLP(OBS + ACT, 1, [layer.out_features for layer in ensemble.network.layers[:-1]]).double()
        for plain, stacked in zip(single.layers, ensemble.network.layers, strict=True):
            assert isinstance(stacked, EnsembleLinear)
            plain.weight.data.copy_(stacked.weight[member].T)
            plain.bias.data.copy_(stacked.bias[member, 0])
        return single
    hidden = [layer.out_features for layer in ensemble.network.layers[:-1]]
    single = KAN(OBS + ACT, 1, hidden, OPTIONS).double()
    for plain, stacked in zip(single.layers, ensemble.network.layers, strict=True):
        assert isinstance(stacked, KANLinear)
        plain.load_state_dict({k: v[member].reshape(getattr(plain, k).shape) for k, v in stacked.state_dict().items()})
    return single


@pytest.mark.parametrize("text", ["mlp[32,32]", "kan[4,3]"])
def test_ensemble_member_equals_standalone_network(text: str) -> None:
    ensemble = critic(text, num_critics=3)
    with torch.no_grad():  # leave CORL's near-zero last layer so that the outputs differ visibly
        for p in ensemble.network.layers[-1].parameters():
            p.normal_()
    obs, actions = torch.randn(9, OBS, dtype=torch.float64), torch.rand(9, ACT, dtype=torch.float64) * 2 - 1
    q = ensemble(obs, actions)
    assert q.shape == (3, 9)
    for member in range(3):
        expected = standalone_member(ensemble, member)(torch.cat([obs, actions], -1)).squeeze(-1)
        torch.testing.assert_close(q[member], expected)
    torch.testing.assert_close(ensemble.forward_members(obs.expand(3, -1, -1), actions.expand(3, -1, -1)), q)


def test_critic_shapes_and_broadcasting() -> None:
    net = critic(num_critics=2)
    obs, actions = torch.randn(5, OBS, dtype=torch.float64), torch.rand(5, 10, ACT, dtype=torch.float64)
    assert net(obs[0], actions[0, 0]).shape == (2,)
    assert net(obs, actions[:, 0]).shape == (2, 5)
    q = net(obs, actions)  # obs one dim short, repeated over the 10 actions as in CORL
    assert q.shape == (2, 5, 10)
    torch.testing.assert_close(q[:, :, 3], net(obs, actions[:, 3]))
    torch.testing.assert_close(net(obs.unsqueeze(1).expand(-1, 10, -1), actions), q)
    per_member = net.forward_members(torch.randn(2, 5, 4, OBS).double(), torch.rand(2, 5, 4, ACT).double())
    assert per_member.shape == (2, 5, 4)


def test_log_prob_matches_torch_distributions() -> None:
    policy = actor("kan[4]", max_action=1.0)
    obs = torch.randn(64, OBS, dtype=torch.float64)
    torch.manual_seed(3)
    action, log_prob = policy(obs)
    mean, log_std = policy.distribution_params(obs)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform())
    clipped = action.clamp(-1 + 1e-12, 1 - 1e-12)
    torch.testing.assert_close(log_prob, dist.log_prob(clipped).sum(-1), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(policy.log_prob(obs, action), log_prob, atol=1e-6, rtol=1e-6)
    # CORL's log_prob over N actions per state.
    many = torch.rand(64, 5, ACT, dtype=torch.float64) * 1.8 - 0.9
    torch.testing.assert_close(
        policy.log_prob(obs, many), dist.log_prob(many.transpose(0, 1)).sum(-1).T, atol=1e-6, rtol=1e-6
    )


def test_sampling_is_reparameterized_and_batched() -> None:
    policy = actor("mlp[16]")
    obs = torch.randn(4, 3, OBS, dtype=torch.float64)
    action, log_prob = policy(obs)
    assert action.shape == (4, 3, ACT) and log_prob.shape == (4, 3)
    action.sum().backward()
    assert policy.network.layers[0].weight.grad is not None
    action, log_prob = policy(obs, need_log_prob=False)
    assert log_prob is None


@pytest.mark.parametrize("body", ["mlp[16]", "kan[4]"])
def test_forward_repeated_equals_forward_on_the_repeated_states(body: str) -> None:
    # CQL's policy samples: each state repeated over its samples, the body run once per state.
    policy = actor(body)
    obs = torch.randn(5, 2, OBS, dtype=torch.float64)
    repeats = (3, 4)
    noise = torch.randn(5, sum(repeats), ACT, dtype=torch.float64)
    repeated = obs.index_select(1, torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    expected_action, expected_log_prob = policy(repeated, noise=noise)
    action, log_prob = policy.forward_repeated(obs, repeats, noise=noise)
    torch.testing.assert_close(action, expected_action, rtol=0.0, atol=1e-12)
    torch.testing.assert_close(log_prob, expected_log_prob, rtol=0.0, atol=1e-12)
    with pytest.raises(ValueError, match="expected 3 states"):
        policy.forward_repeated(obs, (1, 1, 1), noise=noise)


def test_deterministic_action_is_tanh_of_mean() -> None:
    policy = actor("mlp[16]", max_action=2.0)
    obs = torch.randn(8, OBS, dtype=torch.float64)
    action, log_prob = policy(obs, deterministic=True)
    mean, log_std = policy.distribution_params(obs)
    torch.testing.assert_close(action, torch.tanh(mean) * 2.0)
    expected = Normal(mean, log_std.exp()).log_prob(mean) - torch.log1p(-(torch.tanh(mean) ** 2))
    torch.testing.assert_close(log_prob, expected.sum(-1))


def test_log_std_is_scaled_shifted_and_clamped() -> None:
    policy = actor("mlp[]")
    last = policy.network.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0] * ACT + [-100.0, -3.0, 0.0, 1.0, 2.5, 100.0]))
        policy.log_std_multiplier.fill_(2.0)
    _, log_std = policy.distribution_params(torch.zeros(1, OBS, dtype=torch.float64))
    expected = torch.tensor([[-20.0, -7.0, -1.0, 1.0, 2.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(log_std, expected)


def test_corl_initialization() -> None:
    net = critic("mlp[64,64]", num_critics=2, orthogonal_init=True).network
    for layer in net.layers:
        assert torch.all(layer.bias == 0)
    for member in range(2):
        w = net.layers[1].weight[member].T  # as nn.Linear (out, in)
        torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(64, dtype=w.dtype), atol=1e-5, rtol=0)
        last = net.layers[-1].weight[member].T
        assert math.isclose(last.norm().item(), 1e-2, rel_tol=1e-4)  # orthogonal row with gain 1e-2
    assert not torch.equal(net.layers[1].weight[0], net.layers[1].weight[1])
    default = actor("mlp[64]", orthogonal_init=False).network
    assert default.layers[-1].weight.abs().max() <= 1e-2 * math.sqrt(6 / (64 + 12))  # xavier_uniform gain 1e-2
    assert torch.all(default.layers[-1].bias == 0)


def test_kan_bodies_start_near_zero_like_corl() -> None:
    policy = actor("kan[4]")
    x = torch.randn(256, OBS, dtype=torch.float64)
    unscaled = KAN(OBS, 2 * ACT, (4,), OPTIONS).double()
    unscaled.load_state_dict(policy.network.state_dict())
    with torch.no_grad():
        unscaled.layers[-1].base_weight.div_(1e-2)
        unscaled.layers[-1].spline_scaler.div_(1e-2)
    out = policy.network(x)
    torch.testing.assert_close(out, 1e-2 * unscaled(x))
    assert out.abs().max() < 0.05
    q = critic("kan[8,8]")(torch.randn(32, OBS).double(), torch.rand(32, ACT).double())
    assert q.abs().max() < 0.05


def test_mlp_layer_norm_and_ensemble_layer_norm() -> None:
    torch.manual_seed(0)
    single = MLP(5, 2, (8, 8), layer_norm=True)
    assert len(single.norms) == 2 and single(torch.randn(3, 5)).shape == (3, 2)
    ensemble = MLP(5, 2, (8,), layer_norm=True, ensemble_size=3)
    assert ensemble(torch.randn(3, 4, 7, 5)).shape == (3, 4, 7, 2)
    assert count_parameters(ensemble) == 3 * ((5 * 8 + 8) + 2 * 8 + (8 * 2 + 2))
