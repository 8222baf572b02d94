"""A comparison folder: table.md, table.csv, f1.png, loss.png and report.md, from run records.

``report.md`` embeds the table and both figures and states what produced them: the
command, every row's settings (with what ``auto`` resolved to), the data (and the note on
a non-official data file, e.g. the JPEG-decoded CIFAR-10 reconstruction), the protocols,
and the machine(s) the runs ran on as their summaries record it.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import evoprop
from evoprop.errors import EvopropError
from evoprop.paths import make_folder
from evoprop.report.figures import f1_figure, loss_figure
from evoprop.report.schedule_figures import schedule_figure
from evoprop.report.tables import (
    Group,
    References,
    RunRecord,
    TableReference,
    TableRow,
    check_target_f1,
    find_group,
    fmt_f1,
    fmt_seconds,
    group_runs,
    load_runs,
    markdown_section,
    table_rows,
    write_csv,
    write_markdown,
)

FILES = {"table_md": "table.md", "table_csv": "table.csv", "f1_figure": "f1.png", "loss_figure": "loss.png",
         "report": "report.md"}


def write_report(
    records: list[RunRecord],
    out: str | Path,
    *,
    title: str | None = None,
    table: TableReference | None = None,
    references: References | None = None,
    epochs: int | None = None,
    command: str | None = None,
    notes: list[str] | None = None,
    by_run: bool = False,
    groups: list[Group] | None = None,
    target_f1: float | None = None,
    baseline: Group | None = None,
) -> dict[str, Any]:
    """Write the comparison of ``records`` into ``out``; return {"rows": [...], "files": {name: path}}.

    ``table`` (a :class:`~evoprop.report.tables.TableReference`) titles the report and adds its
    reading notes [default: the one of ``references`` that every record reproduces, if any];
    ``epochs`` says how many epochs of each run were read.
    ``groups``: the rows, when the caller groups the records itself (``evoprop compare``: one
    per arm) [default: :func:`~evoprop.report.tables.group_runs`]; ``target_f1`` and
    ``baseline`` (one of the groups) as in :func:`~evoprop.report.tables.table_rows`.
    """
    if not records:
        raise EvopropError("no runs to report on")
    out = Path(out)
    make_folder(out, f"report folder {out}")
    if table is None:
        table = _common_table(records, references or {})
    if groups is None:
        groups = group_runs(records, by_run=by_run, references=references)
    rows = table_rows(groups, target_f1=target_f1, baseline=baseline)
    if title is None:
        title = (f"Table {table.number}: {table.title}" if table is not None
                 else f"Comparison of {len(records)} run{'s' if len(records) > 1 else ''}")
    note = _data_note(rows)
    files = {name: out / fname for name, fname in FILES.items()}
    write_markdown(rows, files["table_md"], title, epochs)
    write_csv(rows, files["table_csv"])
    f1_figure(groups, files["f1_figure"], f"{title}: test macro-F1 per epoch", note, target_f1=target_f1)
    loss_figure(groups, files["loss_figure"], f"{title}: loss per epoch", note)
    if _scheduled(records):  # runs with a schedule (Sato & Iiduka 2023): δ, lr and batch size per epoch too
        files["schedule_figure"] = schedule_figure([(g.label, g.records[0].history) for g in groups],
                                                   out / "schedule.png", f"{title}: schedules", note)
    files["report"].write_text(_document(title, rows, groups, records, table, epochs, command, notes or []))
    return {"title": title, "rows": rows, "groups": groups, "files": files}


def build_report(paths, out: str | Path = "report", *, title: str | None = None, epochs: int | None = None,
                 command: str | None = None, by_run: bool = False, target_f1: float | None = None,
                 baseline: str | None = None, references: References | None = None) -> dict[str, Any]:
    """``evoprop report``: read run directories (or folders holding them) and write the comparison.

    ``target_f1``: also epochs and seconds to reach it; ``baseline``: a method's label (as the
    table shows it): every other method paired with it seed by seed; ``references``: the published
    tables that reproductions among the runs rerun (``evoprop report`` passes the paper's,
    :func:`evoprop.experiments.paper_references`), for their titles, row order and notes.
    """
    if target_f1 is not None:
        check_target_f1(target_f1)
    records = load_runs(paths, max_epochs=epochs)
    groups = group_runs(records, by_run=by_run, references=references)
    base = find_group(groups, baseline) if baseline is not None else None
    return write_report(records, out, title=title, references=references, epochs=epochs, command=command,
                        groups=groups, target_f1=target_f1, baseline=base)


def _common_table(records: list[RunRecord], references: References) -> TableReference | None:
    names = {(r.reproduction or {}).get("table") for r in records}
    if len(names) == 1:
        name = names.pop()
        return references.get(name) if name else None
    return None


def _data_note(rows: list[TableRow]) -> str | None:
    notes = sorted({r["dataset_note"] for r in rows if r["dataset_note"]})
    return "Data: " + "; ".join(notes) if notes else None


def _scheduled(records: list[RunRecord]) -> bool:
    return any("delta" in h for r in records for h in r.history)


def _document(title, rows, groups, records, table, epochs, command, extra_notes) -> str:
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"# {title}", ""]
    lines.append(f"Written by evoprop {evoprop.__version__} on {when} from {len(records)} run "
                 f"director{'ies' if len(records) > 1 else 'y'}"
                 + (f", reading the first {epochs} epochs of each" if epochs else "") + ".")
    if command:
        lines += ["", "Produced by:", "", "```bash", command, "```"]
    if table is not None:
        lines += ["", f"The paper's Table {table.number} ({table.title}) rerun with evoprop: the paper's F1 and "
                  "convergence epoch beside ours under the paper's protocol and under an honest one."]
    lines += ["", markdown_section(rows, "Results", epochs, level=2).rstrip(), ""]
    lines += ["Δ vs paper: our best test F1 (the paper's protocol) minus the paper's; ⚠ marks a gap over 0.02.",
              "Time: wall seconds of training and evaluation of the epochs read (mean per seed).", ""]
    lines += ["## Figures", "", "![Test macro-F1 per epoch](f1.png)", "",
              "Test macro-F1 per epoch, one line per method (with several seeds: their mean, and a band from "
              "their minimum to their maximum); dotted: the paper's F1; dots: the epoch chosen on validation"
              + "".join(f"; dashed: the target F1 {t:g}" for t in {r["target_f1"] for r in rows} if t is not None)
              + ".", "",
              "![Loss per epoch](loss.png)", "",
              "Test loss and training loss per epoch (log scale). For gradient and hybrid rows the training loss "
              "is the mean mini-batch loss over the epoch; for ES-only rows it is the best candidate's loss on "
              "the generation's mini-batch.", ""]
    if _scheduled(records):
        lines += ["![Schedules per epoch](schedule.png)", "",
                  "Runs with a schedule: test macro-F1, smoothing degree δ = η·C/√b (C: the gradient noise measured "
                  "at each stage start), learning rate and batch size per epoch (the first seed of each row).", ""]
    lines += ["## Settings", "", _settings_table(groups), ""]
    if table is not None:
        lines += ["## How the paper's settings were read", ""]
        lines += [f"- {n}" for n in table.notes]
        lines.append("")
    if extra_notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in extra_notes] + [""]
    lines += ["## Data", ""] + _data_lines(records) + [""]
    lines += ["## Machine", ""] + _machine_lines(records) + [""]
    lines += ["## Runs", "", "| method | seed | status | epochs (read / in run) | best test F1 (epoch) | "
              "val-selected test F1 (epoch) | time | run directory |", "|---|---|---|---|---|---|---|---|"]
    for g in groups:
        for r in g.records:
            h = r.headline
            lines.append(
                f"| {g.label} | {r.seed} | {r.status} | {h.get('epochs') or 0} / {r.total_epochs} | "
                f"{fmt_f1(h.get('best_test_f1'))} ({h.get('best_epoch') or '—'}) | "
                f"{fmt_f1(h.get('val_selected_test_f1'))} ({h.get('val_selected_epoch') or '—'}) | "
                f"{fmt_seconds(h.get('seconds'))} | `{r.path}` |")
    lines.append("")
    return "\n".join(lines)


def _settings_table(groups) -> str:
    head = ["method", "training", "data (split; train / val / test)", "network", "init", "optimizer", "lr",
            "batch", "ES (strategy, P, ES batch, gens/epoch, σ0, options)", "val fraction", "limits"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for g in groups:
        c, s = g.records[0].config, g.records[0].summary
        method = c.get("method")
        sizes = (f"{s.get('train_size')} / {s.get('val_size')} / {s.get('test_size')}"
                 if s.get("train_size") is not None else "—")
        network = f"{c.get('depth')} layer{'s' if c.get('depth') != 1 else ''}" + (
            f", {c.get('width')} {c.get('activation')} units" if c.get("depth", 1) > 1 else "")
        if method == "gradient":
            es = "—"
        else:
            sigmas = sorted({r.config.get("sigma0") for r in g.records if r.config.get("sigma0") is not None})
            sigma = ", ".join(f"{v:.3g}" for v in sigmas) or "default"
            gens = c.get("generations_per_epoch") or ("1" if method == "hybrid" else "one per ES mini-batch")
            options = ", ".join(f"{k}={v}" for k, v in sorted((c.get("strategy_options") or {}).items()))
            combine = "sync" if c.get("sync_mean") else c.get("combine")
            es = (f"{c.get('strategy')}, P={c.get('popsize')}, {c.get('es_batch_size')}, {gens}, {sigma}"
                  + (f", {options}" if options else "")
                  + (f", combine {combine}" if method == "hybrid" and combine not in (None, "paper") else ""))
        limits = ", ".join(f"{k.removeprefix('limit_')} {c[k]}" for k in ("limit_train", "limit_test") if c.get(k))
        opt = "—" if method == "es" else c.get("optimizer") + (
            " " + str(c.get("optimizer_options")) if c.get("optimizer_options") else "")
        cells = [g.label, method, f"{c.get('dataset')} ({c.get('split')}; {sizes})", network, c.get("init"),
                 opt, "—" if method == "es" else f"{c.get('lr'):g}",
                 "—" if method == "es" else str(c.get("batch_size")), es, f"{c.get('val_fraction')}",
                 limits or "none"]
        out.append("| " + " | ".join(str(x) for x in cells) + " |")
    return "\n".join(out)


def _data_lines(records: list[RunRecord]) -> list[str]:
    lines = []
    for ds in sorted({r.config.get("dataset") for r in records}):
        notes = sorted({r.summary.get("dataset_note") for r in records
                        if r.config.get("dataset") == ds and r.summary.get("dataset_note")})
        text = f"- {ds}: " + ("; ".join(notes) + "." if notes else "the official files (the run recorded no note on its source).")
        if ds and ds.startswith("cifar") and notes:
            text += " Every CIFAR-10 number here comes from that reconstruction, not the official archive."
        lines.append(text)
    return lines


def _machine_lines(records: list[RunRecord]) -> list[str]:
    seen: dict[tuple, int] = {}
    for r in records:
        s = r.summary
        marker = r.reproduction or {}
        host = marker.get("machine") or {}
        key = (s.get("device"), host.get("gpu"), host.get("cpu") or s.get("machine"), s.get("threads"),
               s.get("torch"), s.get("evoprop"))
        seen[key] = seen.get(key, 0) + 1
    lines = []
    for (device, gpu, cpu, threads, torch_v, evo), n in seen.items():
        parts = [f"device {device or '?'}"]
        if gpu:
            parts.append(f"GPU {gpu}")
        parts.append(f"CPU {cpu or '?'}")
        if threads:
            parts.append(f"{threads} torch threads")
        parts.append(f"torch {torch_v or '?'}")
        parts.append(f"evoprop {evo or '?'}")
        lines.append(f"- {', '.join(parts)} ({n} run{'s' if n > 1 else ''})")
    return lines
