"""Table 9: where each trained actor's own episodes go, against the states of the data it was trained on.

Table 5 asks what an actor does on the data's states; its score comes from the states its own episodes reach,
which the data may not hold (the distribution shift offline RL is about). For every finished record whose final
actor is kept beside it, the actor's deterministic action runs the record's evaluation episodes again (their
number and seeds, or `episodes` of them), and every state it acts in is compared with the dataset's states, both
normalized as in training:

- distance to the data: the Euclidean distance from a visited state to the nearest state of the dataset; an
  actor's number is the median over the states of its episodes;
- off the data: the share of visited states farther from the data than the data's own states are from the rest
  of it. The threshold is the 99th percentile of the distance from each state of `reference_episodes` of the
  dataset's episodes, evenly spaced through the file, to the nearest state of every other episode (leave one
  episode out), so about 1% of the states of a new episode like the data's would count as off the data;
- upside down: the share of visited states whose body pitch (`EnvSpec.pitch_index`) is beyond 90 degrees.
  Hopper and Walker2d end an episode long before that; HalfCheetah never does, and a cheetah on its back goes on
  moving its legs for the rest of the episode.

Outputs: `table9_coverage.md` and `.tex` (mean ± std over seeds per dataset and architecture, under the row of
the data's own episodes), `coverage.json` with every number unrounded and the SHA-256 of the actor file and of
the data each came from, and Figure 9 (`coverage.pdf`, `.png`: each actor's score against its share off the
data). A later run keeps an actor's numbers from the folder's `coverage.json` while both digests, the episodes,
their seed and the dataset's threshold are unchanged (unless `recompute`), and carries the entries of actors that
`architectures` or `datasets` leave out. The file is written after every actor measured, so a run stopped
halfway resumes where it stopped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.lines import Line2D
from scipy.stats import spearmanr

from bench.actions import cells_of, incomplete_notes, narrowed_notes, narrowing, write_entries
from bench.data.registry import get_env_spec
from bench.deploy import (
    ActorRecords,
    DatasetStates,
    actor_digests,
    dataclass_from,
    earlier_or_nothing,
    read_earlier,
    record_dataset,
    select_actor_records,
    torch_policy,
)
from bench.errors import BenchError
from bench.evaluate import evaluate_policy
from bench.fileio import atomic_save_figure
from bench.report.figures import colors, new_figure
from bench.report.records import display_name
from bench.report.tables import Table, values_mean_std, write_table
from bench.train import load_trained_actor

TABLE_STEM = "table9_coverage"
FIGURE_STEM = "coverage"
JSON_NAME = "coverage.json"
DEFAULT_REFERENCE_EPISODES = 20
REFERENCE_QUANTILE = 0.99
DATA_ROW = "the data's own episodes (each against the others)"
# Rows of queries and of data per distance block: 512 x 65,536 float32 distances are 128 MiB.
QUERY_CHUNK = 512
DATA_CHUNK = 65_536
METHOD = (
    "the actor's deterministic action in its record's evaluation episodes; every state it acts in against the "
    "dataset's states, both normalized as in training: Euclidean distance to the nearest data state (median over "
    "the visited states), share of visited states farther than the 99th percentile of the data's own "
    "leave-one-episode-out distances, share with the body pitch beyond 90 degrees"
)


@dataclass(frozen=True)
class ActorCoverage:
    """Where one trained actor's evaluation episodes went."""

    record: str
    dataset: str
    dataset_name: str
    arch: str
    seed: int
    episodes: int
    eval_seed: int  # sub-environment i of the episodes was reset with eval_seed + i
    score: float  # mean normalized score of these episodes
    length: float  # mean episode length
    median_distance: float
    off_data: float  # shares of the visited states, 0 to 1
    upside_down: float
    threshold: float  # the distance beyond which a state counted as off the data (its dataset's row's)
    actor_sha256: str = ""  # of the actor file and of the dataset's transitions the numbers came from
    dataset_sha256: str = ""
    kept: bool = field(default=False, compare=False)  # taken from an earlier coverage.json, not written to it


@dataclass(frozen=True)
class DatasetCoverage:
    """The same numbers for the data's own episodes, and the threshold that says what is off the data."""

    dataset: str
    dataset_name: str
    transitions: int
    episodes: int
    reference_episodes: int  # of them, each measured against all the others
    median_distance: float
    threshold: float  # the REFERENCE_QUANTILE of the reference episodes' distances
    off_data: float  # share of the reference episodes' states beyond the threshold (about 1 - REFERENCE_QUANTILE)
    upside_down: float  # share of all the data's states
    length: float  # mean length of the data's episodes
    sha256: str = ""


@dataclass
class CoverageSummary:
    """What `coverage_grid` measured and wrote."""

    results_dir: Path
    actors: list[ActorCoverage]
    datasets: dict[str, DatasetCoverage]
    skipped: list[str]
    written: list[Path]

    def format(self) -> str:
        kept = sum(a.kept for a in self.actors)
        lines = [
            f"episodes of {len(self.actors)} trained actor(s) of {self.results_dir} against their data"
            + (f" ({kept} kept from the earlier {JSON_NAME}, their actors and data unchanged)" if kept else "")
        ]
        cells = cells_of(self.actors)
        for dataset, reference in self.datasets.items():
            lines.append(
                f"{reference.dataset_name}, its own episodes: median distance {reference.median_distance:.2f}, "
                f"off the data beyond {reference.threshold:.2f}"
            )
            for (name, arch), group in cells.items():
                if name == dataset:
                    off = 100 * np.mean([a.off_data for a in group])
                    upside_down = 100 * np.mean([a.upside_down for a in group])
                    lines.append(
                        f"{reference.dataset_name} {arch}: off the data {off:.0f}%, upside down {upside_down:.0f}% "
                        f"(n={len(group)})"
                    )
        return "\n".join(lines + closing_lines(self.skipped, self.written))


def closing_lines(skipped: Sequence[str], written: Sequence[Path]) -> list[str]:
    """A command summary's last lines: a note per record left out, then the files written, per folder."""
    lines = [f"note: {note}" for note in skipped]
    for folder in dict.fromkeys(path.parent for path in written):
        names = ", ".join(path.name for path in written if path.parent == folder)
        lines.append(f"wrote {names} to {folder}")
    return lines


def nearest_distances(queries: np.ndarray, data: np.ndarray, *, exclude: tuple[int, int] | None = None) -> np.ndarray:
    """The Euclidean distance from each row of `queries` to the nearest row of `data`, rows [start, end) of
    `exclude` left out, in float32 blocks of QUERY_CHUNK x DATA_CHUNK rows.

    Squared distances as |q|^2 + |x|^2 - 2 q.x, one matrix product per block, with only each row's minimum
    taken to a square root: about 1.6 times cdist's speed, agreeing with it to about 1e-6 on states of unit
    scale.
    """
    rows = torch.as_tensor(np.ascontiguousarray(data, dtype=np.float32))
    parts = [rows] if exclude is None else [rows[: exclude[0]], rows[exclude[1] :]]
    parts = [part for part in parts if len(part)]
    if not parts:
        raise ValueError("no data rows to measure distances to")
    norms = [(part * part).sum(dim=1) for part in parts]
    points = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32))
    nearest = np.empty(len(points), dtype=np.float64)
    with torch.inference_mode():
        for i in range(0, len(points), QUERY_CHUNK):
            block = points[i : i + QUERY_CHUNK]
            best = torch.full((len(block),), math.inf)
            for part, norm in zip(parts, norms, strict=True):
                for j in range(0, len(part), DATA_CHUNK):
                    squared = torch.addmm(norm[j : j + DATA_CHUNK], block, part[j : j + DATA_CHUNK].T, alpha=-2)
                    best = torch.minimum(best, squared.min(dim=1).values)
            nearest[i : i + len(block)] = (best + (block * block).sum(dim=1)).clamp_min(0).sqrt().numpy()
    return nearest


def raw_pitch(states: np.ndarray, data: DatasetStates, pitch_index: int) -> np.ndarray:
    """The body pitch in radians from states normalized as `data`'s are."""
    pitch = states[:, pitch_index].astype(np.float64)
    if data.state_mean is None or data.state_std is None:
        return pitch
    return pitch * float(np.ravel(data.state_std)[pitch_index]) + float(np.ravel(data.state_mean)[pitch_index])


def upside_down_share(pitch: np.ndarray) -> float:
    return float(np.mean(np.abs(pitch) > math.pi / 2)) if len(pitch) else 0.0


def data_coverage(
    name: str, dataset_name: str, data: DatasetStates, pitch_index: int, reference_episodes: int
) -> DatasetCoverage:
    """The data's own numbers: `reference_episodes` of its episodes, evenly spaced, each against the others."""
    ends = data.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    if len(ends) < 2:
        raise BenchError(
            f"{name} holds one episode: the data's own distances need other episodes to measure one against"
        )
    chosen = np.unique(np.linspace(0, len(ends) - 1, min(reference_episodes, len(ends))).round().astype(int))
    distances = np.concatenate(
        [nearest_distances(data.states[starts[k] : ends[k]], data.states, exclude=(starts[k], ends[k])) for k in chosen]
    )
    threshold = float(np.quantile(distances, REFERENCE_QUANTILE))
    return DatasetCoverage(
        dataset=name,
        dataset_name=dataset_name,
        transitions=len(data.states),
        episodes=len(ends),
        reference_episodes=len(chosen),
        median_distance=float(np.median(distances)),
        threshold=threshold,
        off_data=float(np.mean(distances > threshold)),
        upside_down=upside_down_share(raw_pitch(data.states, data, pitch_index)),
        length=float(np.mean(ends - starts)),
        sha256=data.sha256,
    )


def visited_states(
    actor: torch.nn.Module, env: str, data: DatasetStates, episodes: int, seed: int
) -> tuple[np.ndarray, float, float]:
    """The raw states the actor acts in over `episodes` evaluation episodes seeded from `seed` (its inputs
    normalized as `data`'s), with the episodes' mean normalized score and mean length."""
    visited: list[np.ndarray] = []
    result = evaluate_policy(
        env,
        torch_policy(actor),
        episodes=episodes,
        seed=seed,
        state_mean=data.state_mean,
        state_std=data.state_std,
        on_step=lambda step: visited.append(step.states),
    )
    return np.concatenate(visited), float(np.mean(result.normalized_scores)), float(np.mean(result.lengths))


def normalized_as(raw: np.ndarray, data: DatasetStates) -> np.ndarray:
    """Raw states normalized as `data`'s states are (float32), to measure them against those."""
    if data.state_mean is not None and data.state_std is not None:
        raw = (raw - np.ravel(data.state_mean)) / np.ravel(data.state_std)
    return raw.astype(np.float32)


def earlier_results(path: Path) -> tuple[dict[str, ActorCoverage], dict[tuple[str, str], DatasetCoverage]]:
    """The entries of an earlier coverage.json at `path`: actors by record path, datasets by (name, SHA-256)."""

    def parse(document: dict[str, Any]) -> tuple[list[ActorCoverage], list[DatasetCoverage]]:
        actors = [dataclass_from(ActorCoverage, a) for a in document["actors"]]
        return actors, [dataclass_from(DatasetCoverage, d) for d in document["datasets"].values()]

    read = read_earlier(path, parse, f"a {JSON_NAME}", "measure every actor again")
    if read is None:
        return {}, {}
    actors, datasets = read
    return {a.record: a for a in actors}, {(d.dataset, d.sha256): d for d in datasets}


def coverage_grid(
    results_dir: Path,
    tables_dir: Path,
    *,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    figures_dir: Path | None = None,
    episodes: int | None = None,
    reference_episodes: int = DEFAULT_REFERENCE_EPISODES,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    recompute: bool = False,
    progress: Callable[[str], None] | None = None,
) -> CoverageSummary:
    """Run every trained actor under `results_dir` (of `architectures` and `datasets` only, when given) for its
    record's evaluation episodes (`episodes` of them, when given) and measure where they go against its dataset;
    write Table 9 and coverage.json into `tables_dir` and, when `figures_dir` is given, Figure 9 there. Earlier
    entries are kept and carried as the module docstring says. `progress` gets one line per actor (default:
    stderr)."""
    if episodes is not None and episodes < 1:
        raise BenchError(f"--episodes must be at least 1, got {episodes}")
    if reference_episodes < 2:
        raise BenchError(f"--reference-episodes must be at least 2, got {reference_episodes}")
    results_dir = Path(results_dir)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    selection = select_actor_records(results_dir, architectures, datasets)
    records = selection.records
    tables_dir = Path(tables_dir)
    earlier_actors, earlier_datasets = earlier_or_nothing(
        lambda: earlier_results(tables_dir / JSON_NAME), ({}, {}), recompute
    )
    kept_actors, kept_datasets = ({}, {}) if recompute else (earlier_actors, earlier_datasets)

    def save(actors: list[ActorCoverage], dataset_rows: dict[str, DatasetCoverage]) -> None:
        write_entries(
            tables_dir / JSON_NAME, results_dir, records, METHOD, actors, dataset_rows, earlier_actors, earlier_datasets
        )

    loaded: dict[tuple[str, bool], DatasetStates] = {}
    dataset_rows: dict[str, DatasetCoverage] = {}
    actors: list[ActorCoverage] = []
    for path in selection.chosen:
        record = records[path]
        cell = record["cell"]
        count = episodes or int(record["evaluation"]["episodes"])
        eval_seed = int(record["evaluation"]["seed"])
        actor_digest, data_digest = actor_digests(path, record)
        earlier = kept_actors.get(str(path))
        earlier_data = kept_datasets.get((cell["dataset"], data_digest))
        if earlier_data is not None and earlier_data.reference_episodes != min(
            reference_episodes, earlier_data.episodes
        ):
            earlier_data = None  # its threshold came from another number of the data's episodes
        if (
            earlier is not None
            and earlier_data is not None
            and (earlier.actor_sha256, earlier.dataset_sha256, earlier.episodes, earlier.eval_seed, earlier.threshold)
            == (actor_digest, data_digest, count, eval_seed, earlier_data.threshold)
        ):
            dataset_rows.setdefault(cell["dataset"], earlier_data)
            entry = replace(earlier, arch=selection.labels[path], kept=True)
        else:
            actor, record = load_trained_actor(path)
            data = record_dataset(path, record, loaded, cache_dir, local_dir)
            env = get_env_spec(record["dataset"]["env"])
            if cell["dataset"] not in dataset_rows:
                name = display_name(cell["dataset"], record["dataset"].get("source", ""))
                say(f"{name}: the data's own episodes, {reference_episodes} against the others")
                dataset_rows[cell["dataset"]] = data_coverage(
                    cell["dataset"], name, data, env.pitch_index, reference_episodes
                )
            reference = dataset_rows[cell["dataset"]]
            raw, score, length = visited_states(actor, env.name, data, count, eval_seed)
            distances = nearest_distances(normalized_as(raw, data), data.states)
            entry = ActorCoverage(
                record=str(path),
                dataset=cell["dataset"],
                dataset_name=reference.dataset_name,
                arch=selection.labels[path],
                seed=int(cell["seed"]),
                episodes=count,
                eval_seed=eval_seed,
                score=score,
                length=length,
                median_distance=float(np.median(distances)),
                off_data=float(np.mean(distances > reference.threshold)),
                upside_down=upside_down_share(raw[:, env.pitch_index]),
                threshold=reference.threshold,
                actor_sha256=actor_digest,
                dataset_sha256=data.sha256,
            )
        actors.append(entry)
        if not entry.kept:
            save(actors, dataset_rows)  # an interrupted run keeps what it measured: a rerun takes it from here
        kept = f" (kept from the earlier {JSON_NAME})" if entry.kept else ""
        say(
            f"{entry.dataset_name} {entry.arch} seed {entry.seed}: score {entry.score:.1f}, median distance "
            f"{entry.median_distance:.2f}, off the data {100 * entry.off_data:.0f}%, upside down "
            f"{100 * entry.upside_down:.0f}%{kept}"
        )

    written = write_table(
        coverage_table(actors, dataset_rows, narrowing(selection, architectures, datasets), selection), tables_dir
    )
    save(actors, dataset_rows)
    written.append(tables_dir / JSON_NAME)
    if figures_dir is not None:
        written += coverage_figure(actors, dataset_rows, figures_dir)
    return CoverageSummary(results_dir, actors, dataset_rows, selection.skipped, written)


def _percent(values: Sequence[float]) -> str:
    return values_mean_std([100 * v for v in values], 0)


def coverage_table(
    actors: list[ActorCoverage],
    datasets: dict[str, DatasetCoverage],
    narrowed: Sequence[str] = (),
    selection: ActorRecords | None = None,
) -> Table:
    """Table 9: per dataset and architecture, where the actors' episodes went, mean ± std over seeds, under the
    row of the data's own episodes; `narrowed`: the options that left some of the folder's actors out;
    `selection`: the records chosen, whose grid file's cells the notes name when the table lacks them."""
    table = Table(
        stem=TABLE_STEM,
        number=9,
        title="Where the actors' episodes go",
        caption=(
            "Each trained actor's evaluation episodes (deterministic actions, the record's episode seeds) against "
            "its dataset's states, both normalized as in training. Distance: from each visited state to the "
            "nearest state of the data, median over the visited states. Off the data: the share of visited states "
            "farther than the 99th percentile of the data's own distances (each of some of its episodes against "
            "all the others). Upside down: the share of visited states with the body pitched beyond 90 degrees. "
            "Mean ± sample standard deviation over seeds."
        ),
        header=[
            "Dataset",
            "Architecture",
            "Seeds",
            "Distance",
            "Off the data (%)",
            "Upside down (%)",
            "Length",
            "Score",
        ],
        align="llrrrrrr",
    )
    previous = None
    cells = cells_of(actors)
    for (dataset, arch), group in cells.items():
        if dataset != previous:
            reference = datasets[dataset]
            table.add_row(
                [
                    reference.dataset_name,
                    DATA_ROW,
                    "",
                    f"{reference.median_distance:.2f}",
                    f"{100 * reference.off_data:.0f}",
                    f"{100 * reference.upside_down:.0f}",
                    f"{reference.length:.0f}",
                    "",
                ],
                rule_before=True,
            )
        table.add_row(
            [
                "",
                arch,
                str(len(group)),
                values_mean_std([a.median_distance for a in group], 2),
                _percent([a.off_data for a in group]),
                _percent([a.upside_down for a in group]),
                values_mean_std([a.length for a in group], 0),
                values_mean_std([a.score for a in group], 1),
            ]
        )
        previous = dataset
    episodes = sorted({a.episodes for a in actors})
    table.notes = [
        f"{d.dataset_name}: {d.transitions:,} transitions in {d.episodes:,} episodes; off the data beyond distance "
        f"{d.threshold:.2f}, measured on {d.reference_episodes} of its episodes, evenly spaced through the file."
        for d in datasets.values()
    ]
    table.notes.append(
        f"{' or '.join(map(str, episodes))} episode(s) per actor, from the seeds of its record's evaluations: the "
        "score is of these episodes (for a seed trained alone, its final evaluation's)."
    )
    correlations = score_off_data_correlations(actors)
    if correlations:
        shown = "; ".join(
            f"{datasets[dataset].dataset_name} {rho:.2f} ({n} actors)" for dataset, (n, rho) in correlations.items()
        )
        table.notes.append(f"Spearman's rank correlation of the score with the share off the data: {shown}.")
    table.notes += incomplete_notes(cells, datasets, selection) + narrowed_notes(narrowed)
    return table


def score_off_data_correlations(actors: Sequence[ActorCoverage], minimum: int = 5) -> dict[str, tuple[int, float]]:
    """Per dataset with at least `minimum` actors, their number and Spearman's rank correlation of the score with
    the share of states off the data (does an actor score lower the further it leaves the data?); a dataset whose
    scores or shares are all equal has none."""
    by_dataset: dict[str, list[ActorCoverage]] = {}
    for actor in actors:
        by_dataset.setdefault(actor.dataset, []).append(actor)
    correlations = {}
    for dataset, group in by_dataset.items():
        scores, off = [a.score for a in group], [a.off_data for a in group]
        if len(group) < minimum or len(set(scores)) < 2 or len(set(off)) < 2:
            continue
        correlations[dataset] = (len(group), float(spearmanr(scores, off).statistic))
    return correlations


def coverage_figure(actors: list[ActorCoverage], datasets: dict[str, DatasetCoverage], directory: Path) -> list[Path]:
    """Figure 9 (`coverage.{pdf,png}` in `directory`): per dataset, each actor's score against the share of its
    visited states off the data, a filled marker where it spent at least half of its steps upside down, and the
    data's own share (about 1%) as a dotted line: whether the actors that score low are the ones that left the
    data."""
    cells = cells_of(actors)
    archs = list(dict.fromkeys(arch for _, arch in cells))
    palette = colors(archs)
    names = list(dict.fromkeys(dataset for dataset, _ in cells))
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure = new_figure(max(3.4 * columns, 4.4) + 2.8, 2.9 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, dataset in zip(axes.flat, names, strict=False):
        reference = datasets[dataset]
        ax.axvline(100 * reference.off_data, color="0.5", linestyle=":", linewidth=1)
        for arch in archs:
            group = cells.get((dataset, arch), [])
            if not group:
                continue
            off = np.array([100 * a.off_data for a in group])
            score = np.array([a.score for a in group])
            flipped = np.array([a.upside_down >= 0.5 for a in group])
            color = palette[arch]
            ax.scatter(off[~flipped], score[~flipped], s=28, facecolors="none", edgecolors=[color])
            ax.scatter(off[flipped], score[flipped], s=28, color=[color])
        ax.set_xlim(-3, 103)
        ax.set_title(reference.dataset_name, fontsize="medium")
        ax.set_xlabel("states off the data (%)")
        ax.set_ylabel("normalized score")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_axis_off()
    handles = [Line2D([], [], marker="o", linestyle="", color=palette[arch], label=arch) for arch in archs]
    handles += [
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black", label="upright"),
        Line2D([], [], marker="o", linestyle="", color="black", label="upside down for half the steps or more"),
        Line2D([], [], color="0.5", linestyle=":", linewidth=1, label="the data's own episodes (about 1%)"),
    ]
    figure.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return atomic_save_figure(figure, Path(directory), FIGURE_STEM)
