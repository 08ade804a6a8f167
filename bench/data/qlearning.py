"""The Q-learning view of a D4RL-layout dataset and CORL's state and reward normalizations.

`qlearning_transitions` reproduces d4rl's `qlearning_dataset` (d4rl/__init__.py) exactly, vectorized;
`state_normalization` and `reward_range_normalization` reproduce CORL's `compute_mean_std` and
`modify_reward` (algorithms/offline/cql.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError


class MissingTimeoutsWarning(UserWarning):
    """A dataset without `timeouts`: episodes are cut by d4rl's fixed-length fallback."""


@dataclass
class Transitions:
    """(s, a, r, s', done) arrays, float32; rewards and dones are 1-D."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    dones: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    def sha256(self) -> str:
        """SHA-256 of the five arrays (dtype, shape and bytes): which data a run trained on, whatever the file."""
        digest = hashlib.sha256()
        for item in dataclasses.fields(self):
            array = np.ascontiguousarray(getattr(self, item.name))
            digest.update(f"{item.name}:{array.dtype.str}:{array.shape};".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


def _fallback_final_timesteps(terminals: np.ndarray, n: int, episode_length: int, terminate_on_end: bool) -> np.ndarray:
    """d4rl's `final_timestep = (episode_step == episode_length - 1)` for i in 0..n-1, without a loop.

    d4rl's counter: a skipped final timestep sets episode_step to 0 for the next index; a kept terminal (or,
    with terminate_on_end, a kept final timestep) sets it to 0 and then increments it, so the next episode
    starts at 1 and is cut one step early. Between terminals the counter only grows, so each
    terminal-delimited segment k has a start value v_k in {0, 1} and final timesteps at offsets
    L-1-v_k, then every L steps (skip resets to 0) or every L-1 steps (terminate_on_end resets to 1).
    """
    big_l = episode_length
    term_idx = np.flatnonzero(terminals[:n])
    ends = term_idx if len(term_idx) and term_idx[-1] == n - 1 else np.append(term_idx, n - 1)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1

    start_value = np.ones(len(starts), dtype=np.int64)
    start_value[0] = 0
    if not terminate_on_end and len(starts) > 1:
        # The segment after k starts at 0 only when its terminal was itself skipped as a final timestep:
        # with v_k = 0 that happens iff len % L == 0 (v stays), with v_k = 1 iff (len + 1) % L == 0
        # (v flips); otherwise the next start is 1 whatever v_k was.
        keeps = lengths[:-1] % big_l == 0
        flips = (lengths[:-1] + 1) % big_l == 0
        resets = ~(keeps | flips)
        k = np.arange(1, len(starts))
        last_reset = np.maximum.accumulate(np.where(resets, np.arange(len(resets)), -1))
        flip_count = np.concatenate(([0], np.cumsum(flips)))
        base = (last_reset >= 0).astype(np.int64)
        parity = (flip_count[k] - flip_count[last_reset + 1]) % 2
        start_value[1:] = base ^ parity

    period = big_l - 1 if terminate_on_end else big_l
    segment_of = np.repeat(np.arange(len(starts)), lengths)
    offset = np.arange(n) - starts[segment_of]
    first = (big_l - 1 - start_value)[segment_of]
    return (offset >= first) & ((offset - first) % period == 0)


def qlearning_transitions(
    arrays: Mapping[str, np.ndarray],
    *,
    terminate_on_end: bool = False,
    default_episode_length: int = 1000,
    source: str = "dataset",
) -> Transitions:
    """d4rl's `qlearning_dataset`: transition i pairs observations[i] with observations[i+1].

    For i in 0..N-2 (the last row never starts a transition): where `timeouts[i]` is true the transition is
    dropped (obs[i+1] starts a new episode) unless `terminate_on_end`; done = terminals[i]. The file's
    `next_observations` is ignored, as d4rl ignores it. Without a `timeouts` key an episode is cut every
    `default_episode_length` steps by d4rl's episode_step counter, with a MissingTimeoutsWarning naming
    `source`.
    """
    if default_episode_length < 2:
        raise ValueError(f"default_episode_length must be at least 2, got {default_episode_length}")
    observations = np.asarray(arrays["observations"])
    n = max(len(observations) - 1, 0)
    terminals = np.asarray(arrays["terminals"]).astype(bool)[:n]

    if "timeouts" in arrays:
        final = np.asarray(arrays["timeouts"]).astype(bool)[:n]
    else:
        warnings.warn(
            f"{source} has no 'timeouts' key: episodes are cut every {default_episode_length} steps "
            f"(d4rl's fallback for old files), which is wrong for episodes of other lengths",
            MissingTimeoutsWarning,
            stacklevel=2,
        )
        final = (
            _fallback_final_timesteps(terminals, n, default_episode_length, terminate_on_end)
            if n
            else np.zeros(0, dtype=bool)
        )
    keep = np.ones(n, dtype=bool) if terminate_on_end else ~final

    return Transitions(
        observations=observations[:n][keep].astype(np.float32),
        actions=np.asarray(arrays["actions"])[:n][keep].astype(np.float32),
        rewards=np.asarray(arrays["rewards"]).reshape(-1)[:n][keep].astype(np.float32),
        next_observations=observations[1 : n + 1][keep].astype(np.float32),
        dones=terminals[keep].astype(np.float32),
    )


def state_normalization(observations: np.ndarray, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """CORL's `compute_mean_std`: per-feature mean and std (+ eps) over the dataset, float32."""
    mean = observations.mean(0)
    std = observations.std(0) + eps
    return mean.astype(np.float32), std.astype(np.float32)


def return_range(rewards: np.ndarray, dones: np.ndarray, max_episode_steps: int = 1000) -> tuple[float, float]:
    """CORL's `return_reward_range`: min and max return over the episodes of the Q-learning view.

    An episode closes at a done or after `max_episode_steps` steps, whichever is first; a trailing
    incomplete piece is not counted. Because the view has dropped the timeout transitions, these "episodes"
    need not line up with the real ones; CORL splits them this way, so this does too.
    """
    n = len(rewards)
    done = np.asarray(dones).astype(bool)
    if n == 0:
        raise BenchError("cannot normalize rewards: the dataset has no transitions")
    segment_start = np.concatenate(([True], done[:-1]))
    segment_first = np.flatnonzero(segment_start)
    offset = np.arange(n) - segment_first[np.cumsum(segment_start) - 1]
    starts = np.flatnonzero(offset % max_episode_steps == 0)
    ends = np.append(starts[1:], n) - 1
    sums = np.add.reduceat(np.asarray(rewards, dtype=np.float64), starts)
    complete = done[ends] | (ends - starts + 1 == max_episode_steps)
    if not complete.any():
        raise BenchError(
            f"cannot normalize rewards: no complete episode (no done and fewer than {max_episode_steps} transitions)"
        )
    returns = sums[complete]
    return float(returns.min()), float(returns.max())


def reward_range_normalization(
    transitions: Transitions,
    max_episode_steps: int = 1000,
    *,
    reward_scale: float = 1.0,
    reward_bias: float = 0.0,
) -> Transitions:
    """CORL's `modify_reward` for gym-mujoco: rewards * max_episode_steps / (max_return - min_return).

    The returns come from `return_range`. CORL applies it when its `normalize_reward` flag is on: among
    the gym-mujoco v2 CQL configs (configs/offline/cql/<env>/<level>_v2.yaml) only hopper-medium sets
    `normalize_reward: true`; the other medium, medium-replay and medium-expert configs leave it false.
    Newer CORL versions then apply `rewards * reward_scale + reward_bias` (defaults 1 and 0 here).
    Returns new Transitions; the input is not modified.
    """
    min_ret, max_ret = return_range(transitions.rewards, transitions.dones, max_episode_steps)
    if max_ret == min_ret:
        raise BenchError(f"cannot normalize rewards: every episode has the same return ({min_ret}), the range is zero")
    rewards = transitions.rewards.astype(np.float32, copy=True)
    # Same two in-place float32 operations as CORL, so the rounding matches.
    rewards /= max_ret - min_ret
    rewards *= max_episode_steps
    if reward_scale != 1.0 or reward_bias != 0.0:
        rewards = (rewards * reward_scale + reward_bias).astype(np.float32)
    return dataclasses.replace(transitions, rewards=rewards)
