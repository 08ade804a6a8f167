"""Implicit Q-Learning (Kostrikov et al., 2021) as CORL writes it in `algorithms/offline/iql.py`, any body.

The defaults of `IQLConfig` are CORL's `TrainConfig`: batch 256, discount 0.99, Polyak tau 0.005, expectile
tau 0.7, inverse temperature beta 3.0, exp-advantage clip 100, a Gaussian actor (`iql_deterministic: false`),
Adam 3e-4 for the value network, the critics and the actor, and the actor's learning rate annealed to 0 by a
cosine over the whole run (CORL's `CosineAnnealingLR(actor_optimizer, max_timesteps)`; here over the run's
`steps`). CORL's gym-mujoco yamls keep these for halfcheetah and walker2d; hopper-medium-v2 sets
`iql_deterministic: true`, `tau: 0.001` and `normalize_reward: true` (set them per dataset in a grid). States are
z-scored by the trainer as for CQL (CORL's `normalize: true`).

One step, as CORL's `ImplicitQLearning.train` (every loss reads only values from before the step):
- value: u = min_i Q'_i(s, a) - V(s), loss mean(|tau - 1(u < 0)| * u^2) (expectile regression);
- critics: y = r + gamma * (1 - done) * V(s') with the V of before the step, loss mean_i mean_batch
  (Q_i(s, a) - y)^2 (CORL averages its two critics' MSEs);
- actor: weights w = min(exp(beta * u), 100) with u detached, loss mean(w * bc) where bc is
  -log N(a; tanh(body(s)), exp(log_std)) summed over action dims (Gaussian actor), or |pi(s) - a|^2 summed
  over action dims (deterministic actor);
- the Polyak update of the target critics every step.

CORL's networks are 2 x 256 ReLU MLPs for the actor (tanh on the mean), each critic (`TwinQ`) and the value
function, with PyTorch's default init; here the actor and critic bodies come from the architecture and the
value network takes the critic's body (`ValueNetwork`: obs -> 1), all with their own init.

Deliberate differences, none of which changes the mathematics of a step:
- the three losses are built first and backpropagated once, and one Adam with a parameter group per CORL
  optimizer steps them all: each loss reads only values from before any step (the value target uses the
  target critics, the critics' target the V of before the step, the actor's weights a detached advantage), so
  this is CORL's three optimizer steps' arithmetic;
- the critics are one ensemble network (both critics and all seeds in one batched pass), and so are the targets;
- several seeds train side by side as one population (`IQL.from_members`), each exactly as alone;
- the cosine schedule is computed in closed form from the step count, where CORL's `CosineAnnealingLR` steps
  its recursive form (equal up to rounding);
- the deterministic actor is max_action * tanh(body(s)) in the loss too, where CORL's `DeterministicPolicy`
  compares the unscaled tanh output with the actions (the same for max_action 1, as in the three MuJoCo tasks);
- CORL's `actor_dropout` (Adroit only; None for gym-mujoco) is not offered; `num_critics` (CORL: `TwinQ`, two)
  and `exp_adv_max` (CORL: the constant `EXP_ADV_MAX`) are settings.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bench.agents.base import Batch, check_fresh_members, compiled_update, network_counts, stack_members
from bench.agents.sac import polyak_update
from bench.nets.heads import DeterministicActor, EnsembleCritic, GaussianActor, ValueNetwork
from bench.nets.kan import KANOptions
from bench.nets.spec import Architecture, NetworkSpec, count_parameters


@dataclass
class IQLConfig:
    """IQL hyperparameters; defaults are CORL's (field names follow CORL)."""

    batch_size: int = 256
    discount: float = 0.99
    # Polyak rate of the target critics.
    tau: float = 0.005
    # Inverse temperature of the advantage weights: small -> behaviour cloning, large -> maximizing Q.
    beta: float = 3.0
    # The expectile of the value regression.
    iql_tau: float = 0.7
    iql_deterministic: bool = False
    exp_adv_max: float = 100.0
    vf_lr: float = 3e-4
    qf_lr: float = 3e-4
    actor_lr: float = 3e-4
    num_critics: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_critics < 1:
            raise ValueError("batch_size and num_critics must be positive")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if not 0.0 < self.iql_tau < 1.0:
            raise ValueError(f"iql_tau must be in (0, 1), got {self.iql_tau}")


LOSS_NAMES = ("value_loss", "q_loss", "actor_loss", "advantage", "exp_adv", "q_data", "value", "actor_lr")


def expectile_loss(u: Tensor, expectile: float) -> Tensor:
    """mean over the last dim of |expectile - 1(u < 0)| * u^2 (CORL's `asymmetric_l2_loss`)."""
    return (torch.abs(expectile - (u < 0).to(u.dtype)) * u**2).mean(dim=-1)


def cosine_lr(base: float, step: int, total: int) -> float:
    """The learning rate of update number step + 1 under a cosine from `base` to 0 over `total` updates."""
    return base * (1.0 + math.cos(math.pi * min(step, total) / total)) / 2.0


class IQL:
    """The agent: a Gaussian (or deterministic) actor, an ensemble of critics with Polyak targets, a value net.

    A population of P independent agents (seeds side by side) as CQL's: a leading member dim on every network
    and on the Adam state, and the sum of the members' losses. An update draws no randomness.
    """

    loss_names: ClassVar[tuple[str, ...]] = LOSS_NAMES
    progress: ClassVar[dict[str, str]] = {"q": "q_loss", "v": "value_loss", "actor": "actor_loss"}

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        arch: Architecture,
        config: IQLConfig | None = None,
        device: torch.device | str = "cpu",
        max_action: float = 1.0,
        population: int = 1,
        noise_seed: int = 0,
        compiled: bool = False,
        run_steps: int = 1_000_000,
    ) -> None:
        # noise_seed is part of the agent interface; an IQL update draws no randomness.
        self.config = config = config or IQLConfig()
        self.device = torch.device(device)
        self.arch, self.obs_dim, self.act_dim = arch, obs_dim, act_dim
        self.max_action = max_action
        self.population = population
        self.schedule_steps = run_steps
        actor_type = DeterministicActor if config.iql_deterministic else GaussianActor
        self.actor = actor_type(obs_dim, act_dim, arch.actor, arch.kan, max_action=max_action, population=population)
        self.actor.to(self.device)
        self.critic = EnsembleCritic(
            obs_dim,
            act_dim,
            arch.critic,
            arch.kan,
            num_critics=config.num_critics,
            population=population,
            cql_init=False,
        ).to(self.device)
        self.value = ValueNetwork(obs_dim, arch.critic, arch.kan, population=population).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # One Adam with a parameter group per CORL optimizer (value, critics, actor). The actor's learning rate
        # is a tensor, so the cosine schedule changes it in place and a compiled step never recompiles for it.
        groups = [
            {"params": list(self.value.parameters()), "lr": config.vf_lr},
            {"params": list(self.critic.parameters()), "lr": config.qf_lr},
            {"params": list(self.actor.parameters()), "lr": torch.tensor(config.actor_lr, device=self.device)},
        ]
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") and not compiled else {}
        self.optimizer = torch.optim.Adam(groups, **fused)
        self.total_steps = 0
        self._step = compiled_update(self._update_step, self.device) if compiled else self._update_step

    @classmethod
    def from_members(cls, members: list[IQL], noise_seed: int = 0, compiled: bool = False) -> IQL:
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
            run_steps=first.schedule_steps,
        )
        stack_members(agent.actor, [m.actor for m in members])
        stack_members(agent.critic, [m.critic for m in members], critic_major=first.config.num_critics)
        stack_members(agent.value, [m.value for m in members])
        agent.target_critic.load_state_dict(agent.critic.state_dict())
        return agent

    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        """All losses of one step, per member (each (P,)), from the current parameters."""
        cfg = self.config
        obs, actions, rewards, next_obs, dones = batch
        with torch.no_grad():
            next_v = self.value(next_obs)
            target_q = self.target_critic(obs, actions).min(dim=0).values  # (P, B)
            q_target = rewards + (1.0 - dones) * cfg.discount * next_v
        v = self.value(obs)
        advantage = target_q - v
        value_loss = expectile_loss(advantage, cfg.iql_tau)
        q = self.critic(obs, actions)  # (E, P, B)
        q_loss = ((q - q_target) ** 2).mean(dim=-1).mean(dim=0)
        exp_adv = torch.exp(cfg.beta * advantage.detach()).clamp(max=cfg.exp_adv_max)
        if cfg.iql_deterministic:
            bc = ((self.actor(obs) - actions) ** 2).sum(dim=-1)
        else:
            bc = -self.actor.log_prob(obs, actions)
        actor_loss = (exp_adv * bc).mean(dim=-1)
        return {
            "value_loss": value_loss,
            "q_loss": q_loss,
            "actor_loss": actor_loss,
            "advantage": advantage.detach().mean(-1),
            "exp_adv": exp_adv.mean(-1),
            "q_data": q.detach().mean((0, 2)),
            "value": v.detach().mean(-1),
        }

    @property
    def actor_lr(self) -> Tensor:
        return self.optimizer.param_groups[2]["lr"]

    def update(self, batch: Batch) -> Tensor:
        """One gradient step on the value network, the critics and the actor, then the Polyak update of the
        target critics. Returns the losses as one (len(LOSS_NAMES), P) tensor on the device."""
        self.actor_lr.fill_(cosine_lr(self.config.actor_lr, self.total_steps, self.schedule_steps))
        losses = self._step(batch)
        self.total_steps += 1
        return losses

    def _update_step(self, batch: Batch) -> Tensor:
        losses = self.compute_losses(batch)
        total = losses["value_loss"] + losses["q_loss"] + losses["actor_loss"]
        self.optimizer.zero_grad(set_to_none=True)
        total.sum().backward()
        self.optimizer.step()
        polyak_update(self.target_critic, self.critic, self.config.tau)
        losses["actor_lr"] = self.actor_lr.detach().expand(self.population)
        return torch.stack([losses[name].detach() for name in LOSS_NAMES])

    @staticmethod
    def losses_dict(losses: Tensor) -> dict[str, Tensor]:
        """The rows of `update`'s result by name, each (P,)."""
        return dict(zip(LOSS_NAMES, losses.unbind(0), strict=True))

    @torch.no_grad()
    def act(self, observations: Tensor) -> Tensor:
        """The deterministic evaluation action (the Gaussian's mean, or the deterministic actor's output)."""
        return self.actor.act(observations)

    def member_actor(self, index: int) -> GaussianActor | DeterministicActor:
        return self.actor.member(index, self.arch.actor, self.arch.kan)

    def parameter_counts(self) -> dict[str, int]:
        counts = network_counts(self.actor, self.critic, self.population, self.config.num_critics)
        counts["value"] = count_parameters(self.value) // self.population
        return counts

    def state_dict(self) -> dict:
        return {
            "population": self.population,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "value": self.value.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("population", 1) != self.population:
            raise ValueError(f"state of a population of {state.get('population')}, agent has {self.population}")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.value.load_state_dict(state["value"])
        lr = self.actor_lr
        self.optimizer.load_state_dict(state["optimizer"])
        # Keep the actor's learning rate the tensor on this device that `update` fills.
        self.optimizer.param_groups[2]["lr"] = lr
        self.total_steps = int(state["total_steps"])


def single_actor(
    obs_dim: int, act_dim: int, spec: NetworkSpec, kan: KANOptions, config: IQLConfig
) -> GaussianActor | DeterministicActor:
    """A fresh actor of the class and body `IQL.member_actor` returns (a saved final actor loads into it)."""
    actor_type = DeterministicActor if config.iql_deterministic else GaussianActor
    return actor_type(obs_dim, act_dim, spec, kan)


__all__ = ["IQL", "LOSS_NAMES", "IQLConfig", "cosine_lr", "expectile_loss", "single_actor"]
