"""TD3+BC (Fujimoto and Gu, 2021) as CORL writes it in `algorithms/offline/td3_bc.py`, any actor and critic body.

The defaults of `TD3BCConfig` are CORL's (its `TrainConfig` and the learning rates it hard-codes; its
gym-mujoco yamls keep them all): batch 256, discount 0.99, Polyak tau 0.005, target policy noise 0.2 clipped at
0.5 (both times max_action), actor and target updates every 2nd step, alpha 2.5, Adam 3e-4 for the actor and the
critics. States are z-scored by the trainer as for CQL (CORL's `normalize: true`); rewards are not normalized.

One step, as CORL's `TD3_BC.train`:
- critics: y = r + gamma * (1 - done) * min_i Q'_i(s', clip(pi'(s') + clip(0.2 * eps, -0.5, 0.5), -1, 1)),
  loss sum_i mean_batch (Q_i(s, a) - y)^2, one Adam step;
- every `policy_freq`-th step, with the critics just updated: pi = actor(s), Q = Q_1(s, pi),
  lambda = alpha / mean|Q| (detached), actor loss -lambda * mean(Q) + mean((pi - a)^2), one Adam step; then the
  Polyak update of the target critics and the target actor (only on these steps, as in CORL).

CORL's networks are 2 x 256 ReLU MLPs for the actor (tanh output, times max_action) and for each critic
(`Critic`: 256, 256, then 1), with PyTorch's default init; here the bodies come from the architecture
(`DeterministicActor`, `EnsembleCritic(cql_init=False)`) and keep their own init, PyTorch's default for MLPs.

Deliberate differences, none of which changes the mathematics of a step:
- the critics are one ensemble network (stacked weights, one batched matmul per layer for all critics and all
  seeds), and so are the target critics; the actor's Q_1(s, pi) comes from that ensemble's pass over all
  critics (the others' values are dropped), and the critics' parameters enter the actor loss detached, where
  CORL lets the actor's backward fill critic_1's gradients and clears them before the next critic step;
- several seeds train side by side as one population (`TD3BC.from_members`), each exactly as alone;
- the target policy noise of a step is drawn before it from the agent's own generator (`TD3BCNoise`), so the
  step holds no generator and can be compiled (`compiled`);
- losses come back as one tensor on the device, never read back inside a step. On the steps without an actor
  update CORL logs no actor loss; here the actor rows repeat the latest actor update's values (the first step,
  which has none, evaluates them without a step), so an epoch's mean is over its actor updates;
- `num_critics` and the two learning rates are settings (CORL: two critics, 3e-4 hard-coded).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor
from torch.func import functional_call

from bench.agents.base import Batch, check_fresh_members, compiled_update, network_counts, stack_members
from bench.agents.sac import polyak_update
from bench.nets.heads import DeterministicActor, EnsembleCritic
from bench.nets.kan import KANOptions
from bench.nets.spec import Architecture, NetworkSpec


@dataclass
class TD3BCConfig:
    """TD3+BC hyperparameters; defaults are CORL's (field names follow CORL where it names them)."""

    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    # Target policy smoothing: noise std and clip, both in units of max_action.
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    # Actor and target updates every policy_freq-th step.
    policy_freq: int = 2
    # Weight of the Q term against behaviour cloning: lambda = alpha / mean|Q|.
    alpha: float = 2.5
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    num_critics: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.policy_freq < 1 or self.num_critics < 1:
            raise ValueError("batch_size, policy_freq and num_critics must be positive")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.policy_noise < 0 or self.noise_clip < 0:
            raise ValueError("policy_noise and noise_clip must not be negative")


class TD3BCNoise(NamedTuple):
    """The randomness of one update, drawn before it."""

    target: Tensor  # (P, B, act_dim) standard normal: the target policy's smoothing noise


LOSS_NAMES = ("critic_loss", "actor_loss", "bc_loss", "q_policy", "lmbda", "q_data", "target_q")
# The rows that only an actor update computes (the others repeat on the steps between).
ACTOR_ROWS = ("actor_loss", "bc_loss", "q_policy", "lmbda")


class TD3BC:
    """The agent: a deterministic actor with a target copy, an ensemble of critics with target copies.

    A population of P independent agents (seeds side by side) as CQL's: a leading member dim on every network
    and on the Adam state, the sum of the members' losses, each member's own lambda.
    """

    loss_names: ClassVar[tuple[str, ...]] = LOSS_NAMES
    progress: ClassVar[dict[str, str]] = {"critic": "critic_loss", "actor": "actor_loss", "lambda": "lmbda"}

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        arch: Architecture,
        config: TD3BCConfig | None = None,
        device: torch.device | str = "cpu",
        max_action: float = 1.0,
        population: int = 1,
        noise_seed: int = 0,
        compiled: bool = False,
        run_steps: int = 1_000_000,
    ) -> None:
        # run_steps (the run's budget) is part of the agent interface for schedules; TD3+BC has none.
        self.config = config = config or TD3BCConfig()
        self.device = torch.device(device)
        self.arch, self.obs_dim, self.act_dim = arch, obs_dim, act_dim
        self.max_action = max_action
        self.population = population
        self.actor = DeterministicActor(
            obs_dim, act_dim, arch.actor, arch.kan, max_action=max_action, population=population
        ).to(self.device)
        self.critic = EnsembleCritic(
            obs_dim,
            act_dim,
            arch.critic,
            arch.kan,
            num_critics=config.num_critics,
            population=population,
            cql_init=False,
        ).to(self.device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.generator = torch.Generator(self.device).manual_seed(noise_seed)
        # CORL's three Adams (actor, critic 1, critic 2): the critics' two are one here, which is the same
        # arithmetic since Adam is elementwise. The actor's step needs the critics' updated parameters, so the
        # two cannot be one step call as in CQL.
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") and not compiled else {}
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, **fused)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, **fused)
        # The latest actor update's rows (ACTOR_ROWS), returned on the steps without one.
        self.actor_rows = torch.zeros(len(ACTOR_ROWS), population, device=self.device)
        if compiled:
            # The compiled step writes it in place: a plain tensor attribute would be a graph input that the graph
            # mutates, which CUDA graphs skip the graph for (parameters and optimizer state are static already).
            torch._dynamo.mark_static_address(self.actor_rows)
        self.total_steps = 0
        self._step = compiled_update(self._update_step, self.device) if compiled else self._update_step

    @classmethod
    def from_members(cls, members: list[TD3BC], noise_seed: int = 0, compiled: bool = False) -> TD3BC:
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
        stack_members(agent.critic, [m.critic for m in members], critic_major=first.config.num_critics)
        agent.target_actor.load_state_dict(agent.actor.state_dict())
        agent.target_critic.load_state_dict(agent.critic.state_dict())
        return agent

    def draw_noise(self, batch_size: int) -> TD3BCNoise:
        shape = (self.population, batch_size, self.act_dim)
        return TD3BCNoise(torch.randn(*shape, generator=self.generator, device=self.device))

    def is_actor_step(self, step: int) -> bool:
        """Whether update number `step` (1-based) updates the actor and the targets: CORL's
        `total_it % policy_freq == 0`."""
        return step % self.config.policy_freq == 0

    def critic_losses(self, batch: Batch, noise: TD3BCNoise) -> dict[str, Tensor]:
        """The critics' loss per member (P,) with its TD target, from the current parameters."""
        cfg = self.config
        obs, actions, rewards, next_obs, dones = batch
        with torch.no_grad():
            limit = cfg.noise_clip * self.max_action
            smoothing = (noise.target * cfg.policy_noise * self.max_action).clamp(-limit, limit)
            next_actions = (self.target_actor(next_obs) + smoothing).clamp(-self.max_action, self.max_action)
            target_q = self.target_critic(next_obs, next_actions).min(dim=0).values  # (P, B)
            td_target = rewards + (1.0 - dones) * cfg.discount * target_q
        q = self.critic(obs, actions)  # (E, P, B)
        critic_loss = ((q - td_target) ** 2).mean(dim=-1).sum(dim=0)  # F.mse_loss per critic, summed
        return {"critic_loss": critic_loss, "q_data": q.detach().mean((0, 2)), "target_q": td_target.mean(-1)}

    def actor_losses(self, obs: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """The actor's loss per member (P,): -lambda * mean Q_1(s, pi(s)) + mean (pi(s) - a)^2."""
        pi = self.actor(obs)
        frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
        q_policy = functional_call(self.critic, frozen, (obs, pi))[0]  # critic 1 of every member, (P, B)
        lmbda = self.config.alpha / q_policy.abs().mean(dim=-1).detach()
        bc_loss = ((pi - actions) ** 2).mean(dim=(-2, -1))
        actor_loss = -lmbda * q_policy.mean(dim=-1) + bc_loss
        return {
            "actor_loss": actor_loss,
            "bc_loss": bc_loss.detach(),
            "q_policy": q_policy.detach().mean(-1),
            "lmbda": lmbda,
        }

    def update(self, batch: Batch, noise: TD3BCNoise | None = None) -> Tensor:
        """One gradient step (critics; actor and targets every policy_freq-th step). Returns the losses as one
        (len(LOSS_NAMES), P) tensor on the device; `losses_dict` names its rows."""
        if noise is None:
            noise = self.draw_noise(batch.observations.shape[1])
        actor_step = self.is_actor_step(self.total_steps + 1)
        if self.total_steps == 0 and not actor_step:
            with torch.no_grad():
                first = self.actor_losses(batch.observations, batch.actions)
                self.actor_rows.copy_(torch.stack([first[name] for name in ACTOR_ROWS]))
        losses = self._step(batch, noise, actor_step)
        self.total_steps += 1
        return losses

    def _update_step(self, batch: Batch, noise: TD3BCNoise, actor_step: bool) -> Tensor:
        critic = self.critic_losses(batch, noise)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic["critic_loss"].sum().backward()
        self.critic_optimizer.step()
        if actor_step:
            actor = self.actor_losses(batch.observations, batch.actions)
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor["actor_loss"].sum().backward()
            self.actor_optimizer.step()
            polyak_update(self.target_critic, self.critic, self.config.tau)
            polyak_update(self.target_actor, self.actor, self.config.tau)
            self.actor_rows.copy_(torch.stack([actor[name].detach() for name in ACTOR_ROWS]))
        rows = dict(zip(ACTOR_ROWS, self.actor_rows.unbind(0), strict=True))
        return torch.stack([critic[name].detach() if name in critic else rows[name] for name in LOSS_NAMES])

    @staticmethod
    def losses_dict(losses: Tensor) -> dict[str, Tensor]:
        """The rows of `update`'s result by name, each (P,)."""
        return dict(zip(LOSS_NAMES, losses.unbind(0), strict=True))

    @torch.no_grad()
    def act(self, observations: Tensor) -> Tensor:
        """The deterministic action max_action * tanh(body(s)); observations (P, ..., obs_dim)."""
        return self.actor(observations)

    def member_actor(self, index: int) -> DeterministicActor:
        return self.actor.member(index, self.arch.actor, self.arch.kan)

    def parameter_counts(self) -> dict[str, int]:
        counts = network_counts(self.actor, self.critic, self.population, self.config.num_critics)
        return counts

    def state_dict(self) -> dict:
        return {
            "population": self.population,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_actor": self.target_actor.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "actor_rows": self.actor_rows.clone(),
            "generator": self.generator.get_state(),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("population", 1) != self.population:
            raise ValueError(f"state of a population of {state.get('population')}, agent has {self.population}")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_actor.load_state_dict(state["target_actor"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.actor_rows.copy_(state["actor_rows"])
        self.generator.set_state(state["generator"].cpu())
        self.total_steps = int(state["total_steps"])


def single_actor(
    obs_dim: int, act_dim: int, spec: NetworkSpec, kan: KANOptions, config: TD3BCConfig
) -> DeterministicActor:
    """A fresh actor of the class and body `TD3BC.member_actor` returns (a saved final actor loads into it)."""
    return DeterministicActor(obs_dim, act_dim, spec, kan)


__all__ = ["LOSS_NAMES", "TD3BC", "TD3BCConfig", "TD3BCNoise", "single_actor"]
