"""The dataset registry: names, files, URLs, reference returns, cache folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data.registry import (
    D4RL_DATASETS,
    DEFAULT_D4RL_BASE_URL,
    ENVS,
    d4rl_cache_dir,
    get_dataset_spec,
    get_env_spec,
    local_dataset_dir,
    normalized_score,
)
from bench.errors import BenchError


def test_the_nine_d4rl_datasets() -> None:
    expected = {
        f"{e}-{lvl}-v2"
        for e in ("hopper", "walker2d", "halfcheetah")
        for lvl in ("medium", "medium-replay", "medium-expert")
    }
    assert set(D4RL_DATASETS) == expected
    for name, spec in D4RL_DATASETS.items():
        assert spec.name == name
        assert spec.env is ENVS[name.split("-")[0]]
        assert name == f"{spec.env.name}-{spec.level}-v2"


def test_filenames_and_urls_use_underscores() -> None:
    spec = get_dataset_spec("hopper-medium-replay-v2")
    assert spec.filename == "hopper_medium_replay-v2.hdf5"
    assert spec.url() == f"{DEFAULT_D4RL_BASE_URL}/hopper_medium_replay-v2.hdf5"
    assert spec.url() == "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/hopper_medium_replay-v2.hdf5"
    assert spec.url("https://mirror.example/d4rl/") == "https://mirror.example/d4rl/hopper_medium_replay-v2.hdf5"
    assert get_dataset_spec("halfcheetah-medium-expert-v2").filename == "halfcheetah_medium_expert-v2.hdf5"
    assert get_dataset_spec("walker2d-medium-v2").filename == "walker2d_medium-v2.hdf5"


def test_nominal_sizes_follow_the_spec() -> None:
    sizes = {name: spec.nominal_size for name, spec in D4RL_DATASETS.items()}
    assert sizes["hopper-medium-v2"] == sizes["walker2d-medium-v2"] == sizes["halfcheetah-medium-v2"] == 1_000_000
    assert sizes["hopper-medium-replay-v2"] == 402_000
    assert sizes["walker2d-medium-replay-v2"] == 302_000
    assert sizes["halfcheetah-medium-replay-v2"] == 202_000
    assert all(sizes[f"{e}-medium-expert-v2"] == 2_000_000 for e in ENVS)


def test_environments_and_reference_returns() -> None:
    assert (ENVS["hopper"].obs_dim, ENVS["hopper"].act_dim) == (11, 3)
    assert (ENVS["walker2d"].obs_dim, ENVS["walker2d"].act_dim) == (17, 6)
    assert (ENVS["halfcheetah"].obs_dim, ENVS["halfcheetah"].act_dim) == (17, 6)
    assert (ENVS["hopper"].ref_min_score, ENVS["hopper"].ref_max_score) == (-20.272305, 3234.3)
    assert (ENVS["walker2d"].ref_min_score, ENVS["walker2d"].ref_max_score) == (1.629008, 4592.3)
    assert (ENVS["halfcheetah"].ref_min_score, ENVS["halfcheetah"].ref_max_score) == (-280.178953, 12135.0)
    assert [e.env_id for e in ENVS.values()] == ["Hopper-v4", "Walker2d-v4", "HalfCheetah-v4"]
    assert all(e.max_episode_steps == 1000 for e in ENVS.values())


def test_prefix_is_accepted_and_unknown_names_get_suggestions() -> None:
    assert get_dataset_spec("d4rl:hopper-medium-v2") is get_dataset_spec("hopper-medium-v2")
    with pytest.raises(BenchError) as excinfo:
        get_dataset_spec("hoper-medium-v2")
    assert "'hoper-medium-v2'" in str(excinfo.value) and "'hopper-medium-v2'" in str(excinfo.value)
    with pytest.raises(BenchError, match="walker2d-medium-replay-v2"):
        get_dataset_spec("d4rl:walker2d-medium_replay-v2")


def test_env_lookup() -> None:
    assert get_env_spec("walker2d") is ENVS["walker2d"]
    assert get_env_spec("HalfCheetah-v4") is ENVS["halfcheetah"]
    with pytest.raises(BenchError, match="'halfcheetah'"):
        get_env_spec("half-cheetah")


def test_normalized_score() -> None:
    assert normalized_score("hopper", -20.272305) == pytest.approx(0.0, abs=1e-12)
    assert normalized_score("hopper", 3234.3) == pytest.approx(100.0)
    assert isinstance(normalized_score("walker2d", 1000.0), float)
    scores = normalized_score("halfcheetah", np.array([-280.178953, 12135.0, 5927.4105235]))
    assert isinstance(scores, np.ndarray)
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0], atol=1e-9)
    assert normalized_score("walker2d", 2000.0) == pytest.approx(100 * (2000.0 - 1.629008) / (4592.3 - 1.629008))


def test_cache_folder_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    monkeypatch.delenv("BENCH_LOCAL_DATASET_DIR", raising=False)
    assert d4rl_cache_dir() == Path.home() / ".d4rl" / "datasets"
    assert local_dataset_dir() == Path(".cache") / "local-data"
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("BENCH_LOCAL_DATASET_DIR", str(tmp_path / "local-env"))
    assert d4rl_cache_dir() == tmp_path / "env"
    assert local_dataset_dir() == tmp_path / "local-env"
    assert d4rl_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert local_dataset_dir(tmp_path / "arg2") == tmp_path / "arg2"
