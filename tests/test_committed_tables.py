"""The committed tables are what the committed records give with today's report code.

Every folder under tables/ that a committed grid's report writes (`make tables GRID=<grid>`: one folder per report
the grid file names, `<report>-step<N>` for a report at a step) is built again from results/<grid>/ into a
temporary folder and compared file by file, so a record, a grid file or a change to the report that moves a
number cannot leave the README's tables behind. Tables 4 and 5 (`bench deploy`, `bench actions`) need the datasets
and the trained actors and are not rebuilt.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.report import build_report
from bench.report.build import DEFAULT_REPS, named_reports

ROOT = Path(__file__).resolve().parents[1]
OTHER_COMMANDS_TABLES = ("table4_deployment", "table5_actions")  # not the report's


def committed_reports() -> list[tuple[str, str, str | None, tuple[str, ...], int | None]]:
    """(tables folder, grid, baseline, architectures, step) of every committed report folder."""
    sources: dict[str, tuple[str, str | None, tuple[str, ...]]] = {}
    for grid_file in sorted((ROOT / "results").glob("*/grid.yaml")):
        grid = grid_file.parent.name
        reports = named_reports(grid_file.parent)
        for name, report in reports.items():
            sources[name] = (grid, report.baseline, report.architectures)
        if not reports:
            sources[grid] = (grid, None, ())
    found = []
    for folder in sorted(p.parent.name for p in (ROOT / "tables").glob("*/table1_score.md")):
        match = re.fullmatch(r"(.+)-step(\d+)", folder)
        name, step = (match.group(1), int(match.group(2))) if match else (folder, None)
        if name in sources:
            grid, baseline, architectures = sources[name]
            found.append((folder, grid, baseline, architectures, step))
    return found


REPORTS = committed_reports()


def test_every_committed_tables_folder_has_its_records() -> None:
    folders = {p.parent.name for p in (ROOT / "tables").glob("*/table1_score.md")}
    assert folders == {folder for folder, *_ in REPORTS}, "a tables/ folder whose grid's records are not committed"


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "grid", "baseline", "architectures", "step"), REPORTS, ids=[r[0] for r in REPORTS])
def test_committed_tables_are_what_the_committed_records_give(
    tmp_path: Path, folder: str, grid: str, baseline: str | None, architectures: tuple[str, ...], step: int | None
) -> None:
    summary = build_report(
        ROOT / "results" / grid,
        tmp_path,
        None,
        baseline=baseline,
        reps=DEFAULT_REPS,
        seed=0,
        architectures=architectures,
        at_step=step,
    )
    rebuilt = {path.name for path in summary.tables}
    committed = {
        path.name for path in (ROOT / "tables" / folder).glob("table*") if path.stem not in OTHER_COMMANDS_TABLES
    }
    assert rebuilt == committed, f"tables/{folder}: other tables than its records give"
    command = f"make tables GRID={grid}" + (f" AT_STEP={step}" if step else "")
    for name in sorted(rebuilt):
        assert (tmp_path / name).read_text() == (ROOT / "tables" / folder / name).read_text(), (
            f"tables/{folder}/{name} is not what results/{grid}/ gives today; rebuild it with `{command}`"
        )
