"""Small D4RL-layout arrays and HDF5 files for tests (imported by several test modules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np

from bench.data.hdf5 import write_d4rl_hdf5
from bench.data.registry import get_env_spec


def _terminal_flags(episode_lengths: Sequence[int], terminal_episodes: AbstractSet[int] | Sequence[bool]) -> list[bool]:
    if isinstance(terminal_episodes, AbstractSet):
        return [i in terminal_episodes for i in range(len(episode_lengths))]
    flags = [bool(t) for t in terminal_episodes]
    if len(flags) != len(episode_lengths):
        raise ValueError(f"{len(flags)} terminal flags for {len(episode_lengths)} episodes")
    return flags


def make_d4rl_arrays(
    obs_dim: int,
    act_dim: int,
    episode_lengths: Sequence[int],
    terminal_episodes: AbstractSet[int] | Sequence[bool] = frozenset(),
    seed: int = 0,
    with_timeouts: bool = True,
) -> dict[str, np.ndarray]:
    """Episodes laid end to end as in a D4RL file.

    Episode e has `episode_lengths[e]` steps and ends by a terminal (terminals[last] = True) if it is in
    `terminal_episodes` (a set of episode indices, or one bool per episode), else by a time limit
    (timeouts[last] = True). next_observations holds each step's true successor, including the final
    observation of the episode, which the next row of `observations` does not hold.
    """
    flags = _terminal_flags(episode_lengths, terminal_episodes)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
    }
    for length, terminal in zip(episode_lengths, flags, strict=True):
        if length < 1:
            raise ValueError(f"episode length must be at least 1, got {length}")
        states = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        end = np.zeros(length, dtype=bool)
        end[-1] = True
        parts["observations"].append(states[:-1])
        parts["next_observations"].append(states[1:])
        parts["actions"].append(rng.uniform(-1.0, 1.0, size=(length, act_dim)).astype(np.float32))
        parts["rewards"].append(rng.normal(1.0, 0.5, size=length).astype(np.float32))
        parts["terminals"].append(end if terminal else np.zeros(length, dtype=bool))
        parts["timeouts"].append(np.zeros(length, dtype=bool) if terminal else end)
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    if not with_timeouts:
        del arrays["timeouts"]
    return arrays


def write_small_d4rl_file(
    path: Path,
    env: str = "hopper",
    episode_lengths: Sequence[int] = (60, 45, 80, 35),
    terminal_episodes: AbstractSet[int] | Sequence[bool] = frozenset({1, 3}),
    seed: int = 0,
    with_timeouts: bool = True,
    attrs: Mapping[str, str | int | float] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a small D4RL-layout file with `env`'s observation and action sizes and return its path.

    `arrays` replaces the generated arrays (to write a deliberately broken file); `attrs` defaults to
    {"env": env, "source": "test"}.
    """
    spec = get_env_spec(env)
    if arrays is None:
        arrays = make_d4rl_arrays(
            spec.obs_dim,
            spec.act_dim,
            episode_lengths,
            terminal_episodes,
            seed=seed,
            with_timeouts=with_timeouts,
        )
    path = Path(path)
    write_d4rl_hdf5(path, arrays, {"env": spec.name, "source": "test"} if attrs is None else attrs)
    return path
