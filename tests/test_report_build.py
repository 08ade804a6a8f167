"""`build_report` and `python -m bench report` end to end on fixture records: every file, the summary, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.report import build_report
from bench.report.build import analyze_folder
from bench.report.figures import FIGURES
from tests.report_fixtures import (
    as_algorithm,
    fixture_records,
    make_record,
    record_path,
    scores_without,
    smoke_records,
    write_fixture,
    write_grid_file,
    write_records,
)

REPS = 200
HOPPER = "d4rl:hopper-medium-v2"
HALFCHEETAH = "d4rl:halfcheetah-medium-v2"
FIGURE_STEMS = [
    "aggregate_metrics",
    "performance_profiles",
    "probability_of_improvement",
    "learning_curves",
    "parameters_vs_iqm",
    "training_diagnostics",
]
TABLE_STEMS = ["table1_score", "table2_parameters", "table3_time", "table7_episodes", "table8_spread"]


def assert_figures(folder: Path) -> None:
    assert len(FIGURES) == len(FIGURE_STEMS)
    for stem in FIGURE_STEMS:
        png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 5_000, png
        assert pdf.read_bytes().startswith(b"%PDF-") and pdf.stat().st_size > 1_000, pdf
    captions = (folder / "captions.md").read_text()
    assert all(f"## {stem}" in captions for stem in FIGURE_STEMS)


def test_cli_writes_every_table_and_figure_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results" / "fixture"
    write_fixture(results)
    (results / "d4rl-hopper-medium-v2" / "kan" / "seed9.json").write_text("{ truncated")
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    argv = ["report", str(results), "--tables", str(tables), "--figures", str(figures), "--reps", str(REPS)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"report of {results}: 12 records (12 done); 12 of 12 expected runs have a score" in out
    assert "missing cells: none of 4" in out
    assert "skipped " in out and "seed9.json: corrupt JSON" in out
    assert "IQM [95% CI] over 2 dataset(s) x 3 seed(s): mlp " in out
    assert f"tables: 12 files in {tables}" in out and f"figures: 13 files in {figures}" in out
    for stem in [*TABLE_STEMS, "table6_improvement"]:
        assert (tables / f"{stem}.tex").stat().st_size > 0 and (tables / f"{stem}.md").stat().st_size > 0
    assert_figures(figures)

    # The same seed gives the same tables, byte for byte; another seed moves the CIs.
    first = {p.name: p.read_bytes() for p in tables.iterdir()}
    assert main([*argv, "--only", "tables"]) == 0
    assert {p.name: p.read_bytes() for p in tables.iterdir()} == first
    assert main([*argv, "--seed", "1", "--only", "tables"]) == 0
    assert (tables / "table1_score.md").read_bytes() != first["table1_score.md"]


def test_default_output_folders_are_named_after_the_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_fixture(tmp_path / "results" / "smoke")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "results/smoke", "--reps", "50", "--only", "tables"]) == 0
    assert (tmp_path / "tables" / "smoke" / "table1_score.md").exists()
    assert not (tmp_path / "figures").exists()


def test_mixed_configurations_are_refused_by_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_fixture(tmp_path)
    odd = make_record(HOPPER, "kan", 1, 59.0, config_changes={"steps": 1_000_000})
    record_path(tmp_path, odd).write_text(json.dumps(odd))
    argv = ["report", str(tmp_path), "--tables", str(tmp_path / "t"), "--only", "tables", "--reps", "50"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: records from different configurations") and "seed1.json" in err
    assert main([*argv, "--allow-mixed"]) == 0
    out = capsys.readouterr().out
    assert "warning: mixed configurations (--allow-mixed): steps" in out
    # Every table says it, not Table 1 alone: each may be read on its own.
    written = sorted((tmp_path / "t").glob("table*_*.md"))
    assert len(written) == 6
    for path in written:
        assert path.read_text().count("Records with different configurations are mixed (--allow-mixed): steps.") == 1


def test_an_unknown_baseline_is_an_error_naming_the_choices(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    with pytest.raises(
        BenchError, match=r"baseline architecture 'corl-mlp' is not among .*\(kan, mlp\); pass --baseline"
    ):
        build_report(tmp_path, None, None, baseline="corl-mlp", reps=REPS)


def test_the_grid_files_baseline_is_the_default_and_an_explicit_one_wins(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    assert analyze_folder(tmp_path, reps=REPS).baseline == "mlp"
    write_grid_file(tmp_path, baseline="kan")
    assert analyze_folder(tmp_path, reps=REPS).baseline == "kan"
    assert analyze_folder(tmp_path, baseline="mlp", reps=REPS).baseline == "mlp"


def test_a_report_of_several_algorithms_names_the_algorithms_of_its_columns(tmp_path: Path) -> None:
    """A bare baseline means it under the grid file's first algorithm (BC here, which the registry lists after
    TD3+BC) among the report's; a report narrowed to one algorithm's columns names that algorithm only."""
    for algo in ("bc", "td3bc"):
        write_records(tmp_path / "r" / algo, [as_algorithm(r, algo, {"actor_lr": 3e-4}) for r in fixture_records()])
    write_grid_file(tmp_path / "r", baseline="mlp", algorithms=("bc", "td3bc"))
    whole = analyze_folder(tmp_path / "r", reps=REPS)
    assert whole.baseline == "BC mlp" and whole.records.algorithms == ["bc", "td3bc"]
    assert analyze_folder(tmp_path / "r", baseline="kan", reps=REPS).baseline == "BC kan"

    summary = build_report(tmp_path / "r", tmp_path / "t", None, reps=REPS, architectures=["TD3+BC kan", "mlp"])
    assert summary.baseline == "BC mlp"
    narrowed = analyze_folder(tmp_path / "r", reps=REPS, architectures=["TD3+BC kan", "TD3+BC mlp"])
    assert narrowed.baseline == "TD3+BC mlp" and narrowed.records.algorithms == ["td3bc"]
    build_report(tmp_path / "r", tmp_path / "t", None, reps=REPS, architectures=["TD3+BC kan", "TD3+BC mlp"])
    assert "Algorithm: TD3+BC. " in (tmp_path / "t" / "table1_score.md").read_text()
    table2 = (tmp_path / "t" / "table2_parameters.md").read_text()
    assert "Algorithm: TD3+BC." in table2 and "BC trains no critic" not in table2


def test_with_sets_another_grids_records_beside_these(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench report A --with B`: B's cells beside A's (each folder's grid file, where it has one, says which
    cells it expects), A's baseline; the output folders must be named so that A's own report is not written over,
    and folders that hold each other or the same cell are refused."""
    a, b = tmp_path / "results" / "a", tmp_path / "results" / "b"
    write_fixture(a)
    write_grid_file(a, baseline="mlp")
    renamed = [r for r in fixture_records() if r["cell"]["arch"] == "kan"]
    for record in renamed:
        record["cell"]["arch"] = record["config"]["arch"] = "kan-b"
    write_records(b, renamed)
    analysis = analyze_folder(a, also=[b], reps=REPS)
    assert analysis.records.architectures == ["mlp", "kan", "kan-b"] and analysis.baseline == "mlp"
    assert analysis.records.expected.source == "grid.yaml and observed records"
    assert analysis.records.label == f"{a} with {b}" and len(analysis.records.runs) == 18

    tables, figures = tmp_path / "tables" / "a-b", tmp_path / "figures" / "a-b"
    argv = ["report", str(a), "--with", str(b), "--reps", str(REPS)]
    assert main(argv) == 2
    assert "name the output with --tables and --figures (e.g. --tables tables/<name>)" in capsys.readouterr().err
    assert main([*argv, "--only", "figures", "--tables", str(tables)]) == 2
    assert "name the output with --figures (e.g. --figures figures/<name>)" in capsys.readouterr().err
    assert main([*argv, "--report", "main", "--tables", str(tables), "--figures", str(figures)]) == 2
    assert "with --with pick the architectures and datasets" in capsys.readouterr().err
    assert main([*argv, "--tables", str(tables), "--figures", str(figures)]) == 0
    out = capsys.readouterr().out
    assert f"report of {a} with {b}: 18 records (18 done); 18 of 18 expected runs have a score" in out
    assert "| mlp | kan | kan-b |" in (tables / "table1_score.md").read_text()
    assert "| kan | kan-b |" in (tables / "table6_improvement.md").read_text()
    assert (figures / "captions.md").read_text().startswith(f"# Figures for {a} with {b}")

    assert main([*argv, "--with", str(a / "d4rl-hopper-medium-v2"), "--only", "tables", "--tables", str(tables)]) == 2
    assert "overlap (one holds the other)" in capsys.readouterr().err
    write_records(b, [fixture_records()[0]])  # a's first cell, in b as well
    assert main([*argv, "--only", "tables", "--tables", str(tables)]) == 2
    assert "two records for the same cell" in capsys.readouterr().err


def test_a_grid_files_report_with_other_grids_sets_their_records_beside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A named report with `with: [b]` reads results/b beside results/a into tables/<report>/, as `--with`
    would; the grid's other reports read results/a alone."""
    results = tmp_path / "results"
    write_fixture(results / "a")
    reports = {"a": {"architectures": ["mlp", "kan"]}, "a-with-b": {"architectures": ["mlp", "kan-b"], "with": ["b"]}}
    write_grid_file(results / "a", baseline="mlp", reports=reports)
    renamed = [r for r in fixture_records() if r["cell"]["arch"] == "kan"]
    for record in renamed:
        record["cell"]["arch"] = record["config"]["arch"] = "kan-b"
    write_records(results / "b", renamed)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "results/a", "--reps", str(REPS), "--only", "tables"]) == 0
    out = capsys.readouterr().out
    assert "report of results/a: 12 records" in out and "report of results/a with results/b: 12 records" in out
    assert "| mlp | kan |" in (tmp_path / "tables" / "a" / "table1_score.md").read_text()
    assert "| mlp | kan-b |" in (tmp_path / "tables" / "a-with-b" / "table1_score.md").read_text()
    shutil.rmtree(results / "b")
    assert main(["report", "results/a", "--reps", str(REPS), "--only", "tables"]) == 0
    assert (
        "report a-with-b skipped: grid b's records, which report 'a-with-b' sets beside these"
        in capsys.readouterr().err
    )
    assert main(["report", "results/a", "--report", "a-with-b", "--reps", str(REPS), "--only", "tables"]) == 2
    assert "are not here (results/b does not exist): run that grid first" in capsys.readouterr().err


def test_with_sets_another_algorithms_grid_beside_these_under_labelled_columns(tmp_path: Path) -> None:
    """A CQL grid beside a BC grid: every column is labelled by its algorithm, as in a grid of several
    algorithms, and a bare baseline means it under the first folder's algorithm."""
    cql, bc = tmp_path / "cql", tmp_path / "bc"
    write_fixture(cql)
    write_grid_file(cql, baseline="mlp")
    write_records(bc, [as_algorithm(r, "bc", {"actor_lr": 3e-4}) for r in fixture_records()])
    write_grid_file(bc, algorithms=("bc",))
    analysis = analyze_folder(cql, also=[bc], reps=REPS)
    assert analysis.records.architectures == ["CQL mlp", "CQL kan", "BC mlp", "BC kan"]
    assert analysis.baseline == "CQL mlp" and analysis.records.algorithms == ["cql", "bc"]
    assert analysis.records.expected.source == "grid.yaml of each folder"
    narrowed = analyze_folder(cql, also=[bc], reps=REPS, architectures=["kan"], baseline="BC kan")
    assert narrowed.records.architectures == ["CQL kan", "BC kan"] and narrowed.baseline == "BC kan"


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_numpys_generator_cannot_take_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int
) -> None:
    write_fixture(tmp_path / "r")
    argv = ["report", str(tmp_path / "r"), "--tables", str(tmp_path / "t"), "--only", "tables", "--reps", "50"]
    assert main([*argv, "--seed", str(seed)]) == 2
    assert f"--seed must be between 0 and 2**32 - 1, got {seed}" in capsys.readouterr().err


def test_a_grid_without_complete_datasets_still_writes_every_figure(tmp_path: Path) -> None:
    write_fixture(tmp_path / "r", scores_without((HOPPER, "kan", 2), (HALFCHEETAH, "mlp", 0)))
    summary = build_report(tmp_path / "r", tmp_path / "t", tmp_path / "f", reps=REPS)
    assert summary.iqm == {} and summary.partial_cells == ["halfcheetah-medium-v2/mlp n=2", "hopper-medium-v2/kan n=2"]
    assert "no aggregates" in summary.format()
    assert_figures(tmp_path / "f")
    table1 = (tmp_path / "t" / "table1_score.md").read_text()
    assert "| IQM [95% CI] | — | — |" in table1 and "Mean and IQM: —, no dataset has a score" in table1


def test_a_smoke_shaped_grid_writes_every_figure_with_bootstrap_intervals(tmp_path: Path) -> None:
    write_records(tmp_path / "r", smoke_records())
    summary = build_report(tmp_path / "r", None, tmp_path / "f", baseline="mlp-small", reps=REPS)
    assert summary.iqm == {"mlp-small": "4.8 [4.1, 5.5]", "kan-small": "6.6 [6.0, 7.2]"}
    assert_figures(tmp_path / "f")
    captions = (tmp_path / "f" / "captions.md").read_text()
    assert "Student-t" not in captions and f"95% stratified-bootstrap CI band ({REPS} resamples, seed 0)" in captions
    assert "only 2 seeds: the CIs are wide or degenerate" in captions


def test_architectures_report_a_part_of_the_grid_in_their_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One grid, two reports (a main comparison and an ablation, say): the selected architectures only, in the
    order given, with aggregates over the datasets where those are complete."""
    write_fixture(tmp_path / "r")
    # An ablation that has run on hopper only: the whole grid's aggregates cover hopper only.
    for path in sorted((tmp_path / "r" / "d4rl-hopper-medium-v2" / "kan").glob("seed*.json")):
        record = json.loads(path.read_text())
        record["cell"]["arch"] = record["config"]["arch"] = "kan-g3"
        (path.parent.parent / "kan-g3").mkdir(exist_ok=True)
        (path.parent.parent / "kan-g3" / path.name).write_text(json.dumps(record))
    assert len(analyze_folder(tmp_path / "r", reps=REPS).selection.datasets) == 1

    analysis = analyze_folder(tmp_path / "r", reps=REPS, architectures=["kan", "mlp"])
    assert analysis.records.architectures == ["kan", "mlp"] and set(analysis.records.runs["arch"]) == {"kan", "mlp"}
    assert set(analysis.records.curves["arch"]) == set(analysis.records.diagnostics["arch"]) == {"kan", "mlp"}
    assert analysis.baseline == "mlp" and list(analysis.aggregates) == ["kan", "mlp"]
    assert len(analysis.selection.datasets) == 2

    argv = ["report", str(tmp_path / "r"), "--tables", str(tmp_path / "t"), "--only", "tables", "--reps", str(REPS)]
    assert main([*argv, "--architectures", "kan,kan-g3", "--baseline", "kan"]) == 0
    out = capsys.readouterr().out
    assert "9 records (9 done); 9 of 12 expected runs" in out and "missing cells (dash in the tables): 1 of 4: " in out
    assert "IQM [95% CI] over 1 dataset(s) x 3 seed(s): kan " in out
    assert "| kan | kan-g3 |" in (tmp_path / "t" / "table1_score.md").read_text()

    assert main([*argv, "--architectures", "kan,mlp-wide"]) == 2
    assert "--architectures: 'mlp-wide' is not an architecture of" in capsys.readouterr().err


def test_datasets_report_a_part_of_the_grid_in_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One data quality or environment of a grid: its datasets' runs, curves and diagnostics only, in the order
    given, its cells the expected ones (so aggregates and missing cells are over those datasets), from --datasets
    or a named report's `datasets:`."""
    results = tmp_path / "results" / "fixture"
    write_fixture(results)
    hopper, cheetah = "d4rl:hopper-medium-v2", "d4rl:halfcheetah-medium-v2"
    analysis = analyze_folder(results, reps=REPS, datasets=[hopper])
    records = analysis.records
    assert records.datasets == [hopper] and set(records.runs["dataset"]) == {hopper}
    assert set(records.curves["dataset"]) == set(records.diagnostics["dataset"]) == {hopper}
    assert analysis.selection.datasets == [hopper] and records.expected.cells == 2 * 3
    assert analyze_folder(results, reps=REPS, datasets=[hopper, cheetah]).records.datasets == [hopper, cheetah]

    write_grid_file(results, reports={"hopper": {"architectures": ["mlp", "kan"], "datasets": [hopper]}})
    monkeypatch.chdir(tmp_path)
    argv = ["report", "results/fixture", "--only", "tables", "--reps", str(REPS)]
    assert main(argv) == 0
    assert "6 records (6 done); 6 of 6 expected runs" in capsys.readouterr().out
    table1 = (tmp_path / "tables" / "hopper" / "table1_score.md").read_text()
    assert "hopper-medium" in table1 and "halfcheetah" not in table1

    assert main([*argv, "--datasets", f"{cheetah},{hopper}", "--tables", "t"]) == 0
    assert "12 records (12 done); 12 of 12 expected runs" in capsys.readouterr().out
    table1 = (tmp_path / "t" / "table1_score.md").read_text()
    assert table1.index("halfcheetah-medium") < table1.index("| hopper-medium")

    assert main([*argv, "--datasets", "d4rl:hopper-medium"]) == 2
    err = capsys.readouterr().err
    assert "--datasets: 'd4rl:hopper-medium' is not a dataset of" in err and "did you mean" in err
    assert main([*argv, "--report", "hopper", "--datasets", hopper]) == 2
    assert "--report and --datasets both pick the datasets" in capsys.readouterr().err

    # A grid still training: a report of cells without records is skipped with a line, the others written.
    for path in (results / "d4rl-hopper-medium-v2").rglob("seed*.json"):
        path.unlink()
    shutil.rmtree(tmp_path / "tables")
    write_grid_file(
        results,
        reports={
            "hopper": {"architectures": ["mlp", "kan"], "datasets": [hopper]},
            "all": {"architectures": ["kan"], "baseline": "kan"},
        },
    )
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"report hopper skipped: no record of mlp, kan on {hopper} under" in captured.err
    assert "report hopper (" not in captured.out and "report all (kan):" in captured.out
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["all"]
    assert main([*argv, "--report", "hopper"]) == 2
    assert "no record of mlp, kan on" in capsys.readouterr().err


def test_a_grid_files_named_reports_each_get_their_own_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reports:` in grid.yaml: every report by default, each into tables/<report>/; --report NAME picks one."""
    results = tmp_path / "results" / "fixture"
    write_fixture(results)
    write_grid_file(
        results,
        reports={"main": {"architectures": ["kan", "mlp"]}, "kans": {"architectures": ["kan"], "baseline": "kan"}},
    )
    monkeypatch.chdir(tmp_path)
    argv = ["report", "results/fixture", "--only", "tables", "--reps", "50"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["kans", "main"]
    assert "| kan | mlp |" in (tmp_path / "tables" / "main" / "table1_score.md").read_text()
    kans = (tmp_path / "tables" / "kans" / "table1_score.md").read_text()
    assert "| kan |" in kans and "mlp" not in kans.split("\n")[0]
    assert out.count("report of results/fixture") == 2
    assert "report main (kan, mlp):" in out and "report kans (kan):" in out  # which summary is which

    shutil.rmtree(tmp_path / "tables")
    assert main([*argv, "--report", "kans", "--tables", "t"]) == 0
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(
        f"{stem}.{ext}" for stem in TABLE_STEMS for ext in ("md", "tex")
    )
    assert not (tmp_path / "tables").exists()
    assert main([*argv, "--architectures", "mlp"]) == 0
    assert (tmp_path / "tables" / "fixture" / "table1_score.md").exists()
    capsys.readouterr()

    assert main([*argv, "--report", "kan"]) == 2
    assert (
        "--report 'kan': the grid file results/fixture/grid.yaml has no such report; did you mean 'kans'? "
        "its reports: main, kans" in capsys.readouterr().err
    )
    assert main([*argv, "--tables", "t"]) == 2
    assert (
        "names 2 reports (main, kans), each with its own folders; pick one with --report NAME"
        in capsys.readouterr().err
    )
    assert main([*argv, "--report", "main", "--architectures", "kan"]) == 2
    assert "--report and --architectures both pick" in capsys.readouterr().err


def test_a_report_at_a_step_goes_beside_the_runs_own_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_fixture(tmp_path / "results" / "smoke")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "results/smoke", "--reps", "50", "--only", "tables"]) == 0
    assert main(["report", "results/smoke", "--reps", "50", "--at-step", "1000"]) == 0
    assert "report of results/smoke at step 1,000: 12 records" in capsys.readouterr().out
    full = (tmp_path / "tables" / "smoke" / "table1_score.md").read_text()
    cut = (tmp_path / "tables" / "smoke-step1000" / "table1_score.md").read_text()
    assert "Final evaluation (step 2,000)" in full
    assert "Evaluation at step 1,000 of runs of 2,000 steps" in cut and "37.0 ± 0.2" in cut and "47.0 ± 0.2" not in cut
    captions = (tmp_path / "figures" / "smoke-step1000" / "captions.md").read_text()
    assert "scores at step 1,000 of the runs" in captions
    assert main(["report", "results/smoke", "--reps", "50", "--at-step", "1500"]) == 2
    assert "no evaluation at step 1,500" in capsys.readouterr().err


def test_a_report_scored_by_the_last_evaluations_goes_beside_the_runs_own_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fixture's runs are evaluated at 1,000 and 2,000 steps, 10 points apart (halfcheetah mlp: 37.0 and 47.0).
    write_fixture(tmp_path / "results" / "smoke")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "results/smoke", "--reps", "50", "--last-evaluations", "2"]) == 0
    out = capsys.readouterr().out
    assert "report of results/smoke, each run scored by the mean of its last 2 evaluations: 12 records" in out
    table = (tmp_path / "tables" / "smoke-last2" / "table1_score.md").read_text()
    assert "Mean of each run's last 2 evaluations (the final one included; all of them where a run has fewer)" in table
    assert "42.0 ± 0.2" in table and "47.0 ± 0.2" not in table
    captions = (tmp_path / "figures" / "smoke-last2" / "captions.md").read_text()
    assert "scores: the mean of each run's last 2 evaluations;" in captions
    # More evaluations than a run has: all of them. With --at-step, those up to that step (here one).
    argv = ["report", "results/smoke", "--reps", "50", "--only", "tables"]
    assert main([*argv, "--last-evaluations", "5"]) == 0
    assert "42.0 ± 0.2" in (tmp_path / "tables" / "smoke-last5" / "table1_score.md").read_text()
    assert main([*argv, "--last-evaluations", "2", "--at-step", "1000"]) == 0
    cut = (tmp_path / "tables" / "smoke-step1000-last2" / "table1_score.md").read_text()
    assert "Mean of each run's last 2 evaluations (up to step 1,000 of runs of 2,000 steps;" in cut
    assert "37.0 ± 0.2" in cut
    capsys.readouterr()
    assert main([*argv, "--last-evaluations", "0"]) == 2
    assert "--last-evaluations must be at least 1 (1: the final evaluation), got 0" in capsys.readouterr().err
