"""The report: run records -> rliable statistics -> LaTeX/Markdown Tables 1-3 and 6-8 and matplotlib figures.

It reads records only (never model code): `records` loads and validates them, `stats` aggregates with rliable,
`tables` and `figures` render, `build.build_report` ties them together for `python -m bench report`.
"""

from bench.report.build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
