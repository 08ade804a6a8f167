"""TD3+BC's losses against a hand computation, the delayed actor and target updates, seeds side by side."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bench.agents.base import Batch
from bench.agents.td3_bc import TD3BC, TD3BCConfig, TD3BCNoise
from bench.nets.heads import DeterministicActor
from bench.nets.spec import get_architecture
from tests.test_train_group import member_slice, random_batch

OBS, ACT, B, E = 3, 2, 4, 2


class LinearTanhActor(nn.Module):
    """A stand-in: pi(s) = tanh(W s), W fixed."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        w = np.arange(1.0, OBS * ACT + 1.0).reshape(ACT, OBS) / 10.0 * scale
        self.weight = nn.Parameter(torch.tensor(w))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(obs @ self.weight.T)


class FixedCritic(nn.Module):
    """Member e: Q_e(s, a) = (e + 1) * slope * (sum(s) + 2 * sum(a)) + e."""

    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.tensor(slope, dtype=torch.float64))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        base = obs.sum(-1) + 2.0 * actions.sum(-1)
        members = torch.arange(E, dtype=torch.float64).view(E, *([1] * base.dim()))
        return (members + 1) * self.slope * base + members


def pi_np(s: np.ndarray, scale: float) -> np.ndarray:
    w = np.arange(1.0, OBS * ACT + 1.0).reshape(ACT, OBS) / 10.0 * scale
    return np.tanh(w @ s)


def q_np(e: int, slope: float, s: np.ndarray, a: np.ndarray) -> float:
    return (e + 1) * slope * (s.sum() + 2 * a.sum()) + e


def make_agent(config: TD3BCConfig) -> TD3BC:
    agent = TD3BC(OBS, ACT, get_architecture("mlp-small"), config)
    agent.actor, agent.target_actor = LinearTanhActor(1.0), LinearTanhActor(0.5)
    agent.critic, agent.target_critic = FixedCritic(1.0), FixedCritic(0.5)
    return agent


def batch_np(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(B, OBS)),
        rng.uniform(-1, 1, size=(B, ACT)),
        rng.normal(size=B),
        rng.normal(size=(B, OBS)),
        np.array([0.0, 1.0, 0.0, 0.0]),
    )


def test_critic_loss_matches_hand_computation() -> None:
    config = TD3BCConfig(discount=0.9)
    agent = make_agent(config)
    obs, act, rew, nobs, done = batch_np()
    eps = np.random.default_rng(1).normal(size=(B, ACT)) * 2.0  # some draws beyond the clip
    losses = agent.critic_losses(
        Batch(*(torch.as_tensor(x).unsqueeze(0) for x in (obs, act, rew, nobs, done))),
        TD3BCNoise(torch.as_tensor(eps).unsqueeze(0)),
    )
    total = 0.0
    targets = []
    for i in range(B):
        next_a = np.clip(pi_np(nobs[i], 0.5) + np.clip(0.2 * eps[i], -0.5, 0.5), -1.0, 1.0)
        y = rew[i] + (1 - done[i]) * 0.9 * min(q_np(k, 0.5, nobs[i], next_a) for k in range(E))
        targets.append(y)
    for e in range(E):
        total += np.mean([(q_np(e, 1.0, obs[i], act[i]) - targets[i]) ** 2 for i in range(B)])
    assert losses["critic_loss"].item() == pytest.approx(total, rel=1e-9)
    assert losses["target_q"].item() == pytest.approx(np.mean(targets), rel=1e-9)


def test_actor_loss_matches_hand_computation_and_trains_the_actor_only() -> None:
    agent = make_agent(TD3BCConfig(alpha=2.5))
    obs, act, *_ = batch_np(2)
    losses = agent.actor_losses(torch.as_tensor(obs).unsqueeze(0), torch.as_tensor(act).unsqueeze(0))
    pis = np.stack([pi_np(s, 1.0) for s in obs])
    q = np.array([q_np(0, 1.0, s, p) for s, p in zip(obs, pis, strict=True)])  # critic 1 only
    lmbda = 2.5 / np.abs(q).mean()
    bc = np.mean((pis - act) ** 2)
    assert losses["lmbda"].item() == pytest.approx(lmbda, rel=1e-9)
    assert losses["bc_loss"].item() == pytest.approx(bc, rel=1e-9)
    assert losses["actor_loss"].item() == pytest.approx(-lmbda * q.mean() + bc, rel=1e-9)
    losses["actor_loss"].sum().backward()
    assert agent.actor.weight.grad is not None and agent.critic.slope.grad is None


def test_actor_and_targets_move_every_policy_freq_steps_after_the_critics() -> None:
    torch.manual_seed(0)
    agent = TD3BC(11, 3, get_architecture("mlp-small"), TD3BCConfig(batch_size=8, policy_freq=2))
    batch = random_batch(1, 8, torch.Generator().manual_seed(0))
    actor0 = copy.deepcopy(agent.actor.state_dict())
    target0 = [p.clone() for p in agent.target_critic.parameters()]
    agent.update(batch)
    assert all(torch.equal(v, agent.actor.state_dict()[k]) for k, v in actor0.items())
    assert all(torch.equal(a, b) for a, b in zip(target0, agent.target_critic.parameters(), strict=True))
    # The second update steps the critics, then computes the actor loss with the critics just updated.
    noise = agent.draw_noise(8)
    expected = copy.deepcopy(agent)
    expected.critic_optimizer.zero_grad(set_to_none=True)
    expected.critic_losses(batch, noise)["critic_loss"].sum().backward()
    expected.critic_optimizer.step()
    actor_loss = expected.actor_losses(batch.observations, batch.actions)["actor_loss"]
    losses = agent.losses_dict(agent.update(batch, noise))
    torch.testing.assert_close(losses["actor_loss"], actor_loss.detach())
    assert any(not torch.equal(v, agent.actor.state_dict()[k]) for k, v in actor0.items())
    for t0, t1, online in zip(target0, agent.target_critic.parameters(), agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t1, 0.995 * t0 + 0.005 * online.detach())
    # A third update (no actor step) repeats the actor rows of the second.
    third = agent.losses_dict(agent.update(batch))
    torch.testing.assert_close(third["actor_loss"], losses["actor_loss"])
    assert not torch.equal(third["critic_loss"], losses["critic_loss"])


@pytest.mark.parametrize("arch", ["mlp-small", "kan-small"])
def test_a_population_update_is_each_members_update_alone(arch: str) -> None:
    config = TD3BCConfig(batch_size=8)
    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        members.append(TD3BC(11, 3, get_architecture(arch), config))
    alone = copy.deepcopy(members)
    population = TD3BC.from_members(members)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        batch = random_batch(3, 8, g)
        noise = population.draw_noise(8)
        together = population.losses_dict(population.update(batch, noise))
        for p, agent in enumerate(alone):
            losses = agent.losses_dict(agent.update(member_slice(batch, p), member_slice(noise, p)))
            for name, value in losses.items():
                torch.testing.assert_close(value[0], together[name][p], rtol=1e-5, atol=1e-6)
    for p, agent in enumerate(alone):
        single = population.member_actor(p)
        for name, value in agent.actor.state_dict().items():
            torch.testing.assert_close(value.reshape(-1), population.actor.state_dict()[name][p].reshape(-1))
        obs = torch.randn(5, 11)
        torch.testing.assert_close(single.act(obs), agent.act(obs.unsqueeze(0))[0], rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_continues_identically() -> None:
    def make() -> TD3BC:
        torch.manual_seed(3)
        return TD3BC(11, 3, get_architecture("mlp-small"), TD3BCConfig(batch_size=8), noise_seed=5)

    batch = random_batch(1, 8, torch.Generator().manual_seed(1))
    a = make()
    a.update(batch)
    b = make()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for _ in range(2):
        assert torch.equal(a.update(batch), b.update(batch))
    for pa, pb in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_actor_is_deterministic_tanh_of_the_body_and_counts_parameters() -> None:
    arch = get_architecture("kan-small")
    agent = TD3BC(17, 6, arch, TD3BCConfig())
    actor = agent.member_actor(0)
    assert isinstance(actor, DeterministicActor)
    obs = torch.randn(4, 17) * 3
    assert torch.equal(actor(obs), torch.tanh(actor.network(obs)))
    counts = agent.parameter_counts()
    assert counts["actor"] == counts["actor_network"] == 17 * 4 * 10 + 4 * 6 * 10  # KAN 17-4-6, no log-std
    assert counts["critic"] == (23 * 64 + 64) + (64 * 64 + 64) + 65 and counts["critics_total"] == 2 * counts["critic"]


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="tau"):
        TD3BCConfig(tau=0.0)
    with pytest.raises(ValueError, match="policy_freq"):
        TD3BCConfig(policy_freq=0)
