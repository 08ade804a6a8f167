"""Table 5: how far each trained actor acts from the data it was trained on.

For every finished record of a results folder whose final actor is kept beside it (`<record>.actor.pt`), the
actor's deterministic action (`act`: tanh(mean) * max_action for CQL's actor) is computed on every state of the
record's dataset, normalized as in training, and compared with the dataset's own action in that state:

- MSE: the mean over transitions and action dimensions of (a_actor - a_data)^2;
- R^2 = 1 - MSE / MSE_const, where MSE_const is the same error for the constant policy that always takes the
  data's mean action (the variance of the data's actions). R^2 = 1: the actor reproduces the data's actions;
  0: it tells states apart no better than a constant; below 0: worse than that constant.

An offline-RL actor is not meant to copy the behaviour policy, so neither number is a score. They say whether
an actor follows the data's actions, drifts from them (the actions CQL's conservative term pushes Q down on),
or barely responds to the state at all.

Outputs: `table5_actions.md` and `.tex` (mean ± std over seeds per dataset and architecture, beside the final
score, and the constant policy's row per dataset) and `actions.json` with every number unrounded and the SHA-256
of the actor file and of the data each came from. A later run keeps an actor's numbers from the folder's
`actions.json` when both digests still match (unless `recompute`), so it neither repeats them nor needs that
data again: a grid whose datasets only some CPUs regenerate (recipe 1) still gets one whole table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from bench.deploy import (
    ActorRecords,
    DatasetStates,
    actions_on,
    actor_digests,
    dataclass_from,
    earlier_or_nothing,
    order_records,
    read_earlier,
    record_dataset,
    select_actor_records,
    torch_policy,
)
from bench.fileio import atomic_write_json
from bench.report.records import display_name
from bench.report.tables import Table, values_mean_std, write_table
from bench.train import load_trained_actor

TABLE_STEM = "table5_actions"
JSON_NAME = "actions.json"
CONSTANT = "constant (the data's mean action)"
METHOD = (
    "the actor's deterministic action on every state of its dataset (normalized as in training) against the "
    "dataset's action there: MSE over transitions and action dimensions; R^2 = 1 - MSE / MSE of the constant "
    "policy that always takes the data's mean action"
)


@dataclass(frozen=True)
class ActorActions:
    """One trained actor against its dataset's actions."""

    record: str
    dataset: str
    dataset_name: str
    arch: str
    seed: int
    mse: float
    r2: float
    final_score: float | None
    actor_sha256: str = ""  # of the actor file and of the dataset's transitions the numbers came from
    dataset_sha256: str = ""
    kept: bool = field(default=False, compare=False)  # taken from an earlier actions.json, not written to it


@dataclass(frozen=True)
class DatasetActions:
    """What a dataset's own actions give: the constant policy's error, over `transitions` transitions."""

    dataset: str
    dataset_name: str
    transitions: int
    action_dim: int
    constant_mse: float
    sha256: str = ""


@dataclass
class ActionsSummary:
    """What `python -m bench actions` measured and wrote; `format()` is the text it prints."""

    results_dir: Path
    actors: list[ActorActions]
    datasets: dict[str, DatasetActions]
    skipped: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def format(self) -> str:
        kept = sum(a.kept for a in self.actors)
        lines = [
            f"actions of {len(self.actors)} trained actor(s) of {self.results_dir} against their data"
            + (f" ({kept} kept from the earlier actions.json, their actors and data unchanged)" if kept else "")
        ]
        for (dataset, arch), group in cells_of(self.actors).items():
            r2 = np.mean([a.r2 for a in group])
            lines.append(f"{self.datasets[dataset].dataset_name} {arch}: R^2 {r2:.2f} (n={len(group)})")
        lines += [f"note: {note}" for note in self.skipped]
        if self.written:
            lines.append(f"wrote {', '.join(p.name for p in self.written)} to {self.written[0].parent}")
        return "\n".join(lines)


def action_errors(actor: torch.nn.Module, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Per transition, the mean over action dimensions of (a_actor(s) - a_data)^2."""
    predicted = actions_on(torch_policy(actor), states).astype(np.float64)
    return np.mean((predicted - actions) ** 2, axis=1)


def constant_policy_mse(actions: np.ndarray) -> float:
    """The error of always taking the data's mean action: the mean over action dimensions of their variance."""
    actions = np.asarray(actions, dtype=np.float64)
    return float(np.mean((actions - actions.mean(axis=0)) ** 2))


def earlier_results(path: Path) -> tuple[dict[str, ActorActions], dict[tuple[str, str], DatasetActions]]:
    """The entries of an earlier actions.json at `path` that name the digests they were computed from: actors by
    record path, datasets by (name, SHA-256). Entries written before the digests existed are left out."""

    def parse(document: dict[str, Any]) -> tuple[list[ActorActions], list[DatasetActions]]:
        actors = [dataclass_from(ActorActions, a) for a in document["actors"]]
        return actors, [dataclass_from(DatasetActions, d) for d in document["datasets"].values()]

    read = read_earlier(path, parse, "an actions.json", "compute every actor again")
    if read is None:
        return {}, {}
    actors, datasets = read
    return (
        {a.record: a for a in actors if a.actor_sha256 and a.dataset_sha256},
        {(d.dataset, d.sha256): d for d in datasets if d.sha256},
    )


def actions_grid(
    results_dir: Path,
    tables_dir: Path,
    *,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    recompute: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ActionsSummary:
    """Compare every trained actor under `results_dir` (of `architectures` and `datasets` only, when given) with
    its dataset's actions; write Table 5 and actions.json into `tables_dir`. An actor whose file and data have the
    digests of its entry in `tables_dir`'s earlier actions.json keeps that entry, unless `recompute`; the entries
    of actors that `architectures` or `datasets` leave out stay in actions.json as they were, so a narrower table
    never drops numbers whose data may be gone. `progress` gets one line per actor (default: stderr)."""
    results_dir = Path(results_dir)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    selection = select_actor_records(results_dir, architectures, datasets)
    records, skipped = selection.records, selection.skipped

    tables_dir = Path(tables_dir)
    earlier_actors, earlier_datasets = earlier_or_nothing(
        lambda: earlier_results(tables_dir / JSON_NAME), ({}, {}), recompute
    )
    kept_actors, kept_datasets = ({}, {}) if recompute else (earlier_actors, earlier_datasets)
    loaded: dict[tuple[str, bool], DatasetStates] = {}
    dataset_rows: dict[str, DatasetActions] = {}
    actors: list[ActorActions] = []
    for path in selection.chosen:
        record = records[path]
        cell = record["cell"]
        actor_digest, data_digest = actor_digests(path, record)
        earlier = kept_actors.get(str(path))
        earlier_data = kept_datasets.get((cell["dataset"], data_digest))
        if earlier and earlier_data and (earlier.actor_sha256, earlier.dataset_sha256) == (actor_digest, data_digest):
            dataset_rows.setdefault(cell["dataset"], earlier_data)
            entry = replace(earlier, arch=selection.labels[path], final_score=record.get("final_score"), kept=True)
        else:
            actor, record = load_trained_actor(path)
            data = record_dataset(path, record, loaded, cache_dir, local_dir)
            if cell["dataset"] not in dataset_rows:
                dataset_rows[cell["dataset"]] = DatasetActions(
                    cell["dataset"],
                    display_name(cell["dataset"], record["dataset"].get("source", "")),
                    len(data.actions),
                    data.actions.shape[1],
                    constant_policy_mse(data.actions),
                    data.sha256,
                )
            mse = float(np.mean(action_errors(actor, data.states, data.actions)))
            constant = dataset_rows[cell["dataset"]].constant_mse
            entry = ActorActions(
                record=str(path),
                dataset=cell["dataset"],
                dataset_name=dataset_rows[cell["dataset"]].dataset_name,
                arch=selection.labels[path],
                seed=int(cell["seed"]),
                mse=mse,
                r2=1.0 - mse / constant if constant > 0 else float("nan"),
                final_score=record.get("final_score"),
                actor_sha256=actor_digest,
                dataset_sha256=data.sha256,
            )
        actors.append(entry)
        kept = " (kept from the earlier actions.json)" if entry.kept else ""
        say(f"{entry.dataset_name} {entry.arch} seed {entry.seed}: MSE {entry.mse:.4f}, R^2 {entry.r2:.3f}{kept}")

    written = write_table(
        actions_table(actors, dataset_rows, narrowing(selection, architectures, datasets), selection), tables_dir
    )
    write_entries(
        tables_dir / JSON_NAME, results_dir, records, METHOD, actors, dataset_rows, earlier_actors, earlier_datasets
    )
    return ActionsSummary(results_dir, actors, dataset_rows, skipped, [*written, tables_dir / JSON_NAME])


class ActorRow(Protocol):
    """What a table row groups an actor's numbers by, and what its stored entry is found by."""

    record: str
    dataset: str
    arch: str
    seed: int
    dataset_sha256: str


class DatasetRow(Protocol):
    """What a table's notes name a dataset by."""

    dataset_name: str


A = TypeVar("A", bound=ActorRow)


def write_entries(
    path: Path,
    results_dir: Path,
    records: dict[Path, dict[str, Any]],
    method: str,
    actors: Sequence[A],
    dataset_rows: Mapping[str, Any],
    earlier_actors: Mapping[str, A],
    earlier_datasets: Mapping[tuple[str, str], Any],
) -> None:
    """The JSON at `path` (actions.json, coverage.json): the entries of `actors` and `dataset_rows`, then, for every
    other record of `records` still there, its entry of the earlier file and its dataset's earlier row (an actor
    left out of the table, or one a run saving as it goes has not reached), in table order."""
    stored = {actor.record: actor for actor in actors}
    stored_datasets = dict(dataset_rows)
    for record in order_records(results_dir, records):
        carried = earlier_actors.get(str(record))
        if str(record) not in stored and carried is not None:
            stored[str(record)] = carried
            if (key := (carried.dataset, carried.dataset_sha256)) in earlier_datasets:
                stored_datasets.setdefault(carried.dataset, earlier_datasets[key])
    document = {
        "results": str(results_dir),
        "method": method,
        "datasets": {name: asdict(d) for name, d in stored_datasets.items()},
        "actors": [{k: v for k, v in asdict(a).items() if k != "kept"} for a in stored.values()],
    }
    atomic_write_json(path, document)


def cells_of(actors: list[A]) -> dict[tuple[str, str], list[A]]:
    """The actors per (dataset, architecture), datasets and architectures in the order they first appear."""
    datasets = list(dict.fromkeys(a.dataset for a in actors))
    archs = list(dict.fromkeys(a.arch for a in actors))
    cells: dict[tuple[str, str], list[A]] = {}
    for actor in sorted(actors, key=lambda a: (datasets.index(a.dataset), archs.index(a.arch), a.seed)):
        cells.setdefault((actor.dataset, actor.arch), []).append(actor)
    return cells


def actions_table(
    actors: list[ActorActions],
    datasets: dict[str, DatasetActions],
    narrowed: Sequence[str] = (),
    selection: ActorRecords | None = None,
) -> Table:
    """Table 5: per dataset and architecture, the actors' error and R^2 against the data's actions beside their
    final score, mean ± std over seeds, under the constant policy's row; `narrowed`: the options that left some of
    the folder's actors out (`narrowing`); `selection`: the records chosen, whose grid file's cells the notes name
    when the table lacks them."""
    table = Table(
        stem=TABLE_STEM,
        number=5,
        title="Actions against the data",
        caption=(
            "How far each trained actor acts from its dataset: its deterministic action on every state of the "
            "dataset (normalized as in training) against the dataset's action there. MSE: mean over transitions "
            "and action dimensions of the squared difference. R²: 1 − MSE / MSE of the constant policy that "
            "always takes the data's mean action (1: the data's actions; 0: no better than that constant). "
            "Mean ± sample standard deviation over seeds, beside the final normalized score. Not a score: an "
            "offline-RL actor need not copy the behaviour policy."
        ),
        header=["Dataset", "Architecture", "Seeds", "MSE", "R²", "Final score"],
        align="llrrrr",
    )
    previous = None
    cells = cells_of(actors)
    for (dataset, arch), group in cells.items():
        if dataset != previous:
            reference = datasets[dataset]
            table.add_row(
                [reference.dataset_name, CONSTANT, "", f"{reference.constant_mse:.3f}", "0", ""], rule_before=True
            )
        table.add_row(
            [
                "",
                arch,
                str(len(group)),
                values_mean_std([a.mse for a in group], 3),
                values_mean_std([a.r2 for a in group], 2),
                values_mean_std([a.final_score for a in group], 1),
            ]
        )
        previous = dataset
    table.notes = [
        f"{d.dataset_name}: {d.transitions:,} transitions, {d.action_dim} action dimensions." for d in datasets.values()
    ]
    table.notes += incomplete_notes(cells, datasets, selection) + narrowed_notes(narrowed)
    return table


def narrowing(selection: ActorRecords, architectures: Sequence[str], datasets: Sequence[str]) -> list[str]:
    """The options that narrowed a table to some of a folder's actors, as the command line gives them; none when
    the table holds them all."""
    if len(selection.chosen) == len(selection.records):
        return []
    options = (("architectures", architectures), ("datasets", datasets))
    return [f"--{name} {','.join(values)}" for name, values in options if values]


def narrowed_notes(narrowed: Sequence[str]) -> list[str]:
    """A note saying that the table shows some of its folder's actors only, so that it is not read as all of them."""
    if not narrowed:
        return []
    return [f"Narrowed with {' '.join(narrowed)}: the folder holds other trained actors than these rows."]


def incomplete_notes(
    cells: dict[tuple[str, str], list[A]], datasets: Mapping[str, DatasetRow], selection: ActorRecords | None = None
) -> list[str]:
    """Notes naming the architectures a dataset has no actor of, the datasets with none at all, and the cells with
    fewer seeds than the grid file's (else than the most any cell has), so a table read while a grid still trains
    does not pass a short row off as a whole one. The expected cells are `selection`'s (its folder's grid file) and
    those the table holds."""
    expected_archs = selection.architectures if selection else []
    archs = list(dict.fromkeys([*expected_archs, *(arch for _, arch in cells)]))
    fullest = max((len(group) for group in cells.values()), default=0)
    seeds = selection.seeds if selection else 0
    notes = []
    for dataset, reference in datasets.items():
        absent = [arch for arch in archs if (dataset, arch) not in cells]
        if absent:
            notes.append(
                f"{reference.dataset_name}: no trained actor of {', '.join(absent)} (not finished, or not run)."
            )
    empty = [dataset for dataset in (selection.datasets if selection else []) if dataset not in datasets]
    if empty:
        notes.append(f"No trained actor yet on {', '.join(empty)} (not finished, or not run).")
    most = max(seeds, fullest)
    short = [
        f"{datasets[dataset].dataset_name} {arch} ({len(group)})"
        for (dataset, arch), group in cells.items()
        if len(group) < most
    ]
    if short:
        of = f"the grid file's {most}:" if seeds >= fullest else f"the {most} of the fullest rows:"
        notes.append(f"Fewer seeds than {of} {'; '.join(short)}.")
    return notes
