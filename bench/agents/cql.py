"""Conservative Q-Learning, CQL(H), on a SAC base: CORL's `algorithms/offline/cql.py`, any actor and critic body.

The defaults of `CQLConfig` are CORL's gym-mujoco configuration (SPEC section 4). The update follows CORL step
for step, with three changes that leave the mathematics alone and make it faster:

- the critics are one ensemble network (stacked weights, one batched matmul per layer), and so are the targets;
- every action the conservative term needs (the dataset action, N uniform, N current-policy and N next-state
  policy actions per state) goes through the critics in one pass, and all policy samples that need no gradient
  come from one actor pass;
- the losses are built first and backpropagated once. CORL steps the temperature, the actor and the critics
  one after another, but each loss only reads values from before any step, so one backward with the right
  `detach` calls gives the same gradients: the actor's loss sees the critics' parameters detached (CORL zeroes
  the critics' gradients from that loss), the temperature enters the actor's loss as a constant, and the
  policy samples in the critic loss are detached as in CORL.

Losses come back as tensors, not floats, so a training step never waits for the device.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bench.agents.sac import actor_and_temperature_losses, polyak_update
from bench.nets.heads import EnsembleCritic, TanhGaussianActor
from bench.nets.spec import Architecture


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


class Batch(NamedTuple):
    observations: Tensor  # (B, obs_dim), already normalized
    actions: Tensor  # (B, act_dim)
    rewards: Tensor  # (B,)
    next_observations: Tensor  # (B, obs_dim)
    dones: Tensor  # (B,), 1.0 where the episode terminated


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
    """The agent: a tanh-Gaussian actor, an ensemble of critics with Polyak targets, SAC temperature, CQL(H)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        arch: Architecture,
        config: CQLConfig | None = None,
        device: torch.device | str = "cpu",
        max_action: float = 1.0,
    ) -> None:
        self.config = config = config or CQLConfig()
        self.device = torch.device(device)
        self.act_dim = act_dim
        self.max_action = max_action
        self.actor = TanhGaussianActor(
            obs_dim, act_dim, arch.actor, arch.kan, max_action=max_action, orthogonal_init=False
        ).to(self.device)
        self.critic = EnsembleCritic(
            obs_dim,
            act_dim,
            arch.critic,
            arch.kan,
            num_critics=config.num_critics,
            orthogonal_init=config.orthogonal_init,
        ).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
        self.log_alpha = nn.Parameter(torch.zeros((), device=self.device))
        # CORL starts log alpha' at 1.0, so alpha' starts at e.
        self.log_alpha_prime = nn.Parameter(torch.ones((), device=self.device))

        # Fused Adam does the whole update in one kernel per group; same arithmetic as the default loop.
        adam = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.policy_lr, **adam)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.qf_lr, **adam)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.policy_lr, **adam)
        self.alpha_prime_optimizer = torch.optim.Adam([self.log_alpha_prime], lr=config.qf_lr, **adam)
        self.total_steps = 0

    def sample_random_actions(self, batch_size: int, n: int) -> Tensor:
        """Uniform actions for the conservative term, (B, N, act_dim) in [-max_action, max_action]."""
        u = torch.rand(batch_size, n, self.act_dim, device=self.device)
        return (2.0 * u - 1.0) * self.max_action

    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        """All losses of one step, from the current parameters; `update` backpropagates their sum."""
        cfg = self.config
        obs, actions, rewards, next_obs, dones = batch
        batch_size, n = obs.shape[0], cfg.cql_n_actions

        # The SAC half: actor and temperature losses (alpha a constant for the actor, the critics frozen).
        policy_loss, alpha_loss, alpha, log_pi = actor_and_temperature_losses(
            self.actor,
            self.critic,
            self.log_alpha,
            obs,
            self.target_entropy,
            cfg.alpha_multiplier,
            cfg.use_automatic_entropy_tuning,
        )

        # Every policy sample the critic loss needs, from one actor pass without gradients:
        # N at s (current), N at s' (next-state, used at s by the conservative term), and the backup action(s).
        n_backup = n if cfg.cql_max_target_backup else 1
        with torch.no_grad():
            sample_obs = torch.cat(
                [
                    obs.unsqueeze(1).expand(-1, n, -1),
                    next_obs.unsqueeze(1).expand(-1, n + n_backup, -1),
                ],
                dim=1,
            )
            sampled, sampled_log_pi = self.actor(sample_obs)
            current_actions, next_actions, backup_actions = sampled.split([n, n, n_backup], dim=1)
            log_pi_current, log_pi_next, backup_log_pi = sampled_log_pi.split([n, n, n_backup], dim=1)

            target_q = (
                self.target_critic(next_obs.unsqueeze(1).expand(-1, n_backup, -1), backup_actions).min(dim=0).values
            )  # (B, n_backup)
            if cfg.cql_max_target_backup:
                target_q, best = target_q.max(dim=1)
                backup_log_pi = backup_log_pi.gather(1, best.unsqueeze(1))
            else:
                target_q = target_q.squeeze(1)
            td_target = bellman_target(
                rewards, dones, target_q, backup_log_pi.squeeze(1), alpha, cfg.discount, cfg.backup_entropy
            )

        # One critic pass over the dataset action and all 3N sampled actions of every state.
        random_actions = self.sample_random_actions(batch_size, n)
        all_actions = torch.cat([actions.unsqueeze(1), random_actions, current_actions, next_actions], dim=1)
        q_all = self.critic(obs.unsqueeze(1).expand(-1, 3 * n + 1, -1), all_actions)  # (E, B, 3N+1)
        q_data, q_random, q_current, q_next = q_all.split([1, n, n, n], dim=-1)
        q_data = q_data.squeeze(-1)
        td_loss = ((q_data - td_target) ** 2).mean(dim=-1)  # (E,), F.mse_loss per critic

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
        )
        if cfg.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            conservative_loss = alpha_prime.detach() * cfg.cql_alpha * (gap - cfg.cql_target_action_gap)
            alpha_prime_loss = -(alpha_prime * cfg.cql_alpha * (gap.detach() - cfg.cql_target_action_gap)).mean()
        else:
            alpha_prime = obs.new_zeros(())
            conservative_loss = cfg.cql_alpha * gap
            alpha_prime_loss = obs.new_zeros(())
        critic_loss = (td_loss + conservative_loss).sum()

        return {
            "critic_loss": critic_loss,
            "policy_loss": policy_loss,
            "alpha_loss": alpha_loss,
            "alpha_prime_loss": alpha_prime_loss,
            "td_loss": td_loss.mean(),
            "cql_gap": gap.mean(),
            "alpha": alpha,
            "alpha_prime": alpha_prime.detach(),
            "q_data": q_data.detach().mean(),
            "target_q": td_target.mean(),
            "log_pi": log_pi.mean(),
        }

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step on every network, then the Polyak update of the target critics."""
        losses = self.compute_losses(batch)
        total = losses["critic_loss"] + losses["policy_loss"] + losses["alpha_loss"] + losses["alpha_prime_loss"]
        optimizers = [self.actor_optimizer, self.critic_optimizer]
        if self.config.use_automatic_entropy_tuning:
            optimizers.append(self.alpha_optimizer)
        if self.config.cql_lagrange:
            optimizers.append(self.alpha_prime_optimizer)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in optimizers:
            opt.step()
        self.total_steps += 1
        if self.total_steps % self.config.target_update_period == 0:
            self.update_target(self.config.soft_target_update_rate)
        return losses

    def update_target(self, tau: float) -> None:
        polyak_update(self.target_critic, self.critic, tau)

    @torch.no_grad()
    def act(self, observations: Tensor) -> Tensor:
        """The deterministic evaluation action tanh(mean) * max_action."""
        actions, _ = self.actor(observations, deterministic=True, need_log_prob=False)
        return actions

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "log_alpha_prime": self.log_alpha_prime.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "alpha_prime_optimizer": self.alpha_prime_optimizer.state_dict(),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
            self.log_alpha_prime.copy_(state["log_alpha_prime"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.alpha_prime_optimizer.load_state_dict(state["alpha_prime_optimizer"])
        self.total_steps = int(state["total_steps"])


__all__ = ["CQL", "Batch", "CQLConfig", "bellman_target", "conservative_gap"]
