"""Behaviour cloning's loss and Adam step against a hand computation, seeds side by side, resume, counts."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from bench.agents.bc import BC, BCConfig
from bench.nets.heads import DeterministicActor
from bench.nets.spec import get_architecture
from tests.test_train_group import member_slice, random_batch


def test_loss_and_first_adam_step_match_a_hand_computation() -> None:
    torch.manual_seed(0)
    agent = BC(3, 2, get_architecture("mlp-small"), BCConfig(actor_lr=0.01), max_action=2.0)
    body = agent.actor.network
    weights = {name: p.detach().clone() for name, p in agent.actor.named_parameters()}
    batch = random_batch(1, 5, torch.Generator().manual_seed(1), obs=3, act=2)
    s, a = batch.observations[0].double().numpy(), (batch.actions[0] * 2.0).double().numpy()
    with torch.no_grad():
        pi = (2.0 * torch.tanh(body(batch.observations))[0]).double().numpy()
    expected = np.mean((pi - a) ** 2)  # F.mse_loss over the batch and the action dims
    loss = agent.update(batch._replace(actions=batch.actions * 2.0))
    assert loss.shape == (1, 1)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    # Adam's first step is -lr * g / (|g| + eps) (its bias corrections cancel); the gradient g recomputed on a
    # copy at the old weights.
    reference = copy.deepcopy(agent.actor)
    reference.load_state_dict(weights)
    obs = torch.as_tensor(s, dtype=torch.float32).unsqueeze(0)
    ((reference(obs) - torch.as_tensor(a, dtype=torch.float32).unsqueeze(0)) ** 2).mean().backward()
    for name, p in agent.actor.named_parameters():
        grad = dict(reference.named_parameters())[name].grad
        moved = p.detach() - weights[name]
        torch.testing.assert_close(moved, -0.01 * grad / (grad.abs() + 1e-8), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("arch", ["mlp-small", "kan-small"])
def test_a_population_update_is_each_members_update_alone(arch: str) -> None:
    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        members.append(BC(11, 3, get_architecture(arch), BCConfig(batch_size=8)))
    alone = copy.deepcopy(members)
    population = BC.from_members(members)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        batch = random_batch(3, 8, g)
        together = population.update(batch)
        for p, agent in enumerate(alone):
            torch.testing.assert_close(agent.update(member_slice(batch, p))[0, 0], together[0, p], rtol=1e-5, atol=1e-6)
    obs = torch.randn(5, 11)
    for p, agent in enumerate(alone):
        single = population.member_actor(p)
        torch.testing.assert_close(single.act(obs), agent.act(obs.unsqueeze(0))[0], rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_continues_identically() -> None:
    def make() -> BC:
        torch.manual_seed(3)
        return BC(11, 3, get_architecture("kan-small"), BCConfig(batch_size=8))

    batch = random_batch(1, 8, torch.Generator().manual_seed(1))
    a = make()
    a.update(batch)
    b = make()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for _ in range(2):
        assert torch.equal(a.update(batch), b.update(batch))
    assert a.total_steps == b.total_steps == 3


def test_actor_counts_and_no_critic() -> None:
    agent = BC(17, 6, get_architecture("kan-small"))
    assert isinstance(agent.member_actor(0), DeterministicActor)
    counts = agent.parameter_counts()
    assert counts == {
        "actor": 17 * 4 * 10 + 4 * 6 * 10,
        "actor_network": 17 * 4 * 10 + 4 * 6 * 10,
        "critic": 0,
        "critics_total": 0,
    }
    assert not hasattr(agent, "critic")


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BCConfig(batch_size=0)
    with pytest.raises(ValueError, match="actor_lr"):
        BCConfig(actor_lr=0.0)
