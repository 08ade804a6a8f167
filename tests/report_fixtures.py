"""Run records with known numbers for the report's tests, laid out as the grid harness stores them.

The default fixture is a complete grid: 2 D4RL datasets x 2 architectures (`mlp`, the baseline, and `kan`) x 3
seeds. Its expected table cells are worked out by hand in the constants below.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

DATASETS = ("d4rl:halfcheetah-medium-v2", "d4rl:hopper-medium-v2")
ARCHS = ("mlp", "kan")
SEEDS = (0, 1, 2)

# Final normalized scores per (dataset, arch), one per seed, and the cells Table 1 must print for them
# (mean ± sample std): halfcheetah mlp 47.0 ± 0.2, kan 45.0 ± 1.0; hopper mlp 60.0 ± 5.0, kan 59.0 ± 1.0.
SCORES: dict[tuple[str, str], list[float]] = {
    ("d4rl:halfcheetah-medium-v2", "mlp"): [46.8, 47.0, 47.2],
    ("d4rl:halfcheetah-medium-v2", "kan"): [44.0, 45.0, 46.0],
    ("d4rl:hopper-medium-v2", "mlp"): [55.0, 60.0, 65.0],
    ("d4rl:hopper-medium-v2", "kan"): [58.0, 59.0, 60.0],
}

# (actor network, one critic) parameters per (env, arch): the paper's sizes; hopper has 11 obs and 3 actions.
PARAMETERS: dict[tuple[str, str], tuple[int, int]] = {
    ("halfcheetah", "mlp"): (7_692, 137_985),
    ("halfcheetah", "kan"): (1_160, 137_985),
    ("hopper", "mlp"): (4_614, 135_681),
    ("hopper", "kan"): (680, 135_681),
}
SPECS = {"mlp": ("mlp[256]", "mlp[256,256,256]"), "kan": ("kan[4]", "mlp[256,256,256]")}

STEPS = 2_000
EPOCH_STEPS = 100  # tiny epochs: Table 3 scales seconds by 1000 / 100
EVAL_EVERY = 1_000
# Median seconds per 100-step epoch by seed; scaled to 1,000 steps: mlp 2.0 every run; kan 6.0, 6.2, 5.8
# (mean 6.00, sample std 0.18 over the six runs), so kan / mlp = 3.00.
EPOCH_SECONDS = {"mlp": [0.2, 0.2, 0.2], "kan": [0.6, 0.62, 0.58]}
DEVICE = {"type": "cpu", "name": "Test CPU 9000", "torch_threads": 2, "cpus": 2}
# Per-epoch diagnostics: critic_loss at epoch i (0-based) is DIAGNOSTIC_OFFSET[arch] + seed + i, so over seeds
# 0-2 its mean is offset + 1 + i and its range offset + i to offset + 2 + i; alpha_prime is 0 in every run.
DIAGNOSTIC_OFFSET = {"mlp": 0.0, "kan": 10.0}


def env_of(dataset: str) -> str:
    return dataset.partition(":")[2].split("-", 1)[0].split("/")[-1]


def base_config(dataset: str, arch: str, seed: int) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "arch": arch,
        "seed": seed,
        "steps": STEPS,
        "epoch_steps": EPOCH_STEPS,
        "eval_every": EVAL_EVERY,
        "eval_episodes": 10,
        "checkpoint_every": 10,
        "device": "cpu",
        "normalize_states": True,
        "normalize_reward": False,
        "arch_file": None,
        "cql": {"batch_size": 256, "cql_alpha": 10.0, "policy_lr": 3e-5, "qf_lr": 3e-4},
    }


def make_record(
    dataset: str,
    arch: str,
    seed: int,
    score: float | None,
    *,
    status: str = "done",
    median_seconds: float | None = None,
    last_step: int = STEPS,
    eval_every: int = EVAL_EVERY,
    config_changes: Mapping[str, Any] | None = None,
    device: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One record as `bench.train.train_cell` writes it; the curve ends at `last_step` with `score`.

    `score=None` gives a run without any evaluation; evaluations come every `eval_every` steps, each 10 points
    below the next. Seconds per epoch are `median_seconds` for every epoch but a slow first one, so the per-run
    median is `median_seconds`.
    """
    env = env_of(dataset)
    source = dataset.partition(":")[0]
    seconds = median_seconds if median_seconds is not None else EPOCH_SECONDS.get(arch, [0.2] * 3)[seed % 3]
    epochs = last_step // EPOCH_STEPS
    steps = list(range(eval_every, last_step + 1, eval_every))
    curve = []
    if score is not None:
        curve = [
            {
                "step": step,
                "normalized_score": score - 10.0 * (len(steps) - 1 - i),
                "normalized_score_std": 1.0,
                "return_mean": 1000.0,
                "return_std": 10.0,
                "episode_returns": [1000.0] * 10,
                "episode_lengths": [1000] * 10,
            }
            for i, step in enumerate(steps)
        ]
    actor, critic = PARAMETERS.get((env, arch), (1_000, 2_000))
    actor_spec, critic_spec = SPECS.get(arch, ("mlp[64]", "mlp[64]"))
    config = base_config(dataset, arch, seed)
    config["eval_every"] = eval_every
    for key, value in (config_changes or {}).items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return {
        "schema_version": 1,
        "cell": {"dataset": dataset, "arch": arch, "seed": seed},
        "status": status,
        "config": config,
        "config_fingerprint": "0123456789abcdef",
        "architecture": {"name": arch, "actor": actor_spec, "critic": critic_spec, "kan": {"grid_size": 5}},
        "dataset": {
            "name": dataset,
            "source": source,
            "env": env,
            "env_id": f"{env.capitalize()}-v4",
            "transitions": 1000,
            "sha256": hashlib.sha256(dataset.encode()).hexdigest(),
            "label": "D4RL" if source == "d4rl" else f"{source} data, not D4RL",
        },
        "parameters": {
            "actor": actor + 2,
            "actor_network": actor,
            "critic": critic,
            "critics_total": 2 * critic,
        },
        "evaluation": {"episodes": 10, "seed": seed * 10, "env_id": f"{env.capitalize()}-v4"},
        "epoch_steps": EPOCH_STEPS,
        "steps_done": last_step,
        "curve": curve,
        "seconds_per_epoch": [5 * seconds] + [seconds] * (epochs - 1),
        "final_score": curve[-1]["normalized_score"] if curve else None,
        "best_score": max(p["normalized_score"] for p in curve) if curve else None,
        "final_return": 1000.0 if curve else None,
        "losses": {"critic_loss": 1.0},
        "diagnostics": {
            "critic_loss": [DIAGNOSTIC_OFFSET.get(arch, 0.0) + seed + i for i in range(epochs)],
            "alpha_prime": [0.0] * epochs,
            "step": [EPOCH_STEPS * (i + 1) for i in range(epochs)],
        },
        "device": dict(device or DEVICE),
        "versions": {"bench": "0.1.0"},
        "git_commit": "abc",
        "started_at": "2025-01-01T00:00:00+00:00",
        "finished_at": "2025-01-01T01:00:00+00:00",
        "error": None if status == "done" else f"{status} for a test",
    }


def as_algorithm(record: Mapping[str, Any], algo: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A fixture record trained under `algo` with `settings` instead of CQL's, as that algorithm's grid writes it."""
    record = copy.deepcopy(dict(record))
    del record["config"]["cql"]
    record["config"].update({"algo": algo, algo: dict(settings)})
    record["cell"]["algo"] = algo
    return record


def in_group(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`records` (of one cell's seeds) as seeds trained side by side in one process: each names the group."""
    group = {"seeds": [record["cell"]["seed"] for record in records], "size": len(records)}
    for record in records:
        record["group"] = dict(group)
    return list(records)


def record_path(root: Path, record: Mapping[str, Any]) -> Path:
    """Where the grid harness stores a cell: <root>/<dataset slug>/<arch>/seed<k>.json."""
    cell = record["cell"]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", cell["dataset"]).strip("-.")
    return Path(root) / slug / cell["arch"] / f"seed{cell['seed']}.json"


def write_records(root: Path, records: Iterable[Mapping[str, Any]]) -> list[Path]:
    paths = []
    for record in records:
        path = record_path(root, record)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        paths.append(path)
    return paths


def fixture_records(scores: Mapping[tuple[str, str], list[float | None]] = SCORES) -> list[dict[str, Any]]:
    """Done records for every (dataset, arch) in `scores`, seed i scoring scores[i]; None leaves the seed out."""
    return [
        make_record(dataset, arch, seed, score)
        for (dataset, arch), values in scores.items()
        for seed, score in zip(SEEDS, values, strict=False)
        if score is not None
    ]


def write_fixture(root: Path, scores: Mapping[tuple[str, str], list[float | None]] = SCORES) -> list[Path]:
    """The complete fixture grid (or the given scores) written under `root`."""
    return write_records(root, fixture_records(scores))


def write_grid_file(
    root: Path,
    *,
    datasets=DATASETS,
    archs=ARCHS,
    seeds=SEEDS,
    baseline: str | None = None,
    reports: Mapping[str, Mapping[str, Any]] | None = None,
    algorithms: Sequence[str] = (),
) -> Path:
    """A grid.yaml shaped like the one `python -m bench grid` writes beside its records (`algorithms:` only when
    given, as for a grid of CQL alone)."""
    architectures = {a: {"actor": SPECS[a][0], "critic": SPECS[a][1]} for a in archs}
    lines = ["# resolved grid", "name: fixture", *([f"baseline: {baseline}"] if baseline else [])]
    if reports:
        lines.append("reports:")
        for name, entry in reports.items():
            lines += [f"  {name}:", f"    architectures: [{', '.join(entry['architectures'])}]"]
            lines += [f"    baseline: {entry['baseline']}"] if entry.get("baseline") else []
            lines += [f"    datasets: [{', '.join(entry['datasets'])}]"] if entry.get("datasets") else []
            lines += [f"    with: [{', '.join(entry['with'])}]"] if entry.get("with") else []
    lines.append("architectures:")
    for name, entry in architectures.items():
        lines += [f"  {name}:", f"    actor: {entry['actor']}", f"    critic: {entry['critic']}"]
    lines += ["algorithms:", *(f"- {a}" for a in algorithms)] if algorithms else []
    lines += ["datasets:", *(f"- {d}" for d in datasets), "seeds:", *(f"- {s}" for s in seeds)]
    lines += ["settings:", f"  steps: {STEPS}"]
    path = Path(root) / "grid.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def scores_without(*cells: tuple[str, str, int]) -> dict[tuple[str, str], list[float | None]]:
    """SCORES with the given (dataset, arch, seed) runs removed."""
    scores: dict[tuple[str, str], list[float | None]] = {k: list(v) for k, v in copy.deepcopy(SCORES).items()}
    for dataset, arch, seed in cells:
        scores[(dataset, arch)][seed] = None
    return scores


# A grid shaped like `make smoke`'s: one local dataset, two small architectures, two seeds and a single
# evaluation at the last of 200 steps. kan-small beats mlp-small in every run, so P(kan-small > mlp-small) = 1.
SMOKE_DATASET = "local:hopper-random"
SMOKE_STEPS = 200
SMOKE_SCORES = {"mlp-small": [4.1, 5.5], "kan-small": [6.0, 7.2]}


def smoke_records(scores: Mapping[str, list[float]] = SMOKE_SCORES) -> list[dict[str, Any]]:
    return [
        make_record(
            SMOKE_DATASET,
            arch,
            seed,
            score,
            last_step=SMOKE_STEPS,
            eval_every=SMOKE_STEPS,
            config_changes={"steps": SMOKE_STEPS},
        )
        for arch, values in scores.items()
        for seed, score in enumerate(values)
    ]
