"""Conservative Q-Learning, CQL(H), on a SAC base: CORL's `algorithms/offline/cql.py`, any actor and critic body.

The defaults of `CQLConfig` are CORL's gym-mujoco configuration (SPEC section 4). The update follows CORL step
for step, with changes that leave the mathematics alone and make it faster:

- the critics are one ensemble network (stacked weights, one batched matmul per layer), and so are the targets;
- every action the conservative term needs (the dataset action, N uniform, N current-policy and N next-state
  policy actions per state) goes through the critics in one pass, and all policy samples that need no gradient
  come from one actor pass;
- the losses are built first and backpropagated once. CORL steps the temperature, the actor and the critics
  one after another, but each loss only reads values from before any step, so one backward with the right
  `detach` calls gives the same gradients: the actor's loss sees the critics' parameters detached (CORL zeroes
  the critics' gradients from that loss), the temperature enters the actor's loss as a constant, and the
  policy samples in the critic loss are detached as in CORL; one Adam with a parameter group per CORL
  optimizer then steps them all;
- several seeds train side by side as one population (a leading member dim on every network, temperature and
  Adam state; `CQL.from_members`), each member exactly as alone;
- the randomness of a step is drawn before it (`StepNoise`), so the step can be compiled whole (`compiled`).

Losses come back as one tensor on the device, not floats, so a training step never waits for the device.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from bench.agents.base import Batch, check_fresh_members, compiled_update, network_counts, stack_members
from bench.agents.sac import actor_and_temperature_losses, polyak_update
from bench.nets.heads import EnsembleCritic, TanhGaussianActor
from bench.nets.kan import KANOptions
from bench.nets.spec import Architecture, NetworkSpec


@dataclass
class CQLConfig:
    """CQL hyperparameters; defaults are CORL's gym-mujoco values (field names follow CORL where they can)."""

    batch_size: int = 256
    discount: float = 0.99
    policy_lr: float = 3e-5
    qf_lr: float = 3e-4
    soft_target_update_rate: float = 5e-3
    target_update_period: int = 1
    num_critics: int = 2
    orthogonal_init: bool = True
    # SAC temperature: auto-tuned toward target_entropy (None: -action_dim), log alpha starts at 0, lr = policy_lr.
    use_automatic_entropy_tuning: bool = True
    alpha_multiplier: float = 1.0
    target_entropy: float | None = None
    backup_entropy: bool = False
    # The conservative term.
    cql_alpha: float = 10.0
    cql_n_actions: int = 10
    cql_importance_sample: bool = True
    cql_temp: float = 1.0
    cql_max_target_backup: bool = False
    # None means no clipping (CORL: -inf / +inf); JSON records cannot hold infinities.
    cql_clip_diff_min: float | None = None
    cql_clip_diff_max: float | None = None
    # Lagrange variant: alpha' tuned so the conservative gap meets cql_target_action_gap.
    cql_lagrange: bool = False
    cql_target_action_gap: float = -1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.cql_n_actions < 1 or self.num_critics < 1:
            raise ValueError("batch_size, cql_n_actions and num_critics must be positive")
        if not 0.0 < self.soft_target_update_rate <= 1.0:
            raise ValueError(f"soft_target_update_rate must be in (0, 1], got {self.soft_target_update_rate}")


class StepNoise(NamedTuple):
    """All the randomness of one update, drawn before it, so the update itself is a pure function of its inputs
    (one compiled graph, no generator inside, the same numbers eager and compiled)."""

    actor: Tensor  # (P, B, act_dim) standard normal: the actor-loss sample
    samples: Tensor  # (P, B, 2N + backups, act_dim) standard normal: current, next-state and backup samples
    uniform: Tensor  # (P, B, N, act_dim) in [0, 1): the uniform actions of the conservative term


LOSS_NAMES = (
    "critic_loss",
    "policy_loss",
    "alpha_loss",
    "alpha_prime_loss",
    "td_loss",
    "cql_gap",
    "alpha",
    "alpha_prime",
    "q_data",
    "target_q",
    "log_pi",
)


def bellman_target(
    rewards: Tensor,
    dones: Tensor,
    next_q: Tensor,
    next_log_pi: Tensor,
    alpha: Tensor,
    discount: float,
    backup_entropy: bool,
) -> Tensor:
    """r + gamma * (1 - done) * (Q_target(s', a') [- alpha * log pi(a'|s')]), CORL's TD target."""
    if backup_entropy:
        next_q = next_q - alpha * next_log_pi
    return rewards + (1.0 - dones) * discount * next_q


def conservative_gap(
    q_data: Tensor,
    q_random: Tensor,
    q_current: Tensor,
    q_next: Tensor,
    log_pi_current: Tensor,
    log_pi_next: Tensor,
    random_log_density: float,
    importance_sample: bool,
    temperature: float,
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> Tensor:
    """Per critic, mean over the batch of temp * logsumexp(Q(s, a_i) / temp) - Q(s, a_data).

    Shapes: q_data (E, B); q_random, q_current, q_next (E, B, N); log_pi_* (B, N). With importance sampling the
    logsumexp estimates log of the integral of exp Q over actions: uniform samples are weighted by their density
    and policy samples by their likelihood (CORL's order: random, next-state policy, current policy). Without it,
    the dataset action joins the samples unweighted, as in CORL. Returns (E,).
    """
    if importance_sample:
        samples = torch.cat([q_random - random_log_density, q_next - log_pi_next, q_current - log_pi_current], dim=-1)
    else:
        samples = torch.cat([q_random, q_data.unsqueeze(-1), q_next, q_current], dim=-1)
    soft_max = torch.logsumexp(samples / temperature, dim=-1) * temperature
    gap = soft_max - q_data
    if clip_min is not None or clip_max is not None:
        gap = gap.clamp(min=clip_min, max=clip_max)
    return gap.mean(dim=-1)


class CQL:
    """The agent: a tanh-Gaussian actor, an ensemble of critics with Polyak targets, SAC temperature, CQL(H).

    It trains a population of P independent agents at once (seeds side by side, `population=P`): every
    network, the temperatures and the Adam state carry a leading member dim, each member sees its own
    minibatch, and the loss is the sum of the members' losses, so each member gets exactly the gradient it
    would get alone (Adam is elementwise). One seed is a population of one. `from_members` stacks agents
    built one by one, so a member starts from the parameters its seed gives alone (the agent interface,
    bench/agents/base.py).
    """

    loss_names: ClassVar[tuple[str, ...]] = LOSS_NAMES
    progress: ClassVar[dict[str, str]] = {"critic": "critic_loss", "actor": "policy_loss", "alpha": "alpha"}

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        arch: Architecture,
        config: CQLConfig | None = None,
        device: torch.device | str = "cpu",
        max_action: float = 1.0,
        population: int = 1,
        noise_seed: int = 0,
        compiled: bool = False,
        run_steps: int = 1_000_000,
    ) -> None:
        # run_steps (the run's budget) is part of the agent interface for schedules; CQL has none.
        self.config = config = config or CQLConfig()
        self.device = torch.device(device)
        self.arch, self.obs_dim, self.act_dim = arch, obs_dim, act_dim
        self.max_action = max_action
        self.population = population
        self.actor = TanhGaussianActor(
            obs_dim, act_dim, arch.actor, arch.kan, max_action=max_action, orthogonal_init=False, population=population
        ).to(self.device)
        self.critic = EnsembleCritic(
            obs_dim,
            act_dim,
            arch.critic,
            arch.kan,
            num_critics=config.num_critics,
            orthogonal_init=config.orthogonal_init,
            population=population,
        ).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
        self.log_alpha = nn.Parameter(torch.zeros(population, device=self.device))
        # CORL starts log alpha' at 1.0, so alpha' starts at e.
        self.log_alpha_prime = nn.Parameter(torch.ones(population, device=self.device))
        # The policy samples and uniform actions of every member come from this one stream.
        self.generator = torch.Generator(self.device).manual_seed(noise_seed)

        # One Adam with a parameter group per CORL optimizer (actor, critics, temperature, alpha' when tuned):
        # Adam is elementwise, so this is CORL's four optimizers' arithmetic in one step call. Fused Adam does
        # the update in one kernel; a compiled step uses the plain loop, which the compiler fuses itself.
        cfg = self.config
        groups = [
            {"params": list(self.actor.parameters()), "lr": cfg.policy_lr},
            {"params": list(self.critic.parameters()), "lr": cfg.qf_lr},
        ]
        if cfg.use_automatic_entropy_tuning:
            groups.append({"params": [self.log_alpha], "lr": cfg.policy_lr})
        if cfg.cql_lagrange:
            groups.append({"params": [self.log_alpha_prime], "lr": cfg.qf_lr})
        fused = self.device.type in ("cpu", "cuda") and not compiled
        self.optimizer = torch.optim.Adam(groups, **({"fused": True} if fused else {}))
        self.total_steps = 0
        # The whole update (losses, backward, optimizer steps, Polyak) compiled as one function. The randomness
        # is drawn outside it (`StepNoise`), so it computes what the eager step does up to floating-point
        # reassociation, holds no generator and reads nothing back to the host.
        self._step = compiled_update(self._update_step, self.device) if compiled else self._update_step

    @classmethod
    def from_members(cls, members: list[CQL], noise_seed: int = 0, compiled: bool = False) -> CQL:
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
        agent.target_critic.load_state_dict(agent.critic.state_dict())
        with torch.no_grad():
            agent.log_alpha.copy_(torch.cat([m.log_alpha for m in members]))
            agent.log_alpha_prime.copy_(torch.cat([m.log_alpha_prime for m in members]))
        return agent

    def draw_noise(self, batch_size: int) -> StepNoise:
        """The randomness of one update, from the agent's generator."""
        cfg, shape = self.config, (self.population, batch_size)
        n, backups = cfg.cql_n_actions, cfg.cql_n_actions if cfg.cql_max_target_backup else 1
        normal = torch.randn(*shape, 1 + 2 * n + backups, self.act_dim, generator=self.generator, device=self.device)
        uniform = torch.rand(*shape, n, self.act_dim, generator=self.generator, device=self.device)
        return StepNoise(normal[:, :, 0], normal[:, :, 1:], uniform)

    def compute_losses(self, batch: Batch, noise: StepNoise) -> dict[str, Tensor]:
        """All losses of one step, per member (each (P,)), from the current parameters; `update` backpropagates
        the sum of the four trained ones."""
        cfg = self.config
        obs, actions, rewards, next_obs, dones = batch
        n = cfg.cql_n_actions

        # The SAC half: actor and temperature losses (alpha a constant for the actor, the critics frozen).
        policy_loss, alpha_loss, alpha, log_pi = actor_and_temperature_losses(
            self.actor,
            self.critic,
            self.log_alpha,
            obs,
            self.target_entropy,
            cfg.alpha_multiplier,
            cfg.use_automatic_entropy_tuning,
            noise=noise.actor,
        )

        # Every policy sample the critic loss needs, from one actor pass without gradients:
        # N at s (current), N at s' (next-state, used at s by the conservative term), and the backup action(s).
        # The actor's body runs once per state, not once per sample (the same values as CORL's repeated states).
        n_backup = n if cfg.cql_max_target_backup else 1
        with torch.no_grad():
            sampled, sampled_log_pi = self.actor.forward_repeated(
                torch.stack([obs, next_obs], dim=2), (n, n + n_backup), noise=noise.samples
            )
            current_actions, next_actions, backup_actions = sampled.split([n, n, n_backup], dim=2)
            log_pi_current, log_pi_next, backup_log_pi = sampled_log_pi.split([n, n, n_backup], dim=2)

            target_q = (
                self.target_critic(next_obs.unsqueeze(2).expand(-1, -1, n_backup, -1), backup_actions).min(dim=0).values
            )  # (P, B, n_backup)
            if cfg.cql_max_target_backup:
                target_q, best = target_q.max(dim=2)
                backup_log_pi = backup_log_pi.gather(2, best.unsqueeze(2))
            else:
                target_q = target_q.squeeze(2)
            td_target = bellman_target(
                rewards, dones, target_q, backup_log_pi.squeeze(2), alpha, cfg.discount, cfg.backup_entropy
            )

        # One critic pass over the dataset action and all 3N sampled actions of every state.
        random_actions = (2.0 * noise.uniform - 1.0) * self.max_action
        all_actions = torch.cat([actions.unsqueeze(2), random_actions, current_actions, next_actions], dim=2)
        q_all = self.critic(obs.unsqueeze(2).expand(-1, -1, 3 * n + 1, -1), all_actions)  # (E, P, B, 3N+1)
        q_data, q_random, q_current, q_next = q_all.split([1, n, n, n], dim=-1)
        q_data = q_data.squeeze(-1)
        td_loss = ((q_data - td_target) ** 2).mean(dim=-1)  # (E, P), F.mse_loss per critic

        gap = conservative_gap(
            q_data,
            q_random,
            q_current,
            q_next,
            log_pi_current,
            log_pi_next,
            random_log_density=-self.act_dim * math.log(2.0 * self.max_action),
            importance_sample=cfg.cql_importance_sample,
            temperature=cfg.cql_temp,
            clip_min=cfg.cql_clip_diff_min,
            clip_max=cfg.cql_clip_diff_max,
        )  # (E, P)
        if cfg.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            conservative_loss = alpha_prime.detach() * cfg.cql_alpha * (gap - cfg.cql_target_action_gap)
            alpha_prime_loss = -(alpha_prime * cfg.cql_alpha * (gap.detach() - cfg.cql_target_action_gap)).mean(0)
        else:
            alpha_prime = torch.zeros_like(policy_loss)
            conservative_loss = cfg.cql_alpha * gap
            alpha_prime_loss = torch.zeros_like(policy_loss)
        critic_loss = (td_loss + conservative_loss).sum(0)

        return {
            "critic_loss": critic_loss,
            "policy_loss": policy_loss,
            "alpha_loss": alpha_loss,
            "alpha_prime_loss": alpha_prime_loss,
            "td_loss": td_loss.mean(0),
            "cql_gap": gap.mean(0),
            "alpha": alpha.reshape(-1).expand(self.population),
            "alpha_prime": alpha_prime.detach(),
            "q_data": q_data.detach().mean((0, 2)),
            "target_q": td_target.mean(-1),
            "log_pi": log_pi.mean(-1),
        }

    def update(self, batch: Batch, noise: StepNoise | None = None) -> Tensor:
        """One gradient step on every network, then the Polyak update of the target critics.

        Returns the losses as one (len(LOSS_NAMES), P) tensor on the device (nothing is read back to the host);
        `losses_dict` names its rows.
        """
        if noise is None:
            noise = self.draw_noise(batch.observations.shape[1])
        losses = self._step(batch, noise)
        self.total_steps += 1
        period = self.config.target_update_period
        if period != 1 and self.total_steps % period == 0:
            self.update_target(self.config.soft_target_update_rate)
        return losses

    def _update_step(self, batch: Batch, noise: StepNoise) -> Tensor:
        losses = self.compute_losses(batch, noise)
        total = losses["critic_loss"] + losses["policy_loss"] + losses["alpha_loss"] + losses["alpha_prime_loss"]
        self.optimizer.zero_grad(set_to_none=True)
        total.sum().backward()
        self.optimizer.step()
        # target_update_period is 1 in every CORL config; other periods are applied by the caller's step count.
        if self.config.target_update_period == 1:
            polyak_update(self.target_critic, self.critic, self.config.soft_target_update_rate)
        return torch.stack([losses[name].detach() for name in LOSS_NAMES])

    @staticmethod
    def losses_dict(losses: Tensor) -> dict[str, Tensor]:
        """The rows of `update`'s result by name, each (P,)."""
        return dict(zip(LOSS_NAMES, losses.unbind(0), strict=True))

    def update_target(self, tau: float) -> None:
        polyak_update(self.target_critic, self.critic, tau)

    @torch.no_grad()
    def act(self, observations: Tensor) -> Tensor:
        """The deterministic evaluation action tanh(mean) * max_action; observations (P, ..., obs_dim)."""
        actions, _ = self.actor(observations, deterministic=True, need_log_prob=False)
        return actions

    def member_actor(self, index: int) -> TanhGaussianActor:
        return self.actor.member(index, self.arch.actor, self.arch.kan)

    def parameter_counts(self) -> dict[str, int]:
        counts = network_counts(self.actor, self.critic, self.population, self.config.num_critics)
        return counts

    def state_dict(self) -> dict:
        return {
            "population": self.population,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "log_alpha_prime": self.log_alpha_prime.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("population", 1) != self.population:
            raise ValueError(f"state of a population of {state.get('population')}, agent has {self.population}")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
            self.log_alpha_prime.copy_(state["log_alpha_prime"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.total_steps = int(state["total_steps"])


def single_actor(
    obs_dim: int, act_dim: int, spec: NetworkSpec, kan: KANOptions, config: CQLConfig
) -> TanhGaussianActor:
    """A fresh actor of the class and body `CQL.member_actor` returns (a saved final actor loads into it)."""
    return TanhGaussianActor(obs_dim, act_dim, spec, kan)


__all__ = [
    "CQL",
    "LOSS_NAMES",
    "Batch",
    "CQLConfig",
    "StepNoise",
    "bellman_target",
    "conservative_gap",
    "single_actor",
]
