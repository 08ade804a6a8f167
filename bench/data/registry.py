"""The datasets and environments the suite knows, with D4RL's constants (SPEC section 3).

Reference returns are d4rl's `infos.REF_MIN_SCORE` / `REF_MAX_SCORE` for the v2 gym-mujoco datasets; a
normalized score is 100 * (R - min) / (max - min), so 0 is a random policy and 100 an expert one.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchError

DEFAULT_D4RL_BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
D4RL_PREFIX = "d4rl:"
LEVELS = ("medium", "medium-replay", "medium-expert")


@dataclass(frozen=True)
class EnvSpec:
    """One MuJoCo environment: its Gymnasium id (v4, SPEC 3), sizes, D4RL reference returns, the reward it pays
    for every step it stays healthy (Hopper and Walker2d: 1.0, on top of the forward reward minus the control
    cost; HalfCheetah: none), the name of every observation entry, in order, and which of them is the body's pitch
    (torso or front tip angle: beyond 90 degrees the body is upside down)."""

    name: str
    env_id: str
    obs_dim: int
    act_dim: int
    ref_min_score: float
    ref_max_score: float
    max_episode_steps: int = 1000
    healthy_reward: float = 0.0
    observation_names: tuple[str, ...] = ()
    pitch_index: int = 1  # the body's pitch angle in the observation (radians, 0 upright at reset)


@dataclass(frozen=True)
class DatasetSpec:
    """One D4RL v2 file: its name, environment, level, file name on the server and approximate size."""

    name: str
    env: EnvSpec
    level: str
    filename: str
    nominal_size: int

    def url(self, base_url: str | None = None) -> str:
        """The file's URL under `base_url` (default: the D4RL server)."""
        base = DEFAULT_D4RL_BASE_URL if base_url is None else base_url
        return f"{base.rstrip('/')}/{self.filename}"


# Observation entries of the v4 environments (the position of the root's x is excluded), shortened from the
# observation tables of Gymnasium's MuJoCo documentation: qpos[1:] (root height and angle, then the hinge joints
# in the model's order), then every qvel (clipped to [-10, 10] in Hopper and Walker2d). The names say "left"
# where Walker2d's table repeats the right leg's words for the left leg's joints (thigh_left_joint, ...).
HOPPER_OBSERVATIONS = (
    "torso height",
    "torso angle",
    "thigh angle",
    "leg angle",
    "foot angle",
    "torso x velocity",
    "torso z velocity",
    "torso angular velocity",
    "thigh angular velocity",
    "leg angular velocity",
    "foot angular velocity",
)
WALKER2D_OBSERVATIONS = (
    "torso height",
    "torso angle",
    "thigh angle",
    "leg angle",
    "foot angle",
    "left thigh angle",
    "left leg angle",
    "left foot angle",
    "torso x velocity",
    "torso z velocity",
    "torso angular velocity",
    "thigh angular velocity",
    "leg angular velocity",
    "foot angular velocity",
    "left thigh angular velocity",
    "left leg angular velocity",
    "left foot angular velocity",
)
HALFCHEETAH_OBSERVATIONS = (
    "front tip height",
    "front tip angle",
    "back thigh angle",
    "back shin angle",
    "back foot angle",
    "front thigh angle",
    "front shin angle",
    "front foot angle",
    "front tip x velocity",
    "front tip z velocity",
    "front tip angular velocity",
    "back thigh angular velocity",
    "back shin angular velocity",
    "back foot angular velocity",
    "front thigh angular velocity",
    "front shin angular velocity",
    "front foot angular velocity",
)

ENVS: dict[str, EnvSpec] = {
    "hopper": EnvSpec(
        "hopper", "Hopper-v4", 11, 3, -20.272305, 3234.3, healthy_reward=1.0, observation_names=HOPPER_OBSERVATIONS
    ),
    "walker2d": EnvSpec(
        "walker2d", "Walker2d-v4", 17, 6, 1.629008, 4592.3, healthy_reward=1.0, observation_names=WALKER2D_OBSERVATIONS
    ),
    "halfcheetah": EnvSpec(
        "halfcheetah", "HalfCheetah-v4", 17, 6, -280.178953, 12135.0, observation_names=HALFCHEETAH_OBSERVATIONS
    ),
}

# Approximate transition counts (SPEC 3); the real files differ by a few hundred rows for some datasets.
_NOMINAL_SIZES: dict[tuple[str, str], int] = {
    ("hopper", "medium"): 1_000_000,
    ("walker2d", "medium"): 1_000_000,
    ("halfcheetah", "medium"): 1_000_000,
    ("hopper", "medium-replay"): 402_000,
    ("walker2d", "medium-replay"): 302_000,
    ("halfcheetah", "medium-replay"): 202_000,
    ("hopper", "medium-expert"): 2_000_000,
    ("walker2d", "medium-expert"): 2_000_000,
    ("halfcheetah", "medium-expert"): 2_000_000,
}


def _make_dataset_spec(env: EnvSpec, level: str) -> DatasetSpec:
    return DatasetSpec(
        name=f"{env.name}-{level}-v2",
        env=env,
        level=level,
        filename=f"{env.name}_{level.replace('-', '_')}-v2.hdf5",
        nominal_size=_NOMINAL_SIZES[(env.name, level)],
    )


D4RL_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (_make_dataset_spec(env, level) for env in ENVS.values() for level in LEVELS)
}


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "known: " + ", ".join(known)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The D4RL dataset called `name` ("hopper-medium-v2" or "d4rl:hopper-medium-v2")."""
    key = name.strip()
    if key.startswith(D4RL_PREFIX):
        key = key[len(D4RL_PREFIX) :]
    spec = D4RL_DATASETS.get(key)
    if spec is None:
        raise BenchError(f"unknown D4RL dataset {name!r}: {_suggest(key, list(D4RL_DATASETS))}")
    return spec


def get_env_spec(name: str) -> EnvSpec:
    """The environment `name`: "hopper", "walker2d", "halfcheetah" (or a Gymnasium id, "Hopper-v4")."""
    key = name.strip()
    spec = ENVS.get(key.lower())
    if spec is not None:
        return spec
    for env in ENVS.values():
        if env.env_id == key:
            return env
    raise BenchError(f"unknown environment {name!r}: {_suggest(key.lower(), list(ENVS))}")


def normalized_score(env: str, raw_return: float | np.ndarray) -> float | np.ndarray:
    """D4RL's normalized score on the 0-100 scale: 100 * (R - ref_min) / (ref_max - ref_min)."""
    spec = get_env_spec(env)
    score = 100.0 * (np.asarray(raw_return, dtype=np.float64) - spec.ref_min_score)
    score /= spec.ref_max_score - spec.ref_min_score
    return float(score) if score.ndim == 0 else score


def _dir_from(argument: Path | None, variable: str, default: Path) -> Path:
    if argument is not None:
        return Path(argument).expanduser()
    from_env = os.environ.get(variable, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    return default


def d4rl_cache_dir(cache_dir: Path | None = None) -> Path:
    """Where D4RL files live: `cache_dir`, else $D4RL_DATASET_DIR, else ~/.d4rl/datasets (as d4rl does)."""
    return _dir_from(cache_dir, "D4RL_DATASET_DIR", Path.home() / ".d4rl" / "datasets")


# Relative to the working folder, like results/: the Makefile's targets (`make smoke`, `make local-data`) write here
# too, so the README's commands find their data run from the repository root.
DEFAULT_LOCAL_DATASET_DIR = Path(".cache") / "local-data"


def local_dataset_dir(local_dir: Path | None = None) -> Path:
    """Local datasets: `local_dir`, else $BENCH_LOCAL_DATASET_DIR, else .cache/local-data (the Makefile's folder)."""
    return _dir_from(local_dir, "BENCH_LOCAL_DATASET_DIR", DEFAULT_LOCAL_DATASET_DIR)


def dataset_env(dataset: str) -> EnvSpec:
    """The environment a dataset name refers to (d4rl:walker2d-medium-v2, local:hopper-medium, a Minari id)."""
    for part in re.split(r"[:/\\_.-]", dataset.lower()):
        if part in ENVS:
            return ENVS[part]
    raise BenchError(f"dataset {dataset!r}: cannot tell its environment; its name should contain one of {list(ENVS)}")
