"""Adopt finished records from another results folder instead of training the same runs again.

A grid that shares cells with a finished one (an ablation grid that keeps the study's baseline beside its
ablations, say) would otherwise spend hours repeating them. `adopt_records` copies a record and its final actor
into this grid's store when the record is the run this grid would make:

- the same `config_fingerprint` (every setting that changes results, the architecture's name and the seed);
- the same architecture definition (a name may mean other networks in another grid);
- the same seed group (seeds side by side share one stream of policy noise, so a seed's record depends on it);
- a finished status (done or diverged) and, for done, the final actor beside it;
- the dataset hash of the data this grid's dataset file holds now.

On CPU such a run repeats to the bit (the ablation grid's kan4 repeated the CPU study's five records exactly, at
another commit and across a resume), so adopting it stands for training it. An adopted record
is the source record with two changes: `grid_overrides` says this grid's overrides (the settings are the same, or
the fingerprints would differ), and `adopted_from` names the source record relative to this grid's folder (the
record of the training run: adopting an adopted record points past it to its own source). Cells
that are finished, or locked by a running worker, are left alone; a worker that reaches an adopted cell skips it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.loader import load_dataset
from bench.errors import BenchError
from bench.fileio import atomic_output, atomic_write_json
from bench.grid.spec import Cell, GridSpec
from bench.grid.store import FINISHED, GRID_FILE, CellLock, ResultsStore, checkpoint_seeds, error_path, is_locked
from bench.train import actor_path, architecture_summary, config_fingerprint, read_record

NO_RECORD = "no finished record of this configuration"
BEING_TRAINED = "being trained by a running worker (left to it)"


@dataclass(frozen=True)
class Adoption:
    """A cell of the grid and what became of it: `source` is the record adopted (or that would be, in a dry run),
    None with `reason` saying why none was."""

    cell: Cell
    source: Path | None
    reason: str = ""


def source_records(folder: Path) -> dict[str, list[tuple[Path, dict[str, Any]]]]:
    """The finished run records under `folder`, by `config_fingerprint`."""
    if not Path(folder).is_dir():
        raise BenchError(f"--from {folder}: no such folder; name a results folder of another grid (results/<grid>)")
    found: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path in sorted(Path(folder).rglob("seed*.json")):
        record = read_record(path)
        if record is not None and record["status"] in FINISHED and "config_fingerprint" in record:
            found.setdefault(record["config_fingerprint"], []).append((path, record))
    return found


def adopt_records(
    spec: GridSpec,
    store: ResultsStore,
    source: Path,
    *,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    dry_run: bool = False,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> list[Adoption]:
    """Copy into `store` every record under `source` that is the run an unfinished cell of `spec` would make (of
    `architectures` and `datasets` only, when given); one Adoption per unfinished cell, adopted or not. With
    `dry_run`, nothing is written."""
    if Path(source).resolve() == store.root.resolve():
        raise BenchError(f"--from {source} is this grid's own results folder; name another grid's")
    found = source_records(source)
    arch_file = store.arch_file if spec.inline else None
    candidates: list[tuple[Cell, Path, dict[str, Any]]] = []
    adoptions: list[Adoption] = []
    for cell in spec.cells(architectures, datasets):
        state = store.state(cell, probe_lock=True)
        if state.finished:
            continue
        if state.state == "running":
            adoptions.append(Adoption(cell, None, BEING_TRAINED))
            continue
        config = spec.run_config(cell, arch_file)
        matches = found.get(config_fingerprint(config), [])
        architecture = architecture_summary(spec.architectures[cell.arch])
        group = list(spec.seed_group(cell))
        reason = NO_RECORD
        for path, record in matches:
            if record.get("architecture") != architecture:
                reason = f"the record of this configuration defines {cell.arch} otherwise"
            elif (record.get("group") or {"seeds": [cell.seed]})["seeds"] != group:
                reason = "the record of this configuration was trained in another group of seeds side by side"
            elif record["status"] == "done" and not actor_path(path).is_file():
                reason = "the record of this configuration has no final actor (seed<k>.actor.pt) beside it"
            else:
                candidates.append((cell, path, record))
                break
        else:
            adoptions.append(Adoption(cell, None, reason))
    digests = {
        dataset: load_dataset(dataset, cache_dir=cache_dir, local_dir=local_dir).sha256
        for dataset in sorted({cell.dataset for cell, _, _ in candidates})
    }
    for cell, path, record in candidates:
        if record["dataset"].get("sha256") != digests[cell.dataset]:
            adoptions.append(
                Adoption(cell, None, "the record of this configuration trained on other data than the file holds now")
            )
        elif dry_run or _adopt(spec, store, cell, path, record):
            adoptions.append(Adoption(cell, path))
        else:
            adoptions.append(Adoption(cell, None, "a worker took the cell meanwhile"))
    order = {cell: i for i, cell in enumerate(spec.cells())}
    return sorted(adoptions, key=lambda adoption: order[adoption.cell])


def _adopt(spec: GridSpec, store: ResultsStore, cell: Cell, path: Path, record: dict[str, Any]) -> bool:
    """Copy one record and its actor under the cell's lock; False when a worker holds it or finished it."""
    out = store.record_path(cell)
    with CellLock(out) as locked:
        existing = read_record(out)
        if not locked or (existing is not None and existing["status"] in FINISHED):
            return False
        adopted = {
            **record,
            "grid_overrides": spec.record_overrides(cell),
            "adopted_from": os.path.relpath(_original(path, record), store.root.resolve()),
        }
        if actor_path(path).is_file():
            with atomic_output(actor_path(out)) as tmp:
                tmp.write_bytes(actor_path(path).read_bytes())
        atomic_write_json(out, adopted)  # last: a record is finished only once its actor is in place
        error_path(out).unlink(missing_ok=True)
    _drop_finished_checkpoints(out.parent)
    return True


def _original(path: Path, record: dict[str, Any]) -> Path:
    """The record of the training run itself: a record that was adopted in its own grid names its source
    relative to that grid's folder (the one holding grid.yaml), so adopting it again points past it."""
    earlier = record.get("adopted_from")
    grid_root = next((folder for folder in path.resolve().parents if (folder / GRID_FILE).is_file()), None)
    if earlier and grid_root is not None and (grid_root / earlier).is_file():
        return (grid_root / earlier).resolve()
    return path.resolve()


def _drop_finished_checkpoints(folder: Path) -> None:
    """Remove a killed group's checkpoint once every seed it holds is finished: nothing would resume from it.
    A group being trained (a `--force` run over finished records) keeps its checkpoint."""
    for checkpoint in folder.glob("*.ckpt.pt"):
        paths = [folder / f"{seed}.json" for seed in checkpoint_seeds(checkpoint)]
        records = [read_record(path) for path in paths]
        finished = all(record is not None and record["status"] in FINISHED for record in records)
        if finished and not any(is_locked(path) for path in paths):
            checkpoint.unlink(missing_ok=True)


def adoption_summary(spec: GridSpec, source: Path, adoptions: Sequence[Adoption], dry_run: bool) -> str:
    """What `grid adopt` prints: one line per adopted cell, then the cells left to train, by reason."""
    adopted = [a for a in adoptions if a.source is not None]
    verb = "would adopt" if dry_run else "adopted"
    lines = [f"  {a.cell}: {a.source}" for a in adopted]
    left = Counter(a.reason for a in adoptions if a.source is None)
    lines.append(
        f"grid {spec.name}: {verb} {len(adopted)} record(s) from {source}; {sum(left.values())} unfinished cell(s) "
        "left to train" + (":" if left else "")
    )
    lines += [f"  {count} cell(s): {reason}" for reason, count in left.most_common()]
    return "\n".join(lines)
