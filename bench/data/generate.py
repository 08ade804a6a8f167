"""Rollouts of any policy written as D4RL-layout HDF5 datasets; the local D4RL recipe (`bench/suite/`) builds on them.

`collect_transitions` records one continuous stream of episodes the way D4RL's files lay them out, and
`stream_digest` hashes one; `generate_random_dataset` writes a uniform-random-policy stream, the smoke dataset
for CI and for machines without the D4RL files. Behaviour policies (SAC checkpoints) use the same collector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from bench.data.hdf5 import write_d4rl_hdf5
from bench.data.registry import get_env_spec
from bench.errors import BenchError
from bench.evaluate import make_env

Policy = Callable[[np.ndarray], np.ndarray]
STREAM_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


def collect_transitions(
    env: str,
    policy: Policy | None,
    *,
    steps: int,
    seed: int,
    progress: bool = False,
    max_episode_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Run one environment for exactly `steps` steps and return the stream in D4RL's layout.

    `policy` maps one raw (unnormalized) float32 observation of shape (obs_dim,) to an action of shape
    (act_dim,); None means uniform random actions from the action space seeded with `seed`. Actions are
    clipped to the action space and stored as applied. The environment is reset with `seed` once, then
    after every episode end, so the whole stream is a function of `seed` (and the policy).

    Keys: observations (before the step), actions, rewards, next_observations, terminals (the environment
    terminated), timeouts (the episode was cut: by the time limit, or by the end of the stream), and
    infos/qpos, infos/qvel (the simulator state behind observations[i]).

    Why the stream's last step is a timeout when it stops mid-episode: d4rl's `qlearning_dataset` pairs
    observations[i] with observations[i + 1] and drops transition i where timeouts[i] is set, because the
    next row starts another episode. The last row has no successor in that rule; flagging it as a timeout
    states that the episode was cut there, so episode-splitting readers see a complete, cut episode instead
    of one that seems to continue. A step that both terminates and hits the limit is a terminal, not a
    timeout, so that d4rl's rule keeps its (valid, terminal) transition.
    """
    steps = _positive_int(steps, "steps")
    spec = get_env_spec(env)
    gym_env = make_env(env, max_episode_steps=max_episode_steps)
    try:
        data = _rollout(gym_env, policy, steps=steps, seed=seed, progress=progress, label=spec.name)
    finally:
        gym_env.close()
    return data


def stream_digest(arrays: dict[str, np.ndarray], n: int | None = None) -> str:
    """SHA-256 of the first `n` rows of a stream (observations, actions, rewards, next observations, terminals)."""
    n = len(arrays["actions"]) if n is None else n
    digest = hashlib.sha256()
    for key in STREAM_KEYS:
        digest.update(np.ascontiguousarray(arrays[key][:n]).tobytes())
    return digest.hexdigest()


def generate_random_dataset(
    env: str,
    out: Path,
    *,
    steps: int,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a `steps`-transition uniform-random-policy dataset of `env` to `out` (an .hdf5 file).

    The file loads as `local:<out>`; its root attributes say it is local random data. The same arguments
    give a byte-identical file.
    """
    out = Path(out)
    if out.suffix != ".hdf5":
        raise BenchError(f"dataset path {out} must end in .hdf5 (the loader reads local:<path>.hdf5)")
    if out.exists() and not overwrite:
        raise BenchError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    spec = get_env_spec(env)
    arrays = collect_transitions(env, None, steps=steps, seed=seed, progress=progress)
    attrs: dict[str, str | int | float] = {
        "env": spec.name,
        "source": "local",
        "policy": "random",
        "seed": int(seed),
        "env_id": spec.env_id,
        "generator": "bench.data.generate",
    }
    write_d4rl_hdf5(out, arrays, attrs)
    return out


def _rollout(
    gym_env: gym.Env, policy: Policy | None, *, steps: int, seed: int, progress: bool, label: str
) -> dict[str, np.ndarray]:
    """The stepping loop behind `collect_transitions`, writing into preallocated arrays."""
    obs_dim = gym_env.observation_space.shape[0]
    action_space = gym_env.action_space
    sim = gym_env.unwrapped.data
    data = {
        "observations": np.empty((steps, obs_dim), dtype=np.float32),
        "actions": np.empty((steps, *action_space.shape), dtype=np.float32),
        "rewards": np.empty(steps, dtype=np.float32),
        "next_observations": np.empty((steps, obs_dim), dtype=np.float32),
        "terminals": np.zeros(steps, dtype=bool),
        "timeouts": np.zeros(steps, dtype=bool),
        "infos/qpos": np.empty((steps, sim.qpos.shape[0]), dtype=np.float32),
        "infos/qvel": np.empty((steps, sim.qvel.shape[0]), dtype=np.float32),
    }
    action_space.seed(seed)
    obs, _ = gym_env.reset(seed=seed)
    episode_return, finished_returns = 0.0, []
    bar = tqdm(total=steps, desc=f"{label} rollout", unit="step", disable=not progress)
    try:
        for i in range(steps):
            data["observations"][i] = obs
            data["infos/qpos"][i] = sim.qpos
            data["infos/qvel"][i] = sim.qvel
            action = _act(policy, obs, action_space)
            obs, reward, terminated, truncated, _ = gym_env.step(action)
            data["actions"][i] = action
            data["rewards"][i] = reward
            data["next_observations"][i] = obs
            data["terminals"][i] = terminated
            data["timeouts"][i] = truncated and not terminated
            episode_return += float(reward)
            bar.update(1)
            if terminated or truncated:
                finished_returns.append(episode_return)
                bar.set_postfix(
                    episodes=len(finished_returns),
                    last_return=f"{episode_return:.1f}",
                    mean_return=f"{np.mean(finished_returns):.1f}",
                    refresh=False,
                )
                episode_return = 0.0
                obs, _ = gym_env.reset()
    finally:
        bar.close()
    if not data["terminals"][-1]:
        data["timeouts"][-1] = True
    return data


def _act(policy: Policy | None, obs: np.ndarray, action_space: gym.spaces.Box) -> np.ndarray:
    """The policy's action for one raw observation (random if no policy), clipped to the action space."""
    if policy is None:
        return action_space.sample()
    action = np.asarray(policy(obs.astype(np.float32)), dtype=np.float32)
    if action.shape != action_space.shape:
        raise ValueError(f"policy returned an action of shape {action.shape}, expected {action_space.shape}")
    if not np.isfinite(action).all():
        raise BenchError("rollout: the policy returned a NaN or infinite action; check the behaviour policy")
    return np.clip(action, action_space.low, action_space.high)


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise BenchError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
