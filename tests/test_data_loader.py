"""HDF5 writing/validation and `load_dataset` for the d4rl:, local: and minari: sources."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from bench.data.hdf5 import read_attrs, read_d4rl_arrays, read_shapes, write_d4rl_hdf5
from bench.data.loader import OfflineDataset, load_dataset
from bench.data.qlearning import (
    MissingTimeoutsWarning,
    qlearning_transitions,
    reward_range_normalization,
    state_normalization,
)
from bench.data.registry import ENVS
from bench.errors import BenchError
from tests.d4rl_files import corrupt_tail, make_d4rl_arrays, write_small_d4rl_file


def hopper_arrays(**changes: np.ndarray) -> dict[str, np.ndarray]:
    arrays = make_d4rl_arrays(11, 3, [20, 15, 25], terminal_episodes={1})
    arrays.update(changes)
    return arrays


# --- writing -------------------------------------------------------------------------------------------


def test_write_read_roundtrip_with_dtypes_groups_and_attrs(tmp_path: Path) -> None:
    arrays = hopper_arrays()
    arrays["observations"] = arrays["observations"].astype(np.float64)
    arrays["terminals"] = arrays["terminals"].astype(np.float32)
    arrays["infos/qpos"] = np.arange(60 * 6, dtype=np.float64).reshape(60, 6)
    path = tmp_path / "sub" / "hopper-x.hdf5"
    write_d4rl_hdf5(path, arrays, {"env": "hopper", "source": "local", "policy": "sac", "seed": 3})
    with h5py.File(path, "r") as f:
        assert f["observations"].dtype == np.float32
        assert f["terminals"].dtype == np.bool_ and f["timeouts"].dtype == np.bool_
        assert isinstance(f["infos"], h5py.Group) and f["infos/qpos"].dtype == np.float64
    assert read_attrs(path) == {"env": "hopper", "source": "local", "policy": "sac", "seed": 3}
    back = read_d4rl_arrays(path, expected_obs_dim=11, expected_act_dim=3, include_extra=True)
    np.testing.assert_array_equal(back["observations"], arrays["observations"].astype(np.float32))
    np.testing.assert_array_equal(back["terminals"], arrays["terminals"].astype(bool))
    np.testing.assert_array_equal(back["infos/qpos"], arrays["infos/qpos"])
    assert "infos/qpos" not in read_d4rl_arrays(path)
    assert read_shapes(path)["observations"] == (60, 11)
    assert [p.name for p in path.parent.iterdir()] == ["hopper-x.hdf5"]  # no temp file left


def test_write_is_byte_identical_when_repeated(tmp_path: Path) -> None:
    arrays = hopper_arrays()
    arrays["infos/qpos"] = np.ones((60, 6), np.float32)
    attrs = {"env": "hopper", "source": "local", "policy": "medium", "seed": 1}
    write_d4rl_hdf5(tmp_path / "a.hdf5", arrays, attrs)
    time.sleep(1.1)  # HDF5 timestamps have one-second resolution
    write_d4rl_hdf5(tmp_path / "b.hdf5", arrays, attrs)
    assert (tmp_path / "a.hdf5").read_bytes() == (tmp_path / "b.hdf5").read_bytes()


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x.hdf5"
    with pytest.raises(TypeError):
        write_d4rl_hdf5(target, {**hopper_arrays(), "infos/bad": np.array([object()], dtype=object)})
    assert list(tmp_path.iterdir()) == []


# --- validation ----------------------------------------------------------------------------------------


def broken_copy(good: Path, bad: Path, damage: str) -> Path:
    data = good.read_bytes()
    bad.write_bytes(data[:3000] if damage == "truncated" else corrupt_tail(data, keep=0.4, seed=0))
    return bad


@pytest.mark.parametrize("damage", ["truncated", "random tail"])
def test_broken_file(tmp_path: Path, damage: str) -> None:
    bad = broken_copy(write_small_d4rl_file(tmp_path / "good.hdf5"), tmp_path / "hopper_medium-v2.hdf5", damage)
    for read in (read_d4rl_arrays, read_shapes):
        with pytest.raises(BenchError) as excinfo:
            read(bad)
        message = str(excinfo.value)
        assert str(bad) in message and "corrupt or incomplete" in message and "delete it" in message
        assert "\n" not in message
    with pytest.raises(BenchError, match="corrupt or incomplete"):
        load_dataset("d4rl:hopper-medium-v2", cache_dir=tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no such dataset file"):
        read_d4rl_arrays(tmp_path / "nope.hdf5")


def test_missing_required_keys(tmp_path: Path) -> None:
    arrays = hopper_arrays()
    del arrays["rewards"], arrays["terminals"]
    path = write_small_d4rl_file(tmp_path / "m.hdf5", arrays=arrays)
    with pytest.raises(BenchError) as excinfo:
        read_d4rl_arrays(path)
    message = str(excinfo.value)
    assert str(path) in message and "rewards, terminals" in message


def test_mismatched_lengths(tmp_path: Path) -> None:
    arrays = hopper_arrays()
    arrays["actions"] = arrays["actions"][:-2]
    path = write_small_d4rl_file(tmp_path / "l.hdf5", arrays=arrays)
    with pytest.raises(BenchError) as excinfo:
        read_d4rl_arrays(path)
    message = str(excinfo.value)
    assert str(path) in message and "'actions' has 58 rows" in message and "'observations' has 60" in message


@pytest.mark.parametrize(
    ("key", "index", "value", "where"),
    [("rewards", 7, np.nan, "index 7"), ("observations", 12, np.inf, "index 12 (column 4)")],
)
def test_non_finite_values(tmp_path: Path, key: str, index: int, value: float, where: str) -> None:
    arrays = hopper_arrays()
    if arrays[key].ndim == 1:
        arrays[key][index] = value
    else:
        arrays[key][index, 4] = value
    arrays[key][index + 3] = value  # a later bad row: the first one is reported
    path = write_small_d4rl_file(tmp_path / "n.hdf5", arrays=arrays)
    with pytest.raises(BenchError) as excinfo:
        read_d4rl_arrays(path)
    message = str(excinfo.value)
    assert str(path) in message and f"'{key}'" in message and where in message


def test_wrong_sizes_for_the_dataset(tmp_path: Path) -> None:
    path = write_small_d4rl_file(tmp_path / "w.hdf5", env="walker2d")
    with pytest.raises(BenchError) as excinfo:
        read_d4rl_arrays(path, expected_obs_dim=11, expected_act_dim=3)
    message = str(excinfo.value)
    assert str(path) in message and "'observations'" in message and "size 17, expected 11" in message
    with pytest.raises(BenchError, match="'actions' has action size 6, expected 3"):
        read_d4rl_arrays(path, expected_obs_dim=17, expected_act_dim=3)


def test_bad_shapes_and_empty(tmp_path: Path) -> None:
    path = write_small_d4rl_file(tmp_path / "s.hdf5", arrays=hopper_arrays(rewards=np.zeros((60, 2), np.float32)))
    with pytest.raises(BenchError, match="'rewards' must be 1-D"):
        read_d4rl_arrays(path)
    column = write_small_d4rl_file(tmp_path / "c.hdf5", arrays=hopper_arrays(rewards=np.zeros((60, 1), np.float32)))
    assert read_d4rl_arrays(column)["rewards"].shape == (60,)
    empty = {k: v[:0] for k, v in hopper_arrays().items()}
    with pytest.raises(BenchError, match="empty"):
        read_d4rl_arrays(write_small_d4rl_file(tmp_path / "e.hdf5", arrays=empty))


# --- d4rl: ---------------------------------------------------------------------------------------------


def test_load_d4rl_from_the_cache(tmp_path: Path) -> None:
    path = write_small_d4rl_file(tmp_path / "hopper_medium-v2.hdf5", env="hopper")
    dataset = load_dataset("d4rl:hopper-medium-v2", cache_dir=tmp_path)
    assert isinstance(dataset, OfflineDataset)
    assert (dataset.name, dataset.source, dataset.path) == ("d4rl:hopper-medium-v2", "d4rl", path)
    assert dataset.env is ENVS["hopper"]
    arrays = read_d4rl_arrays(path)
    expected = qlearning_transitions(arrays)
    np.testing.assert_array_equal(dataset.transitions.observations, expected.observations)
    # 220 rows: the last row and the timeouts before it (episodes 0 and 2) start no transition.
    assert len(dataset) == 220 - 1 - 2
    mean, std = state_normalization(expected.observations)
    np.testing.assert_array_equal(dataset.state_mean, mean)
    np.testing.assert_array_equal(dataset.state_std, std)
    assert dataset.state_mean.dtype == np.float32
    assert dataset.attrs["env"] == "hopper"


def test_load_d4rl_with_reward_normalization(tmp_path: Path) -> None:
    # Three terminal-ended episodes give three returns (timed-out ones would merge in CORL's split).
    write_small_d4rl_file(tmp_path / "hopper_medium-v2.hdf5", env="hopper", terminal_episodes={0, 1, 2})
    plain = load_dataset("d4rl:hopper-medium-v2", cache_dir=tmp_path)
    scaled = load_dataset("d4rl:hopper-medium-v2", cache_dir=tmp_path, normalize_reward=True)
    expected = reward_range_normalization(plain.transitions, 1000)
    np.testing.assert_array_equal(scaled.transitions.rewards, expected.rewards)
    np.testing.assert_array_equal(scaled.state_mean, plain.state_mean)


def test_missing_cached_file_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as excinfo:
        load_dataset("d4rl:walker2d-medium-replay-v2", cache_dir=tmp_path)
    message = str(excinfo.value)
    assert str(tmp_path / "walker2d_medium_replay-v2.hdf5") in message
    assert f"python -m bench datasets fetch walker2d-medium-replay-v2 --cache-dir {tmp_path}" in message
    assert "--base-url" in message


def test_d4rl_file_of_the_wrong_environment(tmp_path: Path) -> None:
    write_small_d4rl_file(tmp_path / "hopper_medium-v2.hdf5", env="halfcheetah")
    with pytest.raises(BenchError) as excinfo:
        load_dataset("d4rl:hopper-medium-v2", cache_dir=tmp_path)
    assert "hopper_medium-v2.hdf5" in str(excinfo.value) and "expected 11" in str(excinfo.value)


def test_unknown_d4rl_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="did you mean 'halfcheetah-medium-v2'"):
        load_dataset("d4rl:halfcheeta-medium-v2", cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["hopper-medium-v2", "gym:hopper-medium-v2", "d4rl:", "local"])
def test_names_need_a_source_prefix(name: str) -> None:
    with pytest.raises(BenchError) as excinfo:
        load_dataset(name)
    message = str(excinfo.value)
    assert "d4rl:" in message and "local:" in message and "minari:" in message


# --- local: --------------------------------------------------------------------------------------------


def test_load_local_by_name(tmp_path: Path) -> None:
    path = write_small_d4rl_file(
        tmp_path / "walker2d-medium.hdf5", env="walker2d", attrs={"env": "walker2d", "source": "local"}
    )
    dataset = load_dataset("local:walker2d-medium", local_dir=tmp_path)
    assert (dataset.source, dataset.path, dataset.env.name) == ("local", path, "walker2d")
    assert dataset.transitions.observations.shape[1] == 17


def test_local_name_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as excinfo:
        load_dataset("local:hopper-medium", local_dir=tmp_path)
    assert str(tmp_path / "hopper-medium.hdf5") in str(excinfo.value)
    with pytest.raises(BenchError, match="'ant' is not one of hopper, walker2d, halfcheetah"):
        load_dataset("local:ant-medium", local_dir=tmp_path)
    write_small_d4rl_file(tmp_path / "hopper-odd.hdf5", env="walker2d")
    with pytest.raises(BenchError, match="env='walker2d'"):
        load_dataset("local:hopper-odd", local_dir=tmp_path)


def test_load_local_by_path(tmp_path: Path) -> None:
    by_attr = write_small_d4rl_file(tmp_path / "whatever.hdf5", env="halfcheetah")
    assert load_dataset(f"local:{by_attr}").env.name == "halfcheetah"
    by_stem = write_small_d4rl_file(tmp_path / "hopper-mine.hdf5", env="hopper", attrs={})
    dataset = load_dataset(f"local:{by_stem}")
    assert (dataset.env.name, dataset.name) == ("hopper", f"local:{by_stem}")
    unknown = write_small_d4rl_file(tmp_path / "mystery.hdf5", env="hopper", attrs={})
    with pytest.raises(BenchError, match=r"mystery\.hdf5"):
        load_dataset(f"local:{unknown}")
    with pytest.raises(BenchError, match="does not exist"):
        load_dataset(f"local:{tmp_path / 'gone.hdf5'}")
    with pytest.raises(BenchError, match=r"must end in \.hdf5"):
        load_dataset(f"local:{tmp_path / 'data.h5'}")


def test_local_file_is_validated_against_its_env(tmp_path: Path) -> None:
    # The attribute says hopper, the arrays have walker2d's sizes.
    path = write_small_d4rl_file(tmp_path / "x.hdf5", env="walker2d", attrs={"env": "hopper"})
    with pytest.raises(BenchError, match="expected 11"):
        load_dataset(f"local:{path}")


def test_missing_timeouts_warns_with_the_file_name(tmp_path: Path) -> None:
    path = write_small_d4rl_file(tmp_path / "hopper-old.hdf5", with_timeouts=False)
    with pytest.warns(MissingTimeoutsWarning, match="hopper-old.hdf5"):
        dataset = load_dataset(f"local:{path}")
    assert len(dataset) == 219  # no timeouts, episodes far shorter than 1000: only the last row is lost


# --- minari: -------------------------------------------------------------------------------------------


def fake_episode(index: int, steps: int, *, terminated: bool, truncated: bool, seed: int) -> types.SimpleNamespace:
    rng = np.random.default_rng(seed)
    terminations = np.zeros(steps, bool)
    truncations = np.zeros(steps, bool)
    terminations[-1] = terminated
    truncations[-1] = truncated
    return types.SimpleNamespace(
        id=index,
        observations=rng.normal(size=(steps + 1, 11)),
        actions=rng.uniform(-1, 1, size=(steps, 3)),
        rewards=rng.normal(size=steps),
        terminations=terminations,
        truncations=truncations,
    )


def install_fake_minari(monkeypatch: pytest.MonkeyPatch, episodes: list[types.SimpleNamespace]) -> list[str]:
    calls: list[str] = []

    class FakeDataset:
        spec = types.SimpleNamespace(env_spec=types.SimpleNamespace(id="Hopper-v5"))

        def iterate_episodes(self):
            return iter(episodes)

    def load(dataset_id: str) -> FakeDataset:
        calls.append(dataset_id)
        if dataset_id.endswith("missing-v0"):
            raise FileNotFoundError(f"No local dataset {dataset_id}")
        return FakeDataset()

    monkeypatch.setitem(sys.modules, "minari", types.SimpleNamespace(load_dataset=load))
    return calls


def test_minari_episodes_map_to_the_d4rl_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    episodes = [
        fake_episode(0, 5, terminated=True, truncated=False, seed=1),
        fake_episode(1, 4, terminated=False, truncated=True, seed=2),
        fake_episode(2, 3, terminated=False, truncated=False, seed=3),  # cut short: gets a timeout
        fake_episode(3, 6, terminated=False, truncated=True, seed=4),
    ]
    calls = install_fake_minari(monkeypatch, episodes)
    dataset = load_dataset("minari:mujoco/hopper/medium-v0")
    assert calls == ["mujoco/hopper/medium-v0"]
    assert (dataset.source, dataset.path, dataset.env.name) == ("minari", None, "hopper")
    assert "not D4RL" in dataset.attrs["note"] and dataset.attrs["env_id"] == "Hopper-v5"

    observations = np.concatenate([e.observations[:-1] for e in episodes])
    d4rl_layout = {
        "observations": observations,
        "actions": np.concatenate([e.actions for e in episodes]),
        "rewards": np.concatenate([e.rewards for e in episodes]),
        "terminals": np.array([0, 0, 0, 0, 1] + [0] * 4 + [0] * 3 + [0] * 6, bool),
        "timeouts": np.array([0] * 5 + [0, 0, 0, 1] + [0, 0, 1] + [0] * 5 + [1], bool),
    }
    expected = qlearning_transitions(d4rl_layout)
    np.testing.assert_array_equal(dataset.transitions.observations, expected.observations)
    np.testing.assert_array_equal(dataset.transitions.next_observations, expected.next_observations)
    np.testing.assert_array_equal(dataset.transitions.dones, expected.dones)
    assert len(dataset) == 18 - 1 - 2  # last row; the timeouts of episodes 1 and 2
    assert dataset.transitions.dones.sum() == 1


def test_minari_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minari", None)  # makes `import minari` raise ImportError
    with pytest.raises(BenchError) as excinfo:
        load_dataset("minari:mujoco/hopper/medium-v0")
    assert "pip install minari" in str(excinfo.value) and "not D4RL" in str(excinfo.value)


def test_minari_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_minari(monkeypatch, [fake_episode(0, 5, terminated=True, truncated=False, seed=1)])
    with pytest.raises(BenchError, match="minari could not load 'mujoco/hopper/missing-v0'"):
        load_dataset("minari:mujoco/hopper/missing-v0")
    with pytest.raises(BenchError, match="cannot tell its environment"):
        load_dataset("minari:mujoco/ant/medium-v0")
    with pytest.raises(BenchError, match=r"minari:mujoco/walker2d/medium-v0.*expected 17"):
        load_dataset("minari:mujoco/walker2d/medium-v0")  # the fake episodes have hopper's sizes
