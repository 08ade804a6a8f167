"""Rollout collection in D4RL's layout and the random-policy dataset file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from bench.data.generate import collect_transitions, generate_random_dataset
from bench.data.hdf5 import read_d4rl_arrays
from bench.data.loader import load_dataset
from bench.errors import BenchError

KEYS = {
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
    "infos/qpos",
    "infos/qvel",
}


def episode_ends(data: dict[str, np.ndarray]) -> np.ndarray:
    return np.flatnonzero(data["terminals"] | data["timeouts"])


def hopper_unhealthy(obs: np.ndarray) -> np.ndarray:
    """Hopper-v4's termination rule on observations (height, torso angle, state range)."""
    height, angle = obs[:, 0], obs[:, 1]
    return (height <= 0.7) | (np.abs(angle) >= 0.2) | (np.abs(obs[:, 1:]) >= 100.0).any(axis=1)


@pytest.fixture(scope="module")
def hopper_random() -> dict[str, np.ndarray]:
    return collect_transitions("hopper", None, steps=400, seed=0)


def test_layout_shapes_and_dtypes(hopper_random: dict[str, np.ndarray]) -> None:
    data = hopper_random
    assert set(data) == KEYS
    assert {len(v) for v in data.values()} == {400}
    assert data["observations"].shape == data["next_observations"].shape == (400, 11)
    assert data["actions"].shape == (400, 3)
    assert data["infos/qpos"].shape == data["infos/qvel"].shape == (400, 6)
    assert data["terminals"].dtype == data["timeouts"].dtype == np.bool_
    for key in ("observations", "actions", "rewards", "next_observations"):
        assert data[key].dtype == np.float32
    assert np.all(np.abs(data["actions"]) <= 1.0)


def test_terminals_exactly_where_hopper_fell(hopper_random: dict[str, np.ndarray]) -> None:
    data = hopper_random
    assert data["terminals"].sum() >= 3
    np.testing.assert_array_equal(data["terminals"], hopper_unhealthy(data["next_observations"]))
    # No 1000-step truncation in 400 steps: the only timeout is the stream's cut last step, if any.
    assert not data["timeouts"][:-1].any()
    assert data["terminals"][-1] or data["timeouts"][-1]


def test_next_observations_chain_within_episodes_and_reset_after(
    hopper_random: dict[str, np.ndarray],
) -> None:
    data = hopper_random
    obs, nxt = data["observations"], data["next_observations"]
    ends = episode_ends(data)
    inside = np.setdiff1d(np.arange(399), ends)
    np.testing.assert_array_equal(nxt[inside], obs[inside + 1])
    # After an end the next row is a fresh reset: Hopper starts at height 1.25 with noise 5e-3.
    starts = ends[ends < 399] + 1
    np.testing.assert_allclose(obs[starts, 0], 1.25, atol=6e-3)
    assert np.all(np.abs(obs[starts] - nxt[starts - 1]).max(axis=1) > 1e-3)
    # infos describe the simulator state behind each observation (Hopper's obs drops the x position).
    np.testing.assert_allclose(obs[:, :5], data["infos/qpos"][:, 1:], rtol=1e-6)


def test_time_limit_truncations_are_timeouts() -> None:
    data = collect_transitions("halfcheetah", None, steps=250, seed=1, max_episode_steps=100)
    assert not data["terminals"].any()
    assert np.flatnonzero(data["timeouts"]).tolist() == [99, 199, 249]
    np.testing.assert_array_equal(data["next_observations"][:99], data["observations"][1:100])


def test_stream_ending_on_a_terminal_is_not_a_timeout(hopper_random: dict[str, np.ndarray]) -> None:
    last_terminal = int(np.flatnonzero(hopper_random["terminals"])[0])
    data = collect_transitions("hopper", None, steps=last_terminal + 1, seed=0)
    assert data["terminals"][-1] and not data["timeouts"].any()


def test_same_seed_same_stream_other_seed_other_stream(hopper_random: dict[str, np.ndarray]) -> None:
    again = collect_transitions("hopper", None, steps=400, seed=0)
    other = collect_transitions("hopper", None, steps=400, seed=1)
    for key in KEYS:
        np.testing.assert_array_equal(again[key], hopper_random[key])
    assert not np.array_equal(other["actions"], hopper_random["actions"])


def test_policy_gets_raw_observations_and_actions_are_clipped() -> None:
    seen: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs)
        return np.array([2.0, -3.0, 0.5])

    data = collect_transitions("hopper", policy, steps=10, seed=0)
    assert seen[0].shape == (11,) and seen[0].dtype == np.float32
    np.testing.assert_array_equal(np.stack(seen), data["observations"])
    np.testing.assert_array_equal(data["actions"], np.tile([1.0, -1.0, 0.5], (10, 1)))


def test_collect_refuses_bad_arguments() -> None:
    with pytest.raises(BenchError, match="steps"):
        collect_transitions("hopper", None, steps=0, seed=0)
    with pytest.raises(ValueError, match="shape"):
        collect_transitions("hopper", lambda obs: np.zeros(2), steps=2, seed=0)


def test_random_dataset_file_loads_and_is_reproducible(tmp_path: Path) -> None:
    path = generate_random_dataset("hopper", tmp_path / "a" / "hopper-random.hdf5", steps=300, seed=5)
    twin = generate_random_dataset("hopper", tmp_path / "b" / "hopper-random.hdf5", steps=300, seed=5)
    other = generate_random_dataset("hopper", tmp_path / "c" / "hopper-random.hdf5", steps=300, seed=6)
    assert path.read_bytes() == twin.read_bytes()
    assert path.read_bytes() != other.read_bytes()

    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    assert attrs["env"] == "hopper"
    assert attrs["source"] == "local"
    assert attrs["policy"] == "random"
    assert int(attrs["seed"]) == 5
    assert attrs["env_id"] == "Hopper-v4"
    assert attrs["generator"] == "bench.data.generate"

    stored = read_d4rl_arrays(path, expected_obs_dim=11, expected_act_dim=3)
    expected = collect_transitions("hopper", None, steps=300, seed=5)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(stored[key], expected[key])

    dataset = load_dataset(f"local:{path}")
    assert dataset.env.name == "hopper" and dataset.source == "local"
    # d4rl's rule: rows 0..N-2 start a transition unless cut by a timeout.
    assert len(dataset) == int((~expected["timeouts"][:-1]).sum())


def test_random_dataset_refuses_to_overwrite(tmp_path: Path) -> None:
    path = generate_random_dataset("hopper", tmp_path / "hopper-random.hdf5", steps=20, seed=0, progress=False)
    with pytest.raises(BenchError) as excinfo:
        generate_random_dataset("hopper", path, steps=20, seed=1, progress=False)
    assert str(path) in str(excinfo.value) and "overwrite=True" in str(excinfo.value)
    generate_random_dataset("hopper", path, steps=20, seed=1, progress=False, overwrite=True)
    assert read_d4rl_arrays(path)["observations"].shape == (20, 11)
    with pytest.raises(BenchError, match=r"\.hdf5"):
        generate_random_dataset("hopper", tmp_path / "hopper-random.h5", steps=20, seed=0)
