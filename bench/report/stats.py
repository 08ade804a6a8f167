"""Statistics of the report: per-cell means, rliable aggregates with stratified-bootstrap CIs, timing, curves.

Reproducibility: rliable's `StratifiedBootstrap.update_indices` draws its resampling indices from NumPy's
*global* generator (`np.random.choice`); the `random_state` argument it passes to arch's `IIDBootstrap` is
never used for those draws (and arch 7.2 deprecates it). So every bootstrap here runs inside
`global_numpy_seed(seed)`, one architecture at a time: an architecture's interval depends only on its own
scores and the seed, and equals `np.random.seed(seed); rly.get_interval_estimates({arch: scores}, ...)`. The
global generator's previous state is restored afterwards.

Ragged seeds: the stratified bootstrap needs a (num_seeds, num_datasets) matrix per architecture. Aggregates use
only the datasets where every architecture has a score for every expected seed ("complete columns"); the
tables name the datasets left out and why. Architectures without any score are left out of the aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics

from bench.report.records import RecordSet

AGGREGATE_METRICS = ("IQM", "Mean", "Median", "Optimality gap")
OPTIMALITY_GAP_GAMMA = 100.0  # normalized scores are on the 0-100 scale
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval."""

    point: float
    low: float
    high: float


@dataclass(frozen=True)
class Profile:
    """A performance profile: fraction of runs above each tau, with its CI band."""

    taus: np.ndarray
    values: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class AggregateSelection:
    """Which architectures, datasets and seeds enter the aggregate statistics, and what was left out."""

    architectures: list[str]
    datasets: list[str]
    seeds: list[int]
    excluded_datasets: dict[str, str]  # dataset -> why
    excluded_architectures: list[str]

    @property
    def empty(self) -> bool:
        return not self.architectures or not self.datasets


@contextmanager
def global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (the one rliable's bootstrap draws from) and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    """IQM, mean, median and optimality gap (gamma 100) of a (num_seeds, num_datasets) score matrix."""
    return np.array(
        [
            metrics.aggregate_iqm(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_optimality_gap(scores, gamma=OPTIMALITY_GAP_GAMMA),
        ]
    )


def usable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with a score that counts (done, or diverged after an evaluation)."""
    return runs[runs["score"].notna()]


def select_complete(
    runs: pd.DataFrame, architectures: Sequence[str], datasets: Sequence[str], seeds: Sequence[int]
) -> AggregateSelection:
    """The complete columns: datasets where every scored architecture has a score for every expected seed."""
    scored = usable_runs(runs)
    archs = [a for a in architectures if (scored["arch"] == a).any()]
    excluded_archs = [a for a in architectures if a not in archs]
    counts = scored.groupby(["dataset", "arch"])["seed"].nunique()
    kept: list[str] = []
    excluded: dict[str, str] = {}
    for dataset in datasets:
        short = [f"{a} {n}/{len(seeds)}" for a in archs if (n := int(counts.get((dataset, a), 0))) < len(seeds)]
        if short:
            excluded[dataset] = "seeds with a score: " + ", ".join(short)
        else:
            kept.append(dataset)
    return AggregateSelection(archs, kept, list(seeds), excluded, excluded_archs)


def score_matrix(runs: pd.DataFrame, arch: str, datasets: Sequence[str], seeds: Sequence[int]) -> np.ndarray:
    """Scores of `arch` as rliable wants them: shape (num_seeds, num_datasets), rows in `seeds` order."""
    scored = usable_runs(runs)
    table = scored[scored["arch"] == arch].pivot(index="seed", columns="dataset", values="score")
    matrix = table.reindex(index=list(seeds), columns=list(datasets)).to_numpy(dtype=float)
    if np.isnan(matrix).any():
        raise ValueError(f"score matrix of {arch} has gaps; select complete columns first")
    return matrix


def score_matrices(runs: pd.DataFrame, selection: AggregateSelection) -> dict[str, np.ndarray]:
    return {a: score_matrix(runs, a, selection.datasets, selection.seeds) for a in selection.architectures}


def _bootstrap(
    key: str, data: np.ndarray | tuple[np.ndarray, ...], func: Callable[..., np.ndarray], *, reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Point estimates and (2, k) CIs of `func` from one seeded stratified bootstrap."""
    with global_numpy_seed(seed):
        points, intervals = rly.get_interval_estimates(
            {key: data}, func, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return np.asarray(points[key], dtype=float), np.asarray(intervals[key], dtype=float)


def aggregate_intervals(matrices: Mapping[str, np.ndarray], *, reps: int, seed: int) -> dict[str, dict[str, Interval]]:
    """Per architecture: IQM, mean, median and optimality gap with stratified-bootstrap 95% CIs."""
    result: dict[str, dict[str, Interval]] = {}
    for arch, matrix in matrices.items():
        points, cis = _bootstrap(arch, matrix, aggregate_metrics, reps=reps, seed=seed)
        result[arch] = {
            name: Interval(float(points[i]), float(cis[0, i]), float(cis[1, i]))
            for i, name in enumerate(AGGREGATE_METRICS)
        }
    return result


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's `metrics.probability_of_improvement` of scores (runs_x, tasks) and (runs_y, tasks), as a
    one-element array, the same floats without its per-task Mann-Whitney call: per task, the pairs where x beats y
    plus half the ties, over the pairs (the Mann-Whitney U over n_x n_y, which rliable computes from ranks, exactly:
    both are sums of halves), averaged over tasks. The bootstrap calls it once per resample, and the rank test's
    overhead was half of a report's time."""
    left, right = x[:, None, :], y[None, :, :]
    pairs = (left > right).sum(axis=(0, 1)) + 0.5 * (left == right).sum(axis=(0, 1))
    return np.array([np.mean(pairs / (x.shape[0] * y.shape[0]))])


def improvement_over(matrices: Mapping[str, np.ndarray], baseline: str, *, reps: int, seed: int) -> dict[str, Interval]:
    """P(architecture > baseline) with CIs for every architecture but the baseline (rliable's definition)."""
    result: dict[str, Interval] = {}
    for arch, matrix in matrices.items():
        if arch == baseline:
            continue
        points, cis = _bootstrap(
            f"{arch},{baseline}", (matrix, matrices[baseline]), probability_of_improvement, reps=reps, seed=seed
        )
        result[arch] = Interval(float(points[0]), float(cis[0, 0]), float(cis[1, 0]))
    return result


def improvement_by_dataset(
    runs: pd.DataFrame,
    architectures: Sequence[str],
    datasets: Sequence[str],
    seeds: Sequence[int],
    baseline: str,
    *,
    reps: int,
    seed: int,
) -> dict[tuple[str, str], Interval]:
    """P(architecture > baseline) on each dataset alone, with CIs, keyed (dataset, architecture): every pair of
    a dataset where both have a score for every expected seed, so a dataset still running gives its finished
    architectures' comparisons (the pooled `improvement_over` waits for whole datasets)."""
    scored = usable_runs(runs)
    counts = scored.groupby(["dataset", "arch"])["seed"].nunique()
    result: dict[tuple[str, str], Interval] = {}
    for dataset in datasets:
        if int(counts.get((dataset, baseline), 0)) < len(seeds):
            continue
        complete = [a for a in architectures if int(counts.get((dataset, a), 0)) >= len(seeds)]
        matrices = {a: score_matrix(runs, a, [dataset], seeds) for a in complete}
        for arch, interval in improvement_over(matrices, baseline, reps=reps, seed=seed).items():
            result[(dataset, arch)] = interval
    return result


def tau_grid(matrices: Mapping[str, np.ndarray], points: int = 101) -> np.ndarray:
    """Thresholds from 0 (or the lowest score) to a little above the highest score, on the normalized scale.

    The grid spans the observed scores rather than a fixed 0-100, so a grid whose scores are all low (a smoke
    run) still shows where the profiles separate.
    """
    values = np.concatenate([m.ravel() for m in matrices.values()])
    low = min(0.0, float(np.floor(values.min())))
    top = float(values.max())
    high = float(np.ceil(top + 0.1 * max(top - low, 1.0)))
    return np.linspace(low, high, points)


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The fraction of all runs' scores above each threshold: rliable's default profile (`score_distributions`,
    `np.mean(scores > tau)` one tau at a time through `np.vectorize`) in one comparison, the same floats (the
    means of 0s and 1s are exact)."""
    return (scores.reshape(-1, 1) > np.asarray(taus).reshape(1, -1)).mean(axis=0)


def performance_profiles(
    matrices: Mapping[str, np.ndarray], taus: np.ndarray, *, reps: int, seed: int
) -> dict[str, Profile]:
    """Score distributions (fraction of runs with score > tau) with stratified-bootstrap CI bands."""
    result: dict[str, Profile] = {}
    for arch, matrix in matrices.items():
        with global_numpy_seed(seed):
            values, intervals = rly.create_performance_profile(
                {arch: matrix},
                taus,
                custom_profile_func=score_distribution,
                reps=reps,
                confidence_interval_size=CONFIDENCE,
            )
        result[arch] = Profile(taus, np.asarray(values[arch]), intervals[arch][0], intervals[arch][1])
    return result


def cell_statistics(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, arch): n scored runs, mean and sample std (ddof 1) of the score, diverged runs and runs
    still improving at their last evaluation (`still_improving`) counted."""
    scored = usable_runs(runs)
    grouped = scored.groupby(["dataset", "arch"])
    frame = pd.DataFrame(
        {
            "n": grouped["score"].count(),
            "mean": grouped["score"].mean(),
            "std": grouped["score"].std(ddof=1),
            "diverged": grouped["status"].apply(lambda s: int((s == "diverged").sum())),
            "improving": grouped["still_improving"].apply(lambda s: int(s.astype(bool).sum())),
        }
    )
    return frame


def time_statistics(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (device, arch): n timed runs (done or diverged), the processes that timed them, and the mean and sample
    std of seconds per 1,000 steps over those processes.

    Seeds trained side by side in one process share its epoch timings, so their runs are one measurement, not
    independent ones: each process counts once, with the mean of its timed runs (they carry the same value unless
    one stopped early). With groups of one size this mean equals the mean over runs.
    """
    timed = runs[(runs["status"] != "failed") & runs["seconds_per_1k"].notna()]
    processes = timed.groupby(["device", "arch", "process"])["seconds_per_1k"].mean().groupby(["device", "arch"])
    return pd.DataFrame(
        {
            "n": timed.groupby(["device", "arch"])["seconds_per_1k"].count(),
            "processes": processes.count(),
            "mean": processes.mean(),
            "std": processes.std(ddof=1),
        }
    )


def _mean_per_step(scores: np.ndarray) -> np.ndarray:
    """rliable's aggregate mean at every step of a (num_seeds, num_datasets, num_steps) array."""
    return scores.mean(axis=0).mean(axis=0)


@dataclass(frozen=True)
class CurveSummary:
    """Mean learning curve of one (dataset, arch) cell over its seeds, with a 95% stratified-bootstrap CI band."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


def learning_curves(curves: pd.DataFrame, *, reps: int, seed: int) -> dict[tuple[str, str], CurveSummary]:
    """Per (dataset, arch): the mean over seeds at the evaluation steps every seed reached, with its CI.

    The CI is the same seeded percentile bootstrap over seeds that the aggregates use (rliable's stratified
    bootstrap of a (num_seeds, 1, num_steps) array, as rliable does for sample-efficiency curves), so a curve's
    last point and the aggregate mean of a single dataset agree. A diverged run stops early; the curve then ends
    at the last step all of the cell's runs evaluated, so no point is an average over a different set of seeds
    than its neighbours.
    """
    result: dict[tuple[str, str], CurveSummary] = {}
    for (dataset, arch), group in curves.groupby(["dataset", "arch"]):
        table = group.pivot_table(index="step", columns="seed", values="normalized_score").dropna()
        if table.empty:
            continue
        scores = table.to_numpy(dtype=float).T[:, np.newaxis, :]
        points, cis = _bootstrap(f"{dataset},{arch}", scores, _mean_per_step, reps=reps, seed=seed)
        result[(dataset, arch)] = CurveSummary(table.index.to_numpy(), points, cis[0], cis[1], table.shape[1])
    return result


@dataclass
class Analysis:
    """Everything the tables and figures show, computed once from a RecordSet."""

    records: RecordSet
    baseline: str
    reps: int
    seed: int
    cells: pd.DataFrame
    selection: AggregateSelection
    matrices: dict[str, np.ndarray]
    aggregates: dict[str, dict[str, Interval]]
    improvement: dict[str, Interval]
    dataset_improvement: dict[tuple[str, str], Interval]
    profiles: dict[str, Profile]
    curves: dict[tuple[str, str], CurveSummary]
    times: pd.DataFrame


def analyze(records: RecordSet, *, baseline: str, reps: int, seed: int) -> Analysis:
    """All statistics of a report; bootstraps are seeded with `seed` (see the module docstring)."""
    runs = records.runs
    selection = select_complete(runs, records.architectures, records.datasets, records.seeds)
    matrices = {} if selection.empty else score_matrices(runs, selection)
    aggregates = aggregate_intervals(matrices, reps=reps, seed=seed)
    improvement = improvement_over(matrices, baseline, reps=reps, seed=seed) if baseline in matrices else {}
    profiles = performance_profiles(matrices, tau_grid(matrices), reps=reps, seed=seed) if matrices else {}
    return Analysis(
        records=records,
        baseline=baseline,
        reps=reps,
        seed=seed,
        cells=cell_statistics(runs),
        selection=selection,
        matrices=matrices,
        aggregates=aggregates,
        improvement=improvement,
        dataset_improvement=improvement_by_dataset(
            runs, records.architectures, records.datasets, records.seeds, baseline, reps=reps, seed=seed
        ),
        profiles=profiles,
        curves=learning_curves(records.curves, reps=reps, seed=seed),
        times=time_statistics(runs),
    )
