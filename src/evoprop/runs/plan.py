"""What to do with one run directory that should hold N epochs of given settings, and doing it.

Shared by every command that runs many run directories (``evoprop reproduce``, ``evoprop
compare``), so that rerunning one of them after Ctrl-C, or with more epochs, goes on where it
stopped. What happens to a run directory, decided before anything runs (:func:`plan_run`):

* none yet: a new run (``new``);
* completed with at least the requested epochs, or holding them already: nothing to do
  (``skip``); its first N epochs are read for the table;
* completed with fewer epochs: extended to N (``extend``: ``run_training(resume=..., epochs=N)``);
* interrupted (killed, Ctrl-C) or never finished an epoch: continued exactly from its last
  completed epoch (``resume``);
* diverged (NaN/inf loss): kept as it is and shown as diverged (resuming it would repeat
  the divergence);
* epochs recorded without checkpoint.pt (run data copied without it): an error, since continuing
  would start again from epoch 1 over the epochs recorded;
* settings that differ from the requested ones (e.g. another ``--init``): an error, before
  anything runs, naming the setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evoprop.config import TrainConfig
from evoprop.data import load_dataset
from evoprop.errors import EvopropError, TrainingDiverged
from evoprop.runs.launch import run_training, summary_line
from evoprop.runs.rundir import RunDir

#: Settings that may differ between an existing run directory and the request: the epochs (a shorter run is
#: extended) and where or in how much memory the run computes (the fields' ``affects_results=False``).
LOCATION_ONLY = ("epochs", *TrainConfig.location_settings())

ACTIONS = ("new", "resume", "extend", "skip", "diverged")

#: Settings whose "auto" a run resolves and records (e.g. strategy auto -> sep, es_precision auto -> float32):
#: a request for "auto" matches whatever the run resolved it to.
AUTO_RESOLVED = ("strategy", "es_precision")


@dataclass
class RunPlan:
    """One run directory, the settings it should have and what running it will do."""

    path: Path
    config: TrainConfig
    action: str  # one of ACTIONS
    done: int  # epochs already in the run directory
    epochs: int  # epochs requested

    @property
    def remaining(self) -> int:
        return 0 if self.action in ("skip", "diverged") else max(0, self.epochs - self.done)

    def describe(self) -> str:
        def n(k: int) -> str:
            return f"{k} epoch{'' if k == 1 else 's'}"

        return {
            "new": f"new run, {n(self.epochs)}",
            "resume": f"resuming after epoch {self.done} of {self.epochs}",
            "extend": f"extending from {self.done} to {n(self.epochs)}",
            "skip": f"done ({n(self.done)}), not rerun",
            "diverged": f"diverged after epoch {self.done} earlier; kept as it is",
        }[self.action]


def plan_run(path: str | Path, config: TrainConfig, hint: str = "give another --out") -> RunPlan:
    """What to do so that ``path`` holds ``config.epochs`` epochs of ``config``; raises on other settings."""
    path = Path(path)
    epochs = config.epochs
    run = RunDir(path)
    if not run.has_run():
        return RunPlan(path, config, "new", 0, epochs)
    diff = differences(run.read_config(), config)
    if diff:
        key, have, want = diff[0]
        raise EvopropError(f"{path} holds a run with other settings ({key}: {have} there, {want} requested); "
                           f"{hint}, or remove that directory to rerun it")
    done = len(run.read_metrics())
    status = run.status()
    if status == "diverged":
        action = "diverged"
    elif done >= epochs:
        action = "skip"
    elif status == "completed":
        action = "extend"
    else:
        action = "resume"
    if action in ("extend", "resume"):
        run.check_continuable()
    return RunPlan(path, config, action, done, epochs)


def differences(saved: TrainConfig, planned: TrainConfig) -> list[tuple[str, Any, Any]]:
    """Settings in which the saved run differs from the planned one (ignoring what a run resolves)."""
    out = []
    have, want = saved.to_dict(), planned.to_dict()
    for key, value in want.items():
        if key in LOCATION_ONLY or value is None or (key in AUTO_RESOLVED and value == "auto"):
            continue
        a, b = json.dumps(have.get(key), sort_keys=True, default=str), json.dumps(value, sort_keys=True, default=str)
        if a != b:
            out.append((key, have.get(key), value))
    return out


def execute(
    p: RunPlan,
    *,
    bar,
    say: Callable[[str], None],
    echo: Callable[[str], None],
    progress: bool,
    device: str | None = None,
    name: str,
    short: str,
) -> dict | None:
    """Run what ``p`` plans (``p.remaining`` must be > 0); return the run's summary (None if it diverged).

    ``bar`` (a tqdm bar over all runs' epochs) advances once per epoch and shows ``short`` and the
    epoch's test F1; without ``progress`` each epoch line goes to ``echo`` prefixed with ``name``.
    A run that diverges is reported through ``say`` and does not stop the caller; Ctrl-C does.
    """
    run = RunDir(p.path)

    def on_line(line: str) -> None:
        if line.startswith("epoch "):
            bar.update(1)
            last = run.last_record()
            if last is not None:
                bar.set_description(short, refresh=False)
                bar.set_postfix_str(f"epoch {last['epoch']}/{p.epochs} F1 {last['test_f1']:.4f}")
            if not progress:
                echo(f"  {name}: {line}")
        else:
            say(f"  {line}")

    try:
        if p.action == "new":
            summary, run = run_training(p.config, out=p.path, progress=progress, echo=on_line)
        else:
            if device is not None:  # a new device for an existing run: where it runs, not what it computes
                saved = run.read_config()
                if saved.device != device:
                    saved.device = device
                    run.write_config(saved)
            summary, run = run_training(resume=p.path, epochs=p.epochs, progress=progress, echo=on_line)
        say(f"  {summary_line(summary, run)}")
        return summary
    except TrainingDiverged as exc:
        say(f"  {name} diverged: {exc}; the table shows it as diverged")
        return None


def check_data(plans: list[RunPlan]) -> None:
    """Load (and so check) every data set that the runs still to do need, before the first one starts."""
    needed = {}
    for p in plans:
        if p.remaining:
            needed.setdefault((p.config.dataset, p.config.data_dir), p.config)
    for (name, data_dir), cfg in needed.items():
        load_dataset(name, data_dir=data_dir, split=cfg.split, val_fraction=cfg.val_fraction,
                     split_seed=cfg.split_seed, limit_train=1, limit_test=1)
