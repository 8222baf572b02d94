"""``evoprop reproduce``: run every row of one of the paper's tables, then write its table folder.

Layout (``out`` defaults to ``reproductions/``)::

    OUT/table3/hybrid-sgd/seed0/   an ordinary run directory (config.yaml, metrics.jsonl, summary.json,
                                   checkpoint.pt) plus reproduction.json (table, row, the paper's numbers)
    OUT/table3/adam/seed0/ ...
    OUT/table3/table.md, table.csv, f1.png, loss.png, report.md

What happens to a row's run directory (new, skip, extend, resume, diverged, or an error on
other settings) is decided before anything runs, by :func:`evoprop.runs.plan.plan_run`, which
``evoprop compare`` shares.

Every row is also paired, seed by seed, with the table's baseline row (``PaperTable.baseline``,
SGD lr 0.01): the mean difference in val-selected test F1 with its 95 % interval, in
``table.md`` under "Paired against …".

The table summarises every run directory under ``OUT/tableN/`` (also rows or seeds of
earlier invocations), each read to at most N epochs. ``--seeds K`` runs seeds
``seed … seed+K−1``; the table then shows mean ± sample standard deviation over seeds.

``overrides`` (Python API only, e.g. ``{"limit_train": 500, "popsize": 20, "width": 16}``)
change every row's settings on top of the paper's: tests use it to shrink a table; the
report lists them, because such a table is no longer the paper's.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

import evoprop
from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.experiments.paper_tables import (PAPER_EPOCHS, PaperRow, PaperTable, check_row_ids, get_tables,
                                              paper_references)
from evoprop.device import describe_machine
from evoprop.report import load_run, write_report
from evoprop.report.tables import es_options, find_run_dirs, group_runs
from evoprop.runs.labels import method_label
from evoprop.runs.rundir import RunDir
from evoprop.runs.plan import RunPlan, check_data, execute, plan_run


#: Seeds per row: each is a full run of every row of the table (the paper reports one).
MAX_SEEDS = 1000

@dataclass
class PlannedRun(RunPlan):
    """One (table, row, seed): its run directory, its settings and what :func:`reproduce` will do."""

    table: PaperTable
    row: PaperRow
    seed: int

    @property
    def name(self) -> str:
        return f"{self.table.name} {self.row.id} seed {self.seed}"

    @property
    def settings_line(self) -> str:
        """The row's label and what sets it apart, e.g. 'sep-CMA-ES (1 epoch = 1 pass): es sep P=5000, one
        pass/epoch' or 'hybrid (SGD), elitist: hybrid auto P=1000 + sgd lr 0.01, combine elitist'."""
        config = self.config.to_dict()
        extra = es_options(config)
        return f"{self.row.label}: {method_label(config)}" + (f", {extra}" if extra else "")


@dataclass
class TableResult:
    """What :func:`reproduce` produced for one table."""

    table: PaperTable
    dir: Path
    runs: list[PlannedRun]
    rows: list  # evoprop.report.TableRow
    files: dict[str, Path]


@dataclass(frozen=True)
class ReproduceSpec:
    """What to reproduce: the one list of the parameters of :func:`plan` and :func:`reproduce`
    (both take them as keywords) and of the ``evoprop reproduce`` command line that repeats them."""

    table: str = "table3"
    out: str | Path = "reproductions"
    epochs: int = PAPER_EPOCHS
    rows: list[str] | str | None = None
    seed: int = 0
    seeds: int = 1
    device: str | None = None
    init: str | None = None
    data_dir: str | Path | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    overrides: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        """The settings every row gets on top of the paper's; raises on any bad input."""
        for name, value, low in (("epochs", self.epochs, 1), ("seeds", self.seeds, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.seeds > MAX_SEEDS:
            raise ConfigError(f"seeds must be at most {MAX_SEEDS} (each is a full run of every row), got {self.seeds}")
        changes: dict[str, Any] = {"epochs": self.epochs}
        for key in _ROW_SETTINGS:
            value = getattr(self, key)
            if value is not None:
                changes[key] = str(value) if key == "data_dir" else value
        if self.overrides:
            names = TrainConfig.field_names()
            unknown = sorted(set(k.replace("-", "_") for k in self.overrides) - set(names))
            if unknown:
                raise ConfigError(f"unknown override(s) {', '.join(unknown)}; valid: {', '.join(names)}")
            changes.update({k.replace("-", "_"): v for k, v in self.overrides.items()})
        return changes

    def command(self) -> str:
        """The ``evoprop reproduce`` command line of these parameters (defaults left out), for the report."""
        parts = ["evoprop", "reproduce", str(self.table)]
        if self.epochs != PAPER_EPOCHS:
            parts += ["--epochs", str(self.epochs)]
        ids = _split_ids(self.rows)
        if ids:
            parts += ["--rows", ",".join(ids)]
        parts += ["--out", str(self.out)]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _OPTIONS and value is not None and value != f.default:
                parts += ["--" + f.name.replace("_", "-"), str(value)]
        return " ".join(shlex.quote(p) for p in parts)


#: The parameters that are also settings of every row's TrainConfig.
_ROW_SETTINGS = ("device", "init", "data_dir", "limit_train", "limit_test")
#: The parameters :meth:`ReproduceSpec.command` writes as plain ``--name value`` options.
_OPTIONS = ("seed", "seeds") + _ROW_SETTINGS


def plan(table: str = "table3", out: str | Path = "reproductions", **options: Any) -> list[PlannedRun]:
    """Every (table, row, seed) to run, with its run directory and action; raises on any bad input.

    ``options``: the other fields of :class:`ReproduceSpec` (epochs, rows, seed, seeds, device, init,
    data_dir, limit_train, limit_test, overrides)."""
    return _plan(ReproduceSpec(table, out, **options))


def _plan(spec: ReproduceSpec) -> list[PlannedRun]:
    tables = get_tables(spec.table)
    rows = _split_ids(spec.rows)
    check_row_ids(tables, rows)
    changes = spec.changes()
    planned = []
    for t in tables:
        chosen = [r for r in t.rows if not rows or r.id in rows]
        for row in chosen:
            for s in range(spec.seed, spec.seed + spec.seeds):
                config = t.config(row, **changes, seed=s).validate()
                path = Path(spec.out) / t.name / row.id / f"seed{s}"
                planned.append(_decide(t, row, s, path, config))
    return planned


def _split_ids(rows) -> list[str] | None:
    if not rows:
        return None
    if isinstance(rows, str):
        rows = [rows]
    ids = [part.strip() for item in rows for part in str(item).split(",") if part.strip()]
    return ids or None


def _decide(table, row, seed, path, config) -> PlannedRun:
    return PlannedRun(**vars(plan_run(path, config)), table=table, row=row, seed=seed)


def reproduce(
    table: str = "table3",
    out: str | Path = "reproductions",
    *,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    **options: Any,
) -> list[TableResult]:
    """Run the rows of ``table`` ("table1" … "table4", or "all") and write each table's folder.

    ``options`` are those of :func:`plan` (the fields of :class:`ReproduceSpec`).
    Returns one :class:`TableResult` per table (its folder, its runs, its rows and files).
    A row that diverges is recorded as diverged and the others go on; Ctrl-C stops at
    once with every completed epoch saved (calling again continues).
    """
    spec = ReproduceSpec(table, out, **options)
    echo = echo or (lambda line: tqdm.write(line, file=sys.stderr))
    planned = _plan(spec)
    command = spec.command()
    check_data(planned)
    total = sum(p.remaining for p in planned)
    results = []
    bar = tqdm(total=total, unit="epoch", desc="reproduce", disable=not progress, dynamic_ncols=True,
               smoothing=0, file=sys.stderr, position=0)
    with bar:
        say = (lambda line: tqdm.write(line, file=sys.stderr)) if progress else echo
        for t in _unique_tables(planned):
            mine = [p for p in planned if p.table is t]
            for p in mine:
                index = planned.index(p) + 1
                say(f"[{index}/{len(planned)}] {p.name}: {p.describe()} -> {p.path}")
                if p.remaining:
                    _run_one(p, bar, say, echo, progress, spec.device)
            results.append(_write_table(t, Path(spec.out), spec.epochs, command, spec.overrides, mine))
            say(f"{t.name}: {results[-1].files['report']}")
    return results


def _unique_tables(planned: list[PlannedRun]) -> list[PaperTable]:
    seen: list[PaperTable] = []
    for p in planned:
        if p.table not in seen:
            seen.append(p.table)
    return seen


def _run_one(p: PlannedRun, bar, say, echo, progress: bool, device: str | None) -> None:
    _write_marker(p)
    execute(p, bar=bar, say=say, echo=echo, progress=progress, device=device,
            name=f"{p.row.id} seed {p.seed}", short=f"{p.table.name} {p.row.id} s{p.seed}")


def machine_info(device: str = "auto") -> dict[str, Any]:
    """CPU model, GPU name (when the run uses one), Python and OS: for the report's machine section."""
    machine = describe_machine(device)
    return {key: machine[key] for key in ("cpu", "python", "os", "gpu") if key in machine}


def _write_marker(p: PlannedRun) -> None:
    """reproduction.json: which table and row this run is, the paper's numbers, and a log of sessions."""
    run = RunDir(p.path)
    p.path.mkdir(parents=True, exist_ok=True)
    marker = run.read_marker() or {}
    machine = machine_info(p.config.device)
    marker.update({
        "table": p.table.name, "table_number": p.table.number, "table_title": p.table.title,
        "row": p.row.id, "label": p.row.label, "paper_f1": p.row.paper_f1, "paper_epoch": p.row.paper_epoch,
        "seed": p.seed, "machine": machine,
    })
    marker.setdefault("sessions", []).append({
        "time": _dt.datetime.now().isoformat(timespec="seconds"), "action": p.action, "from_epoch": p.done,
        "to_epoch": p.epochs, "evoprop": evoprop.__version__, **machine,
    })
    run.write_marker(marker)


def _write_table(t: PaperTable, out: Path, epochs: int, command: str, overrides, mine) -> TableResult:
    folder = out / t.name
    records = [load_run(path, max_epochs=epochs) for path in find_run_dirs([folder]) if RunDir(path).has_marker()]
    records = [r for r in records if (r.reproduction or {}).get("table") == t.name]
    notes = []
    if overrides:
        notes.append("Settings changed for every row through the Python API (not the paper's): "
                     + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ".")
    done = {p.path.resolve() for p in mine}
    others = [r for r in records if r.path.resolve() not in done]
    if others:
        notes.append(f"{len(others)} run director{'ies' if len(others) > 1 else 'y'} of earlier invocations "
                     f"under {folder} are included (see Runs).")
    groups = group_runs(records, references=paper_references())
    baseline = next((g for g in groups if g.row_id == t.baseline), None)
    written = write_report(records, folder, table=t.reference(), epochs=epochs, command=command, notes=notes, groups=groups,
                           baseline=baseline if len(groups) > 1 else None)
    return TableResult(table=t, dir=folder, runs=mine, rows=written["rows"], files=written["files"])
