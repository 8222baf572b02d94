"""Human-in-the-loop by comparison: a person sees k trials' figures side by side and picks the worst one.

People find it easier to say which of several outputs is better than to give each a score
(the interface of the tuning document's Figure 3). Optuna Dashboard supports this as
*preferential optimization* (``optuna_dashboard.preferential``); ``study.human: compare``
runs it:

1. the study keeps ``k = study.waiting`` trials active: trained as ordinary runs, their
   figure uploaded, left RUNNING;
2. the dashboard's study page shows the k figures side by side; the person clicks the worst.
   Each of the others is recorded as preferred over it (a *preference*), the k trials become
   COMPLETE (a preferential study has no values: Optuna stores 0), and the worst leaves;
3. the preferential sampler fits all preferences so far (a Gaussian process with a probit
   likelihood, Chu and Ghahramani 2005, as BoTorch's ``PairwiseGP``;
   ``optuna_dashboard.preferential.samplers.gp.PreferentialGPSampler``) and proposes the
   trial that refills the k.

The study ends when ``n_trials`` trials have been compared (are COMPLETE). The best trial is
one no other trial was preferred over, the one preferred over the most others (ties: the
earlier); its settings go to ``<out>/best.yaml``. Each trial shows ``first_layer.png`` (the
weight templates) if its run drew one, else its learning curve. A trial picked while still
training is taken as picked, as in evoprop.tune.hitl.
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable

import optuna
from optuna.artifacts import get_all_artifact_meta
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from evoprop.errors import ConfigError, EvopropError, TrainingDiverged
from evoprop.tune.artifacts import CURVE, WEIGHTS, artifact_store
from evoprop.tune.hitl import wait_for_people
from evoprop.tune.objective import fail_unless_decided, frozen, train_trial, trial_title
from evoprop.tune.settings import TuneConfig
from evoprop.tune.storage import open_storage, shown
from evoprop.tune.study import (StudyResult, check_settings, count_trials, joining_seed, quiet_optuna,
                                write_best_config)

#: The trial user attribute holding the id of the artifact shown for comparison (the dashboard reads it).
FIGURE_ATTR = "evoprop_compare_figure"


def make_preferential_sampler(tune: TuneConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    """Optuna Dashboard's preferential GP sampler (needs BoTorch); ``study.sampler: random`` for uniform proposals."""
    if tune.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    try:
        from optuna_dashboard.preferential.samplers.gp import PreferentialGPSampler
    except ImportError as exc:
        raise ConfigError(f"study.human: compare learns from the comparisons with a preferential GP sampler, which "
                          f"needs BoTorch ({exc.name} is missing): pip install 'evoprop[preferential]', or set "
                          "study.sampler: random") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return PreferentialGPSampler(seed=seed)


def open_compare_study(tune: TuneConfig):
    """Create the preferential study (k = study.waiting), or join it; the dashboard shows each trial's figure."""
    from optuna_dashboard import register_preference_feedback_component
    from optuna_dashboard.preferential import create_study, load_study

    s = tune.study
    storage = open_storage(tune.storage)  # no heartbeats: a trial waiting for a person is not dead
    with warnings.catch_warnings(), quiet_optuna():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            try:  # the creator samples with study.seed, a joining process with a derived seed (study.py)
                study = create_study(n_generate=s.waiting, storage=storage, study_name=s.name,
                                     sampler=make_preferential_sampler(tune, s.seed))
            except DuplicatedStudyError:
                study = load_study(study_name=s.name, storage=storage,
                                   sampler=make_preferential_sampler(tune, joining_seed(tune, storage)))
        except ConfigError:  # already one of ours: keep its message
            raise
        except ValueError as exc:  # "The study is not a PreferentialStudy."
            raise ConfigError(f"study {s.name} in {shown(tune.storage)} is not a comparison study ({exc}); "
                              "give another --study-name") from None
        check_settings(study, tune)
        register_preference_feedback_component(study, "artifact", FIGURE_ATTR)
    return study


def run_compare_study(tune: TuneConfig, echo: Callable[[str], None] | None = None, poll: float = 1.0,
                      timeout: float | None = None) -> StudyResult:
    """Keep k trials to compare until ``n_trials`` trials are compared (or ``timeout`` seconds pass)."""
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    store = artifact_store(tune.artifact_dir)
    study = open_compare_study(tune)
    target = tune.study.n_trials
    wait_for_people(study, tune, "compared", echo, poll, timeout,
                    ready=lambda c: study.should_generate() and _proposed(study) < target,
                    propose=lambda: _propose(study, tune, store, echo),
                    waiting=lambda c: "pick the worst of the trials shown side by side in the dashboard")
    return finish_compare(tune, study)


def _proposed(study) -> int:
    """Trials proposed so far that still count: not failed, not skipped in the dashboard."""
    skipped = {t._trial_id for t in study.get_trials(deepcopy=False) if _is_skipped(study, t)}
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
               if t._trial_id not in skipped)


def _is_skipped(study, trial: FrozenTrial) -> bool:
    from optuna_dashboard.preferential._system_attrs import is_skipped_trial  # no public form of this test

    return is_skipped_trial(trial._trial_id, study._study._storage.get_study_system_attrs(study._study._study_id))


def _propose(study, tune: TuneConfig, store, echo: Callable[[str], None]) -> None:
    """Ask for a trial, train it, upload its figures and name the one shown; it stays RUNNING, to be compared."""
    trial = study.ask()
    try:
        train_trial(trial, tune, store)
        figures = {meta.filename: meta.artifact_id for meta in get_all_artifact_meta(trial)}
        shown_figure = figures.get(WEIGHTS) or figures.get(CURVE) or next(iter(figures.values()), None)
        if shown_figure is None:
            raise EvopropError(f"trial {trial.number} drew no figure to compare")
        trial.set_user_attr(FIGURE_ATTR, shown_figure)
    except UpdateFinishedTrialError:  # picked (or failed) in the dashboard while it trained: taken as given
        echo(f"{trial_title(trial)} was {frozen(trial).state.name.lower()} in the dashboard before its training "
             "finished; kept as given")
        return
    except TrainingDiverged:
        fail_unless_decided(trial)
        echo(f"{trial_title(trial)} diverged; not shown for comparison")
        return
    except BaseException:
        fail_unless_decided(trial)
        raise
    echo(f"{trial_title(trial)} is ready for comparison (trial {trial.number})")


def wins(study) -> dict[int, int]:
    """For each trial number, how many trials it was preferred over."""
    count: dict[int, int] = {}
    for better, _ in study.get_preferences(deepcopy=False):
        count[better.number] = count.get(better.number, 0) + 1
    return count


def finish_compare(tune: TuneConfig, study) -> StudyResult:
    """The best trial (never the worse of a comparison; most wins) and ``<out>/best.yaml``."""
    counts = count_trials(study)
    won = wins(study)
    best_trials = sorted(study.best_trials, key=lambda t: (-won.get(t.number, 0), t.number))
    if not best_trials:
        return StudyResult(study, None, None, counts)
    best = best_trials[0]
    what = f"preferred over {won.get(best.number, 0)} trial(s) in side-by-side comparisons"
    return StudyResult(study, best, write_best_config(tune, best, what=what), counts)
