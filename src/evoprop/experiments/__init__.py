"""The paper's experiments, rerun with one call (``evoprop reproduce``).

    from evoprop.experiments import reproduce
    [result] = reproduce("table3", out="reproductions", epochs=3)
    print(result.files["table_md"].read_text())

:mod:`~evoprop.experiments.paper_tables` holds the four tables (rows, settings, the
paper's numbers and how its text was read); :mod:`~evoprop.experiments.reproduce` plans,
runs (skipping, resuming or extending what is already there) and writes each table's
folder through :mod:`evoprop.report`.
"""

from evoprop.experiments.paper_tables import (
    COMMON,
    PAPER_EPOCHS,
    ROW_IDS,
    TABLE_NAMES,
    TABLES,
    PaperRow,
    PaperTable,
    get_table,
    get_tables,
)
from evoprop.experiments.reproduce import PlannedRun, TableResult, plan, reproduce

__all__ = [
    "COMMON",
    "PAPER_EPOCHS",
    "ROW_IDS",
    "TABLES",
    "TABLE_NAMES",
    "PaperRow",
    "PaperTable",
    "PlannedRun",
    "TableResult",
    "get_table",
    "get_tables",
    "plan",
    "reproduce",
]
