"""Create or join a study and work through it: samplers, pruners, workers, and the best configuration.

``run_study(tune)`` opens (or creates) the study in its storage, starts ``n_jobs`` worker
processes (or works in this one), and ends when the study holds ``n_trials`` finished
(complete or pruned) trials, counting the trials of every worker and of earlier runs:
`evoprop tune` started again, or on another machine with the same storage, shares the
work instead of repeating it. The best trial's settings are written to
``<out>/best.yaml``, a file ``evoprop train --config`` accepts.

Workers are processes, not threads: each trial's model initialisation uses PyTorch's
global random generator, which threads would share, so a trial would not rebuild from its
settings alone.

Sampler seeds (see :func:`process_seed`): the process that creates a study samples with
``study.seed`` itself, so a fresh single-worker study is reproducible. Every process that
joins an existing study (the same command again with a larger ``--n-trials``, a restarted
worker, the other workers of ``--n-jobs``, a second shell) seeds its sampler from the study
seed, its worker number, the number of trials the study already holds and a random nonce:
a sampler seeded like an earlier one would replay that one's proposals, and its repeats
would count as new trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import secrets
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import yaml
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from evoprop.config import TrainConfig
from evoprop import signals
from evoprop.errors import ConfigError, EvopropError, TrainingDiverged
from evoprop.tune.artifacts import artifact_store
from evoprop.tune.objective import Objective, SurplusTrial
from evoprop.tune.objective import trial_title
from evoprop.tune.settings import TuneConfig
from evoprop.tune.space import apply_values
from evoprop.tune.storage import open_storage, shown

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SETTINGS_ATTR, ARTIFACTS_ATTR = "evoprop_settings", "evoprop_artifact_dir"
#: Settings that may differ between the workers of one study (paths, hardware) without changing its trials.
_LOCAL_SETTINGS = ("data_dir", "device", "eval_batch_size", "max_memory")
POLL_SECONDS = 1.0


@dataclass
class StudyResult:
    study: optuna.Study
    best: FrozenTrial | None
    best_config_path: Path | None
    counts: dict[str, int]


def process_seed(seed: int | None, worker: int, history: int, nonce: int | None = None) -> int | None:
    """The sampler seed of a process that joins a study holding ``history`` trials.

    Derived from (study seed, worker number, history, nonce) by NumPy's SeedSequence, which
    spreads nearby inputs over unrelated seeds; the nonce (64 random bits unless given) makes
    two processes that join at the same moment differ too. None (an unseeded study) stays None.
    """
    if seed is None:
        return None
    import numpy as np

    nonce = secrets.randbits(64) if nonce is None else nonce
    words = [seed % 2**64, worker, history, nonce % 2**64]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])


def make_sampler(tune: TuneConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    """The study's sampler with ``seed`` (``study.seed`` for the study's creator, else :func:`process_seed`)."""
    s = tune.study
    options = dict(s.sampler_options)
    classes = {"tpe": optuna.samplers.TPESampler, "cmaes": optuna.samplers.CmaEsSampler,
               "random": optuna.samplers.RandomSampler, "grid": optuna.samplers.GridSampler}
    if s.sampler == "grid":
        if any(p.when for p in tune.space):
            raise ConfigError("the grid sampler needs every search_space entry in every trial; remove 'when'")
        options["search_space"] = {p.key: p.grid() for p in tune.space}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            return classes[s.sampler](seed=seed, **options)
        except TypeError as exc:
            raise ConfigError(f"study.sampler_options for {s.sampler}: {exc}") from None


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    """median (Optuna's MedianPruner), hyperband (from 1 epoch to all of them) or none."""
    s = tune.study
    try:
        if s.pruner == "median":
            return optuna.pruners.MedianPruner(**s.pruner_options)
        if s.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(**{"min_resource": 1, "max_resource": tune.train.epochs,
                                                     **s.pruner_options})
    except ConfigError:  # already one of ours: keep its message
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"study.pruner_options for {s.pruner}: {exc}") from None
    return optuna.pruners.NopPruner()


def grid_size(tune: TuneConfig) -> int:
    size = 1
    for param in tune.space:
        size *= len(param.grid())
    return size


def open_study(tune: TuneConfig, *, worker: int = 0, heartbeat: bool = True) -> optuna.Study:
    """Create the study, or join it after checking that it was created with the same settings.

    The creator's sampler is seeded with ``study.seed``; a joining process's with :func:`process_seed`.
    """
    s = tune.study
    storage = open_storage(tune.storage, heartbeat_interval=s.heartbeat_interval if heartbeat else None,
                           grace_period=s.grace_period, max_retry=s.max_retry)
    try:
        with quiet_optuna():  # not Optuna's 'A new study created' line
            try:  # creating is atomic in every storage: of several processes starting together, one creates
                study = optuna.create_study(study_name=s.name, storage=storage, sampler=make_sampler(tune, s.seed),
                                            pruner=make_pruner(tune), direction=s.resolved_direction)
            except optuna.exceptions.DuplicatedStudyError:
                sampler = make_sampler(tune, joining_seed(tune, storage, worker))
                study = optuna.create_study(study_name=s.name, storage=storage, sampler=sampler,
                                            pruner=make_pruner(tune), direction=s.resolved_direction,
                                            load_if_exists=True)
    except ConfigError:  # already one of ours: keep its message
        raise
    except ValueError as exc:  # e.g. the stored study optimises in the other direction
        raise ConfigError(f"study {s.name} in {shown(tune.storage)}: {exc}") from None
    check_settings(study, tune)
    _name_objective(study, tune)
    return study


def joining_seed(tune: TuneConfig, storage: optuna.storages.BaseStorage, worker: int = 0) -> int | None:
    """:func:`process_seed` for a process joining the existing study ``tune.study.name`` in ``storage``."""
    history = len(storage.get_all_trials(storage.get_study_id_from_name(tune.study.name), deepcopy=False))
    return process_seed(tune.study.seed, worker, history)


def check_settings(study, tune: TuneConfig) -> None:
    """Record the settings in a new study (and its artifact folder); refuse to join one made with others."""
    fingerprint = settings_fingerprint(tune)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, fingerprint)
        study.set_user_attr(ARTIFACTS_ATTR, str(tune.artifact_dir.resolve()))
    elif stored != fingerprint:
        raise ConfigError(f"study {tune.study.name} in {shown(tune.storage)} was created with other settings "
                          f"({', '.join(_differences(stored, fingerprint))} differ): its trials would not be "
                          "comparable; give another --study-name")


def settings_fingerprint(tune: TuneConfig) -> dict:
    """What makes two trials comparable: base settings, search space, objective (JSON-plain)."""
    train = {k: v for k, v in tune.train.to_dict().items() if k not in _LOCAL_SETTINGS}
    s = tune.study
    data = {"train": train, "search_space": [dataclasses.asdict(p) for p in tune.space], "metric": s.metric,
            "direction": s.resolved_direction, "reduce": s.reduce, "human": s.human}
    return json.loads(json.dumps(data))


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ: train.epochs, search_space, metric."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out


def _name_objective(study: optuna.Study, tune: TuneConfig) -> None:
    """Label the value axis in Optuna Dashboard with the metric (or 'rating')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(["rating" if tune.study.human else tune.study.metric])


def count_trials(study: optuna.Study) -> dict[str, int]:
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] += 1
    counts["finished"] = counts["complete"] + counts["pruned"]
    return counts


def run_worker(tune: TuneConfig, worker: int = 0, echo: Callable[[str], None] | None = None,
               verbose: bool = False, study: optuna.Study | None = None) -> None:
    """Run trials until the study holds n_trials finished ones, waiting while others' trials are still open.

    A worker never stops while another worker's trial is running: if that worker dies, its
    trial goes stale, and this worker fails it and runs the retry. ``study``: the study as this
    process opened it (and so its sampler), else it is opened here.
    """
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    study = open_study(tune, worker=worker) if study is None else study
    store = artifact_store(tune.artifact_dir) if tune.study.figures else None
    objective = Objective(tune, store, echo=echo if verbose else None)
    target = _target_trials(tune)
    told = False
    with quiet_optuna():
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            counts = count_trials(study)
            if counts["finished"] >= target:
                return
            if counts["finished"] + counts["running"] >= target and counts["waiting"] == 0:
                if not told:
                    told = True
                    echo(f"{counts['finished']} of {target} trials finished; waiting for the {counts['running']} "
                         f"running in other workers (a dead worker's trial is retried after "
                         f"{tune.study.grace_period} s without a heartbeat)")
                time.sleep(POLL_SECONDS)  # the rest is running elsewhere; stay in case it dies and is retried
                continue
            study.optimize(objective, n_trials=1, catch=(TrainingDiverged, SurplusTrial),
                           callbacks=[_trial_logger(tune, echo)], gc_after_trial=False)


def _target_trials(tune: TuneConfig) -> int:
    if tune.study.sampler == "grid":
        return min(tune.study.n_trials, grid_size(tune))
    return tune.study.n_trials


def _trial_logger(tune: TuneConfig, echo: Callable[[str], None]):
    metric = tune.study.metric

    def log(study: optuna.Study, trial: FrozenTrial) -> None:
        status = trial.user_attrs.get("run_status", trial.state.name.lower())
        where = f" | {trial.user_attrs['run_dir']}" if "run_dir" in trial.user_attrs else ""
        retry = f" (retry of trial {trial.user_attrs['retry_of']})" if "retry_of" in trial.user_attrs else ""
        if status == "surplus":
            return echo(f"trial {trial.number} not run: the study already has its {tune.study.n_trials} trials")
        if trial.state == TrialState.COMPLETE:
            done = f"complete: {metric} {trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            done = f"pruned after epoch {trial.last_step}"
        else:
            done = f"failed ({status})"
        echo(f"{trial_title(trial)}{retry} -> {done} | {trial.user_attrs.get('seconds', 0):.1f} s{where}")

    return log


@contextlib.contextmanager
def quiet_optuna():
    """Optuna's own per-trial log lines (tracebacks of expected failures included) give way to evoprop's."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def run_study(tune: TuneConfig, echo: Callable[[str], None] | None = None, verbose: bool = False) -> StudyResult:
    """Work through the study with ``tune.study.n_jobs`` processes; write and return the best configuration."""
    study = open_study(tune)  # create it, and check the settings, before any worker starts
    _check_out(tune, study)
    if tune.study.n_jobs == 1:
        run_worker(tune, 0, echo, verbose, study)
    else:
        _run_processes(tune, study, echo, verbose)
    return finish(tune, study)


def _check_out(tune: TuneConfig, study: optuna.Study) -> None:
    trials = tune.out / "trials"
    if not study.get_trials(deepcopy=False) and trials.is_dir() and any(trials.iterdir()):
        raise ConfigError(f"{trials} holds the runs of another study; choose another --out or remove it")


def _run_processes(tune: TuneConfig, study: optuna.Study, echo: Callable[[str], None] | None, verbose: bool) -> None:
    """Worker 0 runs here; workers 1..n_jobs-1 in new processes, each with its share of the CPU threads."""
    import torch

    context = multiprocessing.get_context("spawn")  # fork would copy PyTorch's thread pools mid-use
    threads, per_worker = torch.get_num_threads(), threads_per_worker(tune)
    # spawned processes inherit the environment (OMP_NUM_THREADS, OMP_WAIT_POLICY) but not torch.set_num_threads
    others = [context.Process(target=_worker_main, args=(tune, k, verbose, per_worker), name=f"evoprop-tune-{k}")
              for k in range(1, tune.study.n_jobs)]
    for process in others:
        process.start()
    torch.set_num_threads(per_worker)
    try:
        echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        run_worker(tune, 0, lambda line: echo(f"[worker 0] {line}"), verbose, study)
    except KeyboardInterrupt:
        if signals.terminated():  # SIGTERM reached this process only (Ctrl-C reaches the whole group)
            for process in others:
                process.terminate()  # each stops as it would on Ctrl-C: its trial marked failed
        raise
    finally:
        torch.set_num_threads(threads)
        for process in others:  # on an error or Ctrl-C here too: the others finish or stop on their own
            process.join()
    failed = [f"worker {k} (exit status {p.exitcode})" for k, p in enumerate(others, 1) if p.exitcode != 0]
    if failed:
        raise EvopropError(f"{', '.join(failed)} stopped early; its trials are retried when the study runs again")


def threads_per_worker(tune: TuneConfig) -> int:
    """PyTorch threads of each worker process: what the user set, else this process's threads shared out.

    OMP_NUM_THREADS is a per-process setting, so each worker takes it as given; without it the
    threads this process runs with (PyTorch's default or what the CLI entry chose) are divided
    among the ``n_jobs`` workers.
    """
    import torch

    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, torch.get_num_threads() // tune.study.n_jobs)


def _worker_main(tune: TuneConfig, worker: int, verbose: bool, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        with signals.stop_on_signals():
            run_worker(tune, worker, lambda line: print(f"[worker {worker}] {line}", file=sys.stderr, flush=True),
                       verbose)
    except EvopropError as exc:
        print(f"evoprop: error: [worker {worker}] {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: its trial is marked failed; worker 0 says what was kept
        sys.exit(signals.EXIT_INTERRUPTED)


def finish(tune: TuneConfig, study: optuna.Study) -> StudyResult:
    """The study's best trial and its configuration file ``<out>/best.yaml`` (None if no trial completed)."""
    counts = count_trials(study)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return StudyResult(study, None, None, counts)
    best = study.best_trial
    path = write_best_config(tune, best)
    return StudyResult(study, best, path, counts)


def best_config(tune: TuneConfig, trial: FrozenTrial) -> TrainConfig:
    """The base settings with ``trial``'s parameters: the trial's own configuration."""
    return apply_values(tune.train, trial.params)


def write_best_config(tune: TuneConfig, trial: FrozenTrial, path: str | Path | None = None,
                      what: str | None = None) -> Path:
    """``trial``'s configuration as a config file, with a header saying why it is best (``what``: its value)."""
    path = Path(path or tune.out / "best.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(best_config(tune, trial).to_dict()))  # tuples -> lists: plain YAML
    if what is None:
        what = "rating" if tune.study.human else f"{tune.study.metric} ({tune.study.reduce} epoch)"
        what = f"{what} {trial.value:.6g}"
    header = (f"# Best trial ({trial.number}) of study '{tune.study.name}' in {shown(tune.storage)}: {what}\n"
              f"# Its run: {trial.user_attrs.get('run_dir', '?')}\n"
              f"# Re-run it: evoprop train --config {path}\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path
