"""Soft Actor-Critic on the shared actor and critic code: online SAC for behaviour policies, and the SAC half of CQL.

`actor_and_temperature_losses` and `polyak_update` are the parts CQL reuses: CQL is this agent plus a
conservative term in the critic loss (bench/agents/cql.py). The online loop `train_sac` collects one
environment step and makes one gradient step per iteration, after `random_steps` uniformly random actions, as
in Haarnoja et al. (2018). It checkpoints at episode boundaries (so no simulator state needs saving) and, killed
and started again, resumes to the same result on CPU. SIGTERM stops it at the next episode end (at most one
episode later) with a checkpoint there, so a planned stop loses no steps. It also keeps what the local
D4RL-recipe datasets need: policy snapshots with their evaluated returns, and every action it took, so the
training stream can be replayed exactly in the simulator without retraining.
"""

from __future__ import annotations

import copy
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call
from tqdm import tqdm

from bench.errors import BenchError
from bench.fileio import atomic_torch_save, atomic_write_json
from bench.nets.heads import EnsembleCritic, TanhGaussianActor
from bench.nets.kan import KANOptions
from bench.nets.spec import parse_network_spec


def actor_and_temperature_losses(
    actor: nn.Module,
    critic: nn.Module,
    log_alpha: Tensor,
    obs: Tensor,
    target_entropy: float,
    alpha_multiplier: float = 1.0,
    tune_alpha: bool = True,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """SAC's actor loss E[alpha * log pi(a|s) - min_i Q_i(s, a)], a ~ pi, and the temperature loss.

    The critics' parameters are detached (the actor loss trains the actor only) and alpha is a constant in it.
    One agent: `log_alpha` is a scalar and obs (B, obs_dim). A population of agents (seeds side by side):
    `log_alpha` is (P,), obs (P, B, obs_dim), and every loss comes back per member, (P,), each the mean over
    its own batch, so that the sum over members trains each member exactly as alone. `noise` goes to the
    actor's sample. Returns (actor_loss, alpha_loss, alpha, log_pi), alpha shaped to broadcast over the batch.
    """
    new_actions, log_pi = actor(obs, noise=noise)
    log_alpha = log_alpha.reshape(*log_alpha.shape, *([1] * (log_pi.dim() - log_alpha.dim())))
    if tune_alpha:
        alpha_loss = -(log_alpha * (log_pi + target_entropy).detach()).mean(-1)
        alpha = log_alpha.exp().detach() * alpha_multiplier
    else:
        alpha_loss = obs.new_zeros(log_alpha.shape[:-1] if log_alpha.dim() else ())
        alpha = torch.full_like(log_alpha, alpha_multiplier).detach()
    frozen = {name: p.detach() for name, p in critic.named_parameters()}
    q_new = functional_call(critic, frozen, (obs, new_actions)).min(dim=0).values
    actor_loss = (alpha * log_pi - q_new).mean(-1)
    return actor_loss, alpha_loss, alpha, log_pi.detach()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online, all parameters in one fused call."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


@dataclass
class SACConfig:
    """Online SAC hyperparameters: the usual MuJoCo values (Haarnoja et al. 2018, and CleanRL's sac_continuous)."""

    actor: str = "mlp[256,256]"
    critic: str = "mlp[256,256]"
    batch_size: int = 256
    discount: float = 0.99
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    tau: float = 5e-3
    num_critics: int = 2
    target_entropy: float | None = None  # None: -action_dim
    random_steps: int = 5_000


class SAC:
    """Tanh-Gaussian actor, ensemble critics with Polyak targets, auto-tuned temperature."""

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        kan = KANOptions()
        self.actor = TanhGaussianActor(obs_dim, act_dim, parse_network_spec(config.actor), kan, orthogonal_init=False)
        self.critic = EnsembleCritic(
            obs_dim, act_dim, parse_network_spec(config.critic), kan, config.num_critics, orthogonal_init=False
        )
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
        self.log_alpha = nn.Parameter(torch.zeros((), device=self.device))
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)

    def update(self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, dones: Tensor) -> dict:
        """One gradient step on actor, critics and temperature; losses returned as tensors."""
        cfg = self.config
        actor_loss, alpha_loss, alpha, _ = actor_and_temperature_losses(
            self.actor, self.critic, self.log_alpha, obs, self.target_entropy
        )
        with torch.no_grad():
            next_actions, next_log_pi = self.actor(next_obs)
            next_q = self.target_critic(next_obs, next_actions).min(dim=0).values - alpha * next_log_pi
            td_target = rewards + (1.0 - dones) * cfg.discount * next_q
        q = self.critic(obs, actions)
        critic_loss = ((q - td_target) ** 2).mean(dim=-1).sum()
        for opt in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
            opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss + alpha_loss).backward()
        for opt in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
            opt.step()
        polyak_update(self.target_critic, self.critic, cfg.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "alpha": alpha}

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])


def stochastic_policy(
    actor: TanhGaussianActor, seed: int, *, dtype: torch.dtype = torch.float32
) -> Callable[[np.ndarray], np.ndarray]:
    """The behaviour policy of the datasets: sampled actions (as D4RL's SAC data), its own seeded generator.

    `dtype=torch.float64` computes each action in double precision and rounds it to float32 only at the end. A
    float32 forward pass is exact on one machine but its last bit depends on the CPU's matmul kernels (AVX2 or
    AVX-512, MKL's code path), and one flipped bit sends a rollout elsewhere; differences of that size in float64
    almost never survive the final rounding, so the stream is the same on any x86 CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    policy = actor if dtype == torch.float32 else copy.deepcopy(actor).to(dtype)

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        mean, log_std = policy.distribution_params(torch.as_tensor(obs, dtype=dtype))
        noise = torch.randn(mean.shape, generator=generator, dtype=dtype)
        return (torch.tanh(mean + noise * log_std.exp()) * actor.max_action).to(torch.float32).numpy()

    return act


@dataclass
class SACRunConfig:
    """One behaviour-policy training run: environment, budget, evaluation and snapshot cadence."""

    env: str
    steps: int = 300_000
    seed: int = 0
    snapshot_every: int = 5_000  # policy snapshots (the medium candidates), each evaluated
    snapshot_episodes: int = 5
    checkpoint_every: int = 20_000  # steps; written at the first episode end after each multiple
    sac: SACConfig = field(default_factory=SACConfig)

    def __post_init__(self) -> None:
        if self.steps % self.snapshot_every:
            raise BenchError(f"steps ({self.steps}) must be a multiple of snapshot_every ({self.snapshot_every})")


def train_sac(config: SACRunConfig, out_dir: Path, *, progress: bool = True, threads: int | None = None) -> dict:
    """Train SAC online in `config.env`; write snapshots, the action log and `summary.json` into `out_dir`.

    `out_dir/checkpoint.pt` is written at episode boundaries; the same call after a kill resumes from it, also
    with another `config.steps` (not below the checkpoint's step): the summary's `budgets` lists each change.
    Returns the summary (per-snapshot evaluated returns, steps, seeds, training-stream hash).
    """
    from bench.data.generate import stream_digest
    from bench.evaluate import make_env, quiet_v4_construction

    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    (out_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.json"
    if summary_path.exists():
        raise BenchError(f"{summary_path} exists: this run is finished; delete {out_dir} to train again")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    with quiet_v4_construction():
        env = make_env(config.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = SAC(obs_dim, act_dim, config.sac)
    n = config.steps
    buffer = {
        "observations": np.zeros((n, obs_dim), np.float32),
        "actions": np.zeros((n, act_dim), np.float32),
        "rewards": np.zeros(n, np.float32),
        "next_observations": np.zeros((n, obs_dim), np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }
    snapshots: list[dict[str, Any]] = []
    episode_returns: list[float] = []
    step, start_time = 0, time.time()
    # The budget only bounds the loop (the buffer samples from the steps taken so far), so a run resumed with a
    # different one replays the same steps: a shorter budget ends it early, a longer one extends it.
    budgets = [{"step": 0, "steps": n}]
    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        if {**state["config"], "steps": n} != asdict(config):
            raise BenchError(f"{ckpt_path} belongs to another configuration; delete {out_dir} to start again")
        step = state["step"]
        if step > n:
            least = -(-step // config.snapshot_every) * config.snapshot_every
            raise BenchError(
                f"{ckpt_path} is at step {step:,}, past this run's budget of {n:,} steps; "
                f"give a budget of at least {least:,} (a multiple of snapshot_every)"
            )
        budgets = state.get("budgets", [{"step": 0, "steps": state["config"]["steps"]}])
        if budgets[-1]["steps"] != n:
            budgets.append({"step": step, "steps": n})
        agent.load_state_dict(state["agent"])
        for key, value in state["buffer"].items():
            buffer[key][:step] = value
        snapshots, episode_returns = state["snapshots"], state["episode_returns"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        env.unwrapped.np_random.bit_generator.state = state["rng"]["env"]
        env.action_space.np_random.bit_generator.state = state["rng"]["action_space"]
        obs, _ = env.reset()
    else:
        obs, _ = env.reset(seed=config.seed)
        env.action_space.seed(config.seed)

    first_step = step
    bar = tqdm(total=n, initial=step, unit="step", desc=f"SAC {config.env}", disable=not progress, file=sys.stderr)
    episode_return, next_checkpoint = 0.0, (step // config.checkpoint_every + 1) * config.checkpoint_every
    losses: dict[str, Tensor] = {}
    with stop_on_sigterm() as stop_requested:
        while step < n:
            if step < config.sac.random_steps:
                action = env.action_space.sample().astype(np.float32)
            else:
                with torch.no_grad():
                    action = agent.actor(torch.as_tensor(obs, dtype=torch.float32), need_log_prob=False)[0].numpy()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer["observations"][step] = obs
            buffer["actions"][step] = action
            buffer["rewards"][step] = reward
            buffer["next_observations"][step] = next_obs
            buffer["terminals"][step] = terminated
            buffer["timeouts"][step] = truncated and not terminated
            episode_return += float(reward)
            step += 1
            obs = next_obs
            if step >= config.sac.random_steps:
                idx = np.random.randint(0, step, size=config.sac.batch_size)
                batch = [torch.as_tensor(buffer[k][idx], dtype=torch.float32) for k in ("observations", "actions")]
                rewards = torch.as_tensor(buffer["rewards"][idx])
                next_o = torch.as_tensor(buffer["next_observations"][idx])
                dones = torch.as_tensor(buffer["terminals"][idx], dtype=torch.float32)
                losses = agent.update(batch[0], batch[1], rewards, next_o, dones)
            if step % config.snapshot_every == 0:
                snapshots.append(
                    {**_snapshot(agent, config, step, out_dir), "stream_sha256": stream_digest(buffer, step)}
                )
                bar.set_postfix(snapshot_return=f"{snapshots[-1]['return_mean']:.0f}", refresh=False)
                if not progress:
                    # One line per snapshot, so a background run's log shows its curve without a progress bar.
                    rate = (step - first_step) / max(time.time() - start_time, 1e-9)
                    print(
                        f"SAC {config.env}: step {step:,}/{n:,}, snapshot return {snapshots[-1]['return_mean']:.1f} "
                        f"(score {snapshots[-1]['normalized_score']:.1f}), {rate:.1f} steps/s",
                        file=sys.stderr,
                        flush=True,
                    )
            bar.update(1)
            if terminated or truncated:
                episode_returns.append(episode_return)
                episode_return = 0.0
                stopping = stop_requested.is_set() and step < n
                if (step >= next_checkpoint or stopping) and step < n:
                    next_checkpoint = (step // config.checkpoint_every + 1) * config.checkpoint_every
                    _save_checkpoint(ckpt_path, config, agent, step, buffer, snapshots, episode_returns, env, budgets)
                if stopping:
                    bar.close()
                    env.close()
                    raise BenchError(
                        f"SAC {config.env}: stopped on SIGTERM at step {step:,}, checkpoint written to {ckpt_path}; "
                        "the same command resumes from it"
                    )
                obs, _ = env.reset()
                if losses:
                    bar.set_postfix(
                        episode_return=f"{episode_returns[-1]:.0f}", critic=f"{losses['critic_loss'].item():.3g}"
                    )
    bar.close()
    env.close()
    summary = {
        "env": config.env,
        "config": asdict(config),
        "budgets": budgets,
        "snapshots": snapshots,
        "episodes": len(episode_returns),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds_since_last_start": round(time.time() - start_time, 1),
    }
    np.save(out_dir / "training_actions.npy", buffer["actions"])
    atomic_write_json(summary_path, summary)
    ckpt_path.unlink(missing_ok=True)
    return summary


def _snapshot(agent: SAC, config: SACRunConfig, step: int, out_dir: Path) -> dict[str, Any]:
    """Save the actor and evaluate it as a behaviour policy (sampled actions, fixed seeds)."""
    from bench.evaluate import evaluate_policy

    path = out_dir / "snapshots" / f"actor_{step:07d}.pt"
    atomic_torch_save(agent.actor.state_dict(), path)
    policy = stochastic_policy(agent.actor, seed=10_000 + step)
    result = evaluate_policy(config.env, policy, episodes=config.snapshot_episodes, seed=10_000 + step)
    return {
        "step": step,
        "path": str(path.relative_to(out_dir)),
        "return_mean": float(np.mean(result.returns)),
        "return_std": float(np.std(result.returns)),
        "normalized_score": float(np.mean(result.normalized_scores)),
    }


@contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """An event that SIGTERM sets while the block runs, for a loop to stop at a point of its choosing (signals
    reach the main thread only: elsewhere the event is never set). The previous handler is restored after."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_checkpoint(path, config, agent, step, buffer, snapshots, episode_returns, env, budgets) -> None:
    state = {
        "config": asdict(config),
        "budgets": budgets,
        "agent": agent.state_dict(),
        "step": step,
        "buffer": {k: v[:step].copy() for k, v in buffer.items()},
        "snapshots": snapshots,
        "episode_returns": episode_returns,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "env": env.unwrapped.np_random.bit_generator.state,
            "action_space": env.action_space.np_random.bit_generator.state,
        },
    }
    atomic_torch_save(state, path)


__all__ = [
    "SAC",
    "SACConfig",
    "SACRunConfig",
    "actor_and_temperature_losses",
    "polyak_update",
    "stochastic_policy",
    "train_sac",
]
