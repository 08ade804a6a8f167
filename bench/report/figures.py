"""The report's figures, each written as PDF and PNG, plus `captions.md` saying what each one shows.

Figures are built with matplotlib's object API on an Agg canvas (no pyplot, so no global figure state and no
display needed). Every architecture keeps one colour across all figures, and every interval is the same seeded
95% percentile bootstrap over seeds (rliable's stratified bootstrap, see `bench.report.stats`).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, NullLocator, SymmetricalLogLocator
from matplotlib.transforms import offset_copy

from bench.fileio import atomic_save_figure, atomic_write_text
from bench.report.stats import AGGREGATE_METRICS, OPTIMALITY_GAP_GAMMA, Analysis, CurveSummary, Interval
from bench.report.tables import recipe_phrase

NO_AGGREGATE = (
    "No aggregate: no dataset has a score for every seed of every architecture\n"
    "(the stratified bootstrap needs the same seeds for every cell); see Table 1's notes."
)
# Single evaluations of several architectures at one step are drawn this many points apart, so that one error
# bar does not hide another.
DODGE_POINTS = 8.0
# A legend of more entries than this goes beside the axes, not over the lines (a learning-rate sweep has 18).
LEGEND_INSIDE_MAX = 8
LEGEND_ROWS_MAX = 20  # entries per legend column beside the axes
SYMLOG_TICKS = 5
DIAGNOSTICS_COLUMNS = 3  # datasets side by side in the diagnostics figure
OUTLIER_SPAN = 100.0  # diagnostics lines that peak this many times higher than the others: symlog axis


@dataclass(frozen=True)
class FigureOutput:
    """One written figure: its file stem, the figure itself, the caption that goes into captions.md, the files."""

    stem: str
    figure: Figure
    caption: str
    paths: list[Path]


def colors(architectures: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per architecture, in order: tab10's ten, or tab20's twenty when there are more than ten, so no
    two architectures share a colour below 21."""
    size = 10 if len(architectures) <= 10 else 20
    palette = matplotlib.colormaps[f"tab{size}"]
    return {arch: palette(i % size) for i, arch in enumerate(architectures)}


def legend_columns(entries: int) -> int:
    """Columns of a legend beside the axes; 0 when the legend fits inside them."""
    return 0 if entries <= LEGEND_INSIDE_MAX else math.ceil(entries / LEGEND_ROWS_MAX)


def legend_height(entries: int) -> float:
    """Inches a figure needs for a legend beside its axes (small font), titles and axis labels included; 0 when
    the legend fits inside the axes."""
    columns = legend_columns(entries)
    return 1.6 + 0.2 * math.ceil(entries / columns) if columns else 0.0


def add_legend(ax: Axes, fontsize: str = "small") -> None:
    """The axes' legend: inside (at `fontsize`) when it is short, beside the axes (right of them, small) when it
    would hide the lines."""
    columns = legend_columns(len(ax.get_legend_handles_labels()[1]))
    if columns:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), ncols=columns, frameon=False, fontsize="small")
    else:
        ax.legend(frameon=False, fontsize=fontsize)


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def written(figure: Figure, directory: Path, stem: str, caption: str) -> FigureOutput:
    return FigureOutput(stem, figure, caption, atomic_save_figure(figure, directory, stem))


def placeholder(title: str, reason: str) -> Figure:
    """A figure that says why there is nothing to plot, so every expected file exists and explains itself."""
    figure = new_figure(6, 2.5)
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return figure


def zero_width(interval: Interval) -> bool:
    """A CI without width: every bootstrap resample gave the same value (too few seeds to vary, or no overlap)."""
    return math.isclose(interval.low, interval.high, rel_tol=1e-9, abs_tol=1e-12)


def _interval_rows(
    ax: Axes,
    intervals: dict[str, Interval],
    order: Sequence[str],
    palette: dict,
    *,
    zero_width_label: Callable[[Interval], str],
    xlim: tuple[float, float] | None = None,
    label_y: bool = True,
) -> None:
    """Horizontal CI bars with a tick at the point estimate, one row per architecture (top to bottom).

    A CI of zero width gets no bar (it would be invisible) but `zero_width_label` beside its tick, so that a
    degenerate interval does not read as certainty.
    """
    rows = list(enumerate(reversed(order)))
    for y, arch in rows:
        interval = intervals[arch]
        if not zero_width(interval):
            ax.barh(y, interval.high - interval.low, left=interval.low, height=0.6, color=palette[arch], alpha=0.75)
        ax.plot(interval.point, y, marker="|", markersize=22, markeredgewidth=2, color="black")
    ax.set_ylim(-0.6, len(order) - 0.4)  # the rows' room even when no bar is drawn
    if xlim is not None:
        ax.set_xlim(*xlim)
    middle = sum(ax.get_xlim()) / 2
    for y, arch in rows:
        interval = intervals[arch]
        if zero_width(interval):
            towards_left = interval.point > middle  # write towards the middle of the axes, where there is room
            ax.annotate(
                zero_width_label(interval),
                (interval.point, y),
                xytext=(-10 if towards_left else 10, 0),
                textcoords="offset points",
                ha="right" if towards_left else "left",
                va="center",
                fontsize="small",
                color="firebrick",
            )
    if label_y:  # axes that share y share their tick labels: only the first one sets them
        ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _bootstrap_note(analysis: Analysis) -> str:
    return f"95% stratified-bootstrap CIs ({analysis.reps} resamples, seed {analysis.seed})"


def _data_note(analysis: Analysis, sep: str = "; ") -> str:
    """Which data the aggregates cover and how their CIs were made; `sep` goes before a few-seeds warning."""
    seeds = len(analysis.selection.seeds)
    note = (
        f"{plural(len(analysis.selection.datasets), 'dataset')} x {plural(seeds, 'seed')}; {_bootstrap_note(analysis)}"
    )
    rec = analysis.records
    if rec.last_evaluations > 1:
        end = f" up to step {rec.at_step:,}" if rec.at_step is not None else ""
        note = f"scores: the mean of each run's last {rec.last_evaluations} evaluations{end}; {note}"
    elif rec.at_step is not None:
        note = f"scores at step {rec.at_step:,} of the runs; {note}"
    if seeds < 3:  # the same warning as Table 1's notes
        only = "Only" if sep.endswith("\n") else "only"
        note += f"{sep}{only} {plural(seeds, 'seed')}: the CIs are wide or degenerate; read them with care"
    return note


def _suptitle(figure: Figure, title: str, analysis: Analysis) -> None:
    figure.suptitle(title + "\n" + _data_note(analysis, sep="\n"), fontsize="medium")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def aggregate_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "aggregate_metrics"
    caption = (
        "Aggregate normalized score per architecture: IQM, mean, median and optimality gap (gamma = "
        f"{OPTIMALITY_GAP_GAMMA:g}: the average shortfall below {OPTIMALITY_GAP_GAMMA:g}, lower is better); "
        "bars are 95% stratified-bootstrap CIs, the black tick the point estimate; a CI of zero width (every "
        f"resample gave the same value) has no bar and is labelled so. {_data_note(analysis)}."
    )
    order = [a for a in analysis.records.architectures if a in analysis.aggregates]
    if not order:
        return written(placeholder("Aggregate metrics", NO_AGGREGATE), directory, stem, caption)
    figure = new_figure(3.0 * len(AGGREGATE_METRICS), 0.5 * len(order) + 1.6)
    axes = figure.subplots(1, len(AGGREGATE_METRICS), sharey=True)
    for i, (ax, metric) in enumerate(zip(axes, AGGREGATE_METRICS, strict=True)):
        _interval_rows(
            ax,
            {a: analysis.aggregates[a][metric] for a in order},
            order,
            palette,
            zero_width_label=lambda _: "zero-width CI",
            label_y=i == 0,
        )
        ax.set_title(metric + (" (lower is better)" if metric == "Optimality gap" else ""))
        ax.set_xlabel("Normalized score")
    _suptitle(figure, "Aggregate metrics", analysis)
    return written(figure, directory, stem, caption)


def profile_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "performance_profiles"
    # Scored by the mean of the last evaluations, the data note says so.
    score = "score" if analysis.records.last_evaluations > 1 else "final normalized score"
    caption = (
        "Performance profiles (score distributions): the fraction of runs, over all datasets and seeds, whose "
        f"{score} exceeds tau, with 95% stratified-bootstrap CI bands. {_data_note(analysis)}."
    )
    if not analysis.profiles:
        return written(placeholder("Performance profiles", NO_AGGREGATE), directory, stem, caption)
    entries = len(analysis.profiles)
    figure = new_figure(6.0 + 2.2 * legend_columns(entries), max(4.0, legend_height(entries)))
    ax = figure.add_subplot()
    for arch, profile in analysis.profiles.items():
        ax.plot(profile.taus, profile.values, color=palette[arch], label=arch, linewidth=2)
        ax.fill_between(profile.taus, profile.low, profile.high, color=palette[arch], alpha=0.2, linewidth=0)
    ax.set_xlabel("Normalized score threshold τ")
    ax.set_ylabel("Fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    add_legend(ax, fontsize="medium")
    ax.spines[["top", "right"]].set_visible(False)
    _suptitle(figure, "Performance profiles", analysis)
    return written(figure, directory, stem, caption)


def improvement_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "probability_of_improvement"
    baseline = analysis.baseline
    caption = (
        f"Probability of improvement over {baseline}: P(X > {baseline}) is the probability that a run of X on a "
        f"dataset scores higher than a run of {baseline} on the same dataset (ties count half), averaged over "
        "datasets; bars are 95% stratified-bootstrap CIs. Above 0.5 favours X. A CI of zero width (every resample "
        "gave the same P, as when every run of X beats every run of the baseline and there are few seeds) has no "
        f"bar and is labelled so on the figure: it is not certainty. {_data_note(analysis)}."
    )
    if not analysis.improvement:
        reason = (
            NO_AGGREGATE
            if analysis.selection.empty
            else f"No comparison: {baseline} or the other architectures have no complete scores."
        )
        return written(placeholder("Probability of improvement", reason), directory, stem, caption)
    order = list(analysis.improvement)
    seeds = plural(len(analysis.selection.seeds), "seed")
    figure = new_figure(7.5, 0.55 * len(order) + 1.8)
    ax = figure.add_subplot()
    _interval_rows(
        ax,
        analysis.improvement,
        order,
        palette,
        zero_width_label=lambda i: (
            f"zero-width CI: all {analysis.reps} resamples give P = {i.point:.2f}\n({seeds}); this is not certainty"
        ),
        xlim=(-0.03, 1.03),
    )
    ax.set_yticks(range(len(order)), [f"P({a} > {baseline})" for a in reversed(order)])
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("Probability of improvement")
    _suptitle(figure, f"Probability of improvement over {baseline}", analysis)
    return written(figure, directory, stem, caption)


def _dodges(curves: dict[str, CurveSummary]) -> dict[str, float]:
    """Horizontal offsets in points for single evaluations that share a step, centred on the step."""
    by_step: dict[float, list[str]] = defaultdict(list)
    for arch, curve in curves.items():
        if len(curve.steps) == 1:
            by_step[float(curve.steps[0])].append(arch)
    return {
        arch: (i - (len(archs) - 1) / 2) * DODGE_POINTS for archs in by_step.values() for i, arch in enumerate(archs)
    }


def curves_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "learning_curves"
    rec = analysis.records
    names = rec.display_names()
    caption = (
        "Learning curves: mean normalized score over seeds against gradient steps, one panel per dataset, with a "
        f"{_bootstrap_note(analysis).replace('CIs', 'CI band')} over seeds, the same bootstrap as the other "
        "figures (no width for a single seed). A cell evaluated once is a point with its CI as error bar (points "
        "at one step are drawn side by side). n in the legend is the number of seeds; a curve ends at the last "
        "evaluation every one of its runs reached (a diverged run ends early)."
    )
    datasets = [d for d in rec.datasets if any((d, a) in analysis.curves for a in rec.architectures)]
    if not datasets:
        return written(placeholder("Learning curves", "No run has an evaluation yet."), directory, stem, caption)
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    drawn_archs = [a for a in rec.architectures if any((d, a) in analysis.curves for d in datasets)]
    # Many architectures: one legend for the figure, beside the panels, instead of one over each panel's lines.
    shared = legend_columns(len(drawn_archs))
    figure = new_figure(4.2 * columns + 2.2 * shared, max(3.2 * rows, legend_height(len(drawn_archs))))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    handles: dict[str, object] = {}
    seeds: dict[str, set[int]] = defaultdict(set)
    for ax, dataset in zip(axes, datasets, strict=False):
        curves = {a: c for a in rec.architectures if (c := analysis.curves.get((dataset, a))) is not None}
        dodges = _dodges(curves)
        for arch, curve in curves.items():
            color = palette[arch]
            label = f"{arch} (n={curve.n}{', no CI' if curve.n == 1 else ''})"
            seeds[arch].add(curve.n)
            if arch in dodges:  # one evaluation: a point with its interval, not a curve
                error = [curve.mean - curve.low, curve.high - curve.mean]
                drawn = ax.errorbar(curve.steps, curve.mean, yerr=error, fmt="o", color=color, capsize=4, label=label)
                # Shifted on screen only, after the axes took the data limits from the unshifted points.
                shifted = offset_copy(ax.transData, fig=figure, x=dodges[arch], y=0, units="points")
                for artist in drawn.get_children():
                    artist.set_transform(shifted)
            else:
                (drawn,) = ax.plot(curve.steps, curve.mean, color=color, label=label, linewidth=1.8, marker=".")
                ax.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2, linewidth=0)
            handles.setdefault(arch, drawn)
        last = max(float(c.steps[-1]) for c in curves.values())
        # Training starts at step 0; a lone evaluation gets room to its right instead of sitting on the edge.
        ax.set_xlim(0, last * (1.2 if len(dodges) == len(curves) else 1.04))
        ax.set_title(names[dataset], fontsize="medium")
        ax.set_xlabel("Gradient steps")
        ax.set_ylabel("Normalized score")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if not shared:
            ax.legend(frameon=False, fontsize="small")
    for ax in axes[len(datasets) :]:
        ax.set_axis_off()
    if shared:
        labels = [f"{arch} (n={_seed_counts(seeds[arch])})" for arch in handles]
        figure.legend(
            list(handles.values()), labels, loc="outside right upper", ncols=shared, frameon=False, fontsize="small"
        )
    return written(figure, directory, stem, caption)


def _seed_counts(counts: set[int]) -> str:
    """How many seeds one architecture's curves have over the datasets: "3", "1, no CI", or "2-5" when they
    differ."""
    low, high = min(counts), max(counts)
    return f"{low}{', no CI' if high == 1 else ''}" if low == high else f"{low}-{high}"


def symlog_threshold(peaks: Sequence[float]) -> float | None:
    """The linear range of a symmetric-log axis for a panel whose lines split in two, some peaking more than
    OUTLIER_SPAN times higher than the rest (a diverging critic at 1e12 among losses near 50), so both stay
    readable: the highest peak below the widest such gap. `peaks` are each line's largest |value|, its band
    included. None when no gap is that wide: a linear axis shows the panel (a quantity that decays to 0 in every
    run has no gap between its lines)."""
    ordered = sorted(peak for peak in peaks if peak > 0)
    gaps = [(high / low, low) for low, high in itertools.pairwise(ordered)]
    ratio, below = max(gaps, default=(1.0, 0.0))
    return below if ratio > OUTLIER_SPAN else None


def set_symlog(ax: Axes, threshold: float, largest: float) -> None:
    """A symmetric-log y axis, linear within +-threshold; the linear half is stretched to as many decades as the
    logarithmic one spans, so the typical lines get half of the panel, not a sliver."""
    ax.set_yscale("symlog", linthresh=threshold, linscale=max(1.0, math.log10(largest / threshold)))
    ticks = SymmetricalLogLocator(base=10, linthresh=threshold)
    ticks.set_params(numticks=SYMLOG_TICKS)  # every few decades, not one label per decade over 12 of them
    ax.yaxis.set_major_locator(ticks)
    ax.yaxis.set_minor_locator(NullLocator())


def diagnostics_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "training_diagnostics"
    rec = analysis.records
    names = rec.display_names()
    caption = (
        "Training diagnostics: the per-epoch means of each training quantity the records keep (their "
        "`diagnostics`, named as the algorithm's losses), one row per quantity and one column per dataset (at most "
        f"{DIAGNOSTICS_COLUMNS} side by side; more datasets wrap into further blocks of rows), against gradient "
        "steps; the line is the mean over seeds and the band the range (lowest to highest seed). They "
        "show what the scores cannot: a critic drifting or diverging, over-conservative Q-values, a collapsing "
        "policy. A line ends at the last epoch every one of its runs reached. A quantity with one value in every "
        "run (a switched-off term) is left out."
    )
    frame = rec.diagnostics.dropna(subset=["value"])
    varying = frame.groupby("name", sort=False)["value"].nunique()
    quantities = [name for name in dict.fromkeys(frame["name"]) if varying[name] > 1]
    datasets = [d for d in rec.datasets if d in set(frame["dataset"])]
    if not quantities:
        reason = "No record keeps per-epoch diagnostics that vary (records from before they were kept have none)."
        return written(placeholder("Training diagnostics", reason), directory, stem, caption)
    # Datasets wrap into blocks of rows, so nine of them read as a page, not as a strip nine panels wide.
    columns = min(DIAGNOSTICS_COLUMNS, len(datasets))
    blocks = math.ceil(len(datasets) / columns)
    width = 3.4 * columns
    figure = new_figure(width, 2.1 * len(quantities) * blocks + 0.6)
    axes = figure.subplots(len(quantities) * blocks, columns, squeeze=False)
    runs = rec.diagnostics.groupby(["dataset", "arch"])["seed"].nunique()
    drawn: dict[str, object] = {}
    symlog: list[str] = []
    for index, dataset in enumerate(datasets):
        block, column = divmod(index, columns)
        top = block * len(quantities)
        for row, quantity in enumerate(quantities):
            ax = axes[top + row, column]
            if row > 0:
                ax.sharex(axes[top, column])
            panel = frame[(frame["dataset"] == dataset) & (frame["name"] == quantity)]
            peaks = []
            for arch in rec.architectures:
                values = panel[panel["arch"] == arch].groupby("step")["value"]
                summary = values.agg(["mean", "min", "max", "count"])
                summary = summary[summary["count"] == runs.get((dataset, arch), 0)]
                if summary.empty:
                    continue
                steps = summary.index.to_numpy()
                (line,) = ax.plot(steps, summary["mean"], color=palette[arch], linewidth=1.4, label=arch)
                ax.fill_between(steps, summary["min"], summary["max"], color=palette[arch], alpha=0.15, linewidth=0)
                drawn.setdefault(arch, line)
                peaks.append(float(summary[["min", "max"]].abs().to_numpy().max()))
            if (threshold := symlog_threshold(peaks)) is not None:
                set_symlog(ax, threshold, max(peaks))
                symlog.append(f"{quantity} on {names[dataset]}")
            if row == 0:
                ax.set_title(names[dataset], fontsize="medium")
            if column == 0:
                ax.set_ylabel(quantity)
            if row == len(quantities) - 1:
                ax.set_xlabel("Gradient steps")
            else:
                ax.tick_params(labelbottom=False)
            ax.grid(alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
    for index in range(len(datasets), blocks * columns):  # the last block's empty columns
        block, column = divmod(index, columns)
        for ax in axes[block * len(quantities) : (block + 1) * len(quantities), column]:
            ax.set_axis_off()
    figure.legend(
        list(drawn.values()),
        list(drawn),
        loc="outside upper center",
        ncols=max(1, min(len(drawn), int(width / 1.6))),
        frameon=False,
    )
    if symlog:
        caption += (
            f" Symmetric-log axes, where some lines peak more than {OUTLIER_SPAN:.0f} times higher than the others "
            "(a diverging run; peaks of |value|, bands included), linear up to the others' peak and logarithmic "
            f"beyond it, so the others stay readable: {', '.join(symlog)}."
        )
    return written(figure, directory, stem, caption)


def mean_parameters(analysis: Analysis, arch: str, column: str) -> float:
    """Mean of a parameter count over the aggregate datasets (counts depend on the environment's sizes)."""
    runs = analysis.records.runs
    chosen = runs[(runs["arch"] == arch) & runs["dataset"].isin(analysis.selection.datasets)]
    return float(chosen.groupby("dataset")[column].first().mean())


def log_range(values: Sequence[float]) -> tuple[float, float]:
    """x limits of a log axis around `values` that hold at least one decade (a power of ten) to label."""
    low, high = math.log10(min(values)), math.log10(max(values))
    pad = max(0.15 * (high - low), 0.1)
    low, high = low - pad, high + pad
    if math.floor(high) < low:  # no power of ten in view: reach out to the nearer one
        if low - math.floor(low) <= math.ceil(high) - high:
            low = math.floor(low)
        else:
            high = math.ceil(high)
    return 10**low, 10**high


@dataclass(frozen=True)
class TickLabel:
    """A labelled tick of a log axis and the colour of its label."""

    value: float
    text: str
    color: str | tuple[float, ...]


def count_ticks(ax: Axes, counts: dict[str, float], palette: dict) -> list[TickLabel]:
    """Label a log axis at the decades in view and at each architecture's count (in its colour)."""
    left, right = log_range(list(counts.values()))
    ax.set_xlim(left, right)
    archs: dict[float, list[str]] = defaultdict(list)
    for arch, count in counts.items():
        archs[count].append(arch)
    for power in range(math.ceil(math.log10(left)), math.floor(math.log10(right)) + 1):
        archs.setdefault(float(10**power), [])
    ticks = [
        # A count shared by several architectures stays black, as the decades do.
        TickLabel(value, f"{value:,.0f}", palette[archs[value][0]] if len(archs[value]) == 1 else "black")
        for value in sorted(archs)
    ]
    set_tick_labels(ax, ticks)
    ax.xaxis.set_minor_formatter(NullFormatter())
    return ticks


def set_tick_labels(ax: Axes, ticks: Sequence[TickLabel], lines: Sequence[int] | None = None) -> None:
    """x ticks with their labels, each label `lines[i]` lines below the axis's first line of labels."""
    lines = lines or [0] * len(ticks)
    ax.set_xticks([t.value for t in ticks], ["\n" * line + t.text for t, line in zip(ticks, lines, strict=True)])
    for label, tick in zip(ax.get_xticklabels(), ticks, strict=True):
        label.set_color(tick.color)


def stagger_tick_labels(figure: Figure, axes_ticks: Sequence[tuple[Axes, list[TickLabel]]], gap: float = 4) -> None:
    """Move x tick labels that would overlap a label to their left down a line (or more) until they do not.

    The labels' extents are measured on the laid-out figure; `gap` is the least space between labels in pixels.
    """
    figure.draw_without_rendering()
    for ax, ticks in axes_ticks:
        boxes = [label.get_window_extent() for label in ax.get_xticklabels()]
        line_ends: list[float] = []  # right edge of the last label on each line
        lines = []
        for box in boxes:  # ticks are sorted by value, so left to right
            line = next((i for i, end in enumerate(line_ends) if end + gap <= box.x0), len(line_ends))
            if line == len(line_ends):
                line_ends.append(box.x1)
            line_ends[line] = box.x1
            lines.append(line)
        set_tick_labels(ax, ticks, lines)


def parameters_figure(analysis: Analysis, directory: Path, palette: dict) -> FigureOutput:
    stem = "parameters_vs_iqm"
    envs = analysis.records.runs.loc[analysis.records.runs["dataset"].isin(analysis.selection.datasets), "env"]
    per_env = " (mean over the datasets' environments)" if envs.nunique() > 1 else ""
    caption = (
        "IQM of the normalized score (95% stratified-bootstrap CI as error bar) against trainable parameters on a "
        f"log axis: left the actor network, right the actor network plus one critic network{per_env}. The axis "
        f"labels the powers of ten and each architecture's count, in its colour. {_data_note(analysis)}."
    )
    order = [a for a in analysis.records.architectures if a in analysis.aggregates]
    if not order:
        return written(placeholder("Parameters against IQM", NO_AGGREGATE), directory, stem, caption)
    figure = new_figure(10.0 + 2.2 * legend_columns(len(order)), max(4.2, legend_height(len(order))))
    axes = figure.subplots(1, 2, sharey=True)
    actor = {a: mean_parameters(analysis, a, "actor_params") for a in order}
    panels = [
        ("Actor parameters", actor),
        ("Actor + one critic parameters", {a: actor[a] + mean_parameters(analysis, a, "critic_params") for a in order}),
    ]
    axes_ticks = []
    for ax, (label, counts) in zip(axes, panels, strict=True):
        for arch in order:
            iqm = analysis.aggregates[arch]["IQM"]
            error = [[iqm.point - iqm.low], [iqm.high - iqm.point]]
            ax.errorbar(counts[arch], iqm.point, yerr=error, fmt="o", color=palette[arch], capsize=4, label=arch)
        ax.set_xscale("log")
        axes_ticks.append((ax, count_ticks(ax, counts, palette)))
        ax.set_xlabel(label + (" (mean over environments)" if per_env else ""))
        ax.grid(alpha=0.3, which="major")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("IQM normalized score")
    # A short legend inside the left panel; a long one beside the right panel, clear of both.
    add_legend(axes[-1] if legend_columns(len(order)) else axes[0])
    _suptitle(figure, "Parameters against IQM", analysis)
    stagger_tick_labels(figure, axes_ticks)
    figure.align_xlabels(axes)  # a panel whose tick labels take two lines keeps its label level with the other
    return written(figure, directory, stem, caption)


def write_captions(outputs: Sequence[FigureOutput], analysis: Analysis, directory: Path) -> Path:
    """`captions.md`: what each figure shows and which runs it covers."""
    selection = analysis.selection
    names = analysis.records.display_names()
    lines = [f"# Figures for {analysis.records.label}", ""]
    covered = ", ".join(names[d] for d in selection.datasets) or "none"
    lines.append(
        f"Aggregates (all figures but the learning curves and the training diagnostics, which show every dataset) "
        f"cover the datasets with all {len(selection.seeds)} seeds for every architecture: {covered}."
    )
    if selection.excluded_datasets:
        left_out = "; ".join(f"{names[d]} ({why})" for d, why in selection.excluded_datasets.items())
        lines.append(f"Left out of the aggregates: {left_out}.")
    labels = ", ".join(dict.fromkeys(analysis.records.runs["dataset_label"]))
    recipes = recipe_phrase(analysis.records.runs, analysis.records.datasets, names)
    lines += [f"Data: {labels}.{recipes}", analysis.records.algorithm_phrase(), ""]
    for output in outputs:
        files = ", ".join(p.name for p in output.paths)
        caption = f"{output.caption} {analysis.records.algorithm_phrase()}"
        lines += [f"## {output.stem}", "", f"{caption} Files: {files}.", ""]
    path = directory / "captions.md"
    atomic_write_text(path, "\n".join(lines))
    return path


FIGURES = (aggregate_figure, profile_figure, improvement_figure, curves_figure, parameters_figure, diagnostics_figure)


def build_figures(analysis: Analysis, directory: Path) -> list[Path]:
    """Write every figure (PDF and PNG) and captions.md into `directory`; return the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    palette = colors(analysis.records.architectures)
    outputs = [make(analysis, directory, palette) for make in FIGURES]
    return [path for output in outputs for path in output.paths] + [write_captions(outputs, analysis, directory)]
