"""One trial of a study: an ordinary evoprop run, scored on a validation metric, pruned when hopeless.

The trial's settings are the base TrainConfig with the search space's suggestions; its run
directory (``<out>/trials/trial-NNNN``: config.yaml, metrics.jsonl, summary.json,
checkpoint.pt, figures) is linked from the trial's user attribute ``run_dir``, so
``evoprop train --resume`` and ``evoprop report`` work on it as on any run. After every
epoch the metric is reported to Optuna; when the pruner says the trial cannot catch up,
the run stops there with status ``pruned`` and the trial is marked PRUNED.

A retry of a dead worker's trial (see evoprop.tune.storage) first looks at the dead trial's
run directory: if its training had finished (status ``completed`` in summary.json; the
worker died while drawing figures or telling the study), the retry adopts that run, its
metrics and value, instead of training the same settings again.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from evoprop.errors import ConfigError, TrainingDiverged
from evoprop.runs import RunDir, run_training
from evoprop.runs.launch import StopRun
from evoprop.tune.artifacts import upload_trial_figures
from evoprop.tune.settings import TuneConfig
from evoprop.tune.space import sample_config


class SurplusTrial(Exception):
    """A trial started after the study already had its trials (two workers raced for the last one): it stays unrun."""


def trial_dir(tune: TuneConfig, number: int) -> Path:
    return tune.out / "trials" / f"trial-{number:04d}"


def frozen(trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """The stored state of a live trial (its system attributes are not public on ``optuna.Trial``)."""
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def trial_title(trial) -> str:
    """'trial 3: lr=0.0123 batch_size=64' for figure titles and log lines."""
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    return f"trial {trial.number}: {params}".rstrip(": ")


def train_trial(trial: optuna.Trial, tune: TuneConfig, store, echo: Callable[[str], None] | None = None,
                on_epoch: Callable[[dict], None] | None = None) -> tuple[dict, RunDir]:
    """Train the trial's configuration into its run directory and upload its figures, whatever the ending.

    Returns (summary, run); a run stopped by ``on_epoch`` (StopRun) or diverged re-raises after the upload.
    """
    config = sample_config(trial, tune.space, tune.train)
    out = trial_dir(tune, trial.number)
    trial.set_user_attr("run_dir", str(out.resolve()))
    _mark_worker(trial)
    title = trial_title(trial)
    line = (lambda text: echo(f"trial {trial.number}: {text}")) if echo else (lambda text: None)
    try:
        summary, run = run_training(config, out=out, echo=line, on_epoch=on_epoch)
    except (StopRun, TrainingDiverged) as exc:
        run = RunDir(out)
        summary = run.read_summary()
        _record(trial, summary, run, store, title, status=getattr(exc, "status", "diverged"))
        raise
    _record(trial, summary, run, store, title, status=summary["status"])
    return summary, run


def _mark_worker(trial: optuna.Trial) -> None:
    """Who runs the trial (host:pid, PyTorch threads) and, for a retry, which dead worker's trial it repeats."""
    import torch

    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("threads", torch.get_num_threads())
    retried = retry_of(trial)
    if retried is not None:
        trial.set_user_attr("retry_of", retried)


def retry_of(trial: optuna.Trial) -> int | None:
    """The number of the dead worker's trial that ``trial`` retries (set by Optuna's retry callback), else None."""
    return frozen(trial).system_attrs.get("failed_trial")


def finished_run(trial: optuna.Trial) -> RunDir | None:
    """The run directory of the dead trial that ``trial`` retries, if that run's training had finished.

    The retry has the dead trial's parameters (Optuna copies them) in a study whose base
    settings are fixed (evoprop.tune.study checks them), so the finished run is this trial's run.
    """
    retried = retry_of(trial)
    if retried is None:
        return None
    dead = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == retried), None)
    if dead is None or "run_dir" not in dead.user_attrs or dead.params != trial.params:
        return None
    run = RunDir(dead.user_attrs["run_dir"])
    try:
        finished = run.read_summary().get("status") in ("completed", "pruned")
    except (OSError, ValueError, AttributeError):  # no summary yet, or one cut short by the kill
        return None
    return run if finished else None


def adopt_run(trial: optuna.Trial, run: RunDir, store, echo: Callable[[str], None] | None = None) -> tuple[dict, list[dict]]:
    """Make the finished ``run`` this trial's: link it, record its summary, upload its figures; (summary, epochs)."""
    trial.set_user_attr("run_dir", str(run.path.resolve()))
    _mark_worker(trial)
    summary = run.read_summary()
    if echo:
        echo(f"trial {trial.number}: the run of trial {retry_of(trial)} finished before its worker died "
             f"({summary['status']}, {run.path}); adopted, not retrained")
    _record(trial, summary, run, store, trial_title(trial), status=summary["status"])
    return summary, run.read_metrics()


def fail_unless_decided(trial: optuna.Trial) -> None:
    """Mark a trial failed, unless a person finished it meanwhile in the dashboard (then that verdict stays)."""
    try:
        trial.study.tell(trial, state=TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError):  # ValueError: Optuna's "Cannot tell a COMPLETE trial"
        pass


def _record(trial, summary: dict, run: RunDir, store, title: str, status: str) -> None:
    trial.set_user_attr("run_status", status)
    trial.set_user_attr("epochs", summary.get("epochs"))
    trial.set_user_attr("best_val_f1", summary.get("best_val_f1"))
    trial.set_user_attr("seconds", round(summary.get("seconds") or 0.0, 2))
    if store is not None:
        upload_trial_figures(trial, run, store, title)


class Objective:
    """``study.optimize(Objective(tune, store))``: a trial's value is its metric at the best (or last) epoch."""

    def __init__(self, tune: TuneConfig, store=None, echo: Callable[[str], None] | None = None):
        self.tune, self.store, self.echo = tune, store, echo
        self.metric = tune.study.metric
        self.prune = tune.study.pruner != "none"

    def __call__(self, trial: optuna.Trial) -> float:
        self._claim(trial)
        values: list[float] = []
        epochs = self.tune.train.epochs

        def report(record: dict) -> None:
            if self.metric not in record:
                raise ConfigError(f"metric {self.metric} is not recorded by this run; it records "
                                  f"{', '.join(k for k in record if not k.startswith('test'))}")
            value = float(record[self.metric])
            values.append(value)
            trial.report(value, record["epoch"])

        def on_epoch(record: dict) -> None:
            report(record)
            # a trial that reached its last epoch has spent its cost: its value informs the sampler more than a prune
            if self.prune and record["epoch"] < epochs and trial.should_prune():
                raise StopRun("pruned")

        finished = finished_run(trial)
        if finished is not None:  # its epochs were judged (and not pruned, or pruned) when they ran
            summary, records = adopt_run(trial, finished, self.store, self.echo)
            for record in records:
                report(record)
            if summary["status"] == "pruned":
                raise optuna.TrialPruned(f"pruned after epoch {len(values)}")
        else:
            try:
                train_trial(trial, self.tune, self.store, self.echo, on_epoch)
            except StopRun as stop:
                raise optuna.TrialPruned(f"{stop.status} after epoch {len(values)}") from None
        if self.tune.study.reduce == "last":
            return values[-1]
        return max(values) if self.tune.study.maximize else min(values)

    def _claim(self, trial: optuna.Trial) -> None:
        """Refuse to run beyond n_trials: count finished trials and those started (or queued) before this one."""
        claimed = 0
        for other in trial.study.get_trials(deepcopy=False):
            if other.number == trial.number:
                continue
            if other.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
                    other.state in (TrialState.RUNNING, TrialState.WAITING) and other.number < trial.number):
                claimed += 1
        if claimed >= self.tune.study.n_trials:
            trial.set_user_attr("run_status", "surplus")
            raise SurplusTrial(f"the study already has {self.tune.study.n_trials} trials finished or running")
