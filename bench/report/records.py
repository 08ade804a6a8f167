"""Load a folder of run records (SPEC section 7) into tidy pandas frames, refusing to mix configurations.

The folder is walked recursively for `*.json`; checkpoints, locks and temporary files are not records. A file
that is not valid JSON is reported and skipped (an interrupted copy, a disk error); a JSON object that claims
to be a record but lacks a key or holds a value of the wrong type is an error, because skipping it would drop a
run without anyone noticing. Records of one dataset that trained on different data (their `dataset.sha256`
differs: the file was regenerated between runs) are refused, like records of different configurations. Records
of other folders set beside the first (`also`: other grids' cells) are read and checked as if they were one folder.

How a run's status becomes a score (documented in the tables' footnotes):
- done: the final evaluation's normalized score;
- diverged: a real outcome of the algorithm, so it counts with its last evaluation score; a run that diverged
  before its first evaluation has no score and counts as missing;
- failed: a crash of the software, not of the algorithm, so it counts as missing.

Algorithms. A record names its algorithm in `config.algo` (records without one are CQL's, as every record from
before other algorithms existed). A folder may hold several (a grid of TD3+BC and IQL): then every architecture
is reported per algorithm, labelled "<algorithm> <architecture>" ("TD3+BC mlp"), and configurations are compared
per algorithm for the algorithm's own settings and across all records for the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.data.registry import get_env_spec
from bench.errors import BenchError

SCHEMA_VERSION = 1
STATUSES = ("done", "failed", "diverged")
GRID_FILE = "grid.yaml"
# Config keys that may differ between records of one report: the cell's identity, the checkpoint cadence
# (it does not change the result), the device (Table 3 groups by device) and the architecture file's path
# (the resolved architecture in the record's `architecture` block is compared instead).
PER_CELL_CONFIG_KEYS = frozenset({"dataset", "arch", "seed", "checkpoint_every", "device", "arch_file"})
DEFAULT_ALGORITHM = "cql"
# How tables and figures name the algorithms (bench/agents/registry.py has the same labels; the report reads
# records only, never model code). An unknown name is shown in capitals.
ALGORITHM_LABELS = {"cql": "CQL", "td3bc": "TD3+BC", "iql": "IQL", "bc": "BC"}

RECORD_COLUMNS = [
    "path",
    "process",
    "dataset",
    "dataset_name",
    "display_name",
    "source",
    "dataset_label",
    "recipe",
    "dataset_sha256",
    "env",
    "arch",
    "cell_arch",
    "algo",
    "seed",
    "status",
    "score",
    "score_step",
    "episode_length",
    "time_limit_share",
    "reward_beyond_healthy",
    "score_standard_error",
    "steps",
    "steps_done",
    "epoch_steps",
    "actor_spec",
    "critic_spec",
    "actor_params",
    "actor_params_total",
    "critic_params",
    "critics_total",
    "value_params",
    "seconds_per_1k",
    "still_improving",
    "epochs_timed",
    "device",
    "device_type",
    "torch_threads",
    "error",
    "adopted_from",
    "extended_from",
    "extended_steps",
]
CURVE_COLUMNS = ["dataset", "arch", "algo", "seed", "step", "normalized_score"]
DIAGNOSTIC_COLUMNS = ["dataset", "arch", "algo", "seed", "step", "name", "value"]


@dataclass(frozen=True)
class SkippedFile:
    """A `.json` file under the results folder that is not read as a record, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class NamedReport:
    """One report a grid file names (`reports:`): its architectures, in order, its baseline (None: the grid's),
    its datasets, in order (empty: the grid's), and the folders of the other grids whose records it sets beside
    the grid's (`with:`, grids of the same results folder)."""

    architectures: tuple[str, ...]
    baseline: str | None = None
    datasets: tuple[str, ...] = ()
    also: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ExpectedGrid:
    """The cells a complete report holds: from the grid harness's `grid.yaml`, else inferred from the records.
    With several algorithms, `architectures` are the "<algorithm> <architecture>" labels."""

    architectures: list[str]
    datasets: list[str]
    seeds: list[int]
    source: str  # "grid.yaml" or "observed records"
    baseline: str | None = None  # the grid file's reference architecture, if it names one
    reports: dict[str, NamedReport] = field(default_factory=dict)  # the grid file's named reports
    # The algorithms of the columns: the grid file's, in its `algorithms:` order, else the records' (registry order).
    algorithms: list[str] = field(default_factory=list)

    @property
    def cells(self) -> int:
        return len(self.architectures) * len(self.datasets) * len(self.seeds)


@dataclass
class RecordSet:
    """Every record of a results folder (and of the folders beside it, `also`) as tidy frames, plus what was
    skipped and what the grid expects."""

    root: Path
    runs: pd.DataFrame  # one row per record, RECORD_COLUMNS
    curves: pd.DataFrame  # one row per evaluation of a done or diverged run, CURVE_COLUMNS
    expected: ExpectedGrid
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored: list[SkippedFile] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the shared configuration (flattened, dotted keys)
    mixed_keys: list[str] = field(default_factory=list)  # config keys that differ (only with allow_mixed)
    # The records' algorithms, by name, in the order of the columns (the grid file's `algorithms:` order).
    algorithms: list[str] = field(default_factory=lambda: [DEFAULT_ALGORITHM])
    # One row per epoch and training quantity of a done or diverged run (its `diagnostics`), DIAGNOSTIC_COLUMNS.
    diagnostics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DIAGNOSTIC_COLUMNS))
    # The gradient step the records were cut at (`record_at_step`); None for the runs as they ended.
    at_step: int | None = None
    # How many of a run's last evaluations its score averages (1: the final evaluation, CORL's protocol).
    last_evaluations: int = 1
    # Further folders whose records the report sets beside `root`'s (`load_records(also=...)`).
    also: tuple[Path, ...] = ()

    @property
    def label(self) -> str:
        """The folder(s) the records came from, as messages and the figures' index name them."""
        return " with ".join(str(root) for root in (self.root, *self.also))

    def display_names(self) -> dict[str, str]:
        """Dataset key -> the name shown in tables and figures (from the key alone when no record has it)."""
        names = dict(zip(self.runs["dataset"], self.runs["display_name"], strict=True))
        return {d: names.get(d, display_name(d, "")) for d in self.datasets}

    @property
    def architectures(self) -> list[str]:
        return self.expected.architectures

    def algorithm_phrase(self) -> str:
        """How captions name the algorithm(s): "Algorithm: CQL." or "Algorithms: TD3+BC, IQL (...)."."""
        columns = self.architectures

        def first_column(algo: str) -> int:
            prefix = arch_label(algo, "")
            return next((i for i, a in enumerate(columns) if a.startswith(prefix)), len(columns))

        # In the order of the columns (a grid file's order), not the registry's.
        labels = [algorithm_label(a) for a in sorted(self.algorithms, key=first_column)]
        # A grid of several algorithms part way through: columns of algorithms without records yet.
        waiting = [
            algorithm_label(a)
            for a in self.expected.algorithms
            if a not in self.algorithms and first_column(a) < len(columns)
        ]
        if waiting:
            return (
                f"Algorithms: {', '.join(labels)} (each column or label names its algorithm before the architecture; "
                f"no records of {', '.join(waiting)} yet, whose columns are dashes)."
            )
        if len(labels) == 1:
            return f"Algorithm: {labels[0]}."
        return f"Algorithms: {', '.join(labels)} (each column or label names its algorithm before the architecture)."

    @property
    def datasets(self) -> list[str]:
        return self.expected.datasets

    @property
    def seeds(self) -> list[int]:
        return self.expected.seeds


def load_records(
    results_dir: Path,
    *,
    also: Sequence[Path] = (),
    allow_mixed: bool = False,
    at_step: int | None = None,
    last_evaluations: int = 1,
) -> RecordSet:
    """Read every record under `results_dir` into a RecordSet; see the module docstring for the rules. With
    `also`, the records of those folders too (another grid's cells beside this one's: each folder's own grid file
    says which cells it expects, and the report expects them all); the records of all folders must pass the same
    checks as one folder's. With `at_step`, every record as it stood at that gradient step (`record_at_step`);
    with `last_evaluations` K, each run scored by the mean of its last K evaluations (`usable_score`)."""
    roots = [Path(results_dir), *(Path(folder) for folder in also)]
    if last_evaluations < 1:
        raise BenchError(f"--last-evaluations must be at least 1 (1: the final evaluation), got {last_evaluations}")
    _refuse_nested_folders(roots)
    records: list[tuple[Path, dict[str, Any]]] = []
    skipped: list[SkippedFile] = []
    ignored: list[SkippedFile] = []
    bounds: list[tuple[int, int]] = []  # each folder's records: records[start:stop]
    for root in roots:
        found, corrupt, not_records = _read_folder(root, at_step)
        bounds.append((len(records), len(records) + len(found)))
        records += found
        skipped += corrupt
        ignored += not_records

    _refuse_duplicate_cells(records)
    _refuse_mixed_data(records)
    config, mixed = check_same_configuration(records, allow_mixed=allow_mixed)
    runs = pd.DataFrame([run_row(path, record, last_evaluations) for path, record in records], columns=RECORD_COLUMNS)
    curves = pd.DataFrame(
        [row for path, record in records for row in curve_rows(record)],
        columns=CURVE_COLUMNS,
    )
    diagnostics = pd.DataFrame(
        [row for path, record in records for row in diagnostic_rows(path, record)],
        columns=DIAGNOSTIC_COLUMNS,
    )
    if at_step is not None:
        runs["steps"] = at_step  # the budget the tables judge the runs by
    # The folder of a whole multi-algorithm grid is labelled by the algorithms its grid file lists, so records of
    # only some of them are still that grid's (the others' cells are missing, not another grid's).
    algorithms_of = [
        set(runs["algo"].iloc[start:stop]) | set(listed_algorithms(root))
        for root, (start, stop) in zip(roots, bounds, strict=True)
    ]
    labelled = len(set().union(*algorithms_of)) > 1
    grids = []
    for root, (start, stop), algos in zip(roots, bounds, algorithms_of, strict=True):
        own = runs.iloc[start:stop].copy()
        if len(algos) > 1:
            own["arch"] = _labelled_architectures(own)
        grid = expected_grid(root, own, allow_mixed=allow_mixed)
        if labelled and len(algos) == 1:
            # One algorithm's folder beside another algorithm's: its columns are labelled as theirs are.
            (algo,) = algos
            grid = replace(grid, architectures=[arch_label(algo, a) for a in grid.architectures])
        grids.append(grid)
    if labelled:
        # Every architecture once per algorithm: the tables, statistics and figures group by the label.
        for frame in (runs, curves, diagnostics):
            frame["arch"] = _labelled_architectures(frame)
    expected = _merged_grids(grids)
    algorithms = [a for a in expected.algorithms if a in set(runs["algo"])]
    return RecordSet(
        roots[0],
        runs,
        curves,
        expected,
        skipped,
        ignored,
        config,
        mixed,
        algorithms,
        diagnostics,
        at_step=at_step,
        last_evaluations=last_evaluations,
        also=tuple(roots[1:]),
    )


def _labelled_architectures(frame: pd.DataFrame) -> list[str]:
    """The frame's architectures labelled by their algorithm ("TD3+BC mlp"), for a report of several algorithms."""
    return [arch_label(algo, arch) for algo, arch in zip(frame["algo"], frame["arch"], strict=True)]


def _read_folder(
    root: Path, at_step: int | None
) -> tuple[list[tuple[Path, dict[str, Any]]], list[SkippedFile], list[SkippedFile]]:
    """The records under `root` (cut at `at_step` when given), the corrupt files skipped and the JSON files that
    are not records. A folder without records is an error: a report of it would show nothing."""
    if not root.is_dir():
        raise BenchError(f"results folder {root} does not exist; run a grid first or name the folder of its records")
    records: list[tuple[Path, dict[str, Any]]] = []
    skipped: list[SkippedFile] = []
    ignored: list[SkippedFile] = []
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith(".") or not path.is_file():
            continue  # temporary files of atomic writes
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            skipped.append(SkippedFile(path, f"corrupt JSON ({exc}); rerun the cell or delete the file"))
            continue
        if not isinstance(data, dict) or not {"schema_version", "cell"} & data.keys():
            ignored.append(SkippedFile(path, "not a run record (no schema_version or cell)"))
            continue
        record = validate_record(path, data)
        records.append((path, record if at_step is None else record_at_step(path, record, at_step)))
    if not records:
        found = f"; skipped {len(skipped)} corrupt file(s), e.g. {skipped[0].path}" if skipped else ""
        raise BenchError(f"no run records (*.json with schema_version {SCHEMA_VERSION}) under {root}{found}")
    return records, skipped, ignored


def _refuse_nested_folders(roots: Sequence[Path]) -> None:
    """Folders of one report must not hold each other: their records would be read twice."""
    resolved = [root.resolve() for root in roots]
    for i, first in enumerate(resolved):
        for j in range(i + 1, len(resolved)):
            second = resolved[j]
            if first == second or first in second.parents or second in first.parents:
                raise BenchError(
                    f"results folders {roots[i]} and {roots[j]} overlap (one holds the other); name each grid's "
                    "folder once"
                )


def _merged_grids(grids: Sequence[ExpectedGrid]) -> ExpectedGrid:
    """The cells of several folders' reports together: their architectures, datasets and seeds in the first
    folder's order, then the others' new ones; the first folder's baseline and named reports."""
    first = grids[0]
    if len(grids) == 1:
        return first

    def union(values: Iterable[list[Any]]) -> list[Any]:
        return list(dict.fromkeys(v for listed in values for v in listed))

    sources = {grid.source for grid in grids}
    return ExpectedGrid(
        architectures=union(g.architectures for g in grids),
        datasets=union(g.datasets for g in grids),
        seeds=union(g.seeds for g in grids),
        source=f"{GRID_FILE} of each folder" if sources == {GRID_FILE} else " and ".join(sorted(sources)),
        baseline=first.baseline,
        reports=first.reports,
        algorithms=union(g.algorithms for g in grids),
    )


def record_at_step(path: Path, record: dict[str, Any], step: int) -> dict[str, Any]:
    """`record` as it stood after `step` gradient steps, for a report of a shorter budget from longer runs (the
    study's tables at 50,000 steps from runs of 100,000): the curve, epoch timings and diagnostics up to `step`,
    and the evaluation at `step` as the final score. On CPU the first `step` steps of a longer run are the run of
    `step` steps (CQL, TD3+BC and BC have no schedule tied to the budget; IQL's actor learning rate decays over
    it), so on the CPU that trained them the cut records are what a grid of `step` steps would have written.

    A run that diverged after `step` was a finished run at `step`. A run that diverged or failed before it stays
    as it is. A finished run, or one that diverged after `step`, without an evaluation at `step` is refused, as is
    a run of fewer steps.
    """
    if step < 1:
        raise BenchError(f"--at-step must be a positive number of gradient steps, got {step}")
    if record["status"] == "failed":
        return record
    budget = record["config"]["steps"]
    if step > budget:
        raise BenchError(
            f"{path}: --at-step {step:,} is past this run's {budget:,} steps; pick a step every record reached"
        )
    evaluations = {point["step"]: point for point in record["curve"]}
    # A run that diverged after `step` was running at it, so it needs an evaluation there as a finished run does.
    if step not in evaluations and (record["status"] == "done" or record["steps_done"] > step):
        shown = ", ".join(f"{s:,}" for s in sorted(evaluations)) or "none"
        raise BenchError(f"{path}: no evaluation at step {step:,} (evaluations at {shown}); pick one of them")
    diagnostics = record.get("diagnostics")
    if isinstance(diagnostics, dict) and isinstance(diagnostics.get("step"), list):
        epochs = sum(1 for s in diagnostics["step"] if isinstance(s, int) and s <= step)  # epochs in step order
        diagnostics = {name: v[:epochs] if isinstance(v, list) else v for name, v in diagnostics.items()}
    cut = {
        **record,
        "curve": [point for point in record["curve"] if point["step"] <= step],
        "seconds_per_epoch": record["seconds_per_epoch"][: step // record["epoch_steps"]],
        "steps_done": min(record["steps_done"], step),
        "diagnostics": diagnostics,
    }
    if step in evaluations:
        cut.update(status="done", final_score=evaluations[step]["normalized_score"])
    return cut


def record_algorithm(record: Mapping[str, Any]) -> str:
    """The algorithm a record was trained with: `config.algo`, CQL for records without one."""
    return str(record["config"].get("algo", DEFAULT_ALGORITHM))


def algorithm_label(name: str) -> str:
    return ALGORITHM_LABELS.get(name, name.upper())


def arch_label(algo: str, arch: str) -> str:
    """An architecture under one of several algorithms: "TD3+BC mlp"."""
    return f"{algorithm_label(algo)} {arch}"


def _require(path: Path, record: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str = "") -> Any:
    """record[key], checked against `types`; a BenchError naming the file and key otherwise."""
    name = f"{where}.{key}" if where else key
    if key not in record:
        raise BenchError(f"{path}: record has no key {name!r}; it is not a valid record, rerun the cell or remove it")
    value = record[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if not _is(value, allowed):
        raise BenchError(
            f"{path}: key {name!r} should be {_kinds(allowed)}, got {value!r}; the record is damaged, rerun the cell "
            "or remove it"
        )
    return value


def _is(value: Any, allowed: tuple[type, ...]) -> bool:
    # bool is an int in Python; a record never means True by 1.
    return isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)


def _kinds(allowed: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in allowed)


def _require_list(
    path: Path, record: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str = ""
) -> list[Any]:
    """record[key], a list whose every item is of `types`; a BenchError naming the file, key and item otherwise."""
    values = _require(path, record, key, list, where)
    allowed = types if isinstance(types, tuple) else (types,)
    name = f"{where}.{key}" if where else key
    for i, value in enumerate(values):
        if not _is(value, allowed):
            raise BenchError(
                f"{path}: {name}[{i}] should be {_kinds(allowed)}, got {value!r}; the record is damaged, rerun the "
                "cell or remove it"
            )
    return values


NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))


def validate_record(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Check the keys and types the report reads; return the record unchanged."""
    version = _require(path, record, "schema_version", int)
    if version != SCHEMA_VERSION:
        raise BenchError(
            f"{path}: schema_version {version}, but this report reads version {SCHEMA_VERSION}; "
            "report it with the version of the suite that wrote it, or rerun the cell"
        )
    cell = _require(path, record, "cell", dict)
    _require(path, cell, "dataset", str, "cell")
    _require(path, cell, "arch", str, "cell")
    _require(path, cell, "seed", int, "cell")
    status = _require(path, record, "status", str)
    if status not in STATUSES:
        raise BenchError(f"{path}: status {status!r} is not one of {', '.join(STATUSES)}; rerun the cell")
    config = _require(path, record, "config", dict)
    _require(path, config, "steps", int, "config")
    if "algo" in config:
        _require(path, config, "algo", str, "config")
    architecture = _require(path, record, "architecture", dict)
    _require(path, architecture, "actor", str, "architecture")
    _require(path, architecture, "critic", str, "architecture")
    dataset = _require(path, record, "dataset", dict)
    for key in ("name", "source", "env"):
        _require(path, dataset, key, str, "dataset")
    if "sha256" in dataset:  # records written before the digest existed have none
        _require(path, dataset, "sha256", str, "dataset")
    parameters = _require(path, record, "parameters", dict)
    for key in ("actor", "actor_network", "critic", "critics_total"):
        _require(path, parameters, key, int, "parameters")
    if "value" in parameters:  # IQL's value network
        _require(path, parameters, "value", int, "parameters")
    epoch_steps = _require(path, record, "epoch_steps", int)
    if epoch_steps < 1:
        raise BenchError(f"{path}: epoch_steps is {epoch_steps}; it must be positive, rerun the cell")
    _require(path, record, "steps_done", int)
    for i, point in enumerate(_require(path, record, "curve", list)):
        if not isinstance(point, dict):
            raise BenchError(f"{path}: curve[{i}] is not an object; the record is damaged, rerun the cell")
        _require(path, point, "step", int, f"curve[{i}]")
        _require(path, point, "normalized_score", NUMBER, f"curve[{i}]")
        for key in ("episode_returns", "episode_lengths"):  # records from before they were kept have none
            if point.get(key) is not None:
                _require_list(path, point, key, NUMBER, f"curve[{i}]")
    for i, seconds in enumerate(_require(path, record, "seconds_per_epoch", list)):
        if isinstance(seconds, bool) or not isinstance(seconds, NUMBER) or not seconds > 0:
            raise BenchError(f"{path}: seconds_per_epoch[{i}] is {seconds!r}, not a positive number; rerun the cell")
    _require(path, record, "final_score", OPTIONAL_NUMBER)
    device = _require(path, record, "device", dict)
    _require(path, device, "type", str, "device")
    _require(path, device, "name", str, "device")
    _validate_group(path, record)
    _validate_diagnostics(path, record)
    _validate_grid_overrides(path, record)
    return record


def _validate_group(path: Path, record: Mapping[str, Any]) -> None:
    """The seeds trained side by side with the record's (Table 3 divides the timing by their number and counts
    each group as one process); records of a seed trained alone may have none."""
    if record.get("group") is None:
        return
    group = _require(path, record, "group", dict)
    size = _require(path, group, "size", int, "group")
    if size < 1:
        raise BenchError(f"{path}: group.size is {size}; it must be a positive number of seeds, rerun the cell")
    _require_list(path, group, "seeds", int, "group")


def _validate_diagnostics(path: Path, record: Mapping[str, Any]) -> None:
    """The per-epoch diagnostics' steps (`diagnostic_rows` checks the values); records from before diagnostics
    were kept have none."""
    if record.get("diagnostics"):
        diagnostics = _require(path, record, "diagnostics", dict)
        _require_list(path, diagnostics, "step", int, "diagnostics")


def _validate_grid_overrides(path: Path, record: Mapping[str, Any]) -> None:
    """The grid's overrides as the record keeps them (`comparable_config`, `override_entries`); records of a grid
    without overrides may have none."""
    if record.get("grid_overrides") is None:
        return
    overrides = _require(path, record, "grid_overrides", dict)
    for key in ("applied", "replaced", *OVERRIDE_MAPS):
        if overrides.get(key) is not None:
            _require(path, overrides, key, dict, "grid_overrides")
    for kind in OVERRIDE_MAPS:
        for target, settings in (overrides.get(kind) or {}).items():
            if settings is not None:
                _require(path, overrides[kind], target, dict, f"grid_overrides.{kind}")


def display_name(dataset: str, source: str) -> str:
    """The row label of a dataset: D4RL names as D4RL prints them, other sources marked as not D4RL."""
    prefix, sep, rest = dataset.partition(":")
    name = rest if sep else dataset
    if prefix == "local" or source == "local":
        stem = Path(name).name.removesuffix(".hdf5").removesuffix(".h5")
        return f"{stem} (local)"
    if prefix == "minari" or source == "minari":
        return f"{name} (Minari)"
    return name


def dataset_label(dataset: Mapping[str, Any]) -> str:
    """How the data is labelled in captions: D4RL only when it is D4RL."""
    label = dataset.get("label")
    if isinstance(label, str) and label and (label != "D4RL" or dataset["source"] == "d4rl"):
        return label
    return "D4RL" if dataset["source"] == "d4rl" else f"{dataset['source']} data, not D4RL"


def usable_score(record: Mapping[str, Any], last_evaluations: int = 1) -> tuple[float, int | None]:
    """(score, step of its last evaluation) that the tables count for a run; (nan, None) when it counts as missing.

    The score is the run's final evaluation (a diverged run's last one), or with `last_evaluations` K > 1 the mean
    of its last K evaluations (as many as it has, when fewer): the protocol of papers that average the final
    evaluations (TD3+BC's final 10), less tied to the step training stopped at.
    """
    curve = record["curve"]
    if record["status"] == "failed" or not curve:
        return math.nan, None
    if record["status"] != "diverged" and record["final_score"] is None:
        return math.nan, None
    step = int(curve[-1]["step"])
    if last_evaluations > 1:
        return float(np.mean([point["normalized_score"] for point in curve[-last_evaluations:]])), step
    if record["status"] == "diverged":
        return float(curve[-1]["normalized_score"]), step
    return float(record["final_score"]), step


def scored_episodes(record: Mapping[str, Any]) -> tuple[float, float, float]:
    """How the episodes of the evaluation that scores a run went: (mean length, share of episodes that ran to
    the time limit, reward per step beyond the healthy reward); nans for a run without a score.

    Hopper and Walker2d pay a healthy reward for every step until they fall, so a policy that stands still to
    the time limit scores well above 0 (walker2d: 21.7) without moving. Return minus healthy reward times length
    is the forward reward minus the control cost, what moving earned; per step, it compares episodes of any length.
    """
    _, step = usable_score(record)
    if step is None:
        return math.nan, math.nan, math.nan
    point = record["curve"][-1]
    returns, lengths = point.get("episode_returns") or [], point.get("episode_lengths") or []
    if not lengths or len(returns) != len(lengths):
        return math.nan, math.nan, math.nan
    env = get_env_spec(record["dataset"]["env"])
    steps = np.asarray(lengths, dtype=float)
    beyond = (float(np.sum(returns)) - env.healthy_reward * steps.sum()) / steps.sum()
    return float(steps.mean()), float(np.mean(steps >= env.max_episode_steps)), beyond


def still_improving(record: Mapping[str, Any], min_points: int = 4) -> bool:
    """Whether a finished run's learning curve still rises at its end, so its final score is a budget's limit.

    The rule: a least-squares line through the last quarter of the evaluations (at least 3 points) rises, over
    their span, by more than twice the standard error of the final evaluation's mean (its episodes' spread over
    the square root of their count). Runs with fewer than `min_points` evaluations, and diverged or failed ones,
    are not judged.
    """
    curve = record.get("curve") or []
    if record.get("status") != "done" or len(curve) < min_points:
        return False
    tail = curve[-max(3, math.ceil(len(curve) / 4)) :]
    steps = np.array([point["step"] for point in tail], dtype=float)
    scores = np.array([point["normalized_score"] for point in tail], dtype=float)
    slope = np.polyfit(steps, scores, 1)[0]
    standard_error = evaluation_standard_error(curve[-1])
    if math.isnan(standard_error):  # episodes not kept: judged as one episode's spread
        standard_error = float(curve[-1].get("normalized_score_std") or 0.0)
    return bool(slope * (steps[-1] - steps[0]) > 2.0 * standard_error)


def evaluation_standard_error(point: Mapping[str, Any]) -> float:
    """The standard error of one evaluation's normalized score from its finite episodes: their standard deviation
    (the record's `normalized_score_std`, over all episodes) over the square root of their count; nan for an
    evaluation whose episodes the record does not keep (records from before they were kept)."""
    episodes = len(point.get("episode_returns") or [])
    spread = point.get("normalized_score_std")
    if not episodes or spread is None:
        return math.nan
    return float(spread) / math.sqrt(episodes)


def seeds_per_process(record: Mapping[str, Any]) -> int:
    """How many seeds trained side by side in the record's process (1 for records without a group)."""
    return int((record.get("group") or {}).get("size", 1))


def process_key(record: Mapping[str, Any]) -> str:
    """Which training process timed the record: its cell with the seeds trained side by side in it (the record's
    `group`), so the records of one group share a key; a record without a group is its own process."""
    cell = record["cell"]
    seeds = (record.get("group") or {}).get("seeds") or [cell["seed"]]
    return f"{cell['dataset']} {record_algorithm(record)} {cell['arch']} seeds {','.join(map(str, seeds))}"


def seconds_per_1k_steps(record: Mapping[str, Any]) -> float:
    """Median seconds per epoch per seed, scaled to an epoch of 1,000 gradient steps; nan without timed epochs.

    The median because the first epochs carry one-off costs (allocation, compilation, cache warm-up). A group
    of seeds trained side by side times each epoch for all of them; one seed's share is that time over the
    group's size.
    """
    seconds = pd.Series(record["seconds_per_epoch"], dtype=float)
    if seconds.empty:
        return math.nan
    return float(seconds.median()) * 1000.0 / record["epoch_steps"] / seeds_per_process(record)


def device_label(device: Mapping[str, Any], seeds: int = 1) -> str:
    """A device as named in Table 3; CPU timings depend on the thread count and every timing on how many seeds
    share the process, so both are part of the name."""
    threads = device.get("torch_threads")
    if device["type"] == "cpu" and isinstance(threads, int):
        label = f"{device['name']} (CPU, {threads} torch thread{'s' if threads != 1 else ''}"
    else:
        label = f"{device['name']} ({device['type'].upper()}"
    return label + (f", {seeds} seeds side by side)" if seeds > 1 else ")")


def run_row(path: Path, record: Mapping[str, Any], last_evaluations: int = 1) -> dict[str, Any]:
    """One row of the runs frame, the run scored as `usable_score` does with `last_evaluations`."""
    cell, dataset, params, device = record["cell"], record["dataset"], record["parameters"], record["device"]
    score, score_step = usable_score(record, last_evaluations)
    episode_length, time_limit_share, reward_beyond_healthy = scored_episodes(record)
    return {
        "path": str(path),
        "process": process_key(record),
        "dataset": cell["dataset"],
        "dataset_name": dataset["name"],
        "display_name": display_name(cell["dataset"], dataset["source"]),
        "source": dataset["source"],
        "dataset_label": dataset_label(dataset),
        "recipe": dataset.get("recipe"),  # of local data made by `bench datasets generate`; None when not named
        "dataset_sha256": dataset.get("sha256"),  # None in records written before the digest existed
        "env": dataset["env"],
        "arch": cell["arch"],
        # The grid's name of the architecture (`arch` is labelled "<algorithm> <architecture>" with several).
        "cell_arch": cell["arch"],
        "algo": record_algorithm(record),
        "seed": cell["seed"],
        "status": record["status"],
        "score": score,
        "score_step": score_step,
        "episode_length": episode_length,
        "time_limit_share": time_limit_share,
        "reward_beyond_healthy": reward_beyond_healthy,
        # Of the evaluation that ends the run's score; none for a run without one.
        "score_standard_error": math.nan if score_step is None else evaluation_standard_error(record["curve"][-1]),
        "steps": record["config"]["steps"],
        "steps_done": record["steps_done"],
        "epoch_steps": record["epoch_steps"],
        "actor_spec": record["architecture"]["actor"],
        # An algorithm without critics (BC) leaves the architecture's critic unbuilt.
        "critic_spec": record["architecture"]["critic"] if params["critics_total"] else "none",
        "actor_params": params["actor_network"],
        "actor_params_total": params["actor"],
        "critic_params": params["critic"],
        "critics_total": params["critics_total"],
        "value_params": params.get("value"),
        "seconds_per_1k": seconds_per_1k_steps(record),
        "still_improving": still_improving(record),
        "epochs_timed": len(record["seconds_per_epoch"]),
        "device": device_label(device, seeds_per_process(record)),
        "device_type": device["type"],
        "torch_threads": device.get("torch_threads"),
        "error": (record.get("error") or "").splitlines()[0] if record.get("error") else "",
        # Copied by `grid adopt` from another grid's record of the same run: where from (relative to the grid).
        "adopted_from": record.get("adopted_from") or "",
        # Started from another run's final state (`extends`): the state (relative to the record) and its step.
        "extended_from": (record.get("extended_from") or {}).get("state") or "",
        "extended_steps": (record.get("extended_from") or {}).get("steps") or 0,
    }


def curve_rows(record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """The evaluation curve of a run that counts (done or diverged), one row per evaluation."""
    if record["status"] == "failed":
        return []
    cell = record["cell"]
    return [
        {
            "dataset": cell["dataset"],
            "arch": cell["arch"],
            "algo": record_algorithm(record),
            "seed": cell["seed"],
            "step": point["step"],
            "normalized_score": float(point["normalized_score"]),
        }
        for point in record["curve"]
    ]


def diagnostic_rows(path: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-epoch training diagnostics of a run that counts (done or diverged), one row per epoch and
    quantity; a non-finite mean (stored as null) is NaN. Records from before diagnostics were kept give none."""
    diagnostics = record.get("diagnostics") or {}
    if record["status"] == "failed" or not diagnostics:
        return []
    steps = diagnostics.get("step") if isinstance(diagnostics, dict) else None
    if not isinstance(steps, list):
        raise BenchError(f"{path}: diagnostics has no list of steps; the record is damaged, rerun the cell")
    cell = record["cell"]
    key = {"dataset": cell["dataset"], "arch": cell["arch"], "algo": record_algorithm(record), "seed": cell["seed"]}
    rows = []
    for name, values in diagnostics.items():
        if name == "step":
            continue
        if not isinstance(values, list) or len(values) != len(steps):
            count = len(values) if isinstance(values, list) else "no list of"
            raise BenchError(
                f"{path}: diagnostics.{name} has {count} values for {len(steps)} epochs; the record is damaged, "
                "rerun the cell"
            )
        for step, value in zip(steps, values, strict=True):
            if value is not None and (isinstance(value, bool) or not isinstance(value, NUMBER)):
                raise BenchError(f"{path}: diagnostics.{name} holds {value!r}, not a number; rerun the cell")
            rows.append({**key, "step": int(step), "name": name, "value": math.nan if value is None else float(value)})
    return rows


def _refuse_duplicate_cells(records: list[tuple[Path, dict[str, Any]]]) -> None:
    seen: dict[tuple[str, str, int, str], Path] = {}
    for path, record in records:
        cell = record["cell"]
        key = (cell["dataset"], cell["arch"], cell["seed"], record_algorithm(record))
        if key in seen:
            algo = "" if key[3] == DEFAULT_ALGORITHM else f", algorithm {key[3]}"
            raise BenchError(
                f"two records for the same cell (dataset {key[0]}, arch {key[1]}, seed {key[2]}{algo}): {seen[key]} "
                f"and {path}; keep one of them (move the other out of the results folder)"
            )
        seen[key] = path


def _refuse_mixed_data(records: list[tuple[Path, dict[str, Any]]]) -> None:
    """Records of one dataset must have trained on the same data (records without a digest are not compared)."""
    seen: dict[str, tuple[str, Path]] = {}
    for path, record in records:
        digest = record["dataset"].get("sha256")
        if not digest:
            continue
        dataset = record["cell"]["dataset"]
        first_digest, first_path = seen.setdefault(dataset, (digest, path))
        if digest != first_digest:
            raise BenchError(
                f"records of {dataset} trained on different data: {first_path} (sha256 {first_digest[:12]}) and "
                f"{path} (sha256 {digest[:12]}); the dataset file was replaced or regenerated between runs. "
                "Retrain the stale cells on the current file (grid run --force) or keep them in another folder"
            )


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys (`cql.cql_alpha`), so differences can be named."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


OVERRIDE_MAPS = ("dataset_overrides", "architecture_overrides")


def comparable_config(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record's configuration that must be the same for every record of one report, the grid's
    override maps aside (`override_entries`): the settings a cell took from them count at their grid-wide values.
    """
    config = flatten({k: v for k, v in record["config"].items() if k not in PER_CELL_CONFIG_KEYS})
    config.update((record.get("grid_overrides") or {}).get("replaced") or {})
    return config


def override_entries(record: Mapping[str, Any]) -> dict[tuple[str, str, str], Any]:
    """The grid's per-dataset and per-architecture settings as the record's grid defined them, one entry per
    (map, target, setting): ("architecture_overrides", "kan4", "policy_lr") -> 0.0001."""
    overrides = record.get("grid_overrides") or {}
    return {
        (kind, target, setting): value
        for kind in OVERRIDE_MAPS
        for target, settings in (overrides.get(kind) or {}).items()
        for setting, value in flatten(settings or {}).items()
    }


def _override_key(entry: tuple[str, str, str]) -> str:
    """An override entry as a key of the shared configuration: grid_overrides.<map>.<target>.<setting>."""
    return "grid_overrides." + ".".join(entry)


def _override_conflicts(records: list[tuple[Path, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The union of the records' override entries, and each conflicting entry with the reason, both by key.

    A grid may gain architectures and datasets, each with its own overrides, after some of its cells finished
    (`grid run` accepts that), so older records lack the newer entries; that is no conflict. An entry conflicts
    when records give it different values, or when a record of the cell it targets (its architecture, or its
    dataset) lacks it: that cell trained without a setting the other records' grid gives it.
    """
    union: dict[tuple[str, str, str], Any] = {}
    sources: dict[tuple[str, str, str], Path] = {}
    conflicts: dict[str, str] = {}
    entries = [(path, record, override_entries(record)) for path, record in records]
    for path, _, own in entries:
        for entry, value in own.items():
            if entry in union and union[entry] != value:
                key = _override_key(entry)
                conflicts.setdefault(
                    key, f"{sources[entry]} and {path} differ in {key} ({union[entry]!r} vs {value!r})"
                )
            union.setdefault(entry, value)
            sources.setdefault(entry, path)
    for path, record, own in entries:
        cell = record["cell"]
        targets = {"architecture_overrides": cell["arch"], "dataset_overrides": cell["dataset"]}
        for entry in sorted(union.keys() - own.keys()):
            kind, target, _ = entry
            if targets[kind] == target:
                key = _override_key(entry)
                conflicts.setdefault(
                    key, f"{path} trained {target} without {key} ({union[entry]!r} in {sources[entry]})"
                )
    return {_override_key(entry): value for entry, value in union.items()}, conflicts


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    missing = object()
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k, missing) != b.get(k, missing)]


def _describe(keys: list[str], a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    shown = [f"{k} ({a.get(k, '<absent>')!r} vs {b.get(k, '<absent>')!r})" for k in keys[:4]]
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    return ", ".join(shown) + more


def _shared(config: Mapping[str, Any], algo: str) -> dict[str, Any]:
    """A comparable config without what only records of its algorithm share: `algo` and the algorithm's settings."""
    return {k: v for k, v in config.items() if k != "algo" and not k.startswith(f"{algo}.")}


def check_same_configuration(
    records: list[tuple[Path, dict[str, Any]]], *, allow_mixed: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The configuration shared by all records, and the keys that differ (non-empty only with `allow_mixed`).

    Every record must agree on everything but PER_CELL_CONFIG_KEYS (records of different algorithms: on
    everything but the algorithm and its settings, which records of one algorithm must agree on), and records
    of one architecture name must agree on the resolved architecture; otherwise a BenchError names two
    conflicting files.
    """
    first_path, first = records[0]
    first_algo = record_algorithm(first)
    first_shared = _shared(comparable_config(first), first_algo)
    references: dict[str, tuple[Path, dict[str, Any]]] = {}
    mixed: set[str] = set()
    arch_reference: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, record in records:
        config = comparable_config(record)
        algo = record_algorithm(record)
        algo_path, algo_reference = references.setdefault(algo, (path, config))
        comparisons = [(algo_path, algo_reference, config)]
        if algo != first_algo:
            comparisons.append((first_path, first_shared, _shared(config, algo)))
        for other_path, reference, compared in comparisons:
            keys = _differences(reference, compared)
            if keys and not allow_mixed:
                raise BenchError(
                    f"records from different configurations in one report: {other_path} and {path} differ in "
                    f"{_describe(keys, reference, compared)}. Keep each grid's records in its own folder, or pass "
                    "--allow-mixed to report them together (the tables then say which keys differ)"
                )
            mixed.update(keys)
        arch_name = record["cell"]["arch"]
        resolved = flatten(record["architecture"], "architecture.")
        arch_path, arch_resolved = arch_reference.setdefault(arch_name, (path, resolved))
        arch_keys = _differences(arch_resolved, resolved)
        if arch_keys and not allow_mixed:
            raise BenchError(
                f"architecture {arch_name!r} means different networks in {arch_path} and {path}: "
                f"{_describe(arch_keys, arch_resolved, resolved)}. Rename one of them, or pass --allow-mixed"
            )
        mixed.update(arch_keys)
    overrides, conflicts = _override_conflicts(records)
    if conflicts and not allow_mixed:
        first_conflict = next(iter(conflicts.values()))
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise BenchError(
            f"records from different configurations in one report: {first_conflict}{more}. Keep each grid's "
            "records in its own folder, or pass --allow-mixed to report them together"
        )
    mixed.update(conflicts)
    merged = {k: v for _, config in references.values() for k, v in config.items()}
    if len(references) > 1:
        merged.pop("algo", None)
    merged.update(overrides)
    shared = {k: v for k, v in merged.items() if k not in mixed}
    return shared, sorted(mixed)


def _names(value: Any, key: str, path: Path) -> list[str]:
    """A list of names from a grid file entry: a list of strings, of objects with `name`, or a mapping."""
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    if isinstance(value, list):
        names = []
        for item in value:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
                names.append(item["name"])
            else:
                raise BenchError(f"{path}: entry {item!r} of {key!r} is neither a name nor an object with a name")
        return names
    raise BenchError(f"{path}: {key!r} should be a list or a mapping, got {value!r}")


def _seeds(value: Any, path: Path) -> list[int]:
    """Seeds from a grid file: a list of integers, or a count n meaning seeds 0..n-1."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return list(value)
    raise BenchError(f"{path}: 'seeds' should be a positive count or a list of integers, got {value!r}")


def grid_file_of(root: Path) -> tuple[Path, str | None] | None:
    """The grid file that describes the records under `root`, and the algorithm it narrows to: `root/grid.yaml`;
    else, for one algorithm's folder of a multi-algorithm grid (results/algorithms/td3bc), the parent's grid file
    when it lists that algorithm; None for records without a grid file."""
    if (Path(root) / GRID_FILE).exists():
        return Path(root) / GRID_FILE, None
    # Resolved: the folder above "results/algorithms/td3bc" or "." alike.
    root = Path(root).resolve()
    parent = root.parent / GRID_FILE
    if parent.exists():
        try:
            data = yaml.safe_load(parent.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
        algorithms = data.get("algorithms") if isinstance(data, Mapping) else None
        if isinstance(algorithms, list) and root.name in algorithms:
            return parent, root.name
    return None


def read_grid_file(path: Path, algorithm: str | None = None) -> ExpectedGrid:
    """The expected cells from the grid harness's resolved grid file (`architectures`, `datasets`, `seeds`);
    with `algorithm`, the cells of that one algorithm of a multi-algorithm grid, its architectures unlabelled."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"{path}: cannot read the grid file ({exc}); fix or delete it") from None
    if not isinstance(data, Mapping):
        raise BenchError(f"{path}: the grid file should be a mapping with architectures, datasets and seeds")
    missing = [k for k in ("architectures", "datasets", "seeds") if k not in data]
    if missing:
        raise BenchError(
            f"{path}: the grid file has no {', '.join(repr(k) for k in missing)}; the report needs them to know "
            "which cells are missing (delete the file to infer the cells from the records instead)"
        )
    architectures = _names(data["architectures"], "architectures", path)
    algorithms = _names(data.get("algorithms") or [DEFAULT_ALGORITHM], "algorithms", path)
    if algorithm is not None:
        if algorithm not in algorithms:
            raise BenchError(f"{path}: the grid file has no algorithm {algorithm!r}; its algorithms: {algorithms}")
        algorithms = [algorithm]
    if len(algorithms) > 1:
        architectures = [arch_label(algo, arch) for algo in algorithms for arch in architectures]
    return ExpectedGrid(
        architectures=architectures,
        datasets=_names(data["datasets"], "datasets", path),
        seeds=_seeds(data["seeds"], path),
        source=GRID_FILE,
        baseline=_baseline(data.get("baseline"), path),
        reports=_reports(data.get("reports") or {}, path),
        algorithms=algorithms,
    )


def listed_algorithms(root: Path) -> list[str]:
    """The algorithms the grid file of the records under `root` lists, in its order (one algorithm's folder of a
    multi-algorithm grid: that one); [] for records without a grid file."""
    found = grid_file_of(root)
    return read_grid_file(*found).algorithms if found else []


def _baseline(value: Any, path: Path) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise BenchError(f"{path}: 'baseline' should be an architecture name, got {value!r}")


def _reports(value: Any, path: Path) -> dict[str, NamedReport]:
    if not isinstance(value, Mapping):
        raise BenchError(
            f"{path}: 'reports' should map report names to {{architectures, baseline, datasets, with}}, got {value!r}"
        )
    reports = {}
    for name, entry in value.items():
        names = entry.get("architectures") if isinstance(entry, Mapping) else None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise BenchError(f"{path}: report {name!r} should list its architectures, got {entry!r}")
        datasets = entry.get("datasets") or []
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise BenchError(f"{path}: report {name!r} should list its datasets or name none, got {entry!r}")
        grids = entry.get("with") or []
        if not isinstance(grids, list) or not all(isinstance(g, str) and g and "/" not in g for g in grids):
            raise BenchError(f"{path}: report {name!r} should list other grids' names in 'with', got {entry!r}")
        baseline = _baseline(entry.get("baseline"), path)
        # The other grids' folders are the grid folder's siblings in one results folder.
        also = tuple(path.parent.parent / grid for grid in grids)
        reports[str(name)] = NamedReport(tuple(names), baseline, tuple(datasets), also)
    return reports


def _ordered_union(first: list[Any], extra: Iterable[Any]) -> list[Any]:
    return first + sorted(set(extra) - set(first))


def expected_grid(root: Path, runs: pd.DataFrame, *, allow_mixed: bool = False) -> ExpectedGrid:
    """The full set of expected cells: the grid file when present, else every observed dataset x arch x seed.

    Records for cells outside the grid file belong to another grid: an error unless `allow_mixed`, which adds
    them to the expected set.
    """
    observed_archs = sorted(runs["arch"].unique())
    observed_datasets = sorted(runs["dataset"].unique())
    observed_seeds = sorted(int(s) for s in runs["seed"].unique())
    observed_algorithms = _ordered_union([a for a in ALGORITHM_LABELS if a in set(runs["algo"])], runs["algo"])
    found = grid_file_of(root)
    if found is None:
        return ExpectedGrid(
            observed_archs, observed_datasets, observed_seeds, "observed records", algorithms=observed_algorithms
        )
    grid_path, algorithm = found
    grid = read_grid_file(grid_path, algorithm)
    for column, listed in (("arch", grid.architectures), ("dataset", grid.datasets), ("seed", grid.seeds)):
        outside = runs[~runs[column].isin(listed)]
        if not outside.empty and not allow_mixed:
            row = outside.iloc[0]
            value = row[column] if isinstance(row[column], str) else int(row[column])
            raise BenchError(
                f"{row['path']} is for {column} {value!r}, which {grid_path} does not list "
                f"({', '.join(map(str, listed))}); it belongs to another grid: move it out of {root}, "
                "or pass --allow-mixed to report it anyway"
            )
    return ExpectedGrid(
        architectures=_ordered_union(grid.architectures, observed_archs),
        datasets=_ordered_union(grid.datasets, observed_datasets),
        seeds=_ordered_union(grid.seeds, observed_seeds),
        source=GRID_FILE,
        baseline=grid.baseline,
        reports=grid.reports,
        algorithms=_ordered_union(grid.algorithms, observed_algorithms),
    )
