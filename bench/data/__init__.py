"""Datasets: the D4RL registry, HDF5 reading/writing, the Q-learning view, download and loading."""

from bench.data.download import fetch_dataset
from bench.data.hdf5 import REQUIRED_KEYS, read_attrs, read_d4rl_arrays, validate_d4rl_arrays, write_d4rl_hdf5
from bench.data.loader import OfflineDataset, load_dataset
from bench.data.qlearning import (
    MissingTimeoutsWarning,
    Transitions,
    qlearning_transitions,
    return_range,
    reward_range_normalization,
    state_normalization,
)
from bench.data.registry import (
    D4RL_DATASETS,
    DEFAULT_D4RL_BASE_URL,
    ENVS,
    DatasetSpec,
    EnvSpec,
    d4rl_cache_dir,
    get_dataset_spec,
    get_env_spec,
    local_dataset_dir,
    normalized_score,
)

__all__ = [
    "D4RL_DATASETS",
    "DEFAULT_D4RL_BASE_URL",
    "ENVS",
    "REQUIRED_KEYS",
    "DatasetSpec",
    "EnvSpec",
    "MissingTimeoutsWarning",
    "OfflineDataset",
    "Transitions",
    "d4rl_cache_dir",
    "fetch_dataset",
    "get_dataset_spec",
    "get_env_spec",
    "load_dataset",
    "local_dataset_dir",
    "normalized_score",
    "qlearning_transitions",
    "read_attrs",
    "read_d4rl_arrays",
    "return_range",
    "reward_range_normalization",
    "state_normalization",
    "validate_d4rl_arrays",
    "write_d4rl_hdf5",
]
