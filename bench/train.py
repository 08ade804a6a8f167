"""One cell of the grid, or several seeds of one cell side by side: dataset -> agent -> evaluation -> records.

`train_group` trains the seeds of one (algorithm, dataset, architecture) as one population (the agent
interface of bench/agents/base.py: `from_members`, `update`, `act`, state dicts, parameter counts) in epochs
of `epoch_steps` gradient steps (1,000 in every table), times each epoch with evaluation and checkpointing
excluded, evaluates every `eval_every` steps, checkpoints every `checkpoint_every` epochs, and writes one JSON
record (SPEC section 7) per seed atomically; `train_cell` is a group of one. A run started again with the same
command resumes from its checkpoint and, on CPU, writes the same records as an uninterrupted run. A run may keep
its final state (`keep_final_state`), and a run of the same cell with a larger budget may start from it
(`extend_from`) instead of training the first steps again: on CPU its records are those of the longer run trained
from scratch. Nothing here names one algorithm: `RunConfig.algo` picks it from bench/agents/registry.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

import bench
from bench.agents.base import Agent, Algorithm, Batch
from bench.agents.bc import BCConfig
from bench.agents.cql import CQLConfig
from bench.agents.iql import IQLConfig
from bench.agents.registry import ALGORITHMS, DEFAULT_ALGORITHM, get_algorithm
from bench.agents.td3_bc import TD3BCConfig
from bench.data.loader import OfflineDataset, load_dataset
from bench.data.registry import get_env_spec
from bench.errors import BenchError, first_line
from bench.evaluate import evaluate_policy
from bench.fileio import atomic_torch_save, atomic_write_json
from bench.nets.kan import KANOptions
from bench.nets.spec import Architecture, get_architecture, parse_network_spec
from bench.perf import retain_freed_memory

RECORD_SCHEMA_VERSION = 1
STATUSES = ("done", "failed", "diverged")


@dataclass
class RunConfig:
    """Everything that defines a cell's result; stored whole in its record."""

    dataset: str
    arch: str
    seed: int = 0
    steps: int = 1_000_000
    epoch_steps: int = 1_000
    eval_every: int = 5_000
    eval_episodes: int = 10
    checkpoint_every: int = 10  # epochs; does not change the result
    device: str = "auto"
    normalize_states: bool = True
    normalize_reward: bool = False
    # torch.compile of the whole update (the agent's `compiled`): the same mathematics, rounded differently.
    compile: bool = False
    arch_file: str | None = None
    # The offline algorithm (bench/agents/registry.py); its settings are the field of the same name.
    algo: str = DEFAULT_ALGORITHM
    cql: CQLConfig = field(default_factory=CQLConfig)
    td3bc: TD3BCConfig = field(default_factory=TD3BCConfig)
    iql: IQLConfig = field(default_factory=IQLConfig)
    bc: BCConfig = field(default_factory=BCConfig)

    @property
    def agent_config(self) -> Any:
        """The settings of the configured algorithm (`cql`, ...)."""
        return getattr(self, get_algorithm(self.algo).name)

    def validate(self) -> None:
        for name in ("steps", "epoch_steps", "eval_every", "eval_episodes", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name} must be positive, got {getattr(self, name)}")
        if self.steps % self.epoch_steps:
            # The largest epoch size up to the asked one that fills both budgets, so the advice is not refused next.
            common = math.gcd(self.steps, self.eval_every)
            epoch = next(size for size in range(min(common, self.epoch_steps), 0, -1) if common % size == 0)
            raise BenchError(
                f"steps ({self.steps}) is not a multiple of the epoch size ({self.epoch_steps}); "
                f"use e.g. --steps {max(1, round(self.steps / self.epoch_steps)) * self.epoch_steps}, "
                f"or --epoch-steps {epoch} to keep --steps {self.steps}"
            )
        if self.eval_every % self.epoch_steps:
            raise BenchError(f"eval_every ({self.eval_every}) is not a multiple of the epoch size ({self.epoch_steps})")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise BenchError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        get_algorithm(self.algo)
        for name, value in _settings(self.to_dict()):
            if isinstance(value, float) and not math.isfinite(value):
                raise BenchError(f"setting {name}: {non_finite_setting(value)}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its settings and rebuilt by the code that unpickles it: a grid's worker imports the code
        # anew for each group, so a setting added while a grid runs takes its default there instead of failing
        # every group that starts after the change.
        return (run_config_from_dict, (asdict(self),))

    def to_dict(self) -> dict[str, Any]:
        """The record's `config`: the run settings and the configured algorithm's settings only. A CQL run's
        dict names no algorithm, so CQL records and their fingerprints are those from before other algorithms
        existed (a configuration without `algo` is CQL)."""
        data = asdict(self)
        for name in ALGORITHMS:
            if name != self.algo:
                data.pop(name, None)
        if self.algo == DEFAULT_ALGORITHM:
            data.pop("algo")
        return data


def _settings(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every setting of a configuration dict by dotted name (`cql.cql_alpha`)."""
    found = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        found += _settings(value, f"{name}.") if isinstance(value, dict) else [(name, value)]
    return found


def non_finite_setting(value: float) -> str:
    """Why a setting cannot be infinite or NaN: the record's JSON cannot hold it (CORL's infinite clipping bounds
    are None here)."""
    return (
        f"{value} is not a finite number, and the record (JSON) cannot hold infinity or NaN; for no bound where "
        "CORL writes -inf or inf, leave the setting at its default (null)"
    )


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from `asdict` of one, possibly made by an older version of the code: settings it lacks take
    their defaults; one it has that no longer exists is a TypeError that names it."""
    data = dict(data)
    for name, algorithm in ALGORITHMS.items():
        if name in data:
            data[name] = algorithm.config(**data[name])
    return RunConfig(**data)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Apply `key=value` overrides (values parsed as YAML scalars) to an algorithm's settings dataclass
    (`CQLConfig`, ...), checking names and types; a key may carry the algorithm's prefix (`cql.cql_alpha`)."""
    kind = type(config)
    hints = typing.get_type_hints(kind)
    label = next((a.label for a in ALGORITHMS.values() if a.config is kind), kind.__name__)
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        head, dot, rest = key.partition(".")
        if dot and head in ALGORITHMS and ALGORITHMS[head].config is kind:
            key = rest
        if not sep or key not in hints:
            known = ", ".join(sorted(hints))
            raise BenchError(f"bad override {item!r}: expected KEY=VALUE with KEY one of {known}")
        value = yaml.safe_load(text)
        allowed = typing.get_args(hints[key]) or (hints[key],)
        if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
            value = float(value)
        if not isinstance(value, allowed):
            raise BenchError(f"bad override {item!r}: {key} takes {hints[key]}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BenchError(f"bad override {item!r}: {non_finite_setting(value)}")
        changes[key] = value
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as exc:
        raise BenchError(f"bad {label} setting: {exc}") from None


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else CPU; an explicit CUDA device must exist (BenchError if not)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"bad device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} asked for, but torch sees no CUDA device; use --device cpu or auto")
    # An ordinal past the visible GPUs would otherwise fail later as a CUDA error inside model construction.
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BenchError(
            f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s) "
            "(check CUDA_VISIBLE_DEVICES); use --device cuda or auto"
        )
    return device


def cpu_load_hint() -> str | None:
    """A one-line hint when the machine's load exceeds its cores: torch's CPU threads then mostly wait for a core."""
    if not hasattr(os, "getloadavg"):
        return None
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    if load <= cores or threads == 1:
        return None
    return (
        f"note: load average {load:.1f} on {cores} CPU cores, so torch's {threads} threads share "
        f"them with other work; fewer threads (--threads 1) may train several times faster"
    )


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so the clock measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():
            for line in cpuinfo.read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    return {
        "type": device.type,
        "name": name,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }


def library_versions() -> dict[str, str]:
    import gymnasium
    import h5py
    import mujoco

    return {
        "bench": bench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "h5py": h5py.__version__,
    }


def git_commit() -> str | None:
    """HEAD of the checkout the package runs from, with '-dirty' when it has uncommitted changes.

    Outside a git checkout (the Docker image) it is $BENCH_GIT_COMMIT, set when the image was built.
    """
    if os.environ.get("BENCH_GIT_COMMIT"):
        return os.environ["BENCH_GIT_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at `path`, or None when there is none or it is partial/corrupt (then the cell is rerun)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        return None
    return record


def group_fingerprint(fingerprints: list[str]) -> str:
    """A group checkpoint's hash: its seeds' configuration hashes together."""
    return hashlib.sha256(" ".join(fingerprints).encode()).hexdigest()[:16]


def checkpoint_path(out: Path) -> Path:
    """A single cell's checkpoint beside its record: `seed0.json` -> `seed0.ckpt.pt` (a group of one)."""
    return group_checkpoint_path([out])


def config_fingerprint(config: RunConfig, *, with_arch_file: bool = False) -> str:
    """Hash of everything that changes the result: not the checkpoint cadence, and not where the architecture
    definitions were read from (the architecture itself is in the record, and a grid refuses changed
    definitions), so a moved checkout or another machine's path resumes the same checkpoint.

    `with_arch_file=True` gives the hash of checkpoints written before the path was left out, which still
    resume.
    """
    data = config.to_dict()
    data.pop("checkpoint_every")
    if not with_arch_file:
        data.pop("arch_file")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def architecture_summary(arch: Architecture) -> dict[str, Any]:
    """The record's `architecture`: what defines the networks (a name alone may mean another thing elsewhere)."""
    return json.loads(
        json.dumps({"name": arch.name, "actor": str(arch.actor), "critic": str(arch.critic), "kan": asdict(arch.kan)})
    )


def path_from_record(path: str | Path | None, out: Path) -> str | None:
    """A file a record names (its architecture file, the state it extended) as the record keeps it: relative to
    the record's folder, so records name no machine's absolute paths and still point at the file when the
    results folder moves."""
    if path is None:
        return None
    return os.path.relpath(Path(path).resolve(), Path(out).resolve().parent)


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    # Generator states must be CPU byte tensors, but a checkpoint loaded with map_location=<cuda device> puts them
    # on the GPU; move them back or resuming on a GPU fails with "RNG state must be a torch.ByteTensor".
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_cell(
    config: RunConfig,
    out: Path,
    *,
    force: bool = False,
    progress: bool = True,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    grid_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one (dataset, architecture, seed) cell and write its record to `out`; return the record.

    A finished record at `out` is never overwritten unless `force`; a failed, diverged, partial or corrupt one
    is replaced. A checkpoint beside `out` from the same configuration is resumed (`force` discards it).
    `grid_overrides` (a grid's per-dataset and per-architecture settings of this cell) goes into the record.
    """
    return train_group(
        config,
        [config.seed],
        [out],
        force=force,
        progress=progress,
        cache_dir=cache_dir,
        local_dir=local_dir,
        grid_overrides=grid_overrides,
    )[0]


def actor_path(out: Path) -> Path:
    """The final actor's weights beside a finished record: `seed0.json` -> `seed0.actor.pt` (a state dict of the
    single actor its algorithm trains, of the record's architecture: CQL's `TanhGaussianActor`, ...)."""
    return out.with_name(out.name.removesuffix(".json") + ".actor.pt")


def record_algorithm(record: dict[str, Any]) -> str:
    """The algorithm a record was trained with (`config.algo`; records without one are CQL's)."""
    return str(record.get("config", {}).get("algo", DEFAULT_ALGORITHM))


def load_trained_actor(record_path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The final actor of a finished record (from `actor_path(record_path)`), in eval mode, and the record.

    The actor is rebuilt from the record's own algorithm, settings and architecture (spec and KAN options), so
    it loads without the grid file that named the architecture: CQL's `TanhGaussianActor`, TD3+BC's
    `DeterministicActor`, IQL's `GaussianActor` or `DeterministicActor` (`iql_deterministic`). Every one has
    `act(observations)`, the deterministic evaluation action. BenchError names the file when the record is not
    finished or its actor file is missing or does not fit the architecture.
    """
    record_path = Path(record_path)
    record = read_record(record_path)
    if record is None or record["status"] != "done":
        raise BenchError(f"{record_path} is not a finished record; only finished cells keep their final actor")
    weights = actor_path(record_path)
    if not weights.exists():
        raise BenchError(f"{weights} is missing: the final actor is written beside each finished record")
    arch = record["architecture"]
    kan = KANOptions(**arch["kan"])
    env = get_env_spec(record["dataset"]["env"])
    algorithm = get_algorithm(record_algorithm(record))
    settings = algorithm.config(**record["config"].get(algorithm.name, {}))
    actor = algorithm.build_actor(env.obs_dim, env.act_dim, parse_network_spec(arch["actor"]), kan, settings)
    try:
        actor.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, ValueError) as exc:
        raise BenchError(f"{weights} does not hold a {arch['actor']} actor for {env.name}: {exc}") from None
    return actor.eval(), record


def trained_policy(record_path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """The final actor of a finished record as a policy on raw environment states, and the record.

    The policy maps a batch of states (n, obs_dim) to the actor's deterministic actions (n, act_dim), normalizing
    them with the dataset statistics the record keeps (`evaluation.state_normalization`), as the run's own
    evaluations did, so it needs neither the dataset nor the suite's evaluation loop:
    `evaluate_policy(env, policy, episodes=..., seed=...)` or a Gymnasium loop of one's own. For a seed trained
    alone that replays the run's evaluations; a seed trained side by side acted through its group's batched
    actor, whose float32 rounding differs, so its long episodes can drift slightly from the record's.
    """
    actor, record = load_trained_actor(record_path)
    evaluation = record["evaluation"]
    if "state_normalization" not in evaluation:
        raise BenchError(
            f"{record_path} predates the state statistics in records: normalize states yourself with the dataset's "
            "(bench.data.load_dataset(...).state_mean and .state_std) and call the actor from load_trained_actor"
        )
    stats = evaluation["state_normalization"]
    mean = np.asarray(stats["mean"], dtype=np.float64) if stats else 0.0
    std = np.asarray(stats["std"], dtype=np.float64) if stats else 1.0

    def policy(states: np.ndarray) -> np.ndarray:
        normalized = torch.as_tensor((np.asarray(states, dtype=np.float64) - mean) / std, dtype=torch.float32)
        with torch.no_grad():
            return actor.act(normalized).numpy()

    return policy, record


def group_checkpoint_path(outs: list[Path]) -> Path:
    """The checkpoint of the seeds whose records are `outs` (one folder): `seed0+seed1.ckpt.pt`, `seed0.ckpt.pt`."""
    return outs[0].with_name("+".join(out.name.removesuffix(".json") for out in outs) + ".ckpt.pt")


def final_state_path(outs: list[Path]) -> Path:
    """Where a group that keeps its final state leaves it: `seed0+seed1.final.pt` beside its records, the state
    its checkpoint would hold at the last step."""
    checkpoint = group_checkpoint_path(outs)
    return checkpoint.with_name(checkpoint.name.removesuffix(".ckpt.pt") + ".final.pt")


def noise_seed(seeds: list[int]) -> int:
    """The seed of a group's shared stream of policy noise and uniform actions, a function of all its seeds."""
    return int(np.random.SeedSequence(seeds).generate_state(1)[0])


def train_group(
    config: RunConfig,
    seeds: list[int],
    outs: list[Path],
    *,
    force: bool = False,
    progress: bool = True,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    grid_overrides: dict[str, Any] | None = None,
    keep_final_state: bool = False,
    extend_from: Path | None = None,
) -> list[dict[str, Any]]:
    """Train the seeds `seeds` of one (dataset, architecture) cell side by side and write one record per seed.

    One process, one optimizer step per gradient step for all seeds (the agent's population). Each seed starts
    from the parameters it gets alone and draws its own minibatches (a generator seeded with the seed); the
    agent's own randomness (CQL's policy noise and uniform actions, TD3+BC's target noise) comes from one stream
    of the group. A seed whose losses stop being finite
    gets its `diverged` record at once and the others go on. Records are the single-seed format plus `group`;
    the group checkpoints to `group_checkpoint_path(outs)` and resumes from it, with every seed it holds: a seed
    whose record is finished by then (it diverged) trains along and its record is left as it is. Without a
    checkpoint a done record is refused unless `force`. `config.seed` is ignored.

    `keep_final_state` leaves the state a checkpoint would hold at the last step in `final_state_path(outs)`.
    `extend_from` names such a state of the same seeds and configuration with a smaller budget (a multiple of
    `eval_every`); without a checkpoint of its own the group starts from it, and its records, which say so in
    `extended_from`, are on CPU those the group gives trained from scratch. Algorithms whose update depends on
    the budget (`Algorithm.budget_dependence`) are refused.
    """
    config.validate()
    outs = [Path(out) for out in outs]
    if not seeds or len(seeds) != len(outs) or len(set(seeds)) != len(seeds):
        raise BenchError(f"seeds {seeds} and record paths {[str(o) for o in outs]}: give distinct seeds, one path each")
    if len({out.parent for out in outs}) != 1:
        raise BenchError("the records of a group of seeds must go to one folder")
    ckpt_path = group_checkpoint_path(outs)
    # A seed that finished before the group's checkpoint was resumed (it diverged, or the process was killed while
    # the records were written) trains along, since the seeds share every step, but its record is kept as it is.
    kept: dict[int, dict[str, Any]] = {}
    for p, out in enumerate(outs):
        if out.is_dir():
            raise BenchError(f"{out} is a folder; a record's path names a file (seed<k>.json)")
        existing = read_record(out)
        if existing is None or existing["status"] not in ("done", "diverged") or force:
            continue
        if ckpt_path.exists():
            kept[p] = existing
        elif existing["status"] == "done":
            raise BenchError(f"{out} already holds a finished record; pass --force to train again and overwrite it")
    if len(kept) == len(outs):
        raise BenchError(
            f"{outs[0].parent} already holds the finished records of seeds {seeds}; pass --force to train them "
            "again and overwrite them"
        )
    configs = [dataclasses.replace(config, seed=seed) for seed in seeds]
    arch = get_architecture(config.arch, Path(config.arch_file) if config.arch_file else None)
    device = resolve_device(config.device)
    retain_freed_memory()  # fewer page faults per CPU step; results unchanged (benchmarks/allocator.py)
    dataset = load_dataset(
        config.dataset, cache_dir=cache_dir, local_dir=local_dir, normalize_reward=config.normalize_reward
    )
    env = dataset.env
    if force:
        ckpt_path.unlink(missing_ok=True)

    algorithm = get_algorithm(config.algo)
    members: list[Agent] = []
    for seed in seeds:
        seed_everything(seed)
        members.append(
            algorithm.agent(env.obs_dim, env.act_dim, arch, config.agent_config, device=device, run_steps=config.steps)
        )
    agent = algorithm.agent.from_members(members, noise_seed=noise_seed(seeds), compiled=config.compile)
    seed_everything(seeds[0])
    batch_generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
    data = _dataset_tensors(dataset, config.normalize_states, device)
    group = {"seeds": list(seeds), "size": len(seeds)}
    counts = members[0].parameter_counts()
    records = [_new_record(c, out, arch, dataset, counts, device, group) for c, out in zip(configs, outs, strict=True)]
    for record in records:
        record["grid_overrides"] = grid_overrides or {}
    fingerprint = group_fingerprint([r["config_fingerprint"] for r in records])
    legacy_fingerprint = group_fingerprint([config_fingerprint(c, with_arch_file=True) for c in configs])

    extending = extend_from is not None and not ckpt_path.exists()
    resumed_from = extend_from if extending else (ckpt_path if ckpt_path.exists() else None)
    extended_steps = None
    if resumed_from is not None:
        state = _read_state(resumed_from, device, dataset, config, extending=extending)
        if extending:
            extended_steps = _extended_steps(state, resumed_from, configs, algorithm)
        elif state.get("config_fingerprint") not in (fingerprint, legacy_fingerprint):
            raise BenchError(
                f"checkpoint {ckpt_path} was written by a different configuration; "
                "delete it or pass --force to start this cell from scratch"
            )
        agent.load_state_dict(state["agent"])
        for generator, generator_state in zip(batch_generators, state["batch_generators"], strict=True):
            generator.set_state(generator_state.cpu())
        set_rng_state(state["rng"], device)
        for record, saved in zip(records, state["records"], strict=True):
            record.update(saved)
    if extended_steps is not None:
        source = {"state": path_from_record(extend_from, outs[0]), "steps": extended_steps}
        for p, record in enumerate(records):
            record["extended_from"] = source
            if record["status"] == "diverged" and p not in kept:  # it diverged in the shorter run, as it does here
                records[p] = _finish_record(record, outs[p])

    active = [p for p, r in enumerate(records) if r["status"] != "diverged"]
    epochs = config.steps // config.epoch_steps
    # The checkpoint's step; a seed that diverged before it stopped counting at its divergence.
    steps_done = max(r["steps_done"] for r in records)
    label = f"s{seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))}"
    bar = tqdm(
        total=config.steps,
        initial=steps_done,
        unit="step",
        desc=f"{config.arch} {config.dataset} {label}",
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    try:
        for epoch in range(steps_done // config.epoch_steps, epochs):
            seconds, means = _train_epoch(
                agent, data, batch_generators, config.epoch_steps, config.agent_config.batch_size
            )
            step = (epoch + 1) * config.epoch_steps
            for p in list(active):
                record = records[p]
                losses = {name: float(v[p]) for name, v in means.items()}
                record["steps_done"] = step
                record["seconds_per_epoch"].append(seconds)
                # JSON has no NaN or infinity: a non-finite mean is stored as null and named in the error.
                finite = {k: v if math.isfinite(v) else None for k, v in losses.items()}
                record["losses"] = finite
                for name, value in finite.items():
                    record["diagnostics"].setdefault(name, []).append(value)
                record["diagnostics"].setdefault("step", []).append(step)
                bad = sorted(k for k, v in losses.items() if not math.isfinite(v))
                if bad:
                    record["status"] = "diverged"
                    record["error"] = f"non-finite {', '.join(bad)} in the epoch ending at step {step}"
                    active.remove(p)
                    records[p] = record if p in kept else _finish_record(record, outs[p])
                elif step % config.eval_every == 0 or step == config.steps:
                    record["curve"].append(_evaluate(agent, p, dataset, configs[p], record["evaluation"]["seed"], step))
            if not active:
                break
            bar.update(config.epoch_steps)
            shown = records[active[0]]
            bar.set_postfix(
                **{label: f"{shown['losses'][name]:.3g}" for label, name in agent.progress.items()},
                score=f"{shown['curve'][-1]['normalized_score']:.1f}" if shown["curve"] else "-",
                refresh=False,
            )
            last = step == config.steps
            if (not last and (epoch + 1) % config.checkpoint_every == 0) or (last and keep_final_state):
                atomic_torch_save(
                    {
                        "config_fingerprint": fingerprint,
                        "dataset_sha256": dataset.sha256,
                        "device_type": device.type,
                        "agent": agent.state_dict(),
                        "batch_generators": [g.get_state() for g in batch_generators],
                        "rng": rng_state(device),
                        "records": [{k: r[k] for k in _RESUMED_KEYS if k in r} for r in records],
                    },
                    final_state_path(outs) if last else ckpt_path,
                )
        else:
            for p in active:
                records[p]["status"] = "done"
    except KeyboardInterrupt:
        bar.close()
        raise
    except Exception as exc:
        for p in active:
            records[p]["status"] = "failed"
            records[p]["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    bar.close()

    for p in active:
        if p in kept:
            continue
        if records[p]["status"] == "done":
            # The final policy, small enough to keep with the record (deployment and inspection load it).
            atomic_torch_save(agent.member_actor(p).state_dict(), actor_path(outs[p]))
        records[p] = _finish_record(records[p], outs[p])
    for p, record in kept.items():
        records[p] = record
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        ckpt_path.unlink(missing_ok=True)
    else:
        raise BenchError(
            f"run failed, record written to {outs[records.index(failed[0])]}: {failed[0]['error'].splitlines()[0]}"
        )
    return records


# What a checkpoint keeps of each record; the rest is rebuilt from the configuration.
_RESUMED_KEYS = (
    "status",
    "error",
    "steps_done",
    "curve",
    "seconds_per_epoch",
    "diagnostics",
    "started_at",
    "losses",
    "extended_from",
)


def _read_state(
    path: Path, device: torch.device, dataset: OfflineDataset, config: RunConfig, *, extending: bool
) -> dict[str, Any]:
    """A checkpoint (or, `extending`, another run's final state) that this group may start from: readable,
    trained on the data the dataset holds now and on this kind of device."""
    what = "final state" if extending else "checkpoint"
    fresh = "train the cell without extending it" if extending else "pass --force to start this cell from scratch"
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # a torn copy, a foreign file: whatever torch raises, the advice is the same
        advice = "name another" if extending else "delete it to start the cell over, or pass --force"
        raise BenchError(
            f"{what} {path} cannot be read ({type(exc).__name__}: {first_line(str(exc))}); {advice}"
        ) from None
    if state.get("dataset_sha256", dataset.sha256) != dataset.sha256:
        raise BenchError(
            f"{what} {path} was trained on other data than {config.dataset} holds now (the file was replaced or "
            f"regenerated since); {fresh} on the current data"
        )
    # Older checkpoints name no device; their random state holds CUDA's only when written on a GPU.
    written_on = state.get("device_type") or ("cuda" if "cuda" in state.get("rng", {}) else "cpu")
    if written_on != device.type:
        raise BenchError(
            f"{what} {path} was written on {written_on.upper()} and this run is on {device.type.upper()}; "
            "random-number streams do not carry over between the two, so a run goes on on the kind of device it "
            f"started on: pass --device {written_on} (a grid file's `device:`), or {fresh}"
        )
    return state


def _extended_steps(state: dict[str, Any], path: Path, configs: list[RunConfig], algorithm: Algorithm) -> int:
    """The step of the final state at `path` that the group of `configs` extends, once it is checked to be the
    state those runs reach at that step."""
    label = configs[0].arch + " on " + configs[0].dataset
    if algorithm.budget_dependence:
        raise BenchError(
            f"{algorithm.label} runs cannot be extended ({path}): {algorithm.budget_dependence}, so a longer run is "
            "not a shorter one continued; train the cell without extending it"
        )
    saved = state.get("records")
    if not isinstance(saved, list) or len(saved) != len(configs):
        held = len(saved) if isinstance(saved, list) else 0
        raise BenchError(
            f"final state {path} holds {held} seed(s) and this run trains {len(configs)} of {label}; extend the "
            "final state of the same seeds, trained side by side as they are here"
        )
    steps = max(record["steps_done"] for record in saved)
    budget = configs[0].steps
    if steps >= budget:
        raise BenchError(
            f"final state {path} is at step {steps:,}; a run that extends it needs more steps than that, not {budget:,}"
        )
    if steps % configs[0].eval_every:
        raise BenchError(
            f"final state {path} is at step {steps:,}, not a multiple of eval_every ({configs[0].eval_every:,}): "
            "its run evaluated there and the longer run does not, so it cannot be extended to the same records"
        )
    shorter = group_fingerprint([config_fingerprint(dataclasses.replace(c, steps=steps)) for c in configs])
    if state.get("config_fingerprint") != shorter:
        raise BenchError(
            f"final state {path} was not trained with this run's configuration and {steps:,} steps (seeds "
            f"{', '.join(str(c.seed) for c in configs)} of {label}); extend a run of the same cell whose only "
            "difference is its budget"
        )
    return steps


def _new_record(
    config: RunConfig,
    out: Path,
    arch: Architecture,
    dataset: OfflineDataset,
    parameters: dict[str, int],
    device: torch.device,
    group: dict[str, Any],
) -> dict[str, Any]:
    """A seed's record before training (status failed until it finishes), to be written to `out`; `parameters`
    are one seed's agent's counts. A CQL record's cell names no algorithm (as before other algorithms existed);
    others name theirs."""
    env = dataset.env
    cell: dict[str, Any] = {"dataset": config.dataset, "arch": config.arch, "seed": config.seed}
    if config.algo != DEFAULT_ALGORITHM:
        cell["algo"] = config.algo
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "cell": cell,
        "status": "failed",
        "config": {**config.to_dict(), "arch_file": path_from_record(config.arch_file, out)},
        "config_fingerprint": config_fingerprint(config),
        "group": group,
        "architecture": architecture_summary(arch),
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "env": env.name,
            "env_id": env.env_id,
            "transitions": len(dataset.transitions),
            "sha256": dataset.sha256,
            "label": "D4RL" if dataset.source == "d4rl" else f"{dataset.source} data, not D4RL",
            # Which recipe made a local D4RL-recipe file (README, "Local D4RL-recipe datasets"); None otherwise.
            "recipe": int(dataset.attrs["recipe"]) if "recipe" in dataset.attrs else None,
        },
        "parameters": parameters,
        "evaluation": {
            "episodes": config.eval_episodes,
            "seed": config.seed * config.eval_episodes,
            "env_id": env.env_id,
            # How the actor sees a state, (state - mean) / std with the dataset's statistics, so the final actor
            # beside the record acts without the dataset (`trained_policy`); None: it sees the raw state.
            "state_normalization": (
                {"mean": [float(x) for x in dataset.state_mean], "std": [float(x) for x in dataset.state_std]}
                if config.normalize_states
                else None
            ),
        },
        "epoch_steps": config.epoch_steps,
        "steps_done": 0,
        "curve": [],
        # Wall seconds of each epoch of the whole group (all its seeds), evaluation and checkpoints excluded.
        "seconds_per_epoch": [],
        # Per epoch: the step it ends at and the epoch's mean of every loss and diagnostic (the agent's loss_names).
        "diagnostics": {},
        "final_score": None,
        "best_score": None,
        "final_return": None,
        "losses": {},
        "device": device_info(device),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "started_at": now(),
        "finished_at": None,
        "error": None,
    }


def _finish_record(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """Fill in the final scores and times and write the record atomically; returns what the file holds."""
    scores = [point["normalized_score"] for point in record["curve"]]
    if scores:
        record["final_score"] = scores[-1]
        record["best_score"] = max(scores)
        record["final_return"] = record["curve"][-1]["return_mean"]
    record["finished_at"] = now()
    written = json.loads(json.dumps(record))  # the caller gets exactly what the file holds (tuples as lists)
    atomic_write_json(out, written)
    return written


def _dataset_tensors(dataset: OfflineDataset, normalize_states: bool, device: torch.device) -> dict[str, torch.Tensor]:
    """The transitions on the device, states z-scored with the dataset's mean and std as CORL does."""
    t = dataset.transitions
    mean, std = (dataset.state_mean, dataset.state_std) if normalize_states else (0.0, 1.0)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)

    return {
        "observations": tensor((t.observations - mean) / std),
        "actions": tensor(t.actions),
        "rewards": tensor(t.rewards),
        "next_observations": tensor((t.next_observations - mean) / std),
        "dones": tensor(t.dones),
    }


def _train_epoch(
    agent: Agent,
    data: dict[str, torch.Tensor],
    batch_generators: list[torch.Generator],
    steps: int,
    batch_size: int,
) -> tuple[float, dict[str, np.ndarray]]:
    """`steps` updates, each on one uniformly sampled minibatch per seed; wall seconds and the epoch's mean
    losses, name -> (P,).

    Every seed's indices for the epoch are drawn at once from its own generator. Loss values are summed on the
    device and read once at the end, so the loop never waits for the device.
    """
    device = agent.device
    size = data["observations"].shape[0]
    synchronize(device)
    start = time.perf_counter()
    indices = torch.stack(
        [torch.randint(size, (steps, batch_size), generator=g, device=device) for g in batch_generators], dim=1
    )  # (steps, P, B)
    total = None
    for step in range(steps):
        idx = indices[step]
        batch = Batch(*(data[k][idx] for k in Batch._fields))
        losses = agent.update(batch)
        total = losses.clone() if total is None else total + losses
    synchronize(device)
    seconds = time.perf_counter() - start
    means = (total / steps).cpu().numpy()
    return seconds, {name: means[i] for i, name in enumerate(agent.loss_names)}


def _evaluate(
    agent: Agent, member: int, dataset: OfflineDataset, config: RunConfig, seed: int, step: int
) -> dict[str, Any]:
    """One point of seed `member`'s evaluation curve: deterministic policy, `eval_episodes` episodes in the v4
    env."""
    mean, std = (dataset.state_mean, dataset.state_std) if config.normalize_states else (None, None)

    def policy(observations: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(observations, dtype=torch.float32, device=agent.device)
        # Every member acts on the same states; this seed's actions are kept.
        return agent.act(obs.expand(agent.population, *obs.shape))[member].cpu().numpy()

    result = evaluate_policy(
        dataset.env.name, policy, episodes=config.eval_episodes, seed=seed, state_mean=mean, state_std=std
    )
    return {
        "step": step,
        "normalized_score": float(np.mean(result.normalized_scores)),
        "normalized_score_std": float(np.std(result.normalized_scores)),
        "return_mean": float(np.mean(result.returns)),
        "return_std": float(np.std(result.returns)),
        "episode_returns": [float(r) for r in result.returns],
        "episode_lengths": [int(n) for n in result.lengths],
    }
