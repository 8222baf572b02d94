"""``evoprop compare``: optimizers side by side over several seeds, from one YAML file.

The file names *arms*, each a set of train settings over shared *base* settings, and the seeds::

    title: SGD against the hybrid          # optional [default: "Comparison: <file name>"]
    base:                                  # TrainConfig keys (as in `evoprop train --config`), shared
      dataset: mnist
      depth: 10
      epochs: 20
    arms:                                  # arm name -> settings over base (the name is a folder name)
      sgd: {}
      hybrid: {method: hybrid, popsize: 1000}
    seeds: 5                               # a count (seeds 0..4) or a list, e.g. [0, 3, 7] [default: 1]
    baseline: sgd                          # the arm the others are paired with [default: the first]
    target_f1: 0.95                        # optional: epochs and seconds to first reach this test F1
    out: comparisons/hybrid                # optional [default: comparisons/<file name without suffix>]

Every arm × seed is an ordinary run directory, ``OUT/<arm>/seed<k>/``, run through the run
launcher: rerunning the command skips finished runs, continues interrupted ones and extends
shorter ones (:mod:`evoprop.runs.plan`, shared with ``evoprop reproduce``). Then ``OUT/``
receives, through :mod:`evoprop.report` (the same table code as ``evoprop report``):

* ``table.md``, ``table.csv``: per arm, mean ± sample std over seeds of the best test F1 (the
  paper's protocol), the val-selected test F1 (the honest one), the final test F1, the epochs
  and seconds to ``target_f1`` and the seconds per epoch; and every arm paired with the
  baseline seed by seed (the difference in val-selected test F1, its mean with a paired
  Student-t 95 % interval, and how many seeds the arm won);
* ``f1.png`` (test macro-F1 per epoch, per arm the mean over seeds with a min–max band),
  ``loss.png`` and ``report.md`` (all of it, with every arm's settings and the machine).

Seeds pair up: arms run with seed k share the data split (``split_seed`` is a base setting),
the initial weights and the mini-batch order, so the per-seed difference is a paired sample.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from evoprop.config import TrainConfig, read_mapping
from evoprop.errors import ConfigError
from evoprop.report import load_run, write_report
from evoprop.report.tables import Group, check_target_f1
from evoprop.runs.rundir import is_run
from evoprop.runs.plan import RunPlan, check_data, execute, plan_run

#: The keys of a compare file, in the order the docstring explains them.
SPEC_KEYS = ("title", "base", "arms", "seeds", "baseline", "target_f1", "out")
#: Arm names become folder names.
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT_OUT = Path("comparisons")


@dataclass
class CompareSpec:
    """A compare file read and checked: shared settings, arms, seeds, baseline, target and folder."""

    source: str  # the file (or "<dict>"), for messages and the report
    title: str
    base: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    seeds: list[int]
    baseline: str
    target_f1: float | None
    out: Path

    def config(self, arm: str, seed: int) -> TrainConfig:
        """The settings of one arm × seed: base, then the arm's settings, then the seed; validated."""
        try:
            return TrainConfig.from_dict({**self.base, **self.arms[arm], "seed": seed}).validate()
        except ConfigError as exc:
            where = "base" if self._base_fails(str(exc)) else f"arm '{arm}'"
            raise ConfigError(f"{self.source}: {where}: {exc}") from None

    def _base_fails(self, message: str) -> bool:
        """Whether the base settings alone fail with ``message`` (then every arm inherits the mistake)."""
        try:
            TrainConfig.from_dict(self.base).validate()
        except ConfigError as exc:
            return str(exc) == message
        return False

    @property
    def epochs(self) -> int:
        return TrainConfig.from_dict(self.base).epochs


@dataclass
class ArmRun(RunPlan):
    """One arm × seed: its run directory, its settings and what :func:`compare` will do."""

    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arm} seed {self.seed}"


@dataclass
class CompareResult:
    """What :func:`compare` produced: the runs, the table's rows and the files of ``OUT/``."""

    spec: CompareSpec
    runs: list[ArmRun]
    rows: list  # evoprop.report.TableRow, one per arm
    files: dict[str, Path]


def load_spec(path: str | Path, *, seeds: int | None = None, out: str | Path | None = None,
              changes: dict[str, Any] | None = None) -> CompareSpec:
    """Read a compare file; ``seeds`` (a count), ``out`` and ``changes`` (train settings, e.g. epochs,
    device, limit_train: they override base and every arm) come from the command line and win."""
    path = Path(path)
    return spec_from_mapping(read_mapping(path), source=str(path), default_out=DEFAULT_OUT / path.stem,
                             default_title=f"Comparison: {path.stem}", seeds=seeds, out=out, changes=changes)


def spec_from_mapping(data: dict[str, Any], *, source: str = "<dict>", default_out: str | Path = DEFAULT_OUT,
                      default_title: str = "Comparison", seeds: int | None = None, out: str | Path | None = None,
                      changes: dict[str, Any] | None = None) -> CompareSpec:
    """Check a compare file's mapping (see the module docstring); every mistake is one ConfigError line."""
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{source}: {message}")

    if not isinstance(data, dict):
        raise fail("a compare file must hold a mapping with base, arms and seeds")
    unknown = sorted(str(k) for k in data if k not in SPEC_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(SPEC_KEYS)}")
    base = _settings(data.get("base"), "base", fail)
    if "seed" in base:
        raise fail("base sets seed; the seeds come from 'seeds:' (a count or a list)")
    overridden = _settings(changes, "the command line's settings", fail)
    base.update(overridden)
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise fail("arms must be a non-empty mapping of arm name to train settings, e.g. arms: {sgd: {}}")
    arms: dict[str, dict[str, Any]] = {}
    for name, settings in arms_raw.items():
        if not isinstance(name, str) or not ARM_NAME.fullmatch(name):
            raise fail(f"arm name {name!r} must be letters, digits, '.', '_' or '-' (it names the folder OUT/<arm>/)")
        arm = _settings(settings, f"arm '{name}'", fail)
        for key in ("seed", "epochs"):
            if key in arm:
                raise fail(f"arm '{name}' sets {key}; "
                           + ("the seeds come from 'seeds:'" if key == "seed" else
                              "every arm runs the same epochs: set epochs in base (or give --epochs)"))
        arms[name] = {k: v for k, v in arm.items() if k not in overridden}  # the command line wins over arms too
    spec = CompareSpec(
        source=source,
        title=_title(data.get("title", default_title), fail),
        base=base,
        arms=arms,
        seeds=_seeds(data.get("seeds", 1) if seeds is None else seeds, fail,
                     "seeds" if seeds is None else "--seeds"),
        baseline=_baseline(data.get("baseline"), arms, fail),
        target_f1=_target(data.get("target_f1"), fail),
        out=Path(out) if out is not None else Path(_out(data.get("out", default_out), fail)),
    )
    for arm in spec.arms:  # every arm's settings valid (unknown keys, bad values) before anything runs
        spec.config(arm, spec.seeds[0])
    return spec


def _normalised(settings: dict[str, Any]) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in settings.items()}


def _settings(value, where: str, fail) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{where} must be a mapping of train settings (the keys of 'evoprop train --config'), "
                   f"got {type(value).__name__}")
    settings = _normalised(value)
    unknown = sorted(set(settings) - set(TrainConfig.field_names()))
    if unknown:
        raise fail(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(TrainConfig.field_names())}")
    return settings


def _title(value, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(f"title must be a non-empty string, got {value!r}")
    return value.strip()


def _seeds(value, fail, name: str) -> list[int]:
    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(value):
        if value < 1:
            raise fail(f"{name} must be a positive count or a list of seeds, got {value!r}")
        return list(range(value))
    if isinstance(value, list) and value and all(is_int(v) and v >= 0 for v in value):
        if len(set(value)) != len(value):
            raise fail(f"{name} lists a seed twice: {value}")
        return list(value)
    raise fail(f"{name} must be a positive count or a non-empty list of seeds >= 0, got {value!r}")


def _baseline(value, arms: dict, fail) -> str:
    if value is None:
        return next(iter(arms))
    if value not in arms:
        raise fail(f"unknown baseline {value!r}; arms: {', '.join(arms)}")
    return value


def _target(value, fail) -> float | None:
    if value is None:
        return None
    try:
        return check_target_f1(value)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _out(value, fail) -> str:
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise fail(f"out must be a folder name, got {value!r}")
    return str(value)


def plan(spec: CompareSpec) -> list[ArmRun]:
    """Every arm × seed, with its run directory ``OUT/<arm>/seed<k>/`` and what running it will do."""
    planned = []
    for arm in spec.arms:
        for seed in spec.seeds:
            config = spec.config(arm, seed)
            run = plan_run(spec.out / arm / f"seed{seed}", config, hint="give another --out")
            planned.append(ArmRun(**vars(run), arm=arm, seed=seed))
    return planned


def compare(
    spec: CompareSpec,
    *,
    device: str | None = None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    command: str | None = None,
) -> CompareResult:
    """Run what is missing of every arm × seed of ``spec``, then write ``spec.out``'s table, figures and report.

    ``device`` (given on the command line) also moves existing runs that continue. A run that
    diverges is shown as diverged and the others go on; Ctrl-C stops at once with every
    completed epoch saved (calling again continues).
    """
    echo = echo or (lambda line: tqdm.write(line, file=sys.stderr))
    planned = plan(spec)
    check_data(planned)
    bar = tqdm(total=sum(p.remaining for p in planned), unit="epoch", desc="compare", disable=not progress,
               dynamic_ncols=True, smoothing=0, file=sys.stderr, position=0)
    with bar:
        say = (lambda line: tqdm.write(line, file=sys.stderr)) if progress else echo
        for index, p in enumerate(planned, start=1):
            say(f"[{index}/{len(planned)}] {p.name}: {p.describe()} -> {p.path}")
            if p.remaining:
                execute(p, bar=bar, say=say, echo=echo, progress=progress, device=device, name=p.name,
                        short=f"{p.arm} s{p.seed}")
    return write_comparison(spec, planned, command=command)


def write_comparison(spec: CompareSpec, planned: list[ArmRun], command: str | None = None) -> CompareResult:
    """``OUT/table.md``, ``table.csv``, ``f1.png``, ``loss.png`` and ``report.md`` from the arms' run directories."""
    groups = []
    for order, arm in enumerate(spec.arms):
        records = [load_run(p.path, max_epochs=p.epochs) for p in planned if p.arm == arm and is_run(p.path)]
        if records:
            groups.append(Group(key=(arm,), label=arm, records=records, row_id=arm, order=(order,)))
    baseline = next((g for g in groups if g.label == spec.baseline), None)
    notes = [f"Base settings (every arm): {_describe(spec.base)}."]
    notes += [f"Arm {arm}: {_describe(settings) or 'the base settings'}." for arm, settings in spec.arms.items()]
    notes.append(f"Seeds {', '.join(map(str, spec.seeds))}; baseline {spec.baseline}"
                 + (f"; target test macro-F1 {spec.target_f1:g}." if spec.target_f1 is not None else "."))
    records = [r for g in groups for r in g.records]
    written = write_report(records, spec.out, title=spec.title, epochs=spec.epochs, command=command, notes=notes,
                           groups=groups, target_f1=spec.target_f1, baseline=baseline)
    return CompareResult(spec=spec, runs=planned, rows=written["rows"], files=written["files"])


def _describe(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def command_line(config: str | Path, **options: Any) -> str:
    """The ``evoprop compare`` command for the report: the file and the options that were given."""
    parts = ["evoprop", "compare", "--config", str(config)]
    for key, value in options.items():
        if value is not None:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)
