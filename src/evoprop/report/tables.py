"""From run directories to a comparison table: one row per method, as Markdown and CSV.

Any run directory can be read (``evoprop train`` runs as much as reproductions). Runs
that differ only in their seed are one row, averaged over seeds. Two runs of one row with
the same seed are not two seeds (a rerun, or the same run on another device): one of them
is counted (the one with the most epochs, then the newest) and a note names the others,
so that "± std over seeds" is never a spread of repeats. A reproduction's run
directory also holds ``reproduction.json`` (its table, row id and the paper's numbers),
so its row carries the paper's F1 and convergence epoch beside ours.

The two protocols, per run, then averaged over the row's runs:

* **paper's protocol**: the best test macro-F1 over the epochs read and the first epoch
  that reached it (the paper's "F1-measure" and "convergence epoch": the epoch is
  chosen on the test split, which flatters every method);
* **honest protocol**: the test macro-F1 at the epoch with the best validation macro-F1
  (the epoch chosen on a split carved from the training data, the test split read once).

With several seeds a number is "mean ± std", std the *sample* standard deviation
(n − 1 in the denominator); epochs are means over seeds. ``max_epochs`` reads only the
first N epochs of every run, so a table of N epochs can be built from longer runs.

Two optional parts, used by ``evoprop compare`` (and open to any caller of :func:`table_rows`):
``target_f1`` adds the epochs and seconds each run took to first reach a test macro-F1
(mean over the seeds that reached it), and ``baseline`` (one of the groups) adds a paired
comparison with it: per seed the difference in the honest number (val-selected test F1; the
best test F1 when the runs have no validation split), its mean with a t-based 95 %
interval, and the seeds won (:mod:`evoprop.report.stats`); and the same in epochs, for the
paper's convergence epoch and, with a target, the epochs to reach it (how much sooner).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from evoprop.config import TrainConfig, applies, applies_to_method
from evoprop.errors import ConfigError, EvopropError
from evoprop.report.stats import paired_difference
from evoprop.train.summary import summarize, time_to_target
from evoprop.models import model_tag
from evoprop.runs.labels import method_label
from evoprop.runs.rundir import CONFIG, METRICS, RunDir, find_runs, is_run

#: The status of an interrupted run whose checkpoint.pt is not there (e.g. run data committed without it):
#: readable, but not continuable (:meth:`RunDir.check_continuable`).
NO_CHECKPOINT = "stopped without a checkpoint"

#: Settings that do not change what a run computes (or only name where it runs), or that differ between
#: the runs of one method (seed, epochs, the resolved sigma0): runs differing only in these are the same
#: method. From each field's metadata (``affects_results``, ``identifies_method``).
NOT_A_SETTING = tuple(name for name, s in TrainConfig.settings().items()
                      if not (s.affects_results and s.identifies_method))

#: table.csv's columns: the required ones first, in this order, then the details.
CSV_COLUMNS = (
    "method", "paper_f1", "paper_epoch", "best_test_f1", "best_epoch", "val_selected_test_f1", "seconds", "epochs",
    "row_id", "table", "diff_vs_paper", "best_test_f1_std", "val_selected_test_f1_std", "val_selected_epoch",
    "final_test_f1", "seconds_per_epoch", "seeds", "runs", "training", "optimizer", "lr", "batch_size", "strategy",
    "popsize", "es_options", "best_epoch_std", "dataset", "dataset_note", "device", "status", "run_dirs",
    "duplicate_run_dirs",
)
#: Appended to table.csv when a target F1 is given.
TARGET_COLUMNS = ("final_test_f1_std", "seconds_per_epoch_std", "target_f1", "epochs_to_target",
                  "epochs_to_target_std", "seconds_to_target", "seconds_to_target_std", "reached_target")
#: How much sooner a row converges than the baseline, seed by seed, for the paper's convergence epoch
#: (``best_epoch``) and, with a target, for ``epochs_to_target``: ``best_epoch_diff`` etc. in table.csv.
PAIRED_EPOCH_PARTS = ("diff", "ci_low", "ci_high", "sooner", "later", "paired")
#: Appended to table.csv when a baseline is given.
PAIRED_COLUMNS = ("baseline", "paired_metric", "diff_vs_baseline", "diff_ci_low", "diff_ci_high", "seeds_won",
                  "seeds_lost", "seeds_paired", "per_seed_diff",
                  *(f"{k}_{c}" for k in ("best_epoch", "epochs_to_target") for c in PAIRED_EPOCH_PARTS))


@dataclass(frozen=True)
class TableReference:
    """A published table that reproductions rerun, as a report shows it: given by the caller
    (:mod:`evoprop.experiments` for the paper's tables), never looked up here.

    A reproduction's run names its table and row in its marker (with the paper's numbers);
    the reference adds the table's number, title, row order and the notes on how it was read.
    """

    name: str
    number: int
    title: str
    row_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()


#: Published tables by name (:attr:`TableReference.name`).
References = Mapping[str, TableReference]


@dataclass
class RunRecord:
    """One run directory read back: its settings, summary, per-epoch history and headline numbers."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict]
    reproduction: dict[str, Any] | None
    headline: dict[str, Any]
    status: str
    total_epochs: int  # epochs in the run directory (history may be truncated to max_epochs)

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")


@dataclass
class Group:
    """Runs of one method (e.g. the seeds of one reproduction row): one counted run per seed in ``records``."""

    key: tuple
    label: str
    records: list[RunRecord] = field(default_factory=list)
    #: runs left out because another run of the group has their seed (see :func:`_one_run_per_seed`)
    duplicates: list[RunRecord] = field(default_factory=list)
    table: str | None = None
    row_id: str | None = None
    paper_f1: float | None = None
    paper_epoch: int | None = None
    order: tuple = ()


@dataclass
class TableRow:
    """One line of table.md / table.csv: a group's numbers, aggregated over its runs."""

    method: str
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


# reading ------------------------------------------------------------------

def is_run_dir(path: Path) -> bool:
    """A folder with config.yaml and at least one of metrics.jsonl, summary.json, checkpoint.pt."""
    return is_run(path)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Each path is a run directory or a folder searched (recursively) for run directories."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise EvopropError(f"{path} does not exist; give run directories (folders with {CONFIG} and "
                               f"{METRICS}) or folders that hold them")
        runs = find_runs(path)
        if not runs:
            raise EvopropError(f"{path} is not a run directory and holds none (a run directory has {CONFIG} "
                               f"and {METRICS}, as 'evoprop train' and 'evoprop reproduce' write them)")
        found.extend(runs)
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p.resolve(), None)
    return list(unique)


def load_run(path: str | Path, max_epochs: int | None = None) -> RunRecord:
    """Read one run directory; ``max_epochs`` keeps only its first N epochs."""
    run = RunDir(path)
    try:
        config = run.read_config().to_dict()
    except EvopropError as exc:
        raise EvopropError(f"{run.path} is not a readable run directory ({exc})") from None
    summary = run.summary_or_empty()  # one-line errors
    history = run.read_metrics()
    marker = run.read_marker()  # a damaged marker: the run is still read, without the paper's numbers
    total = len(history)
    if max_epochs is not None:
        history = history[:max_epochs]
    status = run.status(summary) if summary else ("interrupted" if total else "not started")
    status = status if isinstance(status, str) else "unknown"
    if status == "interrupted" and total and not run.has_checkpoint():
        status = NO_CHECKPOINT
    if max_epochs is not None and total > max_epochs:
        status = "completed"  # the window read is complete, whatever came after it
    headline = summarize(history)
    headline["seconds"] = sum(h.get("seconds", 0.0) for h in history)
    headline["seconds_per_epoch"] = headline["seconds"] / len(history) if history else None
    return RunRecord(path=run.path, config=config, summary=summary, history=history, reproduction=marker,
                     headline=headline, status=status, total_epochs=total)


def load_runs(paths: Iterable[str | Path], max_epochs: int | None = None) -> list[RunRecord]:
    """Every run directory in ``paths`` (see :func:`find_run_dirs`), read."""
    return [load_run(p, max_epochs) for p in find_run_dirs(paths)]


# grouping -----------------------------------------------------------------

def es_options(config: dict) -> str:
    """What else shapes the ES beside strategy and P: gens/epoch, strategy options, a non-paper combine rule.

    E.g. 'one pass/epoch, faithful=False' (the corrected CMA-ES rows) or 'combine elitist'; '' for none
    (and for gradient runs)."""
    method = config.get("method")
    if method not in ("es", "hybrid"):
        return ""
    parts = []
    gens = config.get("generations_per_epoch")
    if method == "es":
        parts.append("one pass/epoch" if gens is None else f"{gens} gen/epoch")
    elif gens not in (None, 1):
        parts.append(f"{gens} gen/epoch")
    parts += [f"{k}={v}" for k, v in sorted((config.get("strategy_options") or {}).items())]
    combine = "sync" if config.get("sync_mean") else config.get("combine")
    if method == "hybrid" and combine not in (None, "paper"):
        parts.append(f"combine {combine}")
    if config.get("es_loss") not in (None, "nll"):
        parts.append(f"ES loss {config.get('es_loss')}")
    if config.get("es_weight_decay"):
        parts.append(f"ES fitness + L2 {config.get('es_weight_decay'):g}")
    return ", ".join(parts)


def network(config: dict) -> str:
    """The data set and network of a run, as a label prefix: "mnist d10", "cifar10 resnet18"."""
    tag = model_tag(config.get("model", "mlp"), config.get("depth"), config.get("resnet_width", 64))
    return f"{config.get('dataset')} {tag}"


def relevant_settings(config: dict) -> dict[str, Any]:
    """The settings that shape what a run computes: not NOT_A_SETTING, and not those its method or
    depth ignores (a gradient run's popsize, an ES-only run's learning rate, a 1-layer net's width)."""
    return {k: v for k, v in config.items() if k not in NOT_A_SETTING and (k not in _FIELDS or applies(k, config))}


_FIELDS = set(TrainConfig.field_names())


def _setting_key(config: dict) -> str:
    return json.dumps(relevant_settings(config), sort_keys=True, default=str)


def group_runs(records: list[RunRecord], *, by_run: bool = False,
               references: References | None = None) -> list[Group]:
    """Runs of the same method (same settings but the seed) as one group; ``by_run``: a group per run.

    A reproduction's group is labelled with its row's name (e.g. "hybrid (SGD)"); other runs
    with their method (e.g. "gradient adam lr 0.001"), prefixed with data set and depth when
    the runs do not share them, and suffixed with the settings that set apart groups whose
    labels would otherwise be equal. ``references``: the published tables, for their row order.
    """
    references = references or {}
    groups: dict[tuple, Group] = {}
    for index, rec in enumerate(records):
        marker = rec.reproduction or {}
        table, row_id = marker.get("table"), marker.get("row")
        key = (table, row_id, _setting_key(rec.config)) + ((str(rec.path),) if by_run else ())
        group = groups.get(key)
        if group is None:
            if table and row_id:
                label = marker.get("label") or row_id
                known = references.get(table)
                row_pos = known.row_ids.index(row_id) if known is not None and row_id in known.row_ids else 99
                order = (0, int(marker.get("table_number") or (known.number if known else 99)), row_pos, index)
            else:
                label = method_label(rec.config)
                order = (1, 0, 0, index)
            group = groups[key] = Group(key=key, label=label, table=table, row_id=row_id,
                                        paper_f1=marker.get("paper_f1"), paper_epoch=marker.get("paper_epoch"),
                                        order=order)
        group.records.append(rec)
    out = sorted(groups.values(), key=lambda g: g.order)
    for g in out:
        _one_run_per_seed(g)
    _disambiguate(out, by_run)
    return out


def _one_run_per_seed(group: Group) -> None:
    """Keep one run per seed in ``group.records`` (the most epochs, then completed, then the newest
    files); move the others to ``group.duplicates``: a repeat of a seed is not another sample."""
    by_seed: dict[Any, list[RunRecord]] = {}
    for rec in group.records:
        by_seed.setdefault(json.dumps(rec.seed), []).append(rec)
    kept = []
    for same in by_seed.values():
        same.sort(key=lambda r: (len(r.history), r.status == "completed", RunDir(r.path).newest_change()), reverse=True)
        kept.append(same[0])
        group.duplicates.extend(same[1:])
    group.records = [r for r in group.records if any(r is k for k in kept)]


def _disambiguate(groups: list[Group], by_run: bool) -> None:
    tables = {g.table for g in groups if g.table}
    if len(tables) > 1:
        for g in groups:
            if g.table:
                g.label = f"{g.table} {g.label}"
    plain = [g for g in groups if not g.table]
    places = {network(g.records[0].config) for g in plain}
    if len(places) > 1 or (plain and len(plain) < len(groups)):
        for g in plain:
            g.label = f"{network(g.records[0].config)} {g.label}"
    # equal labels: append the settings in which the groups differ
    by_label: dict[str, list[Group]] = {}
    for g in groups:
        by_label.setdefault(g.label, []).append(g)
    for same in by_label.values():
        if len(same) < 2:
            continue
        configs = [g.records[0].config for g in same]
        relevant = [relevant_settings(c) for c in configs]
        keys = [k for k in configs[0] if any(k in r for r in relevant)
                and len({json.dumps(r.get(k), default=str) for r in relevant}) > 1]
        for g, c in zip(same, configs):
            extra = ", ".join(f"{k}={c.get(k)}" for k in keys if c.get(k) is not None)
            if by_run:
                extra = ", ".join(filter(None, [extra, f"seed {c.get('seed')}", g.records[0].path.name]))
            if extra:
                g.label = f"{g.label} ({extra})"


# aggregating --------------------------------------------------------------

def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for one value) of the values that are not None."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def _mean_epoch(values: list[int | None]) -> float | int | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    return int(mean) if mean == int(mean) else round(mean, 1)


def check_target_f1(value: Any, name: str = "target_f1") -> float:
    """A target test macro-F1 must lie in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be a macro-F1 in (0, 1], got {value!r}")
    return float(value)


def find_group(groups: list[Group], label: str) -> Group:
    """The group labelled ``label`` (a baseline named by the user)."""
    for g in groups:
        if g.label == label:
            return g
    raise ConfigError(f"unknown baseline {label!r}; the methods are: {', '.join(repr(g.label) for g in groups)}")


def paired_metric(groups: list[Group]) -> str:
    """The number a paired comparison is made on: the honest one when every run has a validation split."""
    honest = all(r.headline.get("val_selected_test_f1") is not None for g in groups for r in g.records)
    return "val_selected_test_f1" if honest else "best_test_f1"


def _per_seed(group: Group, of: Callable[[RunRecord], Any]) -> dict[int, Any]:
    """``of(run)`` for each seed of the group (one run per seed: :func:`_one_run_per_seed`)."""
    out: dict[int, Any] = {}
    for r in group.records:
        out.setdefault(r.seed, of(r))
    return out


def _headline(key: str) -> Callable[[RunRecord], Any]:
    return lambda r: r.headline.get(key)


def _paired_epochs(key: str, group: Group, baseline: Group, of: Callable[[RunRecord], Any]) -> dict[str, Any]:
    """Group − baseline in epochs over the seeds where both have a number (fewer epochs: sooner)."""
    p = paired_difference(_per_seed(group, of), _per_seed(baseline, of))
    return dict(zip((f"{key}_{c}" for c in PAIRED_EPOCH_PARTS), (p.mean, p.low, p.high, p.lost, p.won, p.n)))


def _target_values(recs: list[RunRecord], target_f1: float) -> dict[str, Any]:
    reached = [time_to_target(r.history, target_f1) for r in recs]
    epochs, epochs_sd = mean_std([t["epochs_to_target"] for t in reached])
    seconds, seconds_sd = mean_std([t["seconds_to_target"] for t in reached])
    return {"target_f1": target_f1, "epochs_to_target": epochs, "epochs_to_target_std": epochs_sd,
            "seconds_to_target": seconds, "seconds_to_target_std": seconds_sd,
            "reached_target": sum(t["epochs_to_target"] is not None for t in reached)}


def _paired_values(group: Group, baseline: Group, metric: str, target_f1: float | None) -> dict[str, Any]:
    values: dict[str, Any] = {"baseline": baseline.label, "paired_metric": metric}
    if group is baseline:
        return values
    values.update(_paired_epochs("best_epoch", group, baseline, _headline("best_epoch")))
    if target_f1 is not None:
        values.update(_paired_epochs("epochs_to_target", group, baseline,
                                     lambda r: time_to_target(r.history, target_f1)["epochs_to_target"]))
    p = paired_difference(_per_seed(group, _headline(metric)), _per_seed(baseline, _headline(metric)))
    values.update({"diff_vs_baseline": p.mean, "diff_ci_low": p.low, "diff_ci_high": p.high, "seeds_won": p.won,
                   "seeds_lost": p.lost, "seeds_paired": p.n,
                   "per_seed_diff": ";".join(f"{s}:{d:+.4f}" for s, d in zip(p.seeds, p.diffs))})
    return values


def table_rows(groups: list[Group], *, target_f1: float | None = None,
               baseline: Group | None = None) -> list[TableRow]:
    """Aggregate every group into one :class:`TableRow` (numbers averaged over its runs).

    ``target_f1``: also the epochs and seconds to first reach it; ``baseline`` (one of ``groups``):
    also the paired comparison of every group with it, seed by seed.
    """
    metric = paired_metric(groups) if baseline is not None else None
    rows = []
    for g in groups:
        recs = g.records
        heads = [r.headline for r in recs]
        cfg = recs[0].config
        best, best_sd = mean_std([h.get("best_test_f1") for h in heads])
        honest, honest_sd = mean_std([h.get("val_selected_test_f1") for h in heads])
        final, final_sd = mean_std([h.get("final_test_f1") for h in heads])
        seconds, _ = mean_std([h.get("seconds") if h.get("epochs") else None for h in heads])
        spe, spe_sd = mean_std([h.get("seconds_per_epoch") for h in heads])
        epochs = [h.get("epochs") or 0 for h in heads]
        method = cfg.get("method")
        values = {
            "method": g.label,
            "row_id": g.row_id,
            "table": g.table,
            "paper_f1": g.paper_f1,
            "paper_epoch": g.paper_epoch,
            "best_test_f1": best,
            "best_test_f1_std": best_sd,
            "best_epoch": _mean_epoch([h.get("best_epoch") for h in heads]),
            "best_epoch_std": mean_std([h.get("best_epoch") for h in heads])[1],
            "diff_vs_paper": best - g.paper_f1 if best is not None and g.paper_f1 is not None else None,
            "val_selected_test_f1": honest,
            "val_selected_test_f1_std": honest_sd,
            "val_selected_epoch": _mean_epoch([h.get("val_selected_epoch") for h in heads]),
            "final_test_f1": final,
            "final_test_f1_std": final_sd,
            "seconds": seconds,
            "seconds_per_epoch": spe,
            "seconds_per_epoch_std": spe_sd,
            "epochs": min(epochs),
            "max_epochs": max(epochs),
            "seeds": ";".join(str(r.seed) for r in recs),
            "runs": len(recs),
            "training": method,
            **{name: cfg.get(name) if applies_to_method(name, method) else None
               for name in ("optimizer", "lr", "batch_size", "strategy", "popsize")},
            "es_options": es_options(cfg) or None,
            "dataset": cfg.get("dataset"),
            "dataset_note": next((r.summary.get("dataset_note") for r in recs if r.summary.get("dataset_note")), None),
            "device": ";".join(sorted({str(r.summary.get("device")) for r in recs if r.summary.get("device")})),
            "status": ";".join(sorted({r.status for r in recs})),
            "run_dirs": ";".join(str(r.path) for r in recs),
            "duplicate_run_dirs": ";".join(str(r.path) for r in g.duplicates),
        }
        if target_f1 is not None:
            values.update(_target_values(recs, target_f1))
        if baseline is not None:
            values.update(_paired_values(g, baseline, metric, target_f1))
        rows.append(TableRow(method=g.label, values=values))
    return rows


# writing ------------------------------------------------------------------

def csv_columns(rows: list[TableRow]) -> tuple[str, ...]:
    """CSV_COLUMNS, then TARGET_COLUMNS and PAIRED_COLUMNS where the rows have them."""
    columns = CSV_COLUMNS
    if any(r["target_f1"] is not None for r in rows):
        columns += TARGET_COLUMNS
    if any(r["baseline"] is not None for r in rows):
        columns += PAIRED_COLUMNS
    return columns


def write_csv(rows: list[TableRow], path: str | Path) -> Path:
    path = Path(path)
    columns = csv_columns(rows)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row[c] is None else _csv_value(row[c]) for c in columns])
    return path


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}" if not value.is_integer() or abs(value) < 1e15 else value
    return value


def fmt_f1(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def fmt_epoch(value: Any, std: float | None = None) -> str:
    """An epoch (a mean over seeds), with ' ± std' when given."""
    if value is None:
        return "—"
    return str(value) + (f" ± {std:.1f}" if std is not None else "")


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _es_cell(row: TableRow) -> str:
    if not row["strategy"]:
        return "—"
    return f"{row['strategy']} P={row['popsize']}" + (f" ({row['es_options']})" if row["es_options"] else "")


def _target_cells(row: TableRow) -> list[str]:
    """Epochs and time to the target F1: mean ± std over the seeds that reached it, '(k/n)' if not all did."""
    n, k = row["runs"], row["reached_target"] or 0
    if not k:
        return [f"not reached (0/{n})"] * 2
    share = "" if k == n else f" ({k}/{n})"
    epochs, epochs_sd = row["epochs_to_target"], row["epochs_to_target_std"]
    seconds, seconds_sd = row["seconds_to_target"], row["seconds_to_target_std"]
    return [f"{epochs:.1f}" + (f" ± {epochs_sd:.1f}" if epochs_sd is not None else "") + share,
            fmt_seconds(seconds) + (f" ± {fmt_seconds(seconds_sd)}" if seconds_sd is not None else "") + share]


def paired_table(rows: list[TableRow]) -> str:
    """Every row against the baseline, seed by seed: mean difference, its 95 % interval, seeds won/tied/lost."""
    base = next(r for r in rows if r["baseline"] is not None)
    metric = "val-selected test F1" if base["paired_metric"] == "val_selected_test_f1" else "best test F1"
    head = ["method", f"Δ {metric} vs {base['baseline']} (mean)", "95 % interval", "seeds won / tied / lost",
            "per seed (seed: Δ)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        if r.method == r["baseline"]:
            continue
        d, n = r["diff_vs_baseline"], r["seeds_paired"] or 0
        interval = "—" if r["diff_ci_low"] is None else f"[{r['diff_ci_low']:+.4f}, {r['diff_ci_high']:+.4f}]"
        record = "—" if not n else f"{r['seeds_won']} / {n - r['seeds_won'] - r['seeds_lost']} / {r['seeds_lost']}"
        per_seed = ", ".join(item.replace(":", ": ") for item in (r["per_seed_diff"] or "").split(";") if item)
        cells = [r.method, "—" if d is None else f"{d:+.4f}", interval, record, per_seed or "no common seed"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_epochs_table(rows: list[TableRow]) -> str:
    """Every row against the baseline in epochs: the paper's convergence epoch and, with a target, the epochs to it."""
    target = next((r["target_f1"] for r in rows if r["target_f1"] is not None), None)
    parts = [("best_epoch", "convergence epoch (paper's)")]
    if target is not None:
        parts.append(("epochs_to_target", f"epochs to F1 ≥ {target:g}"))
    head = ["method"]
    for _, name in parts:
        head += [f"Δ {name} (mean)", "95 % interval", "seeds sooner / same / later"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        if r.method == r["baseline"]:
            continue
        cells = [r.method]
        for key, _ in parts:
            d, low, n = r[f"{key}_diff"], r[f"{key}_ci_low"], r[f"{key}_paired"] or 0
            sooner, later = r[f"{key}_sooner"] or 0, r[f"{key}_later"] or 0
            cells += ["—" if d is None else f"{d:+.1f}",
                      "—" if low is None else f"[{low:+.1f}, {r[f'{key}_ci_high']:+.1f}]",
                      (("no common seed" if key == "best_epoch" else "no seed where both reached it") if not n
                       else f"{sooner} / {n - sooner - later} / {later}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[TableRow]) -> str:
    """The table as GitHub Markdown; paper and ES columns only when some row has them."""
    paper = any(r["paper_f1"] is not None for r in rows)
    es = any(r["strategy"] for r in rows)
    seeds = any(r["runs"] > 1 for r in rows)
    head = ["method"]
    if paper:
        head += ["paper F1", "paper epoch"]
    head += ["best test F1 (paper's protocol)", "epoch"]
    if paper:
        head += ["Δ vs paper"]
    head += ["val-selected test F1 (honest)", "epoch", "final test F1"]
    target = next((r["target_f1"] for r in rows if r["target_f1"] is not None), None)
    if target is not None:
        head += [f"epochs to F1 ≥ {target:g}", f"time to F1 ≥ {target:g}"]
    if es:
        head += ["ES (resolved)"]
    head += ["time" + (" per seed" if seeds else ""), "s/epoch", "epochs", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r.method]
        if paper:
            cells += [f"{r['paper_f1']:.3f}" if r["paper_f1"] is not None else "—",
                      fmt_epoch(r["paper_epoch"]) if r["paper_f1"] is not None else "—"]
        cells += [fmt_f1(r["best_test_f1"], r["best_test_f1_std"]), fmt_epoch(r["best_epoch"], r["best_epoch_std"])]
        if paper:
            d = r["diff_vs_paper"]
            cells += ["—" if d is None else f"{d:+.3f}" + (" ⚠" if abs(d) > 0.02 else "")]
        cells += [fmt_f1(r["val_selected_test_f1"], r["val_selected_test_f1_std"]), fmt_epoch(r["val_selected_epoch"]),
                  fmt_f1(r["final_test_f1"], r["final_test_f1_std"])]
        if target is not None:
            cells += _target_cells(r)
        if es:
            cells += [_es_cell(r)]
        spe = r["seconds_per_epoch"]
        cells += [fmt_seconds(r["seconds"]), "—" if spe is None else f"{spe:.2f}", _epochs_run(r),
                  r["seeds"].replace(";", ", ") or "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_notes(rows: list[TableRow], epochs: int | None = None) -> list[str]:
    """Lines that belong under the table: unfinished runs, data notes, far-off numbers, short runs."""
    notes = []
    for r in rows:
        bad = [s for s in r["status"].split(";") if s and s != "completed"]
        if bad:
            notes.append(f"{r.method}: {', '.join(bad)} after {_epochs_run(r)} epoch(s)"
                         + (" (a diverged run stops at its last finite epoch)" if "diverged" in bad else
                            " (its checkpoint.pt is not kept with it, so it cannot be continued, only rerun)"
                            if set(bad) == {NO_CHECKPOINT} else
                            " (to continue: the same 'evoprop reproduce' or 'evoprop compare' command again)"
                            if r["row_id"] else
                            " (to continue: 'evoprop train --resume RUN_DIR')"))
    for r in rows:
        if r["duplicate_run_dirs"]:
            left_out = r["duplicate_run_dirs"].split(";")
            notes.append(f"{r.method}: {len(left_out)} more run(s) with a seed already counted ({', '.join(left_out)}); "
                         "a repeat of a seed is not another seed, so each seed counts once (its run with the most "
                         "epochs, then the newest)")
    for r in rows:
        best, final = r["best_test_f1"], r["final_test_f1"]
        if best is not None and final is not None and final < best - 0.05:
            notes.append(f"{r.method}: test F1 fell from {best:.4f} (epoch {r['best_epoch']}) to {final:.4f} at the "
                         "last epoch read: the best-over-epochs number hides it.")
    far = [r for r in rows if r["diff_vs_paper"] is not None and abs(r["diff_vs_paper"]) > 0.02]
    if far:
        notes.append("⚠ differs from the paper's F1 by more than 0.02: " + ", ".join(r.method for r in far) + ".")
    short = [r for r in rows if r["paper_epoch"] is not None and r["epochs"] and r["paper_epoch"] > r["epochs"]]
    if short:
        notes.append("The paper's best epoch lies beyond the epochs run here for: "
                     + ", ".join(f"{r.method} (paper epoch {r['paper_epoch']}, run {_epochs_run(r)})" for r in short)
                     + "; those rows cannot be expected to reach the paper's F1.")
    for note in sorted({r["dataset_note"] for r in rows if r["dataset_note"]}):
        notes.append(f"Data: {note}.")
    return notes


def _epochs_run(r: TableRow) -> str:
    """The epochs a row's runs have: '1000', or '10–50' while its seeds stand at different epochs."""
    low, high = r["epochs"], r["max_epochs"]
    return str(low) if high in (None, low) else f"{low}–{high}"


def write_markdown(rows: list[TableRow], path: str | Path, title: str | None = None,
                   epochs: int | None = None) -> Path:
    path = Path(path)
    path.write_text(markdown_section(rows, title, epochs))
    return path


def markdown_section(rows: list[TableRow], title: str | None = None, epochs: int | None = None,
                     level: int = 1) -> str:
    """Title, table, notes and the protocol legend, as Markdown."""
    parts = [f"{'#' * level} {title}\n\n"] if title else []
    parts.append(markdown_table(rows))
    notes = table_notes(rows, epochs)
    if notes:
        parts.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    parts.append("\nBest test F1: the paper's protocol (the best test macro-F1 over all epochs, epoch chosen on the "
                 "test split; its epoch, the first that reached it, is the paper's convergence epoch). Val-selected: the honest protocol (test macro-F1 at the epoch with the best "
                 "validation macro-F1)."
                 + " Final: the test macro-F1 at the last epoch read."
                 + (" ± is the sample standard deviation over seeds." if any(r["runs"] > 1 for r in rows) else "")
                 + (_target_legend(rows) if any(r["target_f1"] is not None for r in rows) else "")
                 + "\n")
    if any(r["baseline"] is not None for r in rows) and len(rows) > 1:
        base = next(r for r in rows if r["baseline"] is not None)
        parts.append(f"\n{'#' * (level + 1)} Paired against {base['baseline']}\n\n" + paired_table(rows)
                     + "\nPer seed, the method's number minus the baseline's (same seed: same data split, initial "
                     "weights and mini-batch order); the mean over seeds with the paired Student-t 95 % interval, "
                     "mean ± t(0.975, n−1)·s/√n (none with one seed); won: seeds where the method is better.\n"
                     + "\n" + paired_epochs_table(rows)
                     + "\nThe same in epochs: negative is sooner than the baseline. The convergence epoch is the "
                     "paper's (the first epoch at the best test F1 over the epochs read), so it moves with the "
                     "epochs run; the epochs to the target count only the seeds where both reached it.\n")
    return "".join(parts)


def _target_legend(rows: list[TableRow]) -> str:
    target = next(r["target_f1"] for r in rows if r["target_f1"] is not None)
    return (f" Epochs / time to F1 ≥ {target:g}: the first epoch whose test macro-F1 reaches {target:g}, and the "
            "wall seconds of training and evaluation until its end; mean over the seeds that reached it ((k/n): "
            "only k of n did).")
