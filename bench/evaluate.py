"""Policy rollouts in Gymnasium MuJoCo v4 and their D4RL-normalized scores.

D4RL v2 data came from gym's mujoco-py v2/v3 environments; Gymnasium's v4 environments are their port to the
`mujoco` bindings with the same observation layout, so they are the evaluation environments (never v5, whose
dynamics and rewards differ). The environment id lives in the registry only; this module builds every
environment through `make_env`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from bench.data.registry import get_env_spec, normalized_score
from bench.errors import BenchError

Policy = Callable[[np.ndarray], np.ndarray]


@contextmanager
def quiet_v4_construction() -> Iterator[None]:
    """Silence the two notices every v4 environment construction prints: v4 is the deliberate choice here.

    Gymnasium warns that v4 is out of date, and MuJoCo's compiler prints a deprecation of HalfCheetah-v4's
    `settotalmass` attribute straight to stderr (once per environment, so ten times per evaluation). Other
    MuJoCo warnings raised meanwhile become Python warnings rather than being lost.
    """
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_forward_mujoco_warning)
    try:
        with warnings.catch_warnings():
            # The message starts with an ANSI colour code, hence the leading wildcard.
            warnings.filterwarnings("ignore", message=r".*The environment .* is out of date")
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _forward_mujoco_warning(message: str) -> None:
    if "'settotalmass' is deprecated" not in message:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def make_env(env: str, *, max_episode_steps: int | None = None) -> gym.Env:
    """The Gymnasium v4 environment of a registry name ("hopper", ...), time-limited.

    `max_episode_steps` defaults to the registry's limit (1,000, D4RL's). Seeding is Gymnasium's: pass the
    seed to the first `reset`.
    """
    spec = get_env_spec(env)
    limit = (
        spec.max_episode_steps if max_episode_steps is None else _positive_int(max_episode_steps, "max_episode_steps")
    )
    with quiet_v4_construction():
        return gym.make(spec.env_id, max_episode_steps=limit)


@dataclass(frozen=True)
class EpisodeStep:
    """One step of the episodes still running, as `evaluate_policy` hands it to `on_step`: which episodes
    (sub-environment indices) took it, the raw states they acted in (before normalization), the actions applied
    (clipped to the action space), the rewards they got and whether the step ended an episode at a terminal
    state (a fall; a time limit is not one)."""

    episodes: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray


@dataclass(frozen=True)
class EvaluationResult:
    """One evaluation: per-episode raw returns, lengths and D4RL-normalized scores (same order)."""

    returns: np.ndarray
    lengths: np.ndarray
    normalized_scores: np.ndarray

    @property
    def episodes(self) -> int:
        return int(self.returns.shape[0])

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def mean_normalized_score(self) -> float:
        return float(np.mean(self.normalized_scores))

    @property
    def std_normalized_score(self) -> float:
        return float(np.std(self.normalized_scores))


def evaluate_policy(
    env: str,
    policy: Policy,
    *,
    episodes: int = 10,
    seed: int = 0,
    state_mean: np.ndarray | None = None,
    state_std: np.ndarray | None = None,
    max_episode_steps: int | None = None,
    on_step: Callable[[EpisodeStep], None] | None = None,
) -> EvaluationResult:
    """Run `episodes` episodes of `policy` at once, one vector sub-environment per episode.

    Sub-environment i is reset with seed `seed + i`, so a deterministic policy gets identical returns for
    the same seed. The policy sees `(obs - state_mean) / state_std` as a float32 batch of shape
    (n_envs, obs_dim) (the transform the CQL trainer applied to the dataset's states) and returns
    (n_envs, act_dim) actions, clipped to the action space before they are applied. Each sub-environment
    contributes exactly its first episode; after it ends, its rewards are ignored. `on_step`, when given, gets
    every step of the episodes still running (`EpisodeStep`), those of finished episodes left out.
    """
    episodes = _positive_int(episodes, "episodes")
    spec = get_env_spec(env)
    mean, std = _state_transform(state_mean, state_std, spec.obs_dim)

    envs = SyncVectorEnv(
        [lambda: make_env(env, max_episode_steps=max_episode_steps)] * episodes,
        autoreset_mode=AutoresetMode.NEXT_STEP,
    )
    try:
        returns, lengths = _run_first_episodes(envs, policy, seed=seed, mean=mean, std=std, on_step=on_step)
    finally:
        envs.close()
    scores = np.asarray(normalized_score(env, returns), dtype=np.float64)
    return EvaluationResult(returns=returns, lengths=lengths, normalized_scores=scores)


def _run_first_episodes(
    envs: SyncVectorEnv,
    policy: Policy,
    *,
    seed: int,
    mean: np.ndarray,
    std: np.ndarray,
    on_step: Callable[[EpisodeStep], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Step all sub-environments until each has finished one episode; its return and length.

    Under NEXT_STEP autoreset a finished sub-environment is reset by the following `step` call, which then
    reports reward 0 and the new episode's first observation; from then on it runs a second episode that
    must not count. The `running` mask freezes each sub-environment's tally at its first episode's end.
    """
    n = envs.num_envs
    low = envs.single_action_space.low
    high = envs.single_action_space.high
    act_shape = (n, *envs.single_action_space.shape)

    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    obs, _ = envs.reset(seed=seed)
    while running.any():
        actions = np.asarray(policy(((obs - mean) / std).astype(np.float32)), dtype=np.float32)
        if actions.shape != act_shape:
            raise ValueError(f"policy returned actions of shape {actions.shape}, expected {act_shape}")
        if not np.isfinite(actions[running]).all():
            raise BenchError(
                "evaluation: the policy returned NaN or infinite actions (a diverged actor?); "
                "check the training run's losses"
            )
        # Finished sub-environments get a zero action: what they do in their second episode is ignored.
        actions = np.where(running[:, None], np.clip(actions, low, high), 0.0).astype(np.float32)
        acting, states = np.flatnonzero(running), obs[running]
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        if on_step is not None:
            on_step(EpisodeStep(acting, states, actions[acting], rewards[acting], terminated[acting]))
        returns[running] += rewards[running]
        lengths[running] += 1
        running &= ~(terminated | truncated)
    return returns, lengths


def _state_transform(
    state_mean: np.ndarray | None, state_std: np.ndarray | None, obs_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std as float64 vectors of length obs_dim (identity when both are None)."""
    if (state_mean is None) != (state_std is None):
        raise ValueError("pass state_mean and state_std together, or neither")
    if state_mean is None or state_std is None:
        return np.zeros(obs_dim), np.ones(obs_dim)
    mean, std = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (state_mean, state_std))
    if mean.shape != (obs_dim,) or std.shape != (obs_dim,):
        raise ValueError(f"state_mean and state_std must hold {obs_dim} values, got {mean.size} and {std.size}")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError("state_mean must be finite and state_std finite and positive")
    return mean, std


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise BenchError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
