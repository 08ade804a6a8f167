"""The Q-learning view against literal ports of d4rl's and CORL's loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bench.data.qlearning import (
    MissingTimeoutsWarning,
    Transitions,
    qlearning_transitions,
    return_range,
    reward_range_normalization,
    state_normalization,
)
from bench.errors import BenchError
from tests.d4rl_files import make_d4rl_arrays


def d4rl_loop(dataset: dict, terminate_on_end: bool = False, max_episode_steps: int = 1000) -> dict:
    """d4rl.qlearning_dataset's loop, line for line (env._max_episode_steps -> max_episode_steps)."""
    n = dataset["rewards"].shape[0]
    obs_, next_obs_, action_, reward_, done_ = [], [], [], [], []
    use_timeouts = "timeouts" in dataset
    episode_step = 0
    for i in range(n - 1):
        obs = dataset["observations"][i].astype(np.float32)
        new_obs = dataset["observations"][i + 1].astype(np.float32)
        action = dataset["actions"][i].astype(np.float32)
        reward = dataset["rewards"][i].astype(np.float32)
        done_bool = bool(dataset["terminals"][i])
        if use_timeouts:  # noqa: SIM108 (kept as d4rl wrote it)
            final_timestep = dataset["timeouts"][i]
        else:
            final_timestep = episode_step == max_episode_steps - 1
        if (not terminate_on_end) and final_timestep:
            episode_step = 0
            continue
        if done_bool or final_timestep:
            episode_step = 0
        obs_.append(obs)
        next_obs_.append(new_obs)
        action_.append(action)
        reward_.append(reward)
        done_.append(done_bool)
        episode_step += 1
    obs_dim, act_dim = dataset["observations"].shape[1], dataset["actions"].shape[1]
    return {
        "observations": np.array(obs_).reshape(-1, obs_dim),
        "actions": np.array(action_).reshape(-1, act_dim),
        "next_observations": np.array(next_obs_).reshape(-1, obs_dim),
        "rewards": np.array(reward_, dtype=np.float32),
        "terminals": np.array(done_, dtype=bool),
    }


def corl_return_reward_range(dataset: dict, max_episode_steps: int) -> tuple[float, float]:
    """CORL cql.py's return_reward_range, line for line."""
    returns, lengths = [], []
    ep_ret, ep_len = 0.0, 0
    for r, d in zip(dataset["rewards"], dataset["terminals"], strict=True):
        ep_ret += float(r)
        ep_len += 1
        if d or ep_len == max_episode_steps:
            returns.append(ep_ret)
            lengths.append(ep_len)
            ep_ret, ep_len = 0.0, 0
    lengths.append(ep_len)
    assert sum(lengths) == len(dataset["rewards"])
    return min(returns), max(returns)


def assert_same(t: Transitions, ref: dict) -> None:
    np.testing.assert_array_equal(t.observations, ref["observations"])
    np.testing.assert_array_equal(t.actions, ref["actions"])
    np.testing.assert_array_equal(t.next_observations, ref["next_observations"])
    np.testing.assert_array_equal(t.rewards, ref["rewards"])
    np.testing.assert_array_equal(t.dones, ref["terminals"].astype(np.float32))
    for array in (t.observations, t.actions, t.next_observations, t.rewards, t.dones):
        assert array.dtype == np.float32
    assert t.rewards.ndim == 1 and t.dones.ndim == 1
    assert len(t) == len(ref["rewards"])


@pytest.mark.parametrize("terminate_on_end", [False, True])
def test_matches_d4rl_on_terminal_and_timeout_episodes(terminate_on_end: bool) -> None:
    arrays = make_d4rl_arrays(4, 2, [7, 5, 9, 1, 6, 3], terminal_episodes={1, 3, 5}, seed=3)
    t = qlearning_transitions(arrays, terminate_on_end=terminate_on_end)
    assert_same(t, d4rl_loop(arrays, terminate_on_end))


def test_timeout_transitions_are_dropped_and_the_last_row_never_starts_one() -> None:
    # Episode 0: 4 steps ending by timeout (index 3); episode 1: 3 steps ending by terminal (index 6).
    arrays = make_d4rl_arrays(2, 1, [4, 3], terminal_episodes={1})
    t = qlearning_transitions(arrays)
    kept = [0, 1, 2, 4, 5]  # 3 is a timeout, 6 is the last row
    np.testing.assert_array_equal(t.observations, arrays["observations"][kept])
    np.testing.assert_array_equal(t.next_observations, arrays["observations"][[k + 1 for k in kept]])
    np.testing.assert_array_equal(t.dones, [0, 0, 0, 0, 0])
    # The file's next_observations is ignored: d4rl pairs obs[i] with obs[i+1] whatever the file says.
    arrays["next_observations"] = np.full_like(arrays["next_observations"], 99.0)
    np.testing.assert_array_equal(qlearning_transitions(arrays).next_observations, t.next_observations)


def test_terminal_transition_is_kept_with_done() -> None:
    arrays = make_d4rl_arrays(2, 1, [3, 4], terminal_episodes={0})
    t = qlearning_transitions(arrays)
    np.testing.assert_array_equal(t.dones, [0, 0, 1, 0, 0, 0])
    assert len(t) == 6  # 7 rows: index 6 (timeout and last row) never starts a transition


@pytest.mark.parametrize("terminate_on_end", [False, True])
def test_fallback_without_timeouts_matches_d4rl_and_warns(terminate_on_end: bool) -> None:
    # Lengths chosen around multiples of the episode length 5, so that terminals fall on the counter's
    # final timestep with the counter starting at 0 and at 1.
    lengths = [5, 4, 10, 9, 3, 12, 5, 6, 14, 1, 2]
    arrays = make_d4rl_arrays(3, 2, lengths, terminal_episodes=[True] * len(lengths), with_timeouts=False)
    with pytest.warns(MissingTimeoutsWarning, match="every 5 steps"):
        t = qlearning_transitions(arrays, terminate_on_end=terminate_on_end, default_episode_length=5)
    assert_same(t, d4rl_loop(arrays, terminate_on_end, max_episode_steps=5))


def test_fallback_matches_d4rl_on_random_streams() -> None:
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTimeoutsWarning)
        for _ in range(400):
            n = int(rng.integers(1, 50))
            length = int(rng.integers(2, 7))
            arrays = {
                "observations": rng.normal(size=(n, 2)).astype(np.float32),
                "actions": rng.normal(size=(n, 1)).astype(np.float32),
                "rewards": rng.normal(size=n).astype(np.float32),
                "terminals": rng.random(n) < rng.choice([0.0, 0.1, 0.3, 1.0]),
            }
            for terminate_on_end in (False, True):
                t = qlearning_transitions(arrays, terminate_on_end=terminate_on_end, default_episode_length=length)
                assert_same(t, d4rl_loop(arrays, terminate_on_end, max_episode_steps=length))


def test_fallback_default_length_is_1000() -> None:
    arrays = make_d4rl_arrays(2, 1, [2500], terminal_episodes=set(), with_timeouts=False)
    with pytest.warns(MissingTimeoutsWarning):
        t = qlearning_transitions(arrays)
    assert_same(t, d4rl_loop(arrays))
    assert len(t) == 2499 - 2  # indices 999 and 1999 dropped


def test_tiny_inputs() -> None:
    one = make_d4rl_arrays(2, 1, [1])
    assert len(qlearning_transitions(one)) == 0
    assert qlearning_transitions(one).observations.shape == (0, 2)
    with pytest.raises(ValueError, match="at least 2"):
        qlearning_transitions(one, default_episode_length=1)


def test_state_normalization_is_corl_compute_mean_std() -> None:
    obs = np.random.default_rng(2).normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    obs[:, 3] = 7.0  # a constant feature: std is exactly eps
    mean, std = state_normalization(obs)
    np.testing.assert_array_equal(mean, obs.mean(0))
    np.testing.assert_array_equal(std, obs.std(0) + 1e-3)
    assert mean.dtype == std.dtype == np.float32
    assert std[3] == pytest.approx(1e-3)
    _, std_eps = state_normalization(obs, eps=0.5)
    assert std_eps[3] == pytest.approx(0.5)


@pytest.mark.parametrize("max_steps", [4, 7, 1000])
def test_return_range_matches_corl(max_steps: int) -> None:
    arrays = make_d4rl_arrays(2, 1, [9, 4, 12, 8, 3, 15, 5], terminal_episodes={1, 4}, seed=5)
    t = qlearning_transitions(arrays)
    view = {"rewards": t.rewards, "terminals": t.dones}
    # With 1000 only the terminal-ended pieces close: timed-out episodes merge and never reach 1000 steps.
    expected = corl_return_reward_range(view, max_steps)
    assert return_range(t.rewards, t.dones, max_steps) == pytest.approx(expected, rel=1e-12)


def test_return_range_on_random_streams() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        rewards = rng.normal(size=n).astype(np.float32)
        dones = (rng.random(n) < rng.choice([0.05, 0.3])).astype(np.float32)
        max_steps = int(rng.integers(1, 8))
        view = {"rewards": rewards, "terminals": dones}
        try:
            expected = corl_return_reward_range(view, max_steps)
        except ValueError:  # min() of no episode
            with pytest.raises(BenchError, match="no complete episode"):
                return_range(rewards, dones, max_steps)
            continue
        assert return_range(rewards, dones, max_steps) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_reward_range_normalization_matches_corl_modify_reward() -> None:
    arrays = make_d4rl_arrays(2, 1, [30, 12, 40, 25], terminal_episodes={1, 3}, seed=8)
    t = qlearning_transitions(arrays)
    scaled = reward_range_normalization(t, max_episode_steps=20)
    min_ret, max_ret = corl_return_reward_range({"rewards": t.rewards, "terminals": t.dones}, 20)
    expected = t.rewards.copy()
    expected /= max_ret - min_ret
    expected *= 20
    np.testing.assert_array_equal(scaled.rewards, expected)
    assert scaled.rewards.dtype == np.float32
    np.testing.assert_array_equal(scaled.observations, t.observations)
    assert not np.array_equal(t.rewards, scaled.rewards)  # the input is untouched
    biased = reward_range_normalization(t, max_episode_steps=20, reward_scale=5.0, reward_bias=-1.0)
    np.testing.assert_allclose(biased.rewards, expected * 5.0 - 1.0, rtol=1e-6)


def test_reward_range_normalization_refuses_degenerate_data() -> None:
    t = Transitions(
        observations=np.zeros((3, 1), np.float32),
        actions=np.zeros((3, 1), np.float32),
        rewards=np.ones(3, np.float32),
        next_observations=np.zeros((3, 1), np.float32),
        dones=np.zeros(3, np.float32),
    )
    with pytest.raises(BenchError, match="no complete episode"):
        reward_range_normalization(t, max_episode_steps=1000)
    with pytest.raises(BenchError, match="range is zero"):
        reward_range_normalization(t, max_episode_steps=1)
