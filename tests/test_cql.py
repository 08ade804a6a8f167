"""CQL's losses against a hand computation, and the update's mechanics."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.agents.cql import CQL, Batch, CQLConfig, StepNoise, bellman_target, conservative_gap
from bench.nets.spec import get_architecture

OBS, ACT, B, N, E = 3, 2, 4, 3, 2


class FixedActor(nn.Module):
    """A deterministic stand-in: action = tanh(0.5 * obs[:ACT]), log pi = 0.1 * sum(obs)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, obs, deterministic=False, need_log_prob=True, noise=None):
        action = torch.tanh(0.5 * obs[..., :ACT] * self.scale)
        return action, 0.1 * obs.sum(-1) * self.scale

    def forward_repeated(self, obs, repeats, noise=None):
        index = torch.repeat_interleave(torch.arange(len(repeats)), torch.tensor(repeats))
        return self(obs.index_select(-2, index))


class FixedCritic(nn.Module):
    """Member e: Q_e(s, a) = (e + 1) * (sum(s) + 2 * sum(a)) + e."""

    def __init__(self) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.arange(1.0, E + 1.0, dtype=torch.float64))

    def forward(self, obs, actions):
        base = obs.sum(-1) + 2.0 * actions.sum(-1)
        shape = (E,) + (1,) * base.dim()
        return self.slope.view(shape) * base + torch.arange(E, dtype=torch.float64).view(shape)


def noise_with_uniform_actions(random_actions: np.ndarray) -> StepNoise:
    """Step noise whose uniform actions (in [-1, 1], max_action 1) are `random_actions` (B, N, ACT); the
    stand-in actor ignores the normal noise."""
    u = torch.as_tensor((random_actions + 1.0) / 2.0).unsqueeze(0)
    return StepNoise(torch.zeros(1, B, ACT), torch.zeros(1, B, 2 * N + 1, ACT), u)


def q_np(e: int, s: np.ndarray, a: np.ndarray) -> float:
    return (e + 1) * (s.sum() + 2 * a.sum()) + e


def actor_np(s: np.ndarray) -> tuple[np.ndarray, float]:
    return np.tanh(0.5 * s[:ACT]), 0.1 * s.sum()


def make_agent(config: CQLConfig) -> CQL:
    agent = CQL(OBS, ACT, get_architecture("mlp-small"), config)
    agent.actor = FixedActor()
    agent.critic = FixedCritic()
    agent.target_critic = FixedCritic()
    with torch.no_grad():
        agent.target_critic.slope.mul_(0.5)
    return agent


def hand_losses(batch_np, random_actions, config: CQLConfig, alpha: float) -> dict[str, float]:
    """The critic loss written out state by state, sample by sample, as in the CQL paper and CORL."""
    obs, act, rew, nobs, done = batch_np
    critic_loss, gaps = 0.0, []
    for e in range(E):
        td_sq, gap_sum = 0.0, 0.0
        for i in range(B):
            next_a, next_logp = actor_np(nobs[i])
            target = min(0.5 * q_np(k, nobs[i], next_a) + 0.5 * k for k in range(E))
            target = target if not config.backup_entropy else target - alpha * next_logp
            y = rew[i] + (1 - done[i]) * config.discount * target
            q = q_np(e, obs[i], act[i])
            td_sq += (q - y) ** 2
            cur_a, cur_logp = actor_np(obs[i])  # the stand-in actor gives the same sample N times
            nxt_a, nxt_logp = actor_np(nobs[i])
            terms = []
            for j in range(N):
                if config.cql_importance_sample:
                    terms.append(q_np(e, obs[i], random_actions[i, j]) - ACT * math.log(0.5))
                else:
                    terms.append(q_np(e, obs[i], random_actions[i, j]))
            if not config.cql_importance_sample:
                terms.append(q)
            for _ in range(N):
                terms.append(q_np(e, obs[i], nxt_a) - (nxt_logp if config.cql_importance_sample else 0.0))
            for _ in range(N):
                terms.append(q_np(e, obs[i], cur_a) - (cur_logp if config.cql_importance_sample else 0.0))
            t = config.cql_temp
            lse = t * math.log(sum(math.exp(x / t) for x in terms))
            gap_sum += lse - q
        gaps.append(gap_sum / B)
        critic_loss += td_sq / B + config.cql_alpha * gap_sum / B
    return {"critic_loss": critic_loss, "cql_gap": float(np.mean(gaps))}


@pytest.mark.parametrize("importance_sample", [True, False])
@pytest.mark.parametrize("backup_entropy", [False, True])
def test_critic_loss_matches_hand_computation(importance_sample: bool, backup_entropy: bool) -> None:
    config = CQLConfig(
        cql_n_actions=N, cql_importance_sample=importance_sample, backup_entropy=backup_entropy, cql_temp=2.0
    )
    agent = make_agent(config)
    rng = np.random.default_rng(0)
    batch_np = (
        rng.normal(size=(B, OBS)) * 0.3,
        rng.uniform(-1, 1, size=(B, ACT)),
        rng.normal(size=B),
        rng.normal(size=(B, OBS)) * 0.3,
        np.array([0.0, 1.0, 0.0, 0.0]),
    )
    random_actions = rng.uniform(-1, 1, size=(B, N, ACT))
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.3))
    batch = Batch(*(torch.as_tensor(x).unsqueeze(0) for x in batch_np))  # a population of one
    losses = agent.compute_losses(batch, noise_with_uniform_actions(random_actions))
    expected = hand_losses(batch_np, random_actions, config, alpha=0.3)
    assert losses["critic_loss"].item() == pytest.approx(expected["critic_loss"], rel=1e-6)
    assert losses["cql_gap"].item() == pytest.approx(expected["cql_gap"], rel=1e-6)


def test_policy_and_temperature_losses_match_sac() -> None:
    agent = make_agent(CQLConfig(cql_n_actions=N))
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.5))
    obs = torch.tensor(np.random.default_rng(1).normal(size=(1, B, OBS)))
    batch = Batch(obs, torch.zeros(1, B, ACT, dtype=torch.float64), torch.zeros(1, B), obs, torch.zeros(1, B))
    losses = agent.compute_losses(batch, noise_with_uniform_actions(np.full((B, N, ACT), 0.5)))
    policy, alpha_loss = 0.0, 0.0
    for s in obs[0].numpy():
        a, logp = actor_np(s)
        policy += 0.5 * logp - min(q_np(e, s, a) for e in range(E))
        alpha_loss += -math.log(0.5) * (logp - ACT)  # target entropy -|A|
    assert losses["policy_loss"].item() == pytest.approx(policy / B, rel=1e-6)
    assert losses["alpha_loss"].item() == pytest.approx(alpha_loss / B, rel=1e-6)  # log alpha is float32


def test_actor_loss_does_not_train_critics_and_critic_loss_does_not_train_actor() -> None:
    agent = make_agent(CQLConfig(cql_n_actions=N))
    obs = torch.randn(1, B, OBS, dtype=torch.float64)
    batch = Batch(obs, torch.zeros(1, B, ACT, dtype=torch.float64), torch.ones(1, B), obs, torch.zeros(1, B))
    losses = agent.compute_losses(batch, noise_with_uniform_actions(np.zeros((B, N, ACT))))
    losses["policy_loss"].sum().backward(retain_graph=True)
    assert agent.critic.slope.grad is None and agent.actor.scale.grad is not None
    agent.actor.scale.grad = None
    losses["critic_loss"].sum().backward()
    assert agent.actor.scale.grad is None and agent.critic.slope.grad is not None


def test_bellman_target_and_conservative_gap_small_cases() -> None:
    r, d = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    nq, nlp = torch.tensor([10.0, 10.0]), torch.tensor([-1.0, -1.0])
    y = bellman_target(r, d, nq, nlp, torch.tensor(0.5), 0.9, backup_entropy=True)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 10.5, 2.0])
    q_data = torch.zeros(1, 1)
    ones = torch.zeros(1, 1, 2)
    gap = conservative_gap(q_data, ones, ones, ones, torch.zeros(1, 2), torch.zeros(1, 2), 0.0, True, 1.0)
    assert gap.item() == pytest.approx(math.log(6.0))
    clipped = conservative_gap(q_data, ones, ones, ones, torch.zeros(1, 2), torch.zeros(1, 2), 0.0, True, 1.0, 0, 1)
    assert clipped.item() == pytest.approx(1.0)


def test_update_changes_every_network_and_polyak_matches_corl() -> None:
    torch.manual_seed(0)
    agent = CQL(11, 3, get_architecture("mlp-small"), CQLConfig(batch_size=8))
    before = copy.deepcopy(agent.state_dict())
    target_before = [p.clone() for p in agent.target_critic.parameters()]
    batch = Batch(
        torch.randn(1, 8, 11), torch.rand(1, 8, 3) * 2 - 1, torch.randn(1, 8), torch.randn(1, 8, 11), torch.zeros(1, 8)
    )
    losses = agent.update(batch)
    assert torch.isfinite(losses).all()
    for name in ("actor", "critic"):
        changed = [not torch.equal(before[name][k], v) for k, v in getattr(agent, name).state_dict().items()]
        assert any(changed), name
    assert agent.log_alpha.item() != 0.0
    tau = agent.config.soft_target_update_rate
    for t0, t1, online in zip(target_before, agent.target_critic.parameters(), agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t1, (1 - tau) * t0 + tau * online.detach())
    assert not any(p.requires_grad for p in agent.target_critic.parameters())


def test_lagrange_variant_tunes_alpha_prime() -> None:
    torch.manual_seed(0)
    agent = CQL(11, 3, get_architecture("mlp-small"), CQLConfig(batch_size=8, cql_lagrange=True))
    batch = Batch(
        torch.randn(1, 8, 11), torch.rand(1, 8, 3) * 2 - 1, torch.randn(1, 8), torch.randn(1, 8, 11), torch.zeros(1, 8)
    )
    start = agent.log_alpha_prime.item()
    losses = agent.losses_dict(agent.update(batch))
    assert losses["alpha_prime"].item() == pytest.approx(math.e, rel=1e-6)
    assert agent.log_alpha_prime.item() != start


def test_state_dict_round_trip_continues_identically() -> None:
    def make() -> CQL:
        torch.manual_seed(3)
        return CQL(11, 3, get_architecture("mlp-small"), CQLConfig(batch_size=8))

    batch = Batch(
        torch.randn(1, 8, 11), torch.rand(1, 8, 3) * 2 - 1, torch.randn(1, 8), torch.randn(1, 8, 11), torch.zeros(1, 8)
    )
    a = make()
    a.update(batch)
    b = make()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert torch.equal(a.update(batch), b.update(batch))
    for pa, pb in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="soft_target_update_rate"):
        CQLConfig(soft_target_update_rate=0.0)
