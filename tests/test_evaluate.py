"""Policy evaluation in Gymnasium MuJoCo v4: normalized scores, seeding, first-episode accounting."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bench.data.registry import get_env_spec, normalized_score
from bench.errors import BenchError
from bench.evaluate import EvaluationResult, evaluate_policy, make_env

# The zero action on Hopper-v4 falls over after 129 steps from seed 1 and stays up past 140 steps from
# seeds 0 and 2, so a 140-step limit gives both a terminated and two truncated episodes.
LIMIT = 140


def zero_policy(obs: np.ndarray) -> np.ndarray:
    return np.zeros((obs.shape[0], 3), dtype=np.float32)


def reference_episode(seed: int, max_episode_steps: int) -> tuple[float, int]:
    """Return and length of one zero-action Hopper episode, run by hand on a single environment."""
    env = make_env("hopper", max_episode_steps=max_episode_steps)
    env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(np.zeros(3, dtype=np.float32))
        total += float(reward)
        length += 1
        done = terminated or truncated
    env.close()
    return total, length


def test_normalized_score_uses_d4rl_reference_returns() -> None:
    assert normalized_score("hopper", 1000.0) == pytest.approx(31.34889040358868, rel=1e-9)
    assert normalized_score("hopper", -20.272305) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score("hopper", 3234.3) == pytest.approx(100.0, rel=1e-12)
    assert normalized_score("walker2d", 3000.0) == pytest.approx(65.31443872203333, rel=1e-9)
    scores = normalized_score("hopper", np.array([1000.0, 3234.3]))
    np.testing.assert_allclose(scores, [31.34889040358868, 100.0], rtol=1e-9)


def test_make_env_uses_the_v4_port_and_the_registry_limit() -> None:
    env = make_env("hopper")
    try:
        assert env.spec is not None
        assert env.spec.id == "Hopper-v4" == get_env_spec("hopper").env_id
        assert env.spec.max_episode_steps == 1000
        assert env.observation_space.shape == (11,)
        assert env.action_space.shape == (3,)
    finally:
        env.close()


def test_each_sub_env_contributes_exactly_its_first_episode() -> None:
    result = evaluate_policy("hopper", zero_policy, episodes=3, seed=0, max_episode_steps=LIMIT)
    expected = [reference_episode(seed, LIMIT) for seed in (0, 1, 2)]
    assert result.episodes == 3
    assert result.returns.dtype == np.float64
    assert result.lengths.tolist() == [length for _, length in expected]
    # One episode ended early (terminated), the others at the limit: all counted once.
    assert min(result.lengths) < LIMIT == max(result.lengths)
    np.testing.assert_array_equal(result.returns, [ret for ret, _ in expected])
    np.testing.assert_allclose(result.normalized_scores, normalized_score("hopper", result.returns))


def test_same_seed_same_returns_other_seed_other_returns() -> None:
    first = evaluate_policy("hopper", zero_policy, episodes=3, seed=0, max_episode_steps=LIMIT)
    again = evaluate_policy("hopper", zero_policy, episodes=3, seed=0, max_episode_steps=LIMIT)
    other = evaluate_policy("hopper", zero_policy, episodes=3, seed=7, max_episode_steps=LIMIT)
    np.testing.assert_array_equal(first.returns, again.returns)
    np.testing.assert_array_equal(first.lengths, again.lengths)
    assert np.all(np.isfinite(other.returns))
    assert not np.array_equal(first.returns, other.returns)


def test_policy_sees_normalized_float32_observations() -> None:
    mean = np.linspace(-1.0, 1.0, 11)
    std = np.linspace(0.5, 2.0, 11)
    seen: list[np.ndarray] = []

    def recording_policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs.copy())
        return zero_policy(obs)

    evaluate_policy("hopper", recording_policy, episodes=2, seed=3, state_mean=mean, state_std=std, max_episode_steps=5)
    assert len(seen) == 5
    assert seen[0].shape == (2, 11) and seen[0].dtype == np.float32
    for i in range(2):
        env = make_env("hopper")
        raw, _ = env.reset(seed=3 + i)
        env.close()
        np.testing.assert_allclose(seen[0][i], (raw - mean) / std, rtol=1e-6, atol=1e-6)


def test_evaluation_is_quiet_about_v4(capfd: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_policy("hopper", zero_policy, episodes=1, max_episode_steps=2)
        # HalfCheetah-v4's model makes MuJoCo's compiler print a deprecation to stderr.
        evaluate_policy("halfcheetah", lambda obs: np.zeros((2, 6)), episodes=2, max_episode_steps=2)
    assert not [w for w in caught if "out of date" in str(w.message) or "MuJoCo" in str(w.message)]
    assert "settotalmass" not in capfd.readouterr().err


def test_evaluation_result_summaries() -> None:
    result = EvaluationResult(
        returns=np.array([1.0, 3.0]), lengths=np.array([10, 20]), normalized_scores=np.array([40.0, 60.0])
    )
    assert result.episodes == 2
    assert result.mean_return == 2.0
    assert result.mean_normalized_score == 50.0
    assert result.std_normalized_score == 10.0


def test_bad_policies_and_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        evaluate_policy("hopper", lambda obs: np.zeros(3), episodes=2, max_episode_steps=2)
    with pytest.raises(BenchError, match="NaN"):
        evaluate_policy("hopper", lambda obs: np.full((1, 3), np.nan), episodes=1, max_episode_steps=2)
    with pytest.raises(BenchError, match="episodes"):
        evaluate_policy("hopper", zero_policy, episodes=0)
    with pytest.raises(ValueError, match="together"):
        evaluate_policy("hopper", zero_policy, episodes=1, state_mean=np.zeros(11))


@pytest.mark.parametrize("env_name", ["hopper", "walker2d", "halfcheetah"])
def test_the_registry_knows_each_environments_healthy_reward(env_name: str) -> None:
    # With a zero action there is no control cost, so a step's reward is the forward velocity plus the healthy
    # reward; the report takes the healthy reward out of a return to tell standing from moving (Table 7).
    env = make_env(env_name)
    try:
        env.reset(seed=0)
        for _ in range(5):
            _, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
            assert not terminated
            assert reward - info["x_velocity"] == pytest.approx(get_env_spec(env_name).healthy_reward, abs=1e-9)
    finally:
        env.close()
