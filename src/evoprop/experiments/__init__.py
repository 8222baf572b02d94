"""The paper's experiments, rerun with one call (``evoprop reproduce``).

    from evoprop.experiments import reproduce
    [result] = reproduce("table3", out="reproductions", epochs=3)
    print(result.files["table_md"].read_text())

:mod:`~evoprop.experiments.paper_tables` holds the four tables (rows, settings, the
paper's numbers and how its text was read); :mod:`~evoprop.experiments.reproduce` plans,
runs (skipping, resuming or extending what is already there) and writes each table's
folder through :mod:`evoprop.report`; :mod:`~evoprop.experiments.compare` does the same for any
arms × seeds named in a YAML file (``evoprop compare``).
"""

from evoprop.experiments.compare import ArmRun, CompareResult, CompareSpec, compare, load_spec
from evoprop.experiments.paper_tables import (
    COMMON,
    PAPER_EPOCHS,
    READING_NOTES,
    ROW_IDS,
    TABLE_NAMES,
    TABLES,
    PaperRow,
    PaperTable,
    get_table,
    get_tables,
    paper_references,
)
from evoprop.experiments.reproduce import PlannedRun, ReproduceSpec, TableResult, plan, reproduce

__all__ = [
    "ArmRun",
    "CompareResult",
    "CompareSpec",
    "COMMON",
    "PAPER_EPOCHS",
    "READING_NOTES",
    "ROW_IDS",
    "TABLES",
    "TABLE_NAMES",
    "PaperRow",
    "PaperTable",
    "PlannedRun",
    "ReproduceSpec",
    "TableResult",
    "compare",
    "get_table",
    "get_tables",
    "load_spec",
    "paper_references",
    "plan",
    "reproduce",
]
