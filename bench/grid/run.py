"""The grid loop: check the datasets, plan the cells, run the unfinished ones, report progress and failures.

`run_grid` skips finished cells (done, or diverged: training is deterministic on CPU, so a divergence repeats), reruns
failed, partial and missing ones, keeps going when a cell fails, and ends with the list of failures. Progress
is one line per finished cell: cells finished / total, failures, and an ETA from the finished cells' durations.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence, Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from tabulate import tabulate

from bench.agents.registry import DEFAULT_ALGORITHM, get_algorithm
from bench.data.registry import D4RL_DATASETS, d4rl_cache_dir, dataset_env, local_dataset_dir
from bench.errors import BenchError
from bench.grid.launchers import CellOutcome, CellTask, Group, Launcher, local_cpus, make_launcher
from bench.grid.spec import Cell, GridSpec
from bench.grid.store import STATES, CellState, ResultsStore, checkpoint_seeds, error_path, record_differences
from bench.train import group_checkpoint_path, read_record

DIVERGED_NOTE = (
    "diverged cells count as finished and are not retried: a divergence repeats for the same seed on CPU "
    "(--force retrains them)"
)


@dataclass
class GridResult:
    """What one `run_grid` call did; `failed` and `busy` list (cell, record path, first error line)."""

    total: int
    skipped: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[Cell, Path, str]] = field(default_factory=list)
    busy: list[tuple[Cell, Path, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every cell ran or was finished before, 3 when any failed (as `python -m bench run`)."""
        return 3 if self.failed else 0


def missing_datasets(spec: GridSpec, cache_dir: Path | None = None, local_dir: Path | None = None) -> dict[str, str]:
    """Each dataset of the grid that is not on this machine -> why, naming where it was looked for."""
    problems = {}
    for name in spec.datasets:
        source, _, rest = name.partition(":")
        if source == "d4rl":
            path = d4rl_cache_dir(cache_dir) / D4RL_DATASETS[rest].filename
        elif source == "local":
            path = Path(rest).expanduser() if rest.endswith(".hdf5") else local_dataset_dir(local_dir) / f"{rest}.hdf5"
        else:
            problem = _minari_problem(rest)
            if problem:
                problems[name] = problem
            continue
        if not path.is_file():
            problems[name] = f"{path} is missing"
    return problems


def _minari_problem(dataset_id: str) -> str:
    try:
        import minari
    except ImportError:
        return "needs the minari package (pip install minari)"
    try:
        local = minari.list_local_datasets()
    except Exception:  # minari's storage layout varies between versions; loading the cell will tell
        return ""
    return "" if dataset_id in local else f"not downloaded (minari download {dataset_id})"


def require_datasets(spec: GridSpec, cache_dir: Path | None = None, local_dir: Path | None = None) -> None:
    """Stop before any cell runs when a dataset of the grid is missing, naming every missing one and the fix."""
    problems = missing_datasets(spec, cache_dir, local_dir)
    if not problems:
        return
    sources = {name.partition(":")[0] for name in problems}
    fixes = []
    if "d4rl" in sources:
        missing = [name.partition(":")[2] for name in problems if name.startswith("d4rl:")]
        names = "--all" if len(missing) == len(D4RL_DATASETS) else " ".join(missing)
        fixes.append(
            f"fetch the D4RL files with `python -m bench datasets fetch {names}` (into {d4rl_cache_dir(cache_dir)}; "
            "--cache-dir or $D4RL_DATASET_DIR for another folder); if the D4RL server is down, add --base-url "
            "<mirror URL or folder holding the .hdf5 files> (or set $D4RL_BASE_URL), or copy the files there"
        )
    if "local" in sources:
        fixes.append(
            f"generate local data with `python -m bench datasets generate --env ENV --local-dir DIR` "
            f"(looked in {local_dataset_dir(local_dir)}; pass --local-dir or set $BENCH_LOCAL_DATASET_DIR)"
        )
    if "minari" in sources:
        fixes.append("install minari and download the datasets (`minari download <id>`)")
    lines = "\n".join(f"  {name}: {problem}" for name, problem in problems.items())
    raise BenchError(
        f"grid {spec.name!r} ({spec.path}) needs {len(problems)} dataset(s) that are not here:\n{lines}\n"
        + "\n".join(f"To fix: {fix}." for fix in fixes)
    )


def stale_records(
    spec: GridSpec,
    store: ResultsStore,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    datasets: Collection[str] | None = None,
) -> list[tuple[Cell, Path]]:
    """Finished records (of `datasets` only, when given) whose `dataset.sha256` differs from the data their
    dataset's file holds now."""
    from bench.data.loader import load_dataset

    finished: dict[str, list[tuple[Cell, Path, str]]] = {}
    for cell in spec.cells():
        if datasets is not None and cell.dataset not in datasets:
            continue
        state = store.state(cell)
        digest = (state.record or {}).get("dataset", {}).get("sha256")
        if state.finished and digest:
            finished.setdefault(cell.dataset, []).append((cell, state.path, digest))
    stale = []
    for dataset, records in finished.items():
        current = load_dataset(dataset, cache_dir=cache_dir, local_dir=local_dir).sha256
        stale += [(cell, path) for cell, path, digest in records if digest != current]
    return stale


def require_same_data(
    spec: GridSpec,
    store: ResultsStore,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    datasets: Collection[str] | None = None,
) -> None:
    """Refuse to add cells of `datasets` (default: all) beside finished ones that trained on other data (a dataset
    regenerated since). A dataset with nothing left to run is not checked: no new cell would sit beside them."""
    stale = stale_records(spec, store, cache_dir, local_dir, datasets)
    if stale:
        lines = "\n".join(f"  {cell}: {path}" for cell, path in stale[:10])
        more = f"\n  ... and {len(stale) - 10} more" if len(stale) > 10 else ""
        raise BenchError(
            f"{len(stale)} finished record(s) of grid {spec.name!r} were trained on other data than the dataset "
            f"files hold now (regenerated or replaced since, or made on another CPU from recipe 1: see `python -m "
            f"bench datasets generate --help`):\n{lines}{more}\nTo fix: regenerate the data they trained on, pass "
            "--force to retrain every cell on the current data, or --results DIR to keep the old records apart."
        )


def plan_table(
    spec: GridSpec,
    store: ResultsStore,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    first: Sequence[str] = (),
    seeds_per_process: int | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
) -> str:
    """The dry run: every cell in run order (of `architectures` and `datasets` only, when given; those of
    `first` first), its state, what `grid run` with the same options would do with it, its record path, and with
    seeds side by side the seeds it would train beside. What would stop the run comes last, as warnings: missing
    datasets, a grid to extend that is not there or whose final states would not start this grid's runs, and
    unless `force`, a results folder of another configuration, finished records of other data than the files hold
    now, and a started group that `seeds_per_process` would leave behind."""
    spec = _packed(spec, seeds_per_process)
    cells = spec.cells(architectures, datasets, first)
    states = {cell: store.state(cell, probe_lock=True) for cell in cells}
    groups = seed_groups(spec, [cell for cell in cells if force or not states[cell].finished])
    group_of = {}
    for group in groups:
        seeds = trained_seeds(spec, store, group)
        # A group resuming with finished seeds along names them too (`pack_groups`).
        group_of |= {replace(group[0], seed=seed): seeds for seed in seeds}
    rows = []
    resuming = skip = 0
    for i, cell in enumerate(cells, 1):
        action = _planned_action(states[cell], force, group_of.get(cell))
        if action == "skip" and cell in group_of:
            action = "skip (trains along, its record kept)"
        skip += action == "skip"
        resuming += action.startswith("resume")
        rows.append([i, *_algorithm_column(spec, cell), cell.dataset, cell.arch, cell.seed, states[cell].state, action])
        if spec.seeds_per_process > 1:
            rows[-1].append(",".join(map(str, group_of[cell])) if cell in group_of else "")
        rows[-1].append(states[cell].path)
    from_checkpoint = f" ({resuming} from a checkpoint)" if resuming else ""
    forced = " (--force: finished cells train again, checkpoints are discarded)" if force else ""
    algorithms = f"{len(spec.algorithms)} algorithms x " if len(spec.algorithms) > 1 else _algorithm_label(spec)
    n_archs, n_datasets = len(architectures or spec.architectures), len(datasets or spec.datasets)
    header = (
        f"grid {spec.name} ({spec.path}): {algorithms}{n_archs} architectures x "
        f"{n_datasets} datasets x {len(spec.seeds)} seeds = {len(rows)} cells{_selected(spec, rows)}; "
        f"{len(rows) - skip} to run"
        f"{from_checkpoint}, {skip} to skip{forced}; {spec.steps:,} steps each, eval every {spec.eval_every:,} "
        f"steps on {spec.eval_episodes} episodes{_side_by_side(spec, seeds_per_process)}"
    )
    group = ["side by side with seeds"] if spec.seeds_per_process > 1 else []
    headers = ["#", *_algorithm_header(spec), "dataset", "architecture", "seed", "state", "action", *group, "record"]
    table = tabulate(rows, headers=headers, disable_numparse=True)
    missing = missing_datasets(spec, cache_dir, local_dir)
    warnings = [f"dataset not here: {name}: {problem}" for name, problem in missing.items()]
    if not force:
        here = {cell.dataset for cell in cells if not states[cell].finished} - missing.keys()
        stops = _refusals(spec, store, states.values(), here, cache_dir, local_dir)
        if left := _checkpoint_left_behind(spec, groups, states, store, seeds_per_process):
            stops.append(left)
        warnings += [f"the run would stop: {line}" for line in stops]
    if refusal := _extension_refusal(spec, store):  # with or without --force, as in `run_grid`
        warnings.append(f"the run would stop: {refusal}")
    if no_states := _no_final_states(spec, store, states):
        warnings.append(no_states)
    return f"{header}\n{table}" + "".join(f"\nWarning, {line}" for line in warnings)


def _planned_action(state: CellState, force: bool, group: Sequence[int] | None = None) -> str:
    """What `grid run` would do with a cell in `state`: skip it, run it, resume it, extend the final state of the
    grid it extends (when that state holds the seeds of the cell's `group`, as the group trains them) or
    (`force`) start it over."""
    if state.state == "running":
        return "skip"  # another process holds its lock, --force or not
    if state.finished:
        return "run again (--force)" if force else "skip"
    if state.resume_step is not None and force:
        return f"run (--force discards the checkpoint at step {state.resume_step:,})"
    if state.resume_step is not None:
        return f"resume from step {state.resume_step:,}"
    if state.extends is not None:
        if group is None or state.extends.holds(group):
            return f"extend from step {state.extends.steps:,}"
        held = ", ".join(seed.removeprefix("seed") for seed in checkpoint_seeds(state.extends.path))
        return f"run (the final state to extend holds seeds {held})"
    return "run"


def _refusals(
    spec: GridSpec,
    store: ResultsStore,
    states: Iterable[CellState],
    datasets: Collection[str],
    cache_dir: Path | None,
    local_dir: Path | None,
) -> list[str]:
    """Why `grid run` without --force stops before training (it raises the first; the dry run warns of each):
    `store` holds another configuration's grid.yaml, finished records (of `states`) made with other settings
    than the grid gives their cells now, or finished records of `datasets` trained on other data than the files
    hold now."""
    reasons = []
    try:
        store.check_grid(spec)
    except BenchError as exc:
        reasons.append(str(exc))
    if stale := _stale_records(spec, store, states):
        reasons.append(stale)
    try:
        require_same_data(spec, store, cache_dir, local_dir, datasets)
    except BenchError as exc:
        reasons.append(str(exc))
    return reasons


def _stale_records(spec: GridSpec, store: ResultsStore, states: Iterable[CellState]) -> str | None:
    """Why finished records would be kept beside new ones of other settings, None if none would: grid.yaml only
    holds the last run's configuration (a `--force` run stopped half way, an architecture dropped from the grid
    and added back with another definition), so each record is checked against its cell as the grid gives it."""
    stale = []
    for state in states:
        if state.finished and state.record is not None:
            cell = state.cell
            differences = record_differences(state.record, spec.run_config(cell), spec.architectures[cell.arch])
            if differences:
                stale.append((state.path, differences))
    if not stale:
        return None
    path, differences = stale[0]
    return (
        f"{len(stale)} finished record(s) in {store.root} were made with other settings than {spec.path} gives "
        f"their cells now, e.g. {path} ({'; '.join(differences[:3])}); a run would report them beside the new "
        "ones. Move them out of the folder or restore the grid file, or pass --force to train them again"
    )


def _packed(spec: GridSpec, seeds_per_process: int | None) -> GridSpec:
    """`spec` with this run's `--seeds-per-process` in place of the grid file's, when given."""
    if seeds_per_process is None:
        return spec
    if seeds_per_process < 1:
        raise BenchError(f"--seeds-per-process must be at least 1, got {seeds_per_process}")
    return replace(spec, seeds_per_process=seeds_per_process)


def _side_by_side(spec: GridSpec, seeds_per_process: int | None) -> str:
    """The dry run's words on seeds side by side: nothing for one seed per process."""
    source = " (--seeds-per-process)" if seeds_per_process is not None else ""
    if spec.seeds_per_process == 1:
        return f"; one seed per process{source}" if source else ""
    return f"; up to {spec.seeds_per_process} seeds side by side per process{source}"


def status_table(spec: GridSpec, store: ResultsStore, *, summary: bool = False) -> str:
    """`grid status`: one row per cell (state, steps, final score, first error line), the totals and the time the
    started processes have left; with `summary`, one row per (algorithm,) dataset and architecture instead (see
    `_summary_rows`)."""
    states = [store.state(cell, probe_lock=True) for cell in spec.cells()]
    counts = Counter(state.state for state in states)
    if summary:
        rows = _summary_rows(spec, states)
        headers = ["seeds", "steps", "final score (mean ± std)"]
    else:
        rows = [_cell_row(spec, state) for state in states]
        headers = ["seed", "state", "steps", "final score", "note"]
    table = tabulate(
        rows, headers=[*_algorithm_header(spec), "dataset", "architecture", *headers], disable_numparse=True
    )
    totals = ", ".join(f"{name} {counts[name]}" for name in STATES)
    lines = [f"grid {spec.name}: records in {store.root}", table, "", f"{totals} (of {sum(counts.values())} cells)"]
    time_left = _time_left_line(spec, states)
    if time_left:
        lines.append(time_left)
    if counts["diverged"]:
        lines.append(f"Note: {DIVERGED_NOTE}.")
    differences = store.grid_differences(spec)
    if differences:
        lines.append(f"Warning: {store.grid_file} was written for another configuration: {'; '.join(differences)}")
    return "\n".join(lines)


def _cell_row(spec: GridSpec, state: CellState) -> list[object]:
    """One cell of `grid status`: its state, steps, final score and note (with the time its run has left)."""
    score = (state.record or {}).get("final_score")
    steps = _steps(state)
    left = _seconds_left(spec, state)
    note = state.note if left is None else f"{state.note}; about {format_duration(left)} left"
    latest = _latest_evaluation(state)
    if score is not None:
        shown = f"{score:.1f}"
    elif latest is not None:
        shown = f"({latest[1]:.1f} at {latest[0]:,})"  # not final: where the unfinished run stands
    else:
        shown = ""
    return [
        *_algorithm_column(spec, state.cell),
        state.cell.dataset,
        state.cell.arch,
        state.cell.seed,
        state.state,
        "" if steps is None else f"{steps:,}/{spec.steps:,}",
        shown,
        note,
    ]


def _latest_evaluation(state: CellState) -> tuple[int, float] | None:
    """An unfinished cell's latest evaluation (step, score) from its checkpoint; None for a finished cell or
    without one (a cell that extends another grid's final state has not evaluated in this grid yet)."""
    if state.finished or state.progress is None:
        return None
    return state.progress.last_evaluation


def _seconds_left(spec: GridSpec, state: CellState) -> float | None:
    """The training time an unfinished cell's run has left, at the pace its checkpoint (or the final state it
    extends) recorded; None when it has neither, timed."""
    progress = state.started
    if state.finished or progress is None:
        return None
    return progress.seconds_left(spec.steps)


def _time_left_line(spec: GridSpec, states: list[CellState]) -> str:
    """The totals' second line: the training time the started groups have left, each counted once (its seeds
    share one checkpoint), and how many cells have not started."""
    left = {
        progress.path: seconds
        for state in states
        if (progress := state.started) is not None and (seconds := _seconds_left(spec, state)) is not None
    }
    not_started = [state.cell for state in states if not state.finished and state.started is None]
    parts = []
    if left:
        parts.append(
            f"about {format_duration(sum(left.values()))} of training left in {len(left)} started process(es) "
            f"(longest {format_duration(max(left.values()))}), at the median pace of each one's last 10 epochs"
        )
    if not_started:
        parts.append(_not_started_part(spec, not_started, _group_paces(states)))
    return f"Time left: {'; '.join(parts)}." if parts else ""


PaceKey = tuple[str, str, str, int]  # algorithm, architecture, environment, seeds side by side


def _pace_key(cell: Cell, size: int) -> PaceKey | None:
    try:
        return cell.algo, cell.arch, dataset_env(cell.dataset).name, size
    except BenchError:
        return None


def _group_paces(states: Sequence[CellState]) -> dict[PaceKey, float]:
    """Seconds per gradient step of one training process, per algorithm, architecture, environment and group
    size: the median over the grid's finished groups (their records' epoch seconds, summed, over the steps they
    trained; the seeds of one group share them, so each group counts once)."""
    per_group: dict[tuple[PaceKey, str, str, tuple[int, ...]], float] = {}
    for state in states:
        if not state.finished or not state.record:
            continue
        record = state.record
        seconds, steps = _training_seconds(record), record.get("steps_done") or 0
        seeds = tuple((record.get("group") or {}).get("seeds") or [state.cell.seed])
        key = _pace_key(state.cell, len(seeds))
        if key is not None and seconds and steps > 0:
            per_group[(key, state.cell.dataset, record.get("started_at", ""), seeds)] = seconds / steps
    paces: dict[PaceKey, list[float]] = defaultdict(list)
    for (key, *_), pace in per_group.items():
        paces[key].append(pace)
    return {key: statistics.median(values) for key, values in paces.items()}


def _not_started_part(spec: GridSpec, cells: Sequence[Cell], paces: dict[PaceKey, float]) -> str:
    """The cells without a checkpoint, and the process time their groups will take at the pace of the grid's
    finished groups of the same kind (`_group_paces`); those of a kind none has finished are left to `grid
    estimate`."""
    sized, unsized, seconds = 0, 0, 0.0
    for group in seed_groups(spec, cells):
        key = _pace_key(group[0], len(group))
        if key in paces:
            sized += 1
            seconds += paces[key] * spec.steps
        else:
            unsized += len(group)
    text = f"{len(cells)} unfinished cell(s) without a checkpoint"
    if not sized:
        return f"{text} (`grid estimate` sizes them)"
    text += (
        f": about {format_duration(seconds)} of process time in {sized} process(es), at the pace of the grid's "
        "finished groups of the same algorithm, architecture, environment and size"
    )
    if unsized:
        text += f", and {unsized} cell(s) of a kind none has finished (`grid estimate` sizes them)"
    return text


def _steps(state: CellState) -> int | None:
    """Where a cell stands: a finished record's steps, else the checkpoint's that the next run resumes from."""
    if state.finished or state.resume_step is None:
        return (state.record or {}).get("steps_done")
    return state.resume_step


def _summary_rows(spec: GridSpec, states: list[CellState]) -> list[list[object]]:
    """One row per (algorithm,) dataset and architecture, in the grid's order: how many of its seeds are in each
    state, the steps of its least advanced seed, and the mean ± sample std of its seeds' final scores (with how
    many seeds have one, when not all); before any has one, that of the unfinished seeds' latest evaluations in
    parentheses, at the earliest of their steps."""
    from bench.report.tables import mean_std  # the tables' format; imported here, as the report's libraries are slow

    groups: dict[tuple[str, str, str], list[CellState]] = defaultdict(list)
    for state in states:
        groups[(state.cell.algo, state.cell.dataset, state.cell.arch)].append(state)
    rows: list[list[object]] = []
    for (_, dataset, arch), members in groups.items():
        counts = Counter(m.state for m in members)
        steps = [_steps(m) or 0 for m in members]
        scores = [m.record["final_score"] for m in members if m.record and m.record.get("final_score") is not None]
        latest = [e for m in members if (e := _latest_evaluation(m)) is not None]
        score = ""
        if scores:
            std = statistics.stdev(scores) if len(scores) > 1 else float("nan")
            score = mean_std(statistics.fmean(scores), std, len(scores), decimals=1)
            score += f" ({len(scores)} of {len(members)})" if len(scores) < len(members) else ""
        elif latest:
            # No final score yet: where the unfinished seeds stand, at the least advanced one's latest evaluation.
            values = [value for _, value in latest]
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            latest_mean = mean_std(statistics.fmean(values), std, len(values), decimals=1)
            score = f"({latest_mean} at {min(step for step, _ in latest):,})"
        rows.append(
            [
                *_algorithm_column(spec, members[0].cell),
                dataset,
                arch,
                ", ".join(f"{counts[name]} {name}" for name in STATES if counts[name]),
                f"{min(steps):,}/{spec.steps:,}",
                score,
            ]
        )
    return rows


def _algorithm_header(spec: GridSpec) -> list[str]:
    """The tables' algorithm column: shown when the grid trains more than one algorithm."""
    return ["algorithm"] if len(spec.algorithms) > 1 else []


def _algorithm_column(spec: GridSpec, cell: Cell) -> list[str]:
    return [get_algorithm(cell.algo).label] if len(spec.algorithms) > 1 else []


def _algorithm_label(spec: GridSpec) -> str:
    """A one-algorithm grid's algorithm for the plan's first line; nothing for CQL, the suite's default."""
    return "" if spec.algorithms == (DEFAULT_ALGORITHM,) else f"{get_algorithm(spec.algorithms[0]).label}, "


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Prints one line per finished cell: position, outcome, duration, failures so far and the ETA.

    The ETA is per algorithm (a TD3+BC cell costs ten BC cells): each algorithm's cells left times its mean
    duration, or the mean over all algorithms until one of its cells has finished. A cell that resumed from a
    checkpoint trained only part of its steps in this run, so its duration is the sum of its record's epoch times
    (every start's), or it is left out of the means when its record has none."""

    def __init__(
        self,
        result: GridResult,
        launcher: Launcher,
        store: ResultsStore,
        out: TextIO,
        tasks: Sequence[CellTask],
        resumed: Iterable[Cell] = (),
        cells_per_process: int = 1,
    ) -> None:
        self.result = result
        self.cells_per_process = cells_per_process
        self.launcher = launcher
        self.store = store
        self.out = out
        self.finished = result.skipped
        self.left = Counter(task.cell.algo for task in tasks)
        self.resumed = set(resumed)
        self.durations: dict[str, list[float]] = defaultdict(list)

    def __call__(self, task: CellTask, outcome: CellOutcome) -> None:
        result = self.result
        result.outcomes[outcome.status] += 1
        self.left[task.cell.algo] -= 1
        path = self.store.record_path(task.cell)
        if outcome.status == "failed":
            # Where the whole error is: the failed record, or <record>.error when training never started.
            result.failed.append((task.cell, error_path(path) if error_path(path).exists() else path, outcome.error))
        elif outcome.status == "busy":
            result.busy.append((task.cell, path, "running elsewhere (its lock is held by another process)"))
        if outcome.status in ("done", "diverged"):
            seconds = outcome.seconds if task.cell not in self.resumed else _epoch_seconds(task.out)
            if seconds:
                self.durations[task.cell.algo].append(seconds)
        if outcome.status != "busy":
            self.finished += 1
        detail = {
            "done": f"score {outcome.final_score:.1f}" if outcome.final_score is not None else "",
            "diverged": outcome.error,
            "failed": outcome.error,
            "busy": "running elsewhere",
            "skipped": "finished by another process",
        }[outcome.status]
        took = f" in {format_duration(outcome.seconds)}" if outcome.seconds else ""
        print(
            f"[{self.finished}/{result.total}] {outcome.status:<8} {task.cell}: {detail}{took} | "
            f"{len(result.failed)} failed, ETA {self.eta()}",
            file=self.out,
            flush=True,
        )

    def eta(self) -> str:
        if sum(self.left.values()) <= 0:
            return "0s"
        measured = [seconds for durations in self.durations.values() for seconds in durations]
        if not measured:
            return "-"
        overall = statistics.fmean(measured)
        cell_seconds = sum(
            left * (statistics.fmean(self.durations[algo]) if self.durations[algo] else overall)
            for algo, left in self.left.items()
        )
        # A group's cells report together, each with the group's wall time.
        return format_duration(cell_seconds / (self.launcher.parallelism * self.cells_per_process))


def _epoch_seconds(record_path: Path) -> float | None:
    """The training time of a finished record over all its starts (its epochs' seconds); None without it."""
    return _training_seconds(read_record(record_path) or {})


def _training_seconds(record: dict) -> float | None:
    seconds = record.get("seconds_per_epoch")
    return float(sum(seconds)) if isinstance(seconds, list) and seconds else None


def run_grid(
    spec: GridSpec,
    *,
    results: Path = Path("results"),
    launcher: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    progress: bool = True,
    out: TextIO | None = None,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    first: Sequence[str] = (),
    seeds_per_process: int | None = None,
) -> GridResult:
    """Run every unfinished cell of `spec` (of `architectures` and `datasets` only, when given; the cells of
    `first` before the others) into results/<grid name>/ and return what happened.

    `seeds_per_process` packs this run's cells into groups of that many seeds instead of the grid file's (say,
    to spread a last group over idle cores); each record names the seeds it trained beside. Groups share one
    stream of policy noise, so a seed trained in another group gives other (equally valid) numbers.

    Fails fast (BenchError, nothing run) when a dataset is missing, when the grid extends one that is not in
    `results` or whose final states would not start its runs (`_extension_refusal`), or unless `force` (which
    also retrains finished cells) when results/<name>/grid.yaml was written by a configuration that gives other
    results, a finished record was made with other settings than its cell takes now, or this run's groups would
    leave a started group's checkpoint behind.
    """
    out = out or sys.stdout
    grid_file_spec = spec  # what grid.yaml records; `spec` below packs this run's groups
    spec = _packed(spec, seeds_per_process)
    store = ResultsStore.for_grid(results, spec)
    runner = make_launcher(launcher, spec.resources, workers, ray_address)
    require_datasets(spec, cache_dir, local_dir)
    cells = spec.cells(architectures, datasets, first)
    states = {cell: store.state(cell) for cell in cells}
    unfinished = {cell.dataset for cell in cells if not states[cell].finished}
    if not force and (refusals := _refusals(spec, store, states.values(), unfinished, cache_dir, local_dir)):
        raise BenchError(refusals[0])
    if refusal := _extension_refusal(spec, store):
        raise BenchError(refusal)
    store.write_grid(grid_file_spec)

    todo = [cell for cell in cells if force or not states[cell].finished]
    resuming = sum(states[cell].resume_step is not None for cell in todo) if not force else 0
    result = GridResult(total=len(cells), skipped=len(cells) - len(todo))
    # Absolute paths: a Ray worker may start in another folder; a cell's config never holds a relative arch file.
    arch_file = store.arch_file.resolve()
    cache_dir = d4rl_cache_dir(cache_dir).resolve()
    local_dir = local_dataset_dir(local_dir).resolve()
    bars = progress and runner.name == "local" and runner.parallelism == 1 and sys.stderr.isatty()
    tasks = [
        CellTask(
            cell=cell,
            config=spec.run_config(cell, arch_file),
            out=store.record_path(cell).resolve(),
            grid_overrides=spec.record_overrides(cell),
            force=force,
            threads=spec.resources.threads,
            progress=bars,
            cache_dir=cache_dir,
            local_dir=local_dir,
            keep_final_state=spec.keep_final_state,
            extends=None if store.extends is None else store.extends.record_path(cell).parent.resolve(),
        )
        for cell in todo
    ]

    groups = pack_groups(spec, tasks, store)
    if not force and (left := _checkpoint_left_behind(spec, seed_groups(spec, todo), states, store, seeds_per_process)):
        raise BenchError(left)

    where = f"{runner.name} launcher"
    if spec.seeds_per_process > 1:
        where += f", up to {spec.seeds_per_process} seeds side by side per process"
    if runner.name == "local":
        where += f", {runner.parallelism} worker(s) x {spec.resources.threads} torch thread(s)"
        if runner.parallelism * spec.resources.threads > local_cpus():
            where += f" (more than the {local_cpus()} CPUs here: workers will compete)"
    from_checkpoint = f", {resuming} resuming from a checkpoint" if resuming else ""
    extending = sum(states[cell].resume_step is None and states[cell].extends is not None for cell in todo)
    if extending:
        from_checkpoint += f", {extending} extending grid {spec.extends}'s final states"
    if no_states := _no_final_states(spec, store, {cell: states[cell] for cell in todo}):
        print(f"Warning, {no_states}", file=out, flush=True)
    print(
        f"grid {spec.name}: {len(cells)} cells{_selected(spec, cells)}, {result.skipped} finished before, "
        f"{len(tasks)} to run"
        f"{from_checkpoint} ({where}); records in {store.root}",
        file=out,
        flush=True,
    )
    start = time.perf_counter()
    if tasks:
        resumed = [cell for cell in todo if states[cell].resume_step is not None and not force]
        progress_lines = Progress(result, runner, store, out, tasks, resumed, spec.seeds_per_process)
        runner.run(groups, progress_lines)
    print(_summary(spec, result, time.perf_counter() - start), file=out, flush=True)
    return result


def _extension_refusal(spec: GridSpec, store: ResultsStore) -> str | None:
    """Why no group of `spec` could start from a final state of the grid it extends, None when they can (or it
    extends none): that grid is not in the results folder, an algorithm's updates depend on the budget, its stored
    budget is one this grid's does not go past or does not evaluate at, or its settings differ in more than the
    budget. Each group checks its state again when it starts; this stops a run before any training instead of
    group by group."""
    if spec.extends is None:
        return None
    source = store.extends
    if source is None:
        return _no_grid_to_extend(spec, store.root.parent)
    extending = f"grid {spec.name!r} ({spec.path}) extends grid {spec.extends!r}"
    for name in spec.algorithms:
        if dependence := get_algorithm(name).budget_dependence:
            return (
                f"{extending}, but {get_algorithm(name).label} runs cannot be extended: {dependence}, so a longer "
                "run is not a shorter one continued; drop extends: to train every cell from step 0"
            )
    settings = (source.stored_grid() or {}).get("settings")
    steps = settings.get("steps") if isinstance(settings, dict) else None
    if not isinstance(steps, int):
        return (
            f"{extending}, but {source.grid_file} names no budget (settings: steps:); run that grid again to rewrite it"
        )
    if steps >= spec.steps:
        return (
            f"{extending}, which was trained for {steps:,} steps, not fewer than this grid's {spec.steps:,}: give "
            "this grid more steps (steps:) or drop extends:"
        )
    if steps % spec.eval_every:
        return (
            f"{extending}, whose runs end at step {steps:,}, but evaluates every {spec.eval_every:,} steps, so its "
            "runs would not evaluate where the shorter ones did and their records would differ from a run trained "
            "from step 0; make eval_every divide that step or drop extends:"
        )
    if differences := source.grid_differences(replace(spec, steps=steps)):
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        return (
            f"{extending}, whose records were made with other settings ({source.grid_file}: {shown}); its final "
            "states would start other runs than this grid's. Make the two grid files differ in steps: alone, or "
            "drop extends: to train every cell from step 0"
        )
    return None


def _no_final_states(spec: GridSpec, store: ResultsStore, states: dict[Cell, CellState]) -> str | None:
    """A warning when the grid extends another but none of its cells that would start from step 0 (of `states`)
    finds a final state there (that grid ran without keep_final_state: true): all of them train the whole budget."""
    fresh = [state for state in states.values() if not state.finished and state.resume_step is None]
    if store.extends is None or not fresh or any(state.extends is not None for state in fresh):
        return None
    return (
        f"grid {spec.extends!r} holds no final state of the {len(fresh)} cell(s) to run "
        f"({store.extends.root}; was it run with keep_final_state: true?): they train from step 0"
    )


def _no_grid_to_extend(spec: GridSpec, results: Path) -> str:
    return (
        f"grid {spec.name!r} extends grid {spec.extends!r} (extends: in {spec.path}), but "
        f"{Path(results) / spec.extends} holds no grid's records (grid.yaml); run that grid there first with "
        "keep_final_state: true, pass the --results folder that holds it, or drop extends: to train every cell from "
        "step 0"
    )


def _checkpoint_left_behind(
    spec: GridSpec,
    groups: Sequence[tuple[Cell, ...]],
    states: dict[Cell, CellState],
    store: ResultsStore,
    seeds_per_process: int | None,
) -> str | None:
    """Why the run's groups would leave a started group's checkpoint behind, its cells starting over (the grid
    file's `seeds:` or `seeds_per_process` changed since it was written, or `--seeds-per-process`); None if not."""
    for group in groups:
        stems = [f"seed{seed}" for seed in trained_seeds(spec, store, group)]
        for cell in group:
            progress = states[cell].progress
            if progress is None or (held := checkpoint_seeds(progress.path)) == stems:
                continue
            packing = (
                f"with --seeds-per-process {seeds_per_process}"
                if seeds_per_process is not None
                else f"in this run's groups (seeds {', '.join(s.removeprefix('seed') for s in stems)})"
            )
            undo = (
                "Run without --seeds-per-process to resume it"
                if seeds_per_process is not None
                else "Restore the grid file's seeds and seeds_per_process to resume it"
            )
            return (
                f"{progress.path} holds {cell.arch} on {cell.dataset} at step {progress.steps:,}, trained "
                f"{len(held)} seed(s) side by side; {packing} its cells would start over. {undo}, or delete the "
                "checkpoint to start them over in the new groups"
            )
    return None


def _selected(spec: GridSpec, cells: Sized) -> str:
    """How many cells the whole grid has, when a selection left some out; else nothing."""
    total = len(spec.algorithms) * len(spec.architectures) * len(spec.datasets) * len(spec.seeds)
    return f" (of the grid's {total}; the others not selected)" if len(cells) < total else ""


def pack_groups(spec: GridSpec, tasks: list[CellTask], store: ResultsStore | None = None) -> list[Group]:
    """The cells to run in groups that train in one process: per (algorithm, dataset, architecture), the cells of
    each chunk of `seeds_per_process` of the grid's seeds (`GridSpec.seed_group`), in the order the cells come.

    A chunk whose cells are all to run is one group, and a group killed half way resumes from its checkpoint,
    also when some of its seeds have finished since (one diverged): with `store`, such a group's tasks name the
    whole chunk (`CellTask.group_seeds`, `trained_seeds`), whose finished seeds train along and keep their
    records. A chunk with some cells finished and no checkpoint runs its other cells as a smaller group.
    """
    task_of = {task.cell: task for task in tasks}
    groups = []
    for cells in seed_groups(spec, list(task_of)):
        seeds = trained_seeds(spec, store, cells) if store is not None else tuple(c.seed for c in cells)
        along = seeds if seeds != tuple(c.seed for c in cells) else ()
        groups.append(tuple(replace(task_of[cell], group_seeds=along) for cell in cells))
    return groups


def trained_seeds(spec: GridSpec, store: ResultsStore, cells: Sequence[Cell]) -> tuple[int, ...]:
    """The seeds that a group of cells to run (one of `seed_groups`) trains side by side: its own, or its whole
    chunk of the grid's seeds when the chunk's checkpoint is there, so that the group resumes from it."""
    own = tuple(cell.seed for cell in cells)
    chunk = spec.seed_group(cells[0])
    if own == chunk:
        return own
    outs = [store.record_path(replace(cells[0], seed=seed)) for seed in chunk]
    return chunk if group_checkpoint_path(outs).exists() else own


def seed_groups(spec: GridSpec, cells: Sequence[Cell]) -> list[tuple[Cell, ...]]:
    """`cells` (those to run) in the groups that `pack_groups` makes of them."""
    groups: dict[tuple[str, str, str, tuple[int, ...]], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.algo, cell.dataset, cell.arch, spec.seed_group(cell)), []).append(cell)
    return [tuple(group) for group in groups.values()]


def _summary(spec: GridSpec, result: GridResult, seconds: float) -> str:
    counts = result.outcomes
    finished = result.skipped + counts["done"] + counts["diverged"] + counts["skipped"]
    # "before" is what the opening line counted; cells another process finished since are counted apart.
    elsewhere = f", {counts['skipped']} by another process meanwhile" if counts["skipped"] else ""
    lines = [
        f"grid {spec.name}: {finished}/{result.total} cells finished ({result.skipped} before, "
        f"{counts['done']} done and {counts['diverged']} diverged now{elsewhere}), {len(result.failed)} failed, "
        f"{len(result.busy)} running elsewhere; {format_duration(seconds)}"
    ]
    if counts["diverged"]:
        lines.append(f"Note: {DIVERGED_NOTE}.")
    if result.busy:
        lines.append(f"{len(result.busy)} cell(s) are being trained by another process; run the grid again later:")
        lines += [f"  {cell}: {path}" for cell, path, _ in result.busy]
    if result.failed:
        lines.append(f"{len(result.failed)} cell(s) failed (the next run of the grid retries them):")
        for cell, path, error in result.failed:
            lines += [
                f"  {cell}",
                f"    {'record' if path.suffix == '.json' else 'error file'}: {path}",
                f"    error: {error}",
            ]
    return "\n".join(lines)
