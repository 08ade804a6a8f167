"""Do two folders of run records hold the same runs with the same outcomes? `python -m bench compare A B`.

A rerun of a cell on the machine that trained it repeats its record to the bit (training is deterministic on
CPU), so a committed result can be checked by training its cell again and comparing; on another machine (a GPU,
another CPU or library version) the same run gives other numbers, and this says from which evaluation on. Records
are matched by their cell (algorithm, dataset, architecture name, seed) and each pair falls in one of three kinds:

- identical: the same run (configuration, architecture, data, seed group, evaluation settings) with the same
  outcome: every evaluation, diagnostic and loss, the final scores and the final actor's weights;
- same run, other outcome: named by the first evaluation whose numbers differ, with each side's device and torch;
- other run: named by the settings that differ (`config.cql.cql_alpha: 10.0 vs 1.0`).

With `at_step` (`--at-step N`) both sides are compared as they stood at gradient step N (the report's
`record_at_step`): a run's first N steps against a shorter run's N, say, since on CPU the first N steps of a longer
CQL, TD3+BC or BC run are the run of N steps. The budget (`config.steps`) then does not make another run, and only
what the cut records hold is compared: status, steps, every evaluation and diagnostic up to N and the score at N
(not the final actor, the last epoch's losses or the best score, which a longer run has moved past).

Nothing else is compared: timings and provenance (`seconds_per_epoch`, `started_at`, `finished_at`, `git_commit`,
`versions`, `device`, `grid_overrides`, `adopted_from`) differ between any two trainings or grids, and
`config_fingerprint` follows the configuration. Cells found on one side only are counted, not compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.report.records import arch_label, flatten, record_algorithm, record_at_step, validate_record
from bench.train import actor_path

# What makes two records the same run, and what that run produced.
RUN_KEYS = ("cell", "config", "architecture", "dataset", "group", "epoch_steps", "evaluation")
OUTCOME_KEYS = (
    "status",
    "steps_done",
    "curve",
    "diagnostics",
    "losses",
    "final_score",
    "best_score",
    "final_return",
    "parameters",
    "error",
)
# Settings that do not make another run: the checkpoint cadence (it changes no result), the device (a run on a GPU
# is the same run on other hardware, compared by its outcome) and the architecture file's path (the resolved
# architecture is compared instead), as the report's PER_CELL_CONFIG_KEYS.
NOT_THE_RUN = frozenset({"config.checkpoint_every", "config.device", "config.arch_file"})
SHOWN_DIFFERENCES = 3  # settings named per other run
# What two records cut at one step (`record_at_step`) are compared by.
OUTCOME_KEYS_AT_STEP = ("status", "steps_done", "curve", "diagnostics", "final_score")

CellKey = tuple[str, str, str, int]  # algorithm, dataset, architecture, seed


@dataclass(frozen=True)
class Comparison:
    """One cell found on both sides."""

    key: CellKey
    kind: str  # "identical", "other outcome" or "other run"
    detail: str  # what tells the two apart (for identical: empty, or that only the records were compared)

    def format(self) -> str:
        algo, dataset, arch, seed = self.key
        return f"{dataset} {arch_label(algo, arch)} seed {seed}: {self.kind}{': ' + self.detail if self.detail else ''}"


@dataclass
class ComparisonSummary:
    """What `compare_results` found."""

    first: Path
    second: Path
    comparisons: list[Comparison]
    only_first: list[CellKey] = field(default_factory=list)
    only_second: list[CellKey] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.comparisons)

    @property
    def same(self) -> bool:
        """Every cell of both sides' shared ones repeats, and there is at least one."""
        return bool(self.comparisons) and self.count("identical") == len(self.comparisons)

    def format(self) -> str:
        lines = [c.format() for c in self.comparisons]
        lines.append(
            f"{self.first} against {self.second}: {len(self.comparisons)} cell(s) on both sides, "
            f"{self.count('identical')} identical, {self.count('other outcome')} the same run with another outcome, "
            f"{self.count('other run')} another run; {len(self.only_first)} cell(s) only in {self.first}, "
            f"{len(self.only_second)} only in {self.second}"
        )
        return "\n".join(lines)


def read_records(folder: Path) -> dict[CellKey, tuple[Path, dict[str, Any]]]:
    """Every run record under `folder` (searched recursively) by its cell; BenchError names a folder without any,
    or two records of one cell."""
    folder = Path(folder)
    if not folder.exists():
        raise BenchError(f"{folder} does not exist; name a results folder (results/<grid>) or a record file")
    paths = [folder] if folder.is_file() else sorted(folder.rglob("*.json"))
    records: dict[CellKey, tuple[Path, dict[str, Any]]] = {}
    for path in paths:
        if path.name.startswith("."):
            continue  # temporary files of atomic writes
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise BenchError(f"{path} is not readable JSON ({exc}); rerun its cell or move the file away") from None
        if not isinstance(data, dict) or "cell" not in data:
            continue  # a grid's coverage.json, a table's sidecar: not a run record
        record = validate_record(path, data)
        cell = record["cell"]
        key = (record_algorithm(record), cell["dataset"], cell["arch"], int(cell["seed"]))
        if key in records:
            raise BenchError(f"{path} and {records[key][0]} are records of the same cell; compare one folder each")
        records[key] = (path, record)
    if not records:
        raise BenchError(f"no run records under {folder}")
    return records


def differences(
    first: Mapping[str, Any], second: Mapping[str, Any], keys: tuple[str, ...], ignored: frozenset[str] = NOT_THE_RUN
) -> list[str]:
    """The dotted names of the settings under `keys` that differ (but those `ignored`), with both values."""
    a = flatten({key: first.get(key) for key in keys})
    b = flatten({key: second.get(key) for key in keys})
    names = sorted((set(a) | set(b)) - ignored)
    return [f"{name}: {short(a.get(name))} vs {short(b.get(name))}" for name in names if a.get(name) != b.get(name)]


def short(value: Any) -> str:
    """A setting as it is written, a long string (a digest, a path) cut to its first 12 characters."""
    text = repr(value)
    return text[:13] + "...'" if isinstance(value, str) and len(value) > 16 else text


def same_weights(first: Path, second: Path) -> bool | None:
    """Whether the final actors beside two records hold equal tensors (None when either has none)."""
    paths = actor_path(first), actor_path(second)
    if not all(p.exists() for p in paths):
        return None
    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in paths)
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def first_difference(first: Mapping[str, Any], second: Mapping[str, Any], outcome: tuple[str, ...]) -> str:
    """Where two outcomes of one run part: the first evaluation whose numbers differ, else what else differs."""
    for a, b in zip(first["curve"], second["curve"], strict=False):
        if a != b:
            return (
                f"from the evaluation at step {a['step']:,} on (score {a['normalized_score']:.4g} vs "
                f"{b['normalized_score']:.4g})"
            )
    if len(first["curve"]) != len(second["curve"]):
        return f"{len(first['curve'])} vs {len(second['curve'])} evaluations"
    parts = [key for key in outcome if key != "curve" and first.get(key) != second.get(key)]
    return f"every evaluation equal, {', '.join(parts) if parts else 'the final actor weights'} not"


def machine(record: Mapping[str, Any]) -> str:
    device = record.get("device") or {}
    torch_version = (record.get("versions") or {}).get("torch", "?")
    return f"{device.get('type', '?')} {device.get('name', '')}".strip() + f" (torch {torch_version})"


def compare_pair(
    first: tuple[Path, dict[str, Any]], second: tuple[Path, dict[str, Any]], at_step: int | None = None
) -> tuple[str, str]:
    """The kind of one pair of records of a cell, and what tells them apart (cut at `at_step` already, if given)."""
    (path_a, a), (path_b, b) = first, second
    ignored = NOT_THE_RUN if at_step is None else NOT_THE_RUN | {"config.steps"}
    settings = differences(a, b, RUN_KEYS, ignored)
    if settings:
        more = f"; {len(settings) - SHOWN_DIFFERENCES} more" if len(settings) > SHOWN_DIFFERENCES else ""
        return "other run", "; ".join(settings[:SHOWN_DIFFERENCES]) + more
    outcome = OUTCOME_KEYS if at_step is None else OUTCOME_KEYS_AT_STEP
    weights = same_weights(path_a, path_b) if at_step is None else None
    if all(a.get(key) == b.get(key) for key in outcome) and weights is not False:
        unchecked = weights is None and at_step is None  # records cut at a step never compare actors
        return "identical", "the records (no final actor beside both to compare)" if unchecked else ""
    where = first_difference(a, b, outcome)
    final = ""
    if a.get("final_score") is not None and b.get("final_score") is not None:
        final = (
            f"; {'final' if at_step is None else f'at {at_step:,}'} {a['final_score']:.4g} vs {b['final_score']:.4g}"
        )
    return "other outcome", f"{where}{final}; trained on {machine(a)} vs {machine(b)}"


def compare_results(first: Path, second: Path, at_step: int | None = None) -> ComparisonSummary:
    """Compare every cell that both folders (or record files) hold, as they stood at gradient step `at_step` if
    given; see the module docstring."""
    records_a, records_b = read_records(first), read_records(second)
    shared = sorted(records_a.keys() & records_b.keys())

    def as_compared(path: Path, record: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        return path, record if at_step is None else record_at_step(path, record, at_step)

    comparisons = [
        Comparison(key, *compare_pair(as_compared(*records_a[key]), as_compared(*records_b[key]), at_step))
        for key in shared
    ]
    return ComparisonSummary(
        Path(first),
        Path(second),
        comparisons,
        only_first=sorted(records_a.keys() - records_b.keys()),
        only_second=sorted(records_b.keys() - records_a.keys()),
    )
