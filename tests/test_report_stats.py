"""The report's statistics equal direct rliable calls with the same seed, and ragged seeds are handled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from bench.report.build import analyze_folder
from bench.report.stats import (
    aggregate_intervals,
    global_numpy_seed,
    improvement_over,
    learning_curves,
    performance_profiles,
    probability_of_improvement,
    score_distribution,
    score_matrix,
    select_complete,
)
from tests.report_fixtures import (
    SCORES,
    SMOKE_DATASET,
    SMOKE_STEPS,
    scores_without,
    smoke_records,
    write_fixture,
    write_records,
)

REPS = 200
HALFCHEETAH = "d4rl:halfcheetah-medium-v2"
HOPPER = "d4rl:hopper-medium-v2"


def fixture_matrix(arch: str) -> np.ndarray:
    """(num_seeds, num_datasets) as rliable wants it, columns in the datasets' order."""
    return np.array([SCORES[(HALFCHEETAH, arch)], SCORES[(HOPPER, arch)]]).T


def direct(key: str, data, func, seed: int):
    np.random.seed(seed)
    return rly.get_interval_estimates({key: data}, func, reps=REPS)


@pytest.mark.parametrize("seed", [0, 7])
def test_iqm_and_its_ci_equal_a_direct_rliable_call(tmp_path: Path, seed: int) -> None:
    write_fixture(tmp_path)
    analysis = analyze_folder(tmp_path, baseline="mlp", reps=REPS, seed=seed)
    for arch in ("mlp", "kan"):
        matrix = fixture_matrix(arch)
        np.testing.assert_array_equal(analysis.matrices[arch], matrix)
        points, intervals = direct(arch, matrix, lambda x: np.array([metrics.aggregate_iqm(x)]), seed)
        iqm = analysis.aggregates[arch]["IQM"]
        assert iqm.point == points[arch][0]
        assert (iqm.low, iqm.high) == (intervals[arch][0, 0], intervals[arch][1, 0])
        assert iqm.low < iqm.point < iqm.high


def test_every_aggregate_equals_its_own_direct_call() -> None:
    matrix = fixture_matrix("kan")
    result = aggregate_intervals({"kan": matrix}, reps=REPS, seed=3)["kan"]
    functions = {
        "Mean": metrics.aggregate_mean,
        "Median": metrics.aggregate_median,
        "Optimality gap": lambda x: metrics.aggregate_optimality_gap(x, gamma=100),
    }
    for name, function in functions.items():
        points, intervals = direct("kan", matrix, lambda x, f=function: np.array([f(x)]), 3)
        assert (result[name].point, result[name].low, result[name].high) == (
            points["kan"][0],
            intervals["kan"][0, 0],
            intervals["kan"][1, 0],
        )
    assert result["Mean"].point == pytest.approx(52.0)
    assert result["Optimality gap"].point == pytest.approx(48.0)


def test_bootstrap_is_reproducible_seeded_and_leaves_the_global_generator_alone() -> None:
    matrix = fixture_matrix("mlp")
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = aggregate_intervals({"mlp": matrix}, reps=REPS, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    b = aggregate_intervals({"mlp": matrix, "other": matrix + 1}, reps=REPS, seed=0)
    c = aggregate_intervals({"mlp": matrix}, reps=REPS, seed=1)
    assert a["mlp"] == b["mlp"]  # an architecture's CI does not depend on the others
    assert a["mlp"]["IQM"] != c["mlp"]["IQM"]
    with global_numpy_seed(5):
        first = np.random.rand()
    with global_numpy_seed(5):
        assert np.random.rand() == first


def test_probability_of_improvement_equals_a_direct_call() -> None:
    matrices = {"mlp": fixture_matrix("mlp"), "kan": fixture_matrix("kan")}
    result = improvement_over(matrices, "mlp", reps=REPS, seed=4)
    assert list(result) == ["kan"]
    points, intervals = direct(
        "kan,mlp",
        (matrices["kan"], matrices["mlp"]),
        lambda x, y: np.array([metrics.probability_of_improvement(x, y)]),
        4,
    )
    assert result["kan"].point == points["kan,mlp"][0]
    assert (result["kan"].low, result["kan"].high) == (intervals["kan,mlp"][0, 0], intervals["kan,mlp"][1, 0])
    # By hand (ties count half): halfcheetah kan 44-46 never beats mlp 46.8-47.2; hopper kan 58, 59, 60 beats
    # mlp 55 three times and ties 60 once: 3.5 of 9 pairs. rliable averages over datasets.
    assert result["kan"].point == pytest.approx((0.0 + 3.5 / 9) / 2)


def test_probability_of_improvement_is_rliables_to_the_bit() -> None:
    generator = np.random.default_rng(0)
    for runs_x, runs_y, tasks in [(5, 5, 3), (3, 7, 1), (1, 1, 2), (10, 4, 9)]:
        for _ in range(50):
            # Rounded scores tie often, within a task and across the two; some columns are the same in both.
            x = np.round(generator.normal(40, 10, (runs_x, tasks)))
            y = np.round(generator.normal(40, 10, (runs_y, tasks)))
            if runs_x == runs_y:
                y[:, 0] = x[:, 0]
            assert probability_of_improvement(x, y)[0] == metrics.probability_of_improvement(x, y)
    assert probability_of_improvement(np.array([[1.0, 2.0]]), np.array([[0.5, 2.0]]))[0] == 0.75


def test_score_distribution_is_rliables_to_the_bit() -> None:
    generator = np.random.default_rng(1)
    taus = np.linspace(0, 100, 101)
    for shape in [(5, 3), (1, 1), (10, 9)]:
        scores = np.round(generator.normal(40, 20, shape))  # rounded: scores on the thresholds too
        np.testing.assert_array_equal(score_distribution(scores, taus), rly.score_distributions(scores, taus))


def test_performance_profile_equals_a_direct_call() -> None:
    matrix = fixture_matrix("kan")
    taus = np.linspace(0, 100, 11)
    profile = performance_profiles({"kan": matrix}, taus, reps=REPS, seed=2)["kan"]
    np.random.seed(2)
    values, intervals = rly.create_performance_profile({"kan": matrix}, taus, reps=REPS)
    np.testing.assert_array_equal(profile.values, values["kan"])
    np.testing.assert_array_equal(profile.low, intervals["kan"][0])
    np.testing.assert_array_equal(profile.high, intervals["kan"][1])
    assert profile.values[5] == pytest.approx(3 / 6)  # above tau = 50: hopper's 58, 59, 60, not halfcheetah's


def test_ragged_seeds_keep_only_complete_datasets(tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 2)))
    analysis = analyze_folder(tmp_path, baseline="mlp", reps=REPS, seed=0)
    selection = analysis.selection
    assert selection.datasets == [HALFCHEETAH] and selection.seeds == [0, 1, 2]
    assert selection.excluded_datasets == {HOPPER: "seeds with a score: kan 2/3"}
    assert analysis.matrices["kan"].shape == (3, 1)
    assert analysis.cells.loc[(HOPPER, "kan"), "n"] == 2


def test_no_complete_dataset_means_no_aggregates(tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 2), (HALFCHEETAH, "mlp", 0)))
    analysis = analyze_folder(tmp_path, baseline="mlp", reps=REPS, seed=0)
    assert analysis.selection.empty and analysis.aggregates == {} and analysis.improvement == {}


def test_score_matrix_refuses_gaps(tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 2)))
    runs = analyze_folder(tmp_path, baseline="mlp", reps=REPS, seed=0).records.runs
    with pytest.raises(ValueError, match="gaps"):
        score_matrix(runs, "kan", [HOPPER], [0, 1, 2])
    selection = select_complete(runs, ["mlp", "kan"], [HALFCHEETAH, HOPPER], [0, 1, 2])
    assert selection.datasets == [HALFCHEETAH]


@pytest.mark.parametrize("seed", [0, 5])
def test_learning_curves_average_seeds_with_the_bootstrap_ci_of_the_aggregates(tmp_path: Path, seed: int) -> None:
    write_fixture(tmp_path)
    curves = learning_curves(
        analyze_folder(tmp_path, baseline="mlp", reps=REPS, seed=0).records.curves, reps=REPS, seed=seed
    )
    curve = curves[(HOPPER, "mlp")]
    assert curve.n == 3 and list(curve.steps) == [1000, 2000]
    assert curve.mean[1] == pytest.approx(60.0) and curve.mean[0] == pytest.approx(50.0)
    # The same seeded stratified bootstrap as rliable's sample-efficiency curves: (seeds, 1 dataset, steps).
    scores = np.array([[s - 10.0, s] for s in SCORES[(HOPPER, "mlp")]])[:, np.newaxis, :]
    points, intervals = direct("curve", scores, lambda x: x.mean(axis=0).mean(axis=0), seed)
    np.testing.assert_array_equal(curve.mean, points["curve"])
    np.testing.assert_array_equal(curve.low, intervals["curve"][0])
    np.testing.assert_array_equal(curve.high, intervals["curve"][1])
    # A percentile interval stays within the seeds' scores (55, 60, 65), unlike a t interval over 3 seeds.
    assert 55.0 <= curve.low[1] < 60.0 < curve.high[1] <= 65.0


def test_a_single_evaluation_has_the_ci_of_the_aggregate_mean(tmp_path: Path) -> None:
    write_records(tmp_path, smoke_records())
    analysis = analyze_folder(tmp_path, baseline="mlp-small", reps=REPS, seed=2)
    for arch in ("mlp-small", "kan-small"):
        curve, mean = analysis.curves[(SMOKE_DATASET, arch)], analysis.aggregates[arch]["Mean"]
        assert list(curve.steps) == [SMOKE_STEPS]
        assert (curve.mean[0], curve.low[0], curve.high[0]) == pytest.approx((mean.point, mean.low, mean.high))
