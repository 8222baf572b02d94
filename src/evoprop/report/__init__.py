"""Comparison tables, figures and reports from run directories (``evoprop report``).

    from evoprop.report import build_report
    result = build_report(["runs/a", "runs/b"], out="report")   # table.md, table.csv, f1.png, loss.png, report.md

:mod:`~evoprop.report.tables` reads run directories and aggregates them (one row per
method, mean ± sample std over seeds); :mod:`~evoprop.report.figures` draws macro-F1 and
loss per epoch; :mod:`~evoprop.report.document` writes the folder and ``report.md``;
:mod:`~evoprop.report.stats` pairs methods seed by seed (t-based 95 % interval) for a baseline.
"""

from evoprop.report.document import FILES, build_report, write_report
from evoprop.report.tables import (
    RunRecord,
    TableReference,
    TableRow,
    find_run_dirs,
    group_runs,
    load_run,
    load_runs,
    markdown_table,
    table_rows,
)
from evoprop.runs.rundir import MARKER

__all__ = [
    "FILES",
    "MARKER",
    "RunRecord",
    "TableReference",
    "TableRow",
    "build_report",
    "find_run_dirs",
    "group_runs",
    "load_run",
    "load_runs",
    "markdown_table",
    "table_rows",
    "write_report",
]
