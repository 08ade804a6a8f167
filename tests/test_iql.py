"""IQL's losses against a hand computation, its actors, its cosine actor schedule, seeds side by side."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.agents.base import Batch
from bench.agents.iql import IQL, IQLConfig, cosine_lr, expectile_loss
from bench.nets.heads import DeterministicActor, GaussianActor
from bench.nets.kan import KANOptions
from bench.nets.spec import get_architecture, parse_network_spec
from tests.test_train_group import member_slice, random_batch

OBS, ACT, B, E = 3, 2, 5, 2


class FixedCritic(nn.Module):
    """Member e: Q_e(s, a) = (e + 1) * slope * (sum(s) + 2 * sum(a)) + e."""

    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.tensor(slope, dtype=torch.float64))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        base = obs.sum(-1) + 2.0 * actions.sum(-1)
        members = torch.arange(E, dtype=torch.float64).view(E, *([1] * base.dim()))
        return (members + 1) * self.slope * base + members


class FixedValue(nn.Module):
    """V(s) = 0.3 * sum(s) - 0.2."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.scale * obs.sum(-1) - 0.2


class FixedGaussian(nn.Module):
    """mean = tanh(0.5 * s[:ACT]), std = 0.5: log-prob and a deterministic forward (the mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.scale * obs[..., :ACT])

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self(obs), 0.5).log_prob(actions).sum(-1)


def q_np(e: int, slope: float, s: np.ndarray, a: np.ndarray) -> float:
    return (e + 1) * slope * (s.sum() + 2 * a.sum()) + e


def normal_log_prob(x: np.ndarray, mean: np.ndarray, std: float) -> float:
    return float(np.sum(-0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)))


def make_agent(config: IQLConfig) -> IQL:
    agent = IQL(OBS, ACT, get_architecture("mlp-small"), config)
    agent.actor, agent.value = FixedGaussian(), FixedValue()
    agent.critic, agent.target_critic = FixedCritic(1.0), FixedCritic(0.5)
    return agent


@pytest.mark.parametrize("deterministic", [False, True])
def test_losses_match_hand_computation(deterministic: bool) -> None:
    config = IQLConfig(discount=0.9, iql_tau=0.7, beta=3.0, exp_adv_max=2.0, iql_deterministic=deterministic)
    agent = make_agent(config)
    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(B, OBS)), rng.uniform(-1, 1, size=(B, ACT))
    rew, nobs, done = rng.normal(size=B), rng.normal(size=(B, OBS)), np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    losses = agent.compute_losses(Batch(*(torch.as_tensor(x).unsqueeze(0) for x in (obs, act, rew, nobs, done))))
    value_loss = q_loss = actor_loss = 0.0
    clipped = 0
    for i in range(B):
        v = 0.3 * obs[i].sum() - 0.2
        u = min(q_np(k, 0.5, obs[i], act[i]) for k in range(E)) - v
        value_loss += (0.7 if u >= 0 else 0.3) * u**2 / B
        y = rew[i] + (1 - done[i]) * 0.9 * (0.3 * nobs[i].sum() - 0.2)
        q_loss += sum((q_np(e, 1.0, obs[i], act[i]) - y) ** 2 for e in range(E)) / E / B
        weight = min(math.exp(3.0 * u), 2.0)
        clipped += math.exp(3.0 * u) > 2.0
        mean = np.tanh(0.5 * obs[i, :ACT])
        bc = np.sum((mean - act[i]) ** 2) if deterministic else -normal_log_prob(act[i], mean, 0.5)
        actor_loss += weight * bc / B
    assert 0 < clipped < B  # the clip at exp_adv_max is exercised
    assert losses["value_loss"].item() == pytest.approx(value_loss, rel=1e-9)
    assert losses["q_loss"].item() == pytest.approx(q_loss, rel=1e-9)
    assert losses["actor_loss"].item() == pytest.approx(actor_loss, rel=1e-9)


def test_each_loss_trains_only_its_network() -> None:
    agent = make_agent(IQLConfig())
    obs = torch.randn(1, B, OBS, dtype=torch.float64)
    batch = Batch(obs, torch.rand(1, B, ACT, dtype=torch.float64), torch.ones(1, B), obs, torch.zeros(1, B))
    nets = {"value_loss": agent.value.scale, "q_loss": agent.critic.slope, "actor_loss": agent.actor.scale}
    for name, trained in nets.items():
        for parameter in nets.values():
            parameter.grad = None
        agent.compute_losses(batch)[name].sum().backward()
        assert [p.grad is not None for p in nets.values()] == [p is trained for p in nets.values()], name


def test_expectile_loss_weights_the_two_sides() -> None:
    u = torch.tensor([[-2.0, 1.0]])
    assert expectile_loss(u, 0.7).item() == pytest.approx((0.3 * 4 + 0.7 * 1) / 2)


def test_gaussian_actor_matches_torch_normal_and_acts_with_its_mean() -> None:
    torch.manual_seed(0)
    actor = GaussianActor(OBS, ACT, parse_network_spec("mlp[8]"), KANOptions(), population=3).double()
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([[-0.5, 0.1], [0.0, 0.0], [5.0, -30.0]]))  # the last one clamped
    obs, actions = torch.randn(3, 4, OBS, dtype=torch.float64), torch.rand(3, 4, ACT, dtype=torch.float64) * 2 - 1
    mean = torch.tanh(actor.network(obs))
    std = actor.log_std.clamp(-20.0, 2.0).exp().unsqueeze(1)
    expected = torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, actions), expected)
    torch.testing.assert_close(actor.act(obs), mean)
    single = actor.member(2, parse_network_spec("mlp[8]"), KANOptions()).double()
    torch.testing.assert_close(single.log_prob(obs[2], actions[2]), expected[2])


def test_actor_learning_rate_follows_corls_cosine_schedule() -> None:
    total = 6
    agent = IQL(11, 3, get_architecture("mlp-small"), IQLConfig(batch_size=8), run_steps=total)
    reference = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=3e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(reference, total)
    batch = random_batch(1, 8, torch.Generator().manual_seed(0))
    for step in range(total):
        used = agent.losses_dict(agent.update(batch))["actor_lr"].item()
        assert used == pytest.approx(reference.param_groups[0]["lr"], rel=1e-6, abs=1e-12)
        assert used == pytest.approx(cosine_lr(3e-4, step, total), rel=1e-6)
        reference.step()
        schedule.step()
    assert agent.actor_lr.item() == pytest.approx(cosine_lr(3e-4, total - 1, total), rel=1e-6)


@pytest.mark.parametrize(("arch", "deterministic"), [("mlp-small", False), ("kan-small", True)])
def test_a_population_update_is_each_members_update_alone(arch: str, deterministic: bool) -> None:
    config = IQLConfig(batch_size=8, iql_deterministic=deterministic)
    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        members.append(IQL(11, 3, get_architecture(arch), config, run_steps=10))
    alone = copy.deepcopy(members)
    population = IQL.from_members(members)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = random_batch(3, 8, g)
        together = population.losses_dict(population.update(batch))
        for p, agent in enumerate(alone):
            losses = agent.losses_dict(agent.update(member_slice(batch, p)))
            for name, value in losses.items():
                torch.testing.assert_close(value[0], together[name][p], rtol=1e-5, atol=1e-6)
    for p, agent in enumerate(alone):
        for name, value in agent.value.state_dict().items():
            torch.testing.assert_close(value.reshape(-1), population.value.state_dict()[name][p].reshape(-1))
        obs = torch.randn(5, 11)
        single = population.member_actor(p)
        assert isinstance(single, DeterministicActor if deterministic else GaussianActor)
        torch.testing.assert_close(single.act(obs), agent.act(obs.unsqueeze(0))[0], rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_continues_identically() -> None:
    def make() -> IQL:
        torch.manual_seed(3)
        return IQL(11, 3, get_architecture("mlp-small"), IQLConfig(batch_size=8), run_steps=5)

    batch = random_batch(1, 8, torch.Generator().manual_seed(1))
    a = make()
    a.update(batch)
    b = make()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for _ in range(2):
        assert torch.equal(a.update(batch), b.update(batch))
    for pa, pb in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_parameter_counts_name_the_value_network() -> None:
    counts = IQL(17, 6, get_architecture("kan-small"), IQLConfig()).parameter_counts()
    assert counts["actor_network"] == 17 * 4 * 10 + 4 * 6 * 10 and counts["actor"] == counts["actor_network"] + 6
    assert counts["value"] == (17 * 64 + 64) + (64 * 64 + 64) + 65
    assert counts["critic"] == (23 * 64 + 64) + (64 * 64 + 64) + 65


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="iql_tau"):
        IQLConfig(iql_tau=1.0)
