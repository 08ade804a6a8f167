"""The report's entry point: a results folder in, Tables 1-3 and 6-8 and the figures out, and a short summary back."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import BenchError, did_you_mean
from bench.report.figures import build_figures
from bench.report.records import (
    NamedReport,
    RecordSet,
    SkippedFile,
    arch_label,
    grid_file_of,
    load_records,
    read_grid_file,
)
from bench.report.stats import Analysis, analyze
from bench.report.tables import build_tables, write_table

DEFAULT_BASELINE = "mlp"
DEFAULT_REPS = 2000


@dataclass
class ReportSummary:
    """What a report read and wrote; `format()` is the text `python -m bench report` prints."""

    results_dir: str  # the folder(s) read, as RecordSet.label names them
    baseline: str
    records: int
    statuses: dict[str, int]
    expected_runs: int
    expected_source: str
    scored_runs: int
    expected_cells: int
    missing_cells: list[str]
    partial_cells: list[str]
    aggregate_datasets: int
    aggregate_seeds: int
    iqm: dict[str, str]
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored: list[SkippedFile] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    mixed_keys: list[str] = field(default_factory=list)
    at_step: int | None = None
    last_evaluations: int = 1

    def format(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        at_step = f" at step {self.at_step:,}" if self.at_step is not None else ""
        if self.last_evaluations > 1:
            at_step += f", each run scored by the mean of its last {self.last_evaluations} evaluations"
        lines = [
            f"report of {self.results_dir}{at_step}: {self.records} records ({statuses}); {self.scored_runs} of "
            f"{self.expected_runs} expected runs have a score (expected cells from {self.expected_source})",
        ]
        if self.missing_cells:
            shown = ", ".join(self.missing_cells[:6]) + (" ..." if len(self.missing_cells) > 6 else "")
            lines.append(
                f"missing cells (dash in the tables): {len(self.missing_cells)} of {self.expected_cells}: {shown}"
            )
        else:
            lines.append(f"missing cells: none of {self.expected_cells}")
        if self.partial_cells:
            lines.append(f"cells with fewer seeds than the grid: {', '.join(self.partial_cells)}")
        for item in self.skipped:
            lines.append(f"skipped {item.path}: {item.reason}")
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} JSON file(s) that are not records, e.g. {self.ignored[0].path}")
        if self.mixed_keys:
            lines.append(f"warning: mixed configurations (--allow-mixed): {', '.join(self.mixed_keys)}")
        if self.iqm:
            iqm = "; ".join(f"{arch} {text}" for arch, text in self.iqm.items())
            lines.append(
                f"IQM [95% CI] over {self.aggregate_datasets} dataset(s) x {self.aggregate_seeds} seed(s): {iqm}"
            )
        else:
            lines.append("no aggregates: no dataset has every seed of every architecture (see Table 1's notes)")
        for kind, paths in (("tables", self.tables), ("figures", self.figures)):
            if paths:
                folder = paths[0].parent
                lines.append(f"{kind}: {len(paths)} files in {folder}: {', '.join(p.name for p in paths)}")
        return "\n".join(lines)


def resolve_baseline(records: RecordSet, baseline: str | None) -> str:
    """The baseline architecture: `baseline`, else the grid file's `baseline:`, else `mlp`; it must be one of the
    grid's architectures. With several algorithms a bare architecture name means it under the first algorithm, in
    the grid file's order, that has records among the report's architectures ("mlp" -> "BC mlp")."""
    name = baseline or records.expected.baseline or DEFAULT_BASELINE
    if name not in records.architectures:
        labels = (arch_label(algo, name) for algo in records.algorithms)
        name = next((label for label in labels if label in records.architectures), name)
    if name not in records.architectures:
        raise BenchError(
            f"baseline architecture {name!r} is not among the architectures of {records.label} "
            f"({', '.join(records.architectures)}); pass --baseline NAME (make tables BASELINE=NAME)"
        )
    return name


def order_architectures(records: RecordSet, baseline: str) -> RecordSet:
    """The grid file's order when there is one; otherwise the baseline first, then by name."""
    if records.expected.source != "observed records":
        return records
    ordered = [baseline, *(a for a in records.architectures if a != baseline)]
    return dataclasses.replace(records, expected=dataclasses.replace(records.expected, architectures=ordered))


def select_architectures(records: RecordSet, names: Sequence[str]) -> RecordSet:
    """The records of `names` only, in that order (the columns of the tables, the lines of the figures): one
    report per question over one grid's records (the main comparison, then the ablations against their KAN
    actor). With several algorithms a bare architecture name selects it under every algorithm."""
    selected: list[str] = []
    for name in names:
        labels = [name] if name in records.architectures else []
        if not labels:
            labels = [arch_label(algo, name) for algo in records.expected.algorithms]
            labels = [label for label in labels if label in records.architectures]
        if not labels:
            hint = did_you_mean(name, records.architectures, cutoff=0.5)
            raise BenchError(
                f"--architectures: {name!r} is not an architecture of {records.label}; {hint}"
                f"its architectures: {', '.join(records.architectures)}"
            )
        selected += [label for label in labels if label not in selected]
    kept = _rows_of(records, "arch", selected)
    return dataclasses.replace(
        records,
        **kept,
        # The selected columns' algorithms only: captions, Table 2's notes and the override notes name them.
        algorithms=[algo for algo in records.algorithms if algo in set(kept["runs"]["algo"])],
        expected=dataclasses.replace(records.expected, architectures=selected),
    )


def _rows_of(records: RecordSet, column: str, values: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The runs, curves and diagnostics whose `column` is one of `values`."""
    frames = {"runs": records.runs, "curves": records.curves, "diagnostics": records.diagnostics}
    return {name: frame[frame[column].isin(values)].reset_index(drop=True) for name, frame in frames.items()}


class NoRecordsSelected(BenchError):
    """A report's architectures and datasets have no record yet (a grid still training): nothing to report."""


def select_datasets(records: RecordSet, names: Sequence[str]) -> RecordSet:
    """The records of the datasets `names` only, in that order (the rows of the tables, the panels of the figures):
    one report per group of datasets (one data quality, one environment) over one grid's records."""
    for name in names:
        if name not in records.datasets:
            raise BenchError(
                f"--datasets: {name!r} is not a dataset of {records.label}; "
                f"{did_you_mean(name, records.datasets, cutoff=0.5)}its datasets: {', '.join(records.datasets)}"
            )
    selected = list(dict.fromkeys(names))
    return dataclasses.replace(
        records,
        **_rows_of(records, "dataset", selected),
        expected=dataclasses.replace(records.expected, datasets=selected),
    )


def summarize(analysis: Analysis, tables: list[Path], figures: list[Path]) -> ReportSummary:
    rec = analysis.records
    names = rec.display_names()
    missing, partial = [], []
    for dataset in rec.datasets:
        for arch in rec.architectures:
            if (dataset, arch) not in analysis.cells.index:
                missing.append(f"{names[dataset]}/{arch}")
            elif (n := int(analysis.cells.loc[(dataset, arch), "n"])) < len(rec.seeds):
                partial.append(f"{names[dataset]}/{arch} n={n}")
    return ReportSummary(
        results_dir=rec.label,
        baseline=analysis.baseline,
        records=len(rec.runs),
        statuses=dict(Counter(rec.runs["status"])),
        expected_runs=rec.expected.cells,
        expected_source=rec.expected.source,
        scored_runs=int(rec.runs["score"].notna().sum()),
        expected_cells=len(rec.datasets) * len(rec.architectures),
        missing_cells=missing,
        partial_cells=partial,
        aggregate_datasets=len(analysis.selection.datasets),
        aggregate_seeds=len(analysis.selection.seeds),
        iqm={
            arch: f"{m['IQM'].point:.1f} [{m['IQM'].low:.1f}, {m['IQM'].high:.1f}]"
            for arch, m in analysis.aggregates.items()
        },
        skipped=rec.skipped,
        ignored=rec.ignored,
        tables=tables,
        figures=figures,
        mixed_keys=rec.mixed_keys,
        at_step=rec.at_step,
        last_evaluations=rec.last_evaluations,
    )


def analyze_folder(
    results_dir: Path,
    *,
    also: Sequence[Path] = (),
    baseline: str | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    allow_mixed: bool = False,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    at_step: int | None = None,
    last_evaluations: int = 1,
) -> Analysis:
    """Load the records under `results_dir` and the folders `also` (of `architectures` and `datasets` only, when
    given; as they stood at gradient step `at_step`, when given; each run scored by the mean of its last
    `last_evaluations` evaluations) and compute every statistic the tables and figures show."""
    if reps < 1:
        raise BenchError(f"--reps must be positive, got {reps}")
    if not 0 <= seed < 2**32:  # NumPy's global generator, which the bootstraps draw from, takes no other seed
        raise BenchError(f"--seed must be between 0 and 2**32 - 1, got {seed}")
    records = load_records(
        Path(results_dir), also=also, allow_mixed=allow_mixed, at_step=at_step, last_evaluations=last_evaluations
    )
    if architectures:
        records = select_architectures(records, architectures)
    if datasets:
        records = select_datasets(records, datasets)
    if records.runs.empty:
        raise NoRecordsSelected(
            f"no record of {', '.join(records.architectures)} on {', '.join(records.datasets)} under "
            f"{records.label} yet; train those cells first"
        )
    name = resolve_baseline(records, baseline)
    # A selection is in the order given; otherwise the grid file's, or the baseline first.
    ordered = records if architectures else order_architectures(records, name)
    return analyze(ordered, baseline=name, reps=reps, seed=seed)


def named_reports(results_dir: Path) -> dict[str, NamedReport]:
    """The reports the grid file of the records names (`reports:` of results/<grid>/grid.yaml), in its order;
    {} for a grid without them or records without a grid file."""
    found = grid_file_of(Path(results_dir))
    return read_grid_file(*found).reports if found else {}


def report_folder(name: str, at_step: int | None = None, last_evaluations: int = 1) -> str:
    """The folder name under tables/ and figures/ of report `name`: a report at a step, or scored by the mean of
    the last K evaluations, goes beside the runs' own report (`<name>-step<N>`, `<name>-last<K>`), never over it."""
    folder = name if at_step is None else f"{name}-step{at_step}"
    return folder if last_evaluations == 1 else f"{folder}-last{last_evaluations}"


def build_report(
    results_dir: Path,
    tables_dir: Path | None,
    figures_dir: Path | None,
    *,
    also: Sequence[Path] = (),
    baseline: str | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    allow_mixed: bool = False,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    at_step: int | None = None,
    last_evaluations: int = 1,
) -> ReportSummary:
    """Read the records under `results_dir`, write Tables 1-3 and 6-8 to `tables_dir` and the figures to `figures_dir`.

    `also` sets the records of further folders (other grids' cells) beside them. Either output folder may be None
    to skip it; `baseline=None` means the grid file's `baseline:`, else `mlp`. `architectures` and `datasets`
    report those only, in that order; `at_step` the runs as they stood at that gradient step (an evaluation step of
    every finished run); `last_evaluations` K scores each run by the mean of its last K evaluations (1: its final
    evaluation). Bootstrap CIs use `reps` resamples and are reproducible for a given `seed`.
    """
    analysis = analyze_folder(
        results_dir,
        also=also,
        baseline=baseline,
        reps=reps,
        seed=seed,
        allow_mixed=allow_mixed,
        architectures=architectures,
        datasets=datasets,
        at_step=at_step,
        last_evaluations=last_evaluations,
    )
    tables: list[Path] = []
    if tables_dir is not None:
        for table in build_tables(analysis):
            tables += write_table(table, Path(tables_dir))
    figures = build_figures(analysis, Path(figures_dir)) if figures_dir is not None else []
    return summarize(analysis, tables, figures)
