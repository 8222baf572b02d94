"""``evoprop graduated``: the same setting trained under several schedules, compared by F1 and δ.

Seed 003 (Sato & Iiduka 2023): SGD smooths the loss by δ = η C / √b, and shrinking δ stage
by stage — by lowering η, growing b, or both — is graduated optimization done implicitly.
:func:`compare_schedules` trains one run per schedule (by default ``constant``, ``lr-decay``,
``batch-growth`` and ``hybrid``, see :mod:`evoprop.train.schedules`), each an ordinary run
directory ``OUT/<schedule>/`` with C measured and δ logged per epoch, then writes

    OUT/table.csv      one row per schedule: schedule, best_test_f1, val_selected_test_f1,
                       seconds, ..., then delta_stageK, noise_c_stageK, lr_stageK, batch_size_stageK
    OUT/table.md       the same as a Markdown table, δ per stage as a sequence
    OUT/graduated.png  test F1, δ, learning rate and batch size per epoch, one line per schedule

Running the same call again continues: a finished run is not rerun, an interrupted one
resumes from its last completed epoch, a shorter one is extended; a run directory holding
other settings is an error (choose another ``out``).

The paper's setting is :data:`PAPER_PRESET` (ResNet-18 on CIFAR-10, 200 epochs, lr 0.1,
batch 32, δ cut by 1/√2 every 40 epochs): hours on a GPU. :data:`DEFAULTS` keep its lr, batch
size and γ for the MLPs that run on a CPU.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evoprop.config import TrainConfig
from evoprop.errors import ConfigError, EvopropError, TrainingDiverged
from evoprop.report.schedule_figures import schedule_figure
from evoprop.report.tables import fmt_f1, fmt_seconds, load_run
from evoprop.runs import RunDir, run_training
from evoprop.runs.launch import resolve_config
from evoprop.runs.plan import plan_run
from evoprop.train.schedules import DEFAULT_GAMMA, GRADUATED, SCHEDULES, stage_records

#: The comparison's own defaults on top of TrainConfig's: the paper's lr, batch size and stage count.
DEFAULTS: dict[str, Any] = {"lr": 0.1, "batch_size": 32, "epochs": 20, "optimizer": "sgd"}

#: The paper's reference setting (Sato & Iiduka 2023): ResNet-18 on CIFAR-10 (RGB, the official split),
#: SGD from lr 0.1 and batch 32, 200 epochs in 5 stages of 40, δ × 1/√2 per stage.
PAPER_PRESET: dict[str, Any] = {
    "dataset": "cifar10", "split": "official", "model": "resnet18", "resnet_width": 64, "optimizer": "sgd",
    "lr": 0.1, "batch_size": 32, "epochs": 200, "stage_epochs": 40, "gamma": 1 / math.sqrt(2),
}
PRESETS = {"paper": PAPER_PRESET}

FIGURE, TABLE_CSV, TABLE_MD = "graduated.png", "table.csv", "table.md"
#: table.csv's first columns, then the per-stage ones.
CSV_HEAD = ("schedule", "best_test_f1", "val_selected_test_f1", "seconds", "best_epoch", "val_selected_epoch",
            "final_test_f1", "epochs", "status", "lr", "batch_size", "gamma", "stage_epochs", "run_dir")
PER_STAGE = ("delta", "noise_c", "lr", "batch_size")


@dataclass
class ScheduleRow:
    """One schedule's results: headline numbers and its stages (lr, batch size, C, δ at each stage start)."""

    schedule: str
    values: dict[str, Any]
    stages: list[dict]
    history: list[dict]


@dataclass
class Comparison:
    out: Path
    rows: list[ScheduleRow]
    files: dict[str, Path]


def parse_schedules(schedules) -> list[str]:
    """'constant,lr-decay' or a list -> checked, duplicate-free names (default: the four of Sato & Iiduka 2023)."""
    if not schedules:
        return list(GRADUATED)
    if isinstance(schedules, str):
        schedules = [schedules]
    names = [part.strip() for item in schedules for part in str(item).split(",") if part.strip()]
    unknown = [n for n in names if n not in SCHEDULES]
    if unknown:
        raise ConfigError(f"unknown schedule(s) {', '.join(unknown)}; valid: {', '.join(SCHEDULES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"schedules listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return names


def schedule_config(base: TrainConfig, schedule: str) -> TrainConfig:
    """``base`` under ``schedule``: gamma only for the schedules that take one, milestones only for step."""
    return dataclasses.replace(
        base, schedule=schedule,
        gamma=base.gamma if schedule in DEFAULT_GAMMA else None,
        milestones=list(base.milestones) if schedule == "step" and base.milestones else None,
    )


def compare_schedules(
    base: TrainConfig,
    out: str | Path,
    *,
    schedules=None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Comparison:
    """Train ``base`` once per schedule into ``out/<schedule>/`` and write the table and the figure."""
    echo = echo or (lambda line: None)
    names = parse_schedules(schedules)
    if base.method == "es":
        raise ConfigError("method es has no learning rate or batch size to schedule; use gradient or hybrid")
    out = Path(out)
    # every setting checked, and every existing run directory matched, before anything runs
    planned = []
    for name in names:
        config = resolve_config(schedule_config(base, name))
        planned.append((name, config, plan_run(out / name, config)))
    for i, (name, config, plan) in enumerate(planned, start=1):
        path = out / name
        echo(f"[{i}/{len(planned)}] {name}: {plan.describe()}")
        try:
            if plan.action == "new":
                run_training(config, out=path, progress=progress, echo=echo)
            elif plan.action in ("resume", "extend"):
                run_training(resume=path, epochs=config.epochs, progress=progress, echo=echo)
        except TrainingDiverged as exc:
            echo(f"  {name} diverged: {exc}; the table shows it as diverged")
    rows = [_row(name, out / name, config.epochs) for name, config, _ in planned]
    files = write_comparison(rows, out, title=_title(planned[0][1]), note=_note(rows))
    return Comparison(out=out, rows=rows, files=files)


def _row(name: str, path: Path, epochs: int) -> ScheduleRow:
    if not RunDir(path).has_config():
        raise EvopropError(f"{path} holds no run: the {name} run stopped before it started")
    record = load_run(path, max_epochs=epochs)
    h, cfg = record.headline, record.config
    values = {
        "schedule": name,
        "best_test_f1": h.get("best_test_f1"),
        "val_selected_test_f1": h.get("val_selected_test_f1"),
        "seconds": h.get("seconds"),
        "best_epoch": h.get("best_epoch"),
        "val_selected_epoch": h.get("val_selected_epoch"),
        "final_test_f1": h.get("final_test_f1"),
        "epochs": h.get("epochs"),
        "status": record.status,
        "lr": cfg.get("lr"),
        "batch_size": cfg.get("batch_size"),
        "gamma": cfg.get("gamma"),
        "stage_epochs": cfg.get("stage_epochs"),
        "run_dir": str(path),
    }
    return ScheduleRow(name, values, stage_records(record.history), record.history)


def write_comparison(rows: list[ScheduleRow], out: str | Path, *, title: str = "", note: str | None = None) -> dict:
    """table.csv, table.md and graduated.png of ``rows`` in ``out``; returns {name: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"table_csv": out / TABLE_CSV, "table_md": out / TABLE_MD, "figure": out / FIGURE}
    n_stages = max((len(r.stages) for r in rows), default=0)
    columns = list(CSV_HEAD) + [f"{key}_stage{s}" for key in PER_STAGE for s in range(1, n_stages + 1)]
    with open(files["table_csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            cells = dict(r.values)
            for st in r.stages:
                for key in PER_STAGE:
                    cells[f"{key}_stage{st['stage']}"] = st.get(key)
            writer.writerow([_cell(cells.get(c)) for c in columns])
    files["table_md"].write_text(markdown_table(rows, title, note))
    starts = sorted({st["first_epoch"] for r in rows for st in r.stages})
    schedule_figure([(r.schedule, r.history) for r in rows], files["figure"], title, note, stage_starts=starts)
    return files


def markdown_table(rows: list[ScheduleRow], title: str = "", note: str | None = None) -> str:
    """One line per schedule: F1 (paper's and honest protocol), time, and lr, b, C and δ per stage."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| schedule | best test F1 (epoch) | val-selected test F1 (epoch) | final test F1 | time | "
              "δ per stage | C per stage | lr per stage | batch per stage |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r.values
        status = "" if v["status"] == "completed" else f" ({v['status']})"

        def seq(key: str, fmt: str) -> str:
            return " → ".join(format(st[key], fmt) if st.get(key) is not None else "—" for st in r.stages) or "—"

        lines.append(
            f"| {r.schedule}{status} | {fmt_f1(v['best_test_f1'])} ({v['best_epoch'] or '—'}) "
            f"| {fmt_f1(v['val_selected_test_f1'])} ({v['val_selected_epoch'] or '—'}) "
            f"| {fmt_f1(v['final_test_f1'])} | {fmt_seconds(v['seconds'])} "
            f"| {seq('delta', '.3g')} | {seq('noise_c', '.3g')} | {seq('lr', '.3g')} | {seq('batch_size', 'd')} |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _title(config: TrainConfig) -> str:
    model = (f"ResNet-18 (width {config.resnet_width})" if config.model == "resnet18"
             else f"MLP depth {config.depth}" + (f" width {config.width}" if config.depth > 1 else ""))
    stages = f"stages of {config.stage_epochs} epoch{'' if config.stage_epochs == 1 else 's'}"
    gamma = f", γ {config.gamma:.4g}" if config.gamma is not None else ""
    return (f"{config.dataset} {model}, {config.optimizer} lr {config.lr:g} batch {config.batch_size}, "
            f"{config.epochs} epochs in {stages}{gamma}")


def _note(rows: list[ScheduleRow]) -> str | None:
    for r in rows:
        if r.values["run_dir"]:
            run = RunDir(r.values["run_dir"])
            if run.has_summary():
                data = run.read_summary()
                parts = [f"machine: {data.get('machine')}"] if data.get("machine") else []
                if data.get("dataset_note"):
                    parts.append(f"data: {data['dataset_note']}")
                return "; ".join(parts) or None
    return None
