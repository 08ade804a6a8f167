"""Behaviour cloning as CORL writes it in `algorithms/offline/any_percent_bc.py`, any actor body.

BC is the floor every offline-RL score is read against, and the plainest test of an actor body: can it
represent the behaviour policy at all? It has no critic, so its score says what the body can imitate, apart
from how a critic's gradient trains it.

The defaults of `BCConfig` are CORL's: batch 256, Adam 3e-4. CORL's BC yamls for the gym-mujoco datasets train
on every trajectory (`frac: 1.0`, the "BC" column of its tables; `frac: 0.1` is its "10% BC", the best tenth
of the trajectories by return, not offered here). States are z-scored by the trainer as for CQL (CORL's
`normalize: true`).

One step, as CORL's `BC.train`: pi = max_action * tanh(body(s)), loss mean_batch mean_dims (pi - a)^2
(`F.mse_loss`), one Adam step.

CORL's actor is a 2 x 256 ReLU MLP with a tanh output (times max_action) and PyTorch's default init; here the
body comes from the architecture (`DeterministicActor`, TD3+BC's actor class) and keeps its own init. The
architecture's critic is not built: a BC record counts 0 critic parameters.

Deliberate differences, none of which changes the mathematics of a step:
- several seeds train side by side as one population (`BC.from_members`), each exactly as alone: the loss is
  the sum of the members' losses;
- the loss comes back as one tensor on the device, never read back inside a step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bench.agents.base import Batch, check_fresh_members, compiled_update, stack_members
from bench.nets.heads import DeterministicActor
from bench.nets.kan import KANOptions
from bench.nets.spec import Architecture, NetworkSpec, count_parameters


@dataclass
class BCConfig:
    """Behaviour cloning hyperparameters; defaults are CORL's."""

    batch_size: int = 256
    actor_lr: float = 3e-4

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.actor_lr <= 0:
            raise ValueError(f"actor_lr must be positive, got {self.actor_lr}")


LOSS_NAMES = ("actor_loss",)


class BC:
    """The agent: a deterministic actor regressed onto the dataset's actions, P seeds side by side."""

    loss_names: ClassVar[tuple[str, ...]] = LOSS_NAMES
    progress: ClassVar[dict[str, str]] = {"mse": "actor_loss"}

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        arch: Architecture,
        config: BCConfig | None = None,
        device: torch.device | str = "cpu",
        max_action: float = 1.0,
        population: int = 1,
        noise_seed: int = 0,
        compiled: bool = False,
        run_steps: int = 1_000_000,
    ) -> None:
        # noise_seed and run_steps are part of the agent interface; a BC step draws nothing and has no schedule.
        self.config = config = config or BCConfig()
        self.device = torch.device(device)
        self.arch, self.obs_dim, self.act_dim = arch, obs_dim, act_dim
        self.max_action = max_action
        self.population = population
        self.actor = DeterministicActor(
            obs_dim, act_dim, arch.actor, arch.kan, max_action=max_action, population=population
        ).to(self.device)
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") and not compiled else {}
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, **fused)
        self.total_steps = 0
        self._step = compiled_update(self._update_step, self.device) if compiled else self._update_step

    @classmethod
    def from_members(cls, members: list[BC], noise_seed: int = 0, compiled: bool = False) -> BC:
        """One population agent holding `members`: fresh agents (population 1, no update yet) of one
        architecture and configuration, each built after seeding with its own seed."""
        check_fresh_members(members)
        first = members[0]
        agent = cls(
            first.obs_dim,
            first.act_dim,
            first.arch,
            first.config,
            first.device,
            first.max_action,
            population=len(members),
            noise_seed=noise_seed,
            compiled=compiled,
        )
        stack_members(agent.actor, [m.actor for m in members])
        return agent

    def actor_loss(self, obs: Tensor, actions: Tensor) -> Tensor:
        """The loss per member (P,): mean over the batch and the action dims of (pi(s) - a)^2."""
        return (self.actor(obs) - actions).square().mean(dim=(-2, -1))

    def update(self, batch: Batch) -> Tensor:
        """One gradient step of every member; the loss as one (1, P) tensor on the device."""
        losses = self._step(batch.observations, batch.actions)
        self.total_steps += 1
        return losses

    def _update_step(self, obs: Tensor, actions: Tensor) -> Tensor:
        loss = self.actor_loss(obs, actions)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.actor_optimizer.step()
        return loss.detach().unsqueeze(0)

    @torch.no_grad()
    def act(self, observations: Tensor) -> Tensor:
        """The deterministic action max_action * tanh(body(s)); observations (P, ..., obs_dim)."""
        return self.actor(observations)

    def member_actor(self, index: int) -> DeterministicActor:
        return self.actor.member(index, self.arch.actor, self.arch.kan)

    def parameter_counts(self) -> dict[str, int]:
        """One member's trainable parameters; BC builds no critic."""
        actor = count_parameters(self.actor) // self.population
        return {"actor": actor, "actor_network": actor, "critic": 0, "critics_total": 0}

    def state_dict(self) -> dict:
        return {
            "population": self.population,
            "actor": self.actor.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("population", 1) != self.population:
            raise ValueError(f"state of a population of {state.get('population')}, agent has {self.population}")
        self.actor.load_state_dict(state["actor"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.total_steps = int(state["total_steps"])


def single_actor(
    obs_dim: int, act_dim: int, spec: NetworkSpec, kan: KANOptions, config: BCConfig
) -> DeterministicActor:
    """A fresh actor of the class and body `BC.member_actor` returns (a saved final actor loads into it)."""
    return DeterministicActor(obs_dim, act_dim, spec, kan)


__all__ = ["BC", "LOSS_NAMES", "BCConfig", "single_actor"]
