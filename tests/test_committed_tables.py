"""The committed tables are what the committed records give with today's report code.

Every folder under tables/ that a committed grid's report writes (`make tables GRID=<grid>`: one folder per report
the grid file names, and one per report at a step) is built again from results/<grid>/ into a
temporary folder and compared file by file, so a record, a grid file or a change to the report that moves a
number cannot leave the README's tables behind. Tables 4, 5 and 9 (`bench deploy`, `bench actions`,
`bench coverage`) need the datasets and the trained actors and are not rebuilt.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from bench.report import build_report
from bench.report.build import DEFAULT_REPS, named_reports, report_folder

ROOT = Path(__file__).resolve().parents[1]
# Tables of other commands than the report, not rebuilt from the records here.
OTHER_COMMANDS_TABLES = ("table4_deployment", "table5_actions", "table9_coverage", "table10_critics")


Report = tuple[str, str, str | None, tuple[str, ...], tuple[str, ...], tuple[str, ...], int | None, int]


def committed_reports() -> list[Report]:
    """(tables folder, grid, baseline, architectures, datasets, other grids beside it, step, last evaluations) of
    every committed report folder: each report of each committed grid, at its end and at each of its evaluation
    steps, scored by its final evaluation or by the mean of its last K, whose folder is under tables/."""
    folders = {p.parent.name for p in (ROOT / "tables").glob("*/table1_score.md")}
    found = []
    for grid_file in sorted((ROOT / "results").glob("*/grid.yaml")):
        grid = grid_file.parent.name
        settings = yaml.safe_load(grid_file.read_text(encoding="utf-8"))["settings"]
        steps = [None, *range(settings["eval_every"], settings["steps"] + 1, settings["eval_every"])]
        lasts = range(1, len(steps) + 1)
        reports = {
            name: (r.baseline, r.architectures, r.datasets, tuple(folder.name for folder in r.also))
            for name, r in named_reports(grid_file.parent).items()
        }
        for name, (baseline, architectures, datasets, also) in (reports or {grid: (None, (), (), ())}).items():
            for step, last in itertools.product(steps, lasts):
                if (folder := report_folder(name, step, last)) in folders:
                    found.append((folder, grid, baseline, architectures, datasets, also, step, last))
    return sorted(found)


REPORTS = committed_reports()


def test_every_committed_tables_folder_has_its_records() -> None:
    folders = {p.parent.name for p in (ROOT / "tables").glob("*/table1_score.md")}
    assert folders == {folder for folder, *_ in REPORTS}, "a tables/ folder whose grid's records are not committed"


def test_every_committed_latex_table_is_plain_ascii() -> None:
    # Tables 4, 5 and 9 included: symbols go out as macros, so no table depends on a LaTeX install's UTF-8 setup.
    offending = {
        path.relative_to(ROOT).as_posix(): sorted({ch for ch in path.read_text(encoding="utf-8") if not ch.isascii()})
        for path in (ROOT / "tables").glob("*/*.tex")
    }
    assert not {path: chars for path, chars in offending.items() if chars}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("folder", "grid", "baseline", "architectures", "datasets", "also", "step", "last"),
    REPORTS,
    ids=[r[0] for r in REPORTS],
)
def test_committed_tables_are_what_the_committed_records_give(
    tmp_path: Path,
    folder: str,
    grid: str,
    baseline: str | None,
    architectures: tuple[str, ...],
    datasets: tuple[str, ...],
    also: tuple[str, ...],
    step: int | None,
    last: int,
) -> None:
    summary = build_report(
        ROOT / "results" / grid,
        tmp_path,
        None,
        also=[ROOT / "results" / other for other in also],
        baseline=baseline,
        reps=DEFAULT_REPS,
        seed=0,
        architectures=architectures,
        datasets=datasets,
        at_step=step,
        last_evaluations=last,
    )
    rebuilt = {path.name for path in summary.tables}
    committed = {
        path.name for path in (ROOT / "tables" / folder).glob("table*") if path.stem not in OTHER_COMMANDS_TABLES
    }
    assert rebuilt == committed, f"tables/{folder}: other tables than its records give"
    command = f"make tables GRID={grid}" + (f" AT_STEP={step}" if step else "")
    command += f" LAST_EVALUATIONS={last}" if last > 1 else ""
    for name in sorted(rebuilt):
        assert (tmp_path / name).read_text() == (ROOT / "tables" / folder / name).read_text(), (
            f"tables/{folder}/{name} is not what results/{grid}/ gives today; rebuild it with `{command}`"
        )
