"""The results store of a grid: results/<grid>/<dataset-slug>/<arch>/seed<k>.json, grid.yaml and cell locks.

A grid of several algorithms keeps each algorithm's records apart: results/<grid>/<algorithm>/<dataset-slug>/...

Records are written by `train_cell` (atomically); the store finds them, says what state each cell is in, keeps
the resolved grid beside them (grid.yaml) and refuses to mix records of different configurations under one
name. A cell without a record whose checkpoint survived (a killed run) is partial: the next run resumes it from
the checkpoint's step. A lock file per cell (`flock` on `<record>.lock`) keeps two workers or two grid processes
from training the same cell at once; the kernel drops the lock when its holder dies, even by a signal.
"""

from __future__ import annotations

import fcntl
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.errors import BenchError, first_line
from bench.fileio import atomic_write_text
from bench.grid.spec import Cell, GridSpec, architecture_entry, dataset_slug
from bench.nets.spec import Architecture
from bench.train import RunConfig, architecture_summary, read_record

# Diverged counts as finished: a divergence repeats for the same seed on CPU, so a retry only burns time.
FINISHED = ("done", "diverged")
STATES = ("done", "diverged", "failed", "running", "partial", "missing")

GRID_FILE = "grid.yaml"  # the resolved grid, beside its records


@dataclass(frozen=True)
class CheckpointProgress:
    """What the checkpoint that resumes a cell says: its file (one per seed group), the steps its seed has done and
    the seconds of each epoch it has finished (evaluation and checkpointing included)."""

    path: Path
    steps: int
    seconds_per_epoch: tuple[float, ...] = ()
    last_evaluation: tuple[int, float] | None = None  # (step, normalized score) of the seed's latest evaluation

    def seconds_left(self, steps: int, recent: int = 10) -> float | None:
        """The time to reach `steps` at the median pace of the last `recent` epochs; None without timed epochs.

        The median leaves out the slow first epoch of each start (compilation) and is a little optimistic about
        the evaluation epochs."""
        if not self.seconds_per_epoch or self.steps <= 0:
            return None
        epoch_steps = self.steps / len(self.seconds_per_epoch)
        return max(0, steps - self.steps) / epoch_steps * statistics.median(self.seconds_per_epoch[-recent:])

    def holds(self, seeds: Sequence[int]) -> bool:
        """Whether the file holds exactly these seeds side by side, in this order (`seed0+seed1`)."""
        return checkpoint_seeds(self.path) == [f"seed{seed}" for seed in seeds]


@dataclass(frozen=True)
class CellState:
    """Where a cell stands: done, diverged, failed, running (locked by a live process), partial (no record, a
    checkpoint to resume from) or missing. `progress` is the checkpoint's, None without one."""

    cell: Cell
    path: Path
    state: str
    record: dict[str, Any] | None = None
    note: str = ""
    progress: CheckpointProgress | None = None
    # The final state of the grid it extends that holds this cell's seed, for a cell without a checkpoint.
    extends: CheckpointProgress | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def started(self) -> CheckpointProgress | None:
        """Where the next run starts: the cell's checkpoint, else the final state it extends; None from step 0."""
        return self.progress or self.extends

    @property
    def resume_step(self) -> int | None:
        """The step the checkpoint holds, the next run's start; None without one."""
        return None if self.progress is None else self.progress.steps


def checkpoint_seeds(checkpoint: Path) -> list[str]:
    """The record stems a group checkpoint (or final state) holds, in order: `seed0+seed1.ckpt.pt` -> ["seed0",
    "seed1"]."""
    return Path(checkpoint).name.removesuffix(".ckpt.pt").removesuffix(".final.pt").split("+")


def checkpoint_progress(record: Path, suffix: str = ".ckpt.pt") -> CheckpointProgress | None:
    """The progress held by the checkpoint that resumes the cell whose record is `record` (`seed0.ckpt.pt`, or its
    seed group's `seed0+seed1.ckpt.pt`); None when there is none or it cannot be read. With `suffix=".final.pt"`,
    the final state a group kept (`bench.train.final_state_path`)."""
    seed = Path(record).name.removesuffix(".json")
    for path in sorted(Path(record).parent.glob(f"*{suffix}")):
        seeds = checkpoint_seeds(path)
        if seed not in seeds:
            continue
        try:
            # mmap: only the pickled dict is read, not the weights.
            state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # a torn or foreign file: training reports it when it tries to resume
            return None
        # A group checkpoint keeps each seed's progress under "records", a single-cell one at the top.
        progress = state["records"][seeds.index(seed)] if "records" in state else state
        steps = progress.get("steps_done")
        if not isinstance(steps, int):
            return None
        seconds = progress.get("seconds_per_epoch")
        timed = tuple(float(s) for s in seconds) if isinstance(seconds, list) else ()
        return CheckpointProgress(path, steps, timed, _last_evaluation(progress.get("curve")))
    return None


def _last_evaluation(curve: Any) -> tuple[int, float] | None:
    """The step and normalized score of a checkpoint's latest evaluation; None without a readable one."""
    if not isinstance(curve, list) or not curve or not isinstance(curve[-1], dict):
        return None
    step, score = curve[-1].get("step"), curve[-1].get("normalized_score")
    if not isinstance(step, int) or not isinstance(score, int | float):
        return None
    return step, float(score)


class ResultsStore:
    """The folder that holds one grid's records."""

    def __init__(self, root: Path, by_algorithm: bool = False, extends: ResultsStore | None = None) -> None:
        self.root = Path(root)
        self.by_algorithm = by_algorithm
        self.extends = extends  # the store of the grid whose final states this one's groups start from

    @classmethod
    def for_grid(cls, results: Path, spec: GridSpec) -> ResultsStore:
        extends = None if spec.extends is None else cls.of_grid_folder(Path(results) / spec.extends)
        return cls(Path(results) / spec.name, by_algorithm=len(spec.algorithms) > 1, extends=extends)

    @classmethod
    def of_grid_folder(cls, root: Path) -> ResultsStore | None:
        """The store of the grid whose records are in `root`, laid out as its grid.yaml says (by algorithm when it
        names several); None without a readable grid.yaml (no grid ran into `root`)."""
        grid = cls(root).stored_grid()
        return None if grid is None else cls(root, by_algorithm=len(grid.get("algorithms") or []) > 1)

    def stored_grid(self) -> dict[str, Any] | None:
        """The grid.yaml of the grid's last run; None when there is none, or it cannot be read as a grid mapping."""
        try:
            grid = yaml.safe_load(self.grid_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return grid if isinstance(grid, dict) else None

    @property
    def grid_file(self) -> Path:
        return self.root / GRID_FILE

    @property
    def arch_file(self) -> Path:
        """The grid's inline architectures, in the architectures.yaml format, for `train_cell` to load."""
        return self.root / "architectures.yaml"

    def record_path(self, cell: Cell) -> Path:
        root = self.root / cell.algo if self.by_algorithm else self.root
        return root / dataset_slug(cell.dataset) / cell.arch / f"seed{cell.seed}.json"

    def state(self, cell: Cell, *, probe_lock: bool = False) -> CellState:
        """The cell's state from its record, error file and checkpoint; `probe_lock` also reports a cell being
        trained."""
        path = self.record_path(cell)
        record = read_record(path)
        if probe_lock and is_locked(path):
            progress = checkpoint_progress(path)
            extends = self._final_state(cell) if progress is None else None
            return CellState(cell, path, "running", record, "locked by a running worker", progress, extends)
        if record is not None and record["status"] in FINISHED:
            note = first_line(record.get("error"))
            if record.get("adopted_from"):
                note = "; ".join(filter(None, [note, f"adopted from {record['adopted_from']}"]))
            return CellState(cell, path, record["status"], record, note)
        progress = checkpoint_progress(path)
        step = None if progress is None else progress.steps
        resumes = "" if step is None else f"; the next run resumes from step {step:,} (checkpoint)"
        error = read_error(path)
        if error is not None or record is not None:
            # A newer failure before training (a killed worker) wins over an older failed record.
            note = first_line(error if error is not None else record.get("error"))
            return CellState(cell, path, "failed", record, note + resumes, progress)
        corrupt = "partial or corrupt record, " if path.exists() else ""
        if step is not None:
            note = f"{corrupt}checkpoint at step {step:,}: the next run resumes from it"
            return CellState(cell, path, "partial", None, note, progress)
        extends = self._final_state(cell)
        if extends is not None:
            note = f"{corrupt}extends {self.extends.root.name}'s final state at step {extends.steps:,}"
            return CellState(cell, path, "missing", None, note, extends=extends)
        return CellState(cell, path, "missing", None, f"{corrupt}will be rerun" if corrupt else "")

    def _final_state(self, cell: Cell) -> CheckpointProgress | None:
        """The final state of the grid this one extends that holds `cell`'s seed; None without one."""
        return None if self.extends is None else checkpoint_progress(self.extends.record_path(cell), ".final.pt")

    def grid_differences(self, spec: GridSpec) -> list[str] | None:
        """How the stored grid.yaml differs from `spec` in what changes results; None when there is no grid.yaml.

        Only the shared settings and the definition of an architecture present in both count: adding or
        dropping datasets, seeds or architectures, resources and checkpoint cadence leave records valid.
        """
        if not self.grid_file.exists():
            return None
        try:
            old = yaml.safe_load(self.grid_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            return [f"{self.grid_file} cannot be read ({exc})"]
        if not isinstance(old, dict):
            return [f"{self.grid_file} is not a grid mapping"]
        new = spec.resolved()
        old_settings = old.get("settings")
        if isinstance(old_settings, dict):
            old_settings = _predated(old_settings, new["settings"], asdict(RunConfig(dataset="", arch="")))
        differences = _diff("settings", old_settings, new["settings"])
        old_archs = old.get("architectures") or {}
        for name, entry in new["architectures"].items():
            if name in old_archs:
                before, after = dict(old_archs[name]), dict(entry)
                before.pop("description", None)
                after.pop("description", None)
                differences += _diff(f"architectures.{name}", before, after)
                differences += _overrides_diff("architecture_overrides", name, old, new)
        for name in new["datasets"]:
            if name in (old.get("datasets") or []):
                differences += _overrides_diff("dataset_overrides", name, old, new)
        return differences

    def check_grid(self, spec: GridSpec) -> None:
        """Refuse to run `spec` into a folder whose records were made by another configuration."""
        differences = self.grid_differences(spec)
        if differences:
            shown = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
            raise BenchError(
                f"{self.grid_file} records another configuration for grid {spec.name!r} ({shown}); its records "
                f"would mix with the new ones. Give the grid another name (name: in {spec.path}), pass another "
                "--results folder, or pass --force to retrain every cell under the new configuration"
            )

    def write_grid(self, spec: GridSpec) -> None:
        """Write grid.yaml and, for inline architectures, architectures.yaml."""
        header = (
            f"# The resolved grid {spec.name!r} (from {spec.path}), written by `python -m bench grid run`.\n"
            "# The records in this folder were made with these settings.\n"
        )
        atomic_write_text(self.grid_file, header + yaml.safe_dump(spec.resolved(), sort_keys=False, width=120))
        if spec.inline:
            inline = {name: architecture_entry(spec.architectures[name]) for name in sorted(spec.inline)}
            text = f"# Inline architectures of the grid file {spec.path}.\n" + yaml.safe_dump(inline, sort_keys=False)
            atomic_write_text(self.arch_file, text)


def _overrides_diff(key: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How one dataset's or architecture's overrides changed (a grid.yaml from before overrides has none)."""
    return _diff(f"{key}.{name}", (old.get(key) or {}).get(name) or {}, new[key].get(name) or {})


def _diff(prefix: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(new) + [k for k in old if k not in new]:
            out += _diff(f"{prefix}.{key}", old.get(key, "(absent)"), new.get(key, "(absent)"))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def record_differences(record: dict[str, Any], config: RunConfig, arch: Architecture) -> list[str]:
    """How a finished record's settings and architecture differ from the run its grid gives the cell now; [] when
    they agree. A setting the record predates counts as its default, and the checkpoint cadence and where the
    architectures were read from do not count (as for `config_fingerprint`)."""
    ignored = ("checkpoint_every", "arch_file")
    new = {k: v for k, v in config.to_dict().items() if k not in ignored}
    old = {k: v for k, v in (record.get("config") or {}).items() if k not in ignored}
    defaults = RunConfig(dataset=config.dataset, arch=config.arch, algo=config.algo).to_dict()
    differences = _diff("config", _predated(old, new, defaults), new)
    summary = architecture_summary(arch)
    return differences + _diff("architecture", _predated(record.get("architecture") or {}, summary, summary), summary)


def _predated(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`old` with the keys it lacks taken from `new` where `new` holds their default: a record or grid.yaml written
    before a setting existed ran with that setting's default."""
    filled = dict(old)
    for key, value in new.items():
        default = defaults.get(key)
        if key not in old and value == default:
            filled[key] = value
        elif isinstance(old.get(key), dict) and isinstance(value, dict) and isinstance(default, dict):
            filled[key] = _predated(old[key], value, default)
    return filled


def error_path(record: Path) -> Path:
    """`<record>.error`: why a cell failed before `train_cell` could write a failed record (bad input, a
    killed worker). Not JSON, so a report over the records never mistakes it for a run."""
    return Path(record).with_suffix(".error")


def read_error(record: Path) -> str | None:
    try:
        return error_path(record).read_text(encoding="utf-8")
    except OSError:
        return None


def write_error(record: Path, error: str) -> None:
    atomic_write_text(error_path(record), error.rstrip() + "\n")


def lock_path(record: Path) -> Path:
    return Path(record).with_name(Path(record).name.removesuffix(".json") + ".lock")


# How often, and how many seconds apart, taking a lock is tried again before the cell counts as held elsewhere.
PROBE_RETRIES = 5
PROBE_WAIT = 0.01


class CellLock:
    """An exclusive, non-blocking `flock` on `<record>.lock`; the lock file is removed on release."""

    def __init__(self, record: Path) -> None:
        self.path = lock_path(record)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tries = PROBE_RETRIES
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if tries == 0:
                    return False
                # `is_locked` (grid status) holds a shared lock for microseconds; a worker trains for minutes.
                tries -= 1
                time.sleep(PROBE_WAIT)
                continue
            # The previous holder unlinks the file on release: if it did so after we opened it, we hold a lock on
            # a file nobody else can see, so try again on the current one.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                self._fd = fd
                os.write(fd, f"{os.getpid()}\n".encode())
                return True
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding the lock, so no one locks the old file after
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(record: Path) -> bool:
    """Whether a live process holds the cell's lock (a quick probe; for status displays only)."""
    try:
        fd = os.open(lock_path(record), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
