"""One entry point from a dataset name to validated Q-learning transitions.

Names carry their source as a prefix, so local or Minari data can never pass for D4RL:
- "d4rl:hopper-medium-v2": the D4RL v2 file in the D4RL cache (fetched by `python -m bench datasets fetch`);
- "local:hopper-medium": `<local dir>/hopper-medium.hdf5`, made by the suite's D4RL-recipe generator;
- "local:/some/path/file.hdf5": any D4RL-layout file; its env is the root attribute `env` or the stem prefix;
- "minari:mujoco/hopper/medium-v0": a Minari dataset (not D4RL: Gymnasium v5, other policies).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.hdf5 import read_attrs, read_d4rl_arrays, validate_d4rl_arrays
from bench.data.qlearning import (
    MissingTimeoutsWarning,
    Transitions,
    qlearning_transitions,
    reward_range_normalization,
    state_normalization,
)
from bench.data.registry import ENVS, EnvSpec, d4rl_cache_dir, get_dataset_spec, local_dataset_dir
from bench.errors import BenchError

SOURCES = ("d4rl", "local", "minari")
MINARI_NOTE = "Minari data, not D4RL: regenerated on Gymnasium v5 with other policies; never a stand-in for D4RL rows"


@dataclass
class OfflineDataset:
    """A loaded dataset: its Q-learning transitions, state statistics and where it came from."""

    name: str
    source: str
    env: EnvSpec
    transitions: Transitions
    state_mean: np.ndarray
    state_std: np.ndarray
    path: Path | None
    attrs: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # of the transitions as loaded, before reward normalization (`Transitions.sha256`)

    def __len__(self) -> int:
        return len(self.transitions)


def _prefix_help(name: str) -> str:
    return (
        f"dataset name {name!r} needs a source prefix: d4rl:<name> (a D4RL v2 file, "
        f"e.g. d4rl:hopper-medium-v2), local:<name> or local:<path>.hdf5 (a local D4RL-layout file), "
        f"or minari:<dataset id>"
    )


def load_dataset(
    name: str,
    *,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    normalize_reward: bool = False,
) -> OfflineDataset:
    """Load `name` (see the module docstring for the prefixes) into validated Q-learning transitions.

    The arrays are always checked against the registry's observation and action sizes for the
    environment. `normalize_reward` applies CORL's reward-range normalization (`reward_range_normalization`).
    State mean/std are CORL's `compute_mean_std` of the transitions' observations.
    """
    source, sep, rest = name.partition(":")
    if not sep or source not in SOURCES or not rest.strip():
        raise BenchError(_prefix_help(name))
    rest = rest.strip()
    if source == "d4rl":
        arrays, env, path, attrs = _load_d4rl(rest, cache_dir)
    elif source == "local":
        arrays, env, path, attrs = _load_local(rest, local_dir)
    else:
        arrays, env, path, attrs = _load_minari(rest)

    label = str(path) if path is not None else name
    if "timeouts" not in arrays:
        warnings.warn(
            f"{label} has no 'timeouts' key: episodes are cut every {env.max_episode_steps} steps "
            f"(d4rl's fallback for old files); the transitions are wrong if episodes have other lengths",
            MissingTimeoutsWarning,
            stacklevel=2,
        )
    with warnings.catch_warnings():
        # Already reported above, with the caller's stack level.
        warnings.simplefilter("ignore", MissingTimeoutsWarning)
        transitions = qlearning_transitions(arrays, default_episode_length=env.max_episode_steps, source=label)
    if len(transitions) == 0:
        raise BenchError(f"{label}: no transitions left after the Q-learning view (too few steps)")
    sha256 = transitions.sha256()
    if normalize_reward:
        transitions = reward_range_normalization(transitions, env.max_episode_steps)
    mean, std = state_normalization(transitions.observations)
    return OfflineDataset(
        name=name,
        source=source,
        env=env,
        transitions=transitions,
        state_mean=mean,
        state_std=std,
        path=path,
        attrs=attrs,
        sha256=sha256,
    )


def _read(path: Path, env: EnvSpec) -> dict[str, np.ndarray]:
    return read_d4rl_arrays(path, expected_obs_dim=env.obs_dim, expected_act_dim=env.act_dim)


def _load_d4rl(dataset: str, cache_dir: Path | None) -> tuple[dict[str, np.ndarray], EnvSpec, Path, dict[str, Any]]:
    spec = get_dataset_spec(dataset)
    folder = d4rl_cache_dir(cache_dir)
    path = folder / spec.filename
    if not path.is_file():
        cache_flag = f" --cache-dir {folder}" if cache_dir is not None else ""
        partial = (
            " (a partial download is there; the fetch command resumes it)"
            if path.with_name(path.name + ".part").exists()
            else ""
        )
        raise BenchError(
            f"D4RL dataset {spec.name} is not in the cache: looked for {path}{partial}. Fetch it with "
            f"`python -m bench datasets fetch {spec.name}{cache_flag}`; if the D4RL server is down, add "
            f"--base-url <mirror URL or folder holding {spec.filename}> (or set $D4RL_BASE_URL), or copy "
            f"the file to {path} by hand"
        )
    attrs = read_attrs(path)
    return _read(path, spec.env), spec.env, path, attrs


def _env_from(text: str, what: str) -> EnvSpec:
    env = ENVS.get(text)
    if env is None:
        raise BenchError(f"{what}: environment {text!r} is not one of {', '.join(ENVS)}")
    return env


def _load_local(rest: str, local_dir: Path | None) -> tuple[dict[str, np.ndarray], EnvSpec, Path, dict[str, Any]]:
    if rest.endswith(".hdf5"):
        path = Path(rest).expanduser()
        if not path.is_file():
            raise BenchError(f"local dataset file {path} does not exist")
        attrs = read_attrs(path)
        env_name = str(attrs["env"]) if attrs.get("env") else path.stem.split("-", 1)[0]
        where = f"{path} (root attribute 'env')" if attrs.get("env") else f"{path} (file name prefix)"
        env = _env_from(env_name, where)
    elif "/" in rest or "\\" in rest:
        raise BenchError(f"local:{rest}: a local dataset path must end in .hdf5 (local:<path>.hdf5)")
    else:
        folder = local_dataset_dir(local_dir)
        path = folder / f"{rest}.hdf5"
        env = _env_from(rest.split("-", 1)[0], f"local dataset name {rest!r} (text before the first '-')")
        if not path.is_file():
            raise BenchError(
                f"local dataset {rest!r} not found: looked for {path}. Generate it with the suite's local "
                f"dataset generator, pass --local-dir / $BENCH_LOCAL_DATASET_DIR for another folder, or "
                f"name a file directly as local:<path>.hdf5 (`python -m bench datasets list` shows what "
                f"is there)"
            )
        attrs = read_attrs(path)
        if attrs.get("env") and attrs["env"] != env.name:
            raise BenchError(
                f"{path}: root attribute env={attrs['env']!r} but the name {rest!r} says {env.name!r}; "
                f"rename the file or regenerate it"
            )
    return _read(path, env), env, path, attrs


def _minari_env(dataset_id: str) -> EnvSpec:
    for part in re.split(r"[/_-]", dataset_id.lower()):
        if part in ENVS:
            return ENVS[part]
    raise BenchError(
        f"minari dataset {dataset_id!r}: cannot tell its environment; expected an id such as "
        f"mujoco/hopper/medium-v0 naming one of {', '.join(ENVS)}"
    )


def _minari_arrays(dataset: Any, dataset_id: str) -> dict[str, np.ndarray]:
    """Minari episodes in the D4RL layout: one stream of steps, the final observation of each episode dropped.

    terminations -> terminals, truncations -> timeouts. An episode that ends with neither flag (a collection
    cut short) gets a timeout on its last step, so the Q-learning view never pairs it with the next episode.
    """
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
    }
    for episode in dataset.iterate_episodes():
        observations = episode.observations
        if isinstance(observations, dict):
            raise BenchError(f"minari:{dataset_id}: dictionary observations are not supported (MuJoCo only)")
        observations = np.asarray(observations)
        steps = len(episode.actions)
        if len(observations) != steps + 1:
            raise BenchError(
                f"minari:{dataset_id}: episode {episode.id} has {len(observations)} observations for {steps} "
                f"actions, expected {steps + 1}"
            )
        terminals = np.asarray(episode.terminations, dtype=bool).reshape(-1)
        timeouts = np.asarray(episode.truncations, dtype=bool).reshape(-1).copy()
        if steps and not (terminals[-1] or timeouts[-1]):
            timeouts[-1] = True
        parts["observations"].append(observations[:steps])
        parts["next_observations"].append(observations[1:])
        parts["actions"].append(np.asarray(episode.actions))
        parts["rewards"].append(np.asarray(episode.rewards).reshape(-1))
        parts["terminals"].append(terminals)
        parts["timeouts"].append(timeouts)
    if not parts["observations"]:
        raise BenchError(f"minari:{dataset_id}: the dataset has no episodes")
    return {key: np.concatenate(values) for key, values in parts.items()}


def _load_minari(dataset_id: str) -> tuple[dict[str, np.ndarray], EnvSpec, None, dict[str, Any]]:
    try:
        import minari
    except ImportError as exc:
        raise BenchError(
            f"minari:{dataset_id} needs the minari package: pip install minari. Note that Minari datasets "
            f"are not D4RL (Gymnasium v5, other policies, their own 0-1 normalization, no medium-replay); "
            f"use d4rl:<name> for the paper's data"
        ) from exc
    env = _minari_env(dataset_id)
    try:
        dataset = minari.load_dataset(dataset_id)
    except Exception as exc:  # minari raises several types (FileNotFoundError, ValueError, its own)
        raise BenchError(
            f"minari could not load {dataset_id!r}: {exc}. Download it first (`minari download {dataset_id}`)"
        ) from exc
    arrays = validate_d4rl_arrays(
        _minari_arrays(dataset, dataset_id),
        source=f"minari:{dataset_id}",
        expected_obs_dim=env.obs_dim,
        expected_act_dim=env.act_dim,
    )
    attrs: dict[str, Any] = {"source": "minari", "dataset_id": dataset_id, "note": MINARI_NOTE}
    env_spec = getattr(getattr(dataset, "spec", None), "env_spec", None)
    if getattr(env_spec, "id", None):
        attrs["env_id"] = env_spec.id
    return arrays, env, None, attrs
