"""The report's figures, each written as PDF and PNG, plus `captions.md` saying what each one shows.

Figures are built with matplotlib's object API on an Agg canvas (no pyplot, so no global figure state and no
display needed). Every architecture keeps one colour across all figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from bench.fileio import atomic_write_text
from bench.report.stats import AGGREGATE_METRICS, OPTIMALITY_GAP_GAMMA, Analysis, Interval

PNG_DPI = 150
NO_AGGREGATE = (
    "No aggregate: no dataset has a score for every seed of every architecture\n"
    "(the stratified bootstrap needs the same seeds for every cell); see Table 1's notes."
)


@dataclass(frozen=True)
class FigureOutput:
    """One written figure: its file stem, the files and the caption that goes into captions.md."""

    stem: str
    paths: list[Path]
    caption: str


def colors(architectures: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    palette = matplotlib.colormaps["tab10"]
    return {arch: palette(i % 10) for i, arch in enumerate(architectures)}


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, directory: Path, stem: str) -> list[Path]:
    """Write `<stem>.pdf` and `<stem>.png`; dates are left out so unchanged figures give unchanged files."""
    directory.mkdir(parents=True, exist_ok=True)
    pdf, png = directory / f"{stem}.pdf", directory / f"{stem}.png"
    figure.savefig(pdf, metadata={"CreationDate": None, "ModDate": None})
    figure.savefig(png, dpi=PNG_DPI, metadata={"Software": None})
    return [pdf, png]


def placeholder(directory: Path, stem: str, title: str, reason: str) -> list[Path]:
    """A figure that says why there is nothing to plot, so every expected file exists and explains itself."""
    figure = new_figure(6, 2.5)
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return save(figure, directory, stem)


def _interval_rows(
    ax: Axes, intervals: dict[str, Interval], order: Sequence[str], palette: dict, *, label_y: bool = True
) -> None:
    """Horizontal CI bars with a tick at the point estimate, one row per architecture (top to bottom)."""
    for y, arch in enumerate(reversed(order)):
        interval = intervals[arch]
        ax.barh(
            y,
            interval.high - interval.low,
            left=interval.low,
            height=0.6,
            color=palette[arch],
            alpha=0.75,
        )
        # A marker rather than a line: it stays visible when the interval has no width (e.g. P = 1 everywhere).
        ax.plot(interval.point, y, marker="|", markersize=22, markeredgewidth=2, color="black")
    if label_y:  # axes that share y share their tick labels: only the first one sets them
        ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _data_note(analysis: Analysis) -> str:
    selection = analysis.selection
    return (
        f"{plural(len(selection.datasets), 'dataset')} x {plural(len(selection.seeds), 'seed')}; "
        f"95% stratified-bootstrap CIs ({analysis.reps} resamples, seed {analysis.seed})"
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def aggregate_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "aggregate_metrics"
    caption = (
        "Aggregate normalized score per architecture: IQM, mean, median and optimality gap (gamma = "
        f"{OPTIMALITY_GAP_GAMMA:g}: the average shortfall below {OPTIMALITY_GAP_GAMMA:g}, lower is better); "
        f"bars are 95% stratified-bootstrap CIs, the black tick the point estimate. {_data_note(analysis)}."
    )
    order = [a for a in analysis.records.architectures if a in analysis.aggregates]
    if not order:
        paths = placeholder(directory, stem, "Aggregate metrics", NO_AGGREGATE)
        return FigureOutput(stem, paths, caption)
    figure = new_figure(3.0 * len(AGGREGATE_METRICS), 0.5 * len(order) + 1.4)
    axes = figure.subplots(1, len(AGGREGATE_METRICS), sharey=True)
    for i, (ax, metric) in enumerate(zip(axes, AGGREGATE_METRICS, strict=True)):
        _interval_rows(ax, {a: analysis.aggregates[a][metric] for a in order}, order, palette, label_y=i == 0)
        ax.set_title(metric + (" (lower is better)" if metric == "Optimality gap" else ""))
        ax.set_xlabel("Normalized score")
    figure.suptitle(f"Aggregate metrics\n{_data_note(analysis)}", fontsize="medium")
    return FigureOutput(stem, save(figure, directory, stem), caption)


def profile_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "performance_profiles"
    caption = (
        "Performance profiles (score distributions): the fraction of runs, over all datasets and seeds, whose "
        f"final normalized score exceeds tau, with 95% stratified-bootstrap CI bands. {_data_note(analysis)}."
    )
    if not analysis.profiles:
        paths = placeholder(directory, stem, "Performance profiles", NO_AGGREGATE)
        return FigureOutput(stem, paths, caption)
    figure = new_figure(6.0, 4.0)
    ax = figure.add_subplot()
    for arch, profile in analysis.profiles.items():
        ax.plot(profile.taus, profile.values, color=palette[arch], label=arch, linewidth=2)
        ax.fill_between(profile.taus, profile.low, profile.high, color=palette[arch], alpha=0.2, linewidth=0)
    ax.set_xlabel("Normalized score threshold τ")
    ax.set_ylabel("Fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    figure.suptitle(f"Performance profiles\n{_data_note(analysis)}", fontsize="medium")
    return FigureOutput(stem, save(figure, directory, stem), caption)


def improvement_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "probability_of_improvement"
    baseline = analysis.baseline
    caption = (
        f"Probability of improvement over {baseline}: P(X > {baseline}) is the probability that a run of X on a "
        f"dataset scores higher than a run of {baseline} on the same dataset (ties count half), averaged over "
        f"datasets; bars are 95% stratified-bootstrap CIs. Above 0.5 favours X. {_data_note(analysis)}."
    )
    if not analysis.improvement:
        reason = (
            NO_AGGREGATE
            if analysis.selection.empty
            else f"No comparison: {baseline} or the other architectures have no complete scores."
        )
        return FigureOutput(stem, placeholder(directory, stem, "Probability of improvement", reason), caption)
    order = list(analysis.improvement)
    figure = new_figure(7.5, 0.55 * len(order) + 1.6)
    ax = figure.add_subplot()
    _interval_rows(ax, analysis.improvement, order, palette)
    ax.set_yticks(range(len(order)), [f"P({a} > {baseline})" for a in reversed(order)])
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("Probability of improvement")
    figure.suptitle(f"Probability of improvement over {baseline}\n{_data_note(analysis)}", fontsize="medium")
    return FigureOutput(stem, save(figure, directory, stem), caption)


def curves_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "learning_curves"
    rec = analysis.records
    names = rec.display_names()
    caption = (
        "Learning curves: mean normalized score over seeds against gradient steps, one panel per dataset, with a "
        "95% Student-t CI band across seeds (none for a single seed). n in the legend is the number of seeds; a "
        "curve ends at the last evaluation every one of its runs reached (a diverged run ends early)."
    )
    datasets = [d for d in rec.datasets if any((d, a) in analysis.curves for a in rec.architectures)]
    if not datasets:
        reason = "No run has an evaluation yet."
        return FigureOutput(stem, placeholder(directory, stem, "Learning curves", reason), caption)
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    figure = new_figure(4.2 * columns, 3.2 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, dataset in zip(axes, datasets, strict=False):
        for arch in rec.architectures:
            curve = analysis.curves.get((dataset, arch))
            if curve is None:
                continue
            color = palette[arch]
            ax.plot(curve.steps, curve.mean, color=color, label=f"{arch} (n={curve.n})", linewidth=1.8, marker=".")
            ax.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2, linewidth=0)
            if len(curve.steps) == 1:  # a band over one step has no width: show the interval as an error bar
                error = [curve.mean - curve.low, curve.high - curve.mean]
                ax.errorbar(curve.steps, curve.mean, yerr=error, color=color, capsize=4, linewidth=1.2)
        ax.set_title(names[dataset], fontsize="medium")
        ax.set_xlabel("Gradient steps")
        ax.set_ylabel("Normalized score")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False, fontsize="small")
    for ax in axes[len(datasets) :]:
        ax.set_axis_off()
    return FigureOutput(stem, save(figure, directory, stem), caption)


def mean_parameters(analysis: Analysis, arch: str, column: str) -> float:
    """Mean of a parameter count over the aggregate datasets (counts depend on the environment's sizes)."""
    runs = analysis.records.runs
    chosen = runs[(runs["arch"] == arch) & runs["dataset"].isin(analysis.selection.datasets)]
    return float(chosen.groupby("dataset")[column].first().mean())


def parameters_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "parameters_vs_iqm"
    envs = analysis.records.runs.loc[analysis.records.runs["dataset"].isin(analysis.selection.datasets), "env"]
    per_env = " (mean over the datasets' environments)" if envs.nunique() > 1 else ""
    caption = (
        "IQM of the normalized score (95% stratified-bootstrap CI as error bar) against trainable parameters on a "
        f"log axis: left the actor network, right the actor network plus one critic network{per_env}. "
        f"{_data_note(analysis)}."
    )
    order = [a for a in analysis.records.architectures if a in analysis.aggregates]
    if not order:
        paths = placeholder(directory, stem, "Parameters against IQM", NO_AGGREGATE)
        return FigureOutput(stem, paths, caption)
    figure = new_figure(10.0, 4.0)
    axes = figure.subplots(1, 2, sharey=True)
    counts: list[Callable[[str], float]] = [
        lambda a: mean_parameters(analysis, a, "actor_params"),
        lambda a: mean_parameters(analysis, a, "actor_params") + mean_parameters(analysis, a, "critic_params"),
    ]
    labels = ["Actor parameters", "Actor + one critic parameters"]
    for ax, count, label in zip(axes, counts, labels, strict=True):
        for arch in order:
            iqm = analysis.aggregates[arch]["IQM"]
            x = count(arch)
            error = [[iqm.point - iqm.low], [iqm.high - iqm.point]]
            ax.errorbar(x, iqm.point, yerr=error, fmt="o", color=palette[arch], capsize=4, markersize=7)
            text = f"{arch}\n{x:,.0f}"
            ax.annotate(text, (x, iqm.point), textcoords="offset points", xytext=(6, 4), fontsize="small")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.25)
        ax.set_xlabel(label + (" (mean over environments)" if per_env else ""))
        ax.grid(alpha=0.3, which="major")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("IQM normalized score")
    figure.suptitle(f"Parameters against IQM\n{_data_note(analysis)}", fontsize="medium")
    return FigureOutput(stem, save(figure, directory, stem), caption)


def write_captions(outputs: Sequence[FigureOutput], analysis: Analysis, directory: Path) -> Path:
    """`captions.md`: what each figure shows and which runs it covers."""
    selection = analysis.selection
    names = analysis.records.display_names()
    lines = [f"# Figures for {analysis.records.root}", ""]
    covered = ", ".join(names[d] for d in selection.datasets) or "none"
    lines.append(
        f"Aggregates (all figures but the learning curves) cover the datasets with all {len(selection.seeds)} "
        f"seeds for every architecture: {covered}."
    )
    if selection.excluded_datasets:
        left_out = "; ".join(f"{names[d]} ({why})" for d, why in selection.excluded_datasets.items())
        lines.append(f"Left out of the aggregates: {left_out}.")
    labels = ", ".join(dict.fromkeys(analysis.records.runs["dataset_label"]))
    lines += [f"Data: {labels}.", ""]
    for output in outputs:
        files = ", ".join(p.name for p in output.paths)
        lines += [f"## {output.stem}", "", f"{output.caption} Files: {files}.", ""]
    path = directory / "captions.md"
    atomic_write_text(path, "\n".join(lines))
    return path


FIGURES = (aggregate_figure, profile_figure, improvement_figure, curves_figure, parameters_figure)


def build_figures(analysis: Analysis, directory: Path) -> list[Path]:
    """Write every figure (PDF and PNG) and captions.md into `directory`; return the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    palette = colors(analysis.records.architectures)
    outputs = [make(analysis, directory, palette) for make in FIGURES]
    return [path for output in outputs for path in output.paths] + [write_captions(outputs, analysis, directory)]
