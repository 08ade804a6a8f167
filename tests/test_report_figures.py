"""What the figures draw, read back from the figure objects the figure-building functions return."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from rliable import library as rly

from bench.report.build import analyze_folder
from bench.report.figures import (
    aggregate_figure,
    colors,
    curves_figure,
    diagnostics_figure,
    improvement_figure,
    log_range,
    parameters_figure,
    profile_figure,
    symlog_threshold,
)
from bench.report.stats import Analysis
from tests.report_fixtures import (
    DIAGNOSTIC_OFFSET,
    SCORES,
    SMOKE_DATASET,
    SMOKE_SCORES,
    SMOKE_STEPS,
    smoke_records,
    write_fixture,
    write_records,
)

REPS = 200
HOPPER = "d4rl:hopper-medium-v2"


def fixture_analysis(root: Path, scores=SCORES, seed: int = 0) -> Analysis:
    write_fixture(root, scores)
    return analyze_folder(root, baseline="mlp", reps=REPS, seed=seed)


def smoke_analysis(root: Path, scores=SMOKE_SCORES) -> Analysis:
    write_records(root, smoke_records(scores))
    return analyze_folder(root, baseline="mlp-small", reps=REPS, seed=0)


def errorbars(ax: Axes) -> dict[str, ErrorbarContainer]:
    """The axes' error bars by label, the architecture's name before its ' (n=...)'."""
    return {c.get_label().split(" (")[0]: c for c in ax.containers if isinstance(c, ErrorbarContainer)}


def texts(ax: Axes) -> list[str]:
    return [text.get_text() for text in ax.texts]


def test_the_learning_curve_band_is_the_bootstrap_ci_of_the_same_scores(tmp_path: Path) -> None:
    analysis = fixture_analysis(tmp_path / "r", seed=4)
    output = curves_figure(analysis, tmp_path / "f", colors(analysis.records.architectures))
    assert "stratified-bootstrap CI band" in output.caption
    hopper = next(ax for ax in output.figure.axes if ax.get_title() == "hopper-medium-v2")
    (line,) = [line for line in hopper.get_lines() if line.get_label().startswith("mlp ")]
    np.testing.assert_array_equal(line.get_xdata(), [1000, 2000])
    assert line.get_linestyle() == "-"
    np.random.seed(4)
    scores = np.array([[s - 10.0, s] for s in SCORES[(HOPPER, "mlp")]])[:, np.newaxis, :]
    _, intervals = rly.get_interval_estimates({"mlp": scores}, lambda x: x.mean(axis=0).mean(axis=0), reps=REPS)
    # The band drawn for mlp: fill_between's polygon runs along the lows and back along the highs.
    band = next(c for c in hopper.collections if isinstance(c, PolyCollection) and c.get_facecolor()[0][2] > 0.5)
    vertices = band.get_paths()[0].vertices
    for step, low, high in zip([1000, 2000], *intervals["mlp"], strict=True):
        at_step = sorted(set(vertices[vertices[:, 0] == step][:, 1]))
        assert at_step == pytest.approx([low, high])


def test_a_single_evaluation_is_a_point_with_the_ci_of_the_other_figures(tmp_path: Path) -> None:
    analysis = smoke_analysis(tmp_path / "r")
    figure = curves_figure(analysis, tmp_path / "f", colors(analysis.records.architectures)).figure
    (ax,) = [ax for ax in figure.axes if ax.get_visible() and ax.axison]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]  # no band
    bars = errorbars(ax)
    assert set(bars) == set(SMOKE_SCORES)
    for arch, container in bars.items():
        point = container.lines[0]
        assert point.get_linestyle() == "None" and point.get_marker() == "o"
        np.testing.assert_array_equal(point.get_xdata(), [SMOKE_STEPS])
        mean = analysis.aggregates[arch]["Mean"]  # the interval of the aggregate figure's mean
        ((bottom, top),) = container.lines[2][0].get_segments()
        assert (bottom[0], top[0]) == (SMOKE_STEPS, SMOKE_STEPS)
        assert (bottom[1], top[1]) == pytest.approx((mean.low, mean.high))
        assert analysis.curves[(SMOKE_DATASET, arch)].mean[0] == pytest.approx(mean.point)
    assert not [line for line in ax.get_lines() if line.get_linestyle() != "None" and len(line.get_xdata()) > 1]
    # The two points at one step are drawn side by side, and the axis starts at step 0.
    offsets = {arch: c.lines[0].get_transform().transform((SMOKE_STEPS, 0))[0] for arch, c in bars.items()}
    assert offsets["mlp-small"] != offsets["kan-small"]
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] > SMOKE_STEPS


def test_the_diagnostics_draw_each_quantity_as_the_seed_mean_in_the_seed_range(tmp_path: Path) -> None:
    analysis = fixture_analysis(tmp_path / "r")
    output = diagnostics_figure(analysis, tmp_path / "f", colors(analysis.records.architectures))
    axes = [ax for ax in output.figure.axes if ax.has_data()]
    # critic_loss in one row, a column per dataset; alpha_prime, 0 in every run, is left out.
    assert len(axes) == 2 and {ax.get_ylabel() for ax in output.figure.axes} >= {"critic_loss"}
    assert "alpha_prime" not in {ax.get_ylabel() for ax in output.figure.axes}
    hopper = next(ax for ax in axes if ax.get_title() == "hopper-medium-v2")
    steps = np.arange(100, 2001, 100)
    for line in hopper.get_lines():
        offset = DIAGNOSTIC_OFFSET[line.get_label()]
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), offset + 1 + np.arange(20))  # mean over seeds 0-2
    bands = [c for c in hopper.collections if isinstance(c, PolyCollection)]
    lows_highs = sorted((v[:, 1].min(), v[:, 1].max()) for v in (b.get_paths()[0].vertices for b in bands))
    assert lows_highs == [(0.0, 21.0), (10.0, 31.0)]  # seed 0 at the first epoch to seed 2 at the last
    assert "range (lowest to highest seed)" in output.caption


def test_the_diagnostics_of_more_than_three_datasets_wrap_into_blocks_of_three_columns(tmp_path: Path) -> None:
    qualities = ("medium", "medium-replay")
    scores = {
        (dataset.replace("-medium-v2", f"-{quality}-v2"), arch): values
        for quality in qualities
        for (dataset, arch), values in SCORES.items()
    }
    analysis = fixture_analysis(tmp_path / "r", scores)
    output = diagnostics_figure(analysis, tmp_path / "f", colors(analysis.records.architectures))
    datasets = [f"{env}-{quality}-v2" for quality in qualities for env in ("halfcheetah", "hopper")]
    assert sorted(analysis.records.display_names().values()) == sorted(datasets)
    grid = output.figure.axes[0].get_gridspec()
    assert (grid.nrows, grid.ncols) == (2, 3)  # one quantity (critic_loss) in two blocks of three columns
    drawn = {ax.get_title(): ax.get_subplotspec() for ax in output.figure.axes if ax.has_data()}
    assert len(drawn) == 4
    places = sorted((spec.rowspan.start, spec.colspan.start) for spec in drawn.values())
    assert places == [(0, 0), (0, 1), (0, 2), (1, 0)]
    # The second block's empty columns draw nothing; each block's first column names the quantity.
    assert [ax.axison for ax in output.figure.axes] == [True, True, True, True, False, False]
    assert [ax.get_ylabel() for ax in output.figure.axes if ax.axison] == ["critic_loss", "", "", "critic_loss"]
    assert "at most 3 side by side" in output.caption


def test_a_panel_with_a_diverging_run_gets_a_symlog_axis_that_keeps_the_others_readable(tmp_path: Path) -> None:
    import json

    paths = write_fixture(tmp_path / "r")
    for path in paths:
        record = json.loads(path.read_text())
        if record["cell"] == {"dataset": HOPPER, "arch": "kan", "seed": 2}:
            record["diagnostics"]["critic_loss"][-3:] = [1e6, 1e9, 1e12]  # a critic that diverges
            path.write_text(json.dumps(record))
    analysis = analyze_folder(tmp_path / "r", baseline="mlp", reps=REPS, seed=0)
    output = diagnostics_figure(analysis, tmp_path / "f", colors(analysis.records.architectures))
    scales = {ax.get_title(): ax.get_yscale() for ax in output.figure.axes if ax.has_data()}
    assert scales == {"hopper-medium-v2": "symlog", "halfcheetah-medium-v2": "linear"}
    hopper = next(ax for ax in output.figure.axes if ax.get_title() == "hopper-medium-v2")
    # Linear up to the peak of the line that stays readable (mlp's band: seed 2 at the last epoch, 2 + 19), then
    # logarithmic.
    assert hopper.yaxis.get_transform().linthresh == 21.0
    assert hopper.get_ylim()[1] >= 1e12  # the diverging seed's band is on the axis, not clipped
    assert "Symmetric-log axes" in output.caption and "critic_loss on hopper-medium-v2." in output.caption


def test_only_a_gap_between_the_lines_peaks_makes_an_axis_symlog() -> None:
    assert symlog_threshold([21.0, 3e11]) == 21.0
    assert symlog_threshold([50.0, 60.0, 8e3, 1e12, 2e12]) == 8e3  # the widest gap: 8e3 -> 1e12
    # A quantity that decays to 0 (alpha_loss) or spans decades within each line has no gap between lines.
    assert symlog_threshold([1.2, 2.0, 1.5]) is None
    assert symlog_threshold([0.0, 5.0]) is None
    assert symlog_threshold([40.0, 3000.0]) is None  # 75 times: linear
    assert symlog_threshold([]) is None


def test_records_without_diagnostics_get_a_figure_that_says_so(tmp_path: Path) -> None:
    import json

    paths = write_fixture(tmp_path / "r")
    for path in paths:
        record = json.loads(path.read_text())
        del record["diagnostics"]
        path.write_text(json.dumps(record))
    analysis = analyze_folder(tmp_path / "r", baseline="mlp", reps=REPS, seed=0)
    output = diagnostics_figure(analysis, tmp_path / "f", colors(analysis.records.architectures))
    assert any("No record keeps per-epoch diagnostics" in text for ax in output.figure.axes for text in texts(ax))


@pytest.mark.parametrize("seeds", [2, 3])
def test_a_zero_width_improvement_ci_is_labelled_on_the_axes_whatever_the_seed_count(
    tmp_path: Path, seeds: int
) -> None:
    # Every run of kan beats every run of mlp: every resample gives P = 1.
    scores = {key: [100.0 + s if key[1] == "kan" else s for s in values[:seeds]] for key, values in SCORES.items()}
    analysis = fixture_analysis(tmp_path / "r", scores)
    assert analysis.improvement["kan"].low == analysis.improvement["kan"].high == 1.0
    output = improvement_figure(analysis, tmp_path / "f", colors(analysis.records.architectures))
    (ax,) = output.figure.axes
    assert texts(ax) == [f"zero-width CI: all {REPS} resamples give P = 1.00\n({seeds} seeds); this is not certainty"]
    assert not ax.patches  # no bar without width
    assert ("Only 2 seeds: the CIs are wide or degenerate" in output.figure.get_suptitle()) == (seeds == 2)
    assert "A CI of zero width" in output.caption and (tmp_path / "f" / "probability_of_improvement.png").exists()


def test_an_improvement_ci_with_width_is_a_bar_without_a_warning(tmp_path: Path) -> None:
    analysis = fixture_analysis(tmp_path / "r")
    (ax,) = improvement_figure(analysis, tmp_path / "f", colors(analysis.records.architectures)).figure.axes
    assert texts(ax) == [] and len(ax.patches) == 1
    bar = ax.patches[0]
    interval = analysis.improvement["kan"]
    assert (bar.get_x(), bar.get_x() + bar.get_width()) == pytest.approx((interval.low, interval.high))


def test_zero_width_aggregate_cis_are_labelled_on_every_panel(tmp_path: Path) -> None:
    analysis = fixture_analysis(tmp_path / "r", {key: values[:1] for key, values in SCORES.items()})
    figure = aggregate_figure(analysis, tmp_path / "f", colors(analysis.records.architectures)).figure
    assert len(figure.axes) == 4
    for ax in figure.axes:
        assert texts(ax) == ["zero-width CI", "zero-width CI"] and not ax.patches
    assert "Only 1 seed:" in figure.get_suptitle()


def tick_labels(ax: Axes) -> dict[float, tuple[str, tuple]]:
    """Labelled x ticks in view: value -> (text without its line breaks, colour)."""
    low, high = ax.get_xlim()
    return {
        float(value): (label.get_text().strip(), label.get_color())
        for value, label in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)
        if low <= value <= high and label.get_text()
    }


def test_the_parameter_axes_label_the_decades_and_every_count(tmp_path: Path) -> None:
    analysis = fixture_analysis(tmp_path / "r")
    palette = colors(analysis.records.architectures)
    figure = parameters_figure(analysis, tmp_path / "f", palette).figure
    actor, total = figure.axes
    # Mean over halfcheetah and hopper (tests/report_fixtures.py): actors mlp 6,153 and kan 920, one critic
    # 136,833.
    assert tick_labels(actor) == {
        920.0: ("920", palette["kan"]),
        1_000.0: ("1,000", "black"),
        6_153.0: ("6,153", palette["mlp"]),
    }
    assert tick_labels(total) == {
        100_000.0: ("100,000", "black"),
        137_753.0: ("137,753", palette["kan"]),
        142_986.0: ("142,986", palette["mlp"]),
    }
    # Labels that would overlap (920 next to 1,000; the two totals) sit on different lines.
    figure.draw_without_rendering()
    for ax in (actor, total):
        labels = [(label.get_window_extent(), label.get_text().count("\n")) for label in ax.get_xticklabels()]
        for i, (first, first_line) in enumerate(labels):
            for second, second_line in labels[i + 1 :]:
                assert first.x1 < second.x0 or second.x1 < first.x0 or first_line != second_line, ax.get_xlabel()
    assert [label.get_text() for label in actor.get_xticklabels()] == ["920", "\n1,000", "6,153"]


@pytest.mark.parametrize(
    ("values", "decades"),
    [([920.0, 6_153.0], [3]), ([137_753.0, 142_986.0], [5]), ([850.0, 870.0], [3]), ([50.0, 5e6], range(1, 8))],
)
def test_a_log_range_holds_every_value_and_a_power_of_ten(values: list[float], decades) -> None:
    low, high = log_range(values)
    assert low < min(values) and max(values) < high
    assert [p for p in range(-3, 10) if low <= 10**p <= high] == list(decades)


def test_many_architectures_keep_their_own_colours_and_legends_beside_the_lines(tmp_path: Path) -> None:
    """A learning-rate sweep's report (12 columns and more): no two architectures share a colour, and the legends
    of the curves, profiles and parameters figures sit beside the axes, not over what they plot."""
    archs = [f"arch{i}" for i in range(12)]
    scores = {(HOPPER, arch): [10.0 + i, 11.0 + i, 12.0 + i] for i, arch in enumerate(archs)}
    write_fixture(tmp_path / "r", scores)
    analysis = analyze_folder(tmp_path / "r", baseline="arch0", reps=REPS, seed=0)
    palette = colors(analysis.records.architectures)
    assert len(set(palette.values())) == 12
    assert colors(archs[:3]) == {arch: matplotlib.colormaps["tab10"](i) for i, arch in enumerate(archs[:3])}

    curves = curves_figure(analysis, tmp_path / "f", palette).figure
    (panel,) = [ax for ax in curves.axes if ax.axison]
    assert panel.get_legend() is None
    (legend,) = curves.legends
    assert [text.get_text() for text in legend.get_texts()] == [f"{a} (n=3)" for a in analysis.records.architectures]
    for figure in (curves, profile_figure(analysis, tmp_path / "f", palette).figure):
        figure.draw_without_rendering()
        box = (figure.legends or [ax.get_legend() for ax in figure.axes if ax.get_legend()])[0]
        extent = box.get_window_extent()
        for ax in figure.axes:
            if ax.axison:
                assert ax.get_window_extent().x1 <= extent.x0, "the legend overlaps the axes"
        assert extent.y0 >= 0 and extent.y1 <= figure.bbox.height, "the legend is cut off"
    parameters = parameters_figure(analysis, tmp_path / "f", palette).figure
    actor, total = parameters.axes
    assert actor.get_legend() is None and total.get_legend() is not None
    parameters.draw_without_rendering()
    assert total.get_window_extent().x1 <= total.get_legend().get_window_extent().x0


def test_a_few_architectures_keep_their_legend_inside_each_panel(tmp_path: Path) -> None:
    analysis = fixture_analysis(tmp_path / "r")
    palette = colors(analysis.records.architectures)
    curves = curves_figure(analysis, tmp_path / "f", palette).figure
    assert not curves.legends and all(ax.get_legend() is not None for ax in curves.axes if ax.axison)
    actor, total = parameters_figure(analysis, tmp_path / "f", palette).figure.axes
    assert actor.get_legend() is not None and total.get_legend() is None
