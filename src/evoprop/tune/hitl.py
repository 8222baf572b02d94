"""Human-in-the-loop tuning: the value of a trial is a person's rating of its figures in Optuna Dashboard.

Where no number says what is better (do the first-layer templates look like digits? is
this learning curve "healthy"?), a person is the objective. The study registers a rating
widget with optuna-dashboard (a slider or a choice, ``study.rating``); then, in a loop,

1. it asks the sampler for a trial, trains it as an ordinary run and uploads its figures;
2. the trial stays RUNNING, and the dashboard shows its figures with the widget;
3. the person rates it (the dashboard tells Optuna the rating: the trial is COMPLETE),
   and the sampler uses the rating when it proposes the next trial.

``study.waiting`` trials are kept ready for rating at once, so the person never waits
for training; the loop ends when ``n_trials`` trials are rated. A trial can also be
rated from Python: ``study.tell(trial_number, value)``.

The dashboard offers the rating form (and "Fail trial") for every RUNNING trial, also one
still training. Such an early rating is taken: the trial keeps the person's verdict, its
run still finishes in its run directory (without figures in the dashboard), and the study
goes on with the next proposal.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any, Callable

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState
from optuna_dashboard import ObjectiveChoiceWidget, ObjectiveSliderWidget, register_objective_form_widgets

from evoprop.errors import ConfigError, EvopropError, TrainingDiverged
from evoprop.tune.artifacts import artifact_store
from evoprop.tune.objective import fail_unless_decided, frozen, train_trial, trial_title
from evoprop.tune.settings import TuneConfig
from evoprop.tune.storage import shown
from evoprop.tune.study import StudyResult, count_trials, finish, open_study

SLIDER_DEFAULTS = {"min": 1, "max": 10, "step": 1, "labels": [[1, "useless"], [10, "excellent"]],
                   "description": "How good is this trial, judged from its figures?"}
_WIDGET_KEYS = {"slider": {"widget", "min", "max", "step", "labels", "description"},
                "choice": {"widget", "choices", "values", "description"}}


def rating_widget(spec: dict[str, Any]):
    """The dashboard widget ``study.rating`` describes.

    ``{widget: slider, min: 1, max: 10, step: 1, labels: [[1, bad], [10, great]]}`` (the default) or
    ``{widget: choice, choices: [bad, fine, great], values: [0, 1, 2]}``; both take a ``description``.
    """
    kind = spec.get("widget", "slider")
    if kind not in _WIDGET_KEYS:
        raise ConfigError(f"unknown study.rating.widget '{kind}'; valid: {', '.join(_WIDGET_KEYS)}")
    unknown = sorted(set(spec) - _WIDGET_KEYS[kind])
    if unknown:
        raise ConfigError(f"study.rating: unknown key(s) {', '.join(unknown)} for a {kind} widget")
    try:
        if kind == "slider":
            s = {**SLIDER_DEFAULTS, **spec}
            if "labels" not in spec and ("min" in spec or "max" in spec):
                s["labels"] = None  # the default labels name the default ends only
            return ObjectiveSliderWidget(
                min=float(s["min"]), max=float(s["max"]), step=None if s["step"] is None else float(s["step"]),
                labels=[(float(v), str(text)) for v, text in s["labels"]] if s["labels"] else None,
                description=s["description"])
        choices, values = spec.get("choices"), spec.get("values")
        if not isinstance(choices, list) or not isinstance(values, list) or not choices or len(choices) != len(values):
            raise ConfigError("study.rating: a choice widget needs lists of choices and values of the same length")
        return ObjectiveChoiceWidget(choices=[str(c) for c in choices], values=[float(v) for v in values],
                                     description=spec.get("description"))
    except ConfigError:  # already one of ours: keep its message
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"study.rating: {exc}") from None


def run_human_study(tune: TuneConfig, echo: Callable[[str], None] | None = None, poll: float = 1.0,
                    timeout: float | None = None) -> StudyResult:
    """Propose trials and wait for their ratings until ``n_trials`` are rated (or ``timeout`` seconds pass)."""
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    widget = rating_widget(dict(tune.study.rating))
    # The artifact folder exists before the study does, so a dashboard opened on the study at once finds it.
    store = artifact_store(tune.artifact_dir)
    # No heartbeats: a trial waiting for a person is RUNNING for as long as the person takes, not dead.
    study = open_study(tune, heartbeat=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        register_objective_form_widgets(study, widgets=[widget])
    target, ready = tune.study.n_trials, tune.study.waiting
    wait_for_people(study, tune, "rated", echo, poll, timeout,
                    ready=lambda c: c["running"] < ready and c["complete"] + c["running"] < target,
                    propose=lambda: _propose(study, tune, store, echo),
                    waiting=lambda c: f"{c['running']} trial(s) wait for a rating in the dashboard")
    return finish(tune, study)


def wait_for_people(study: optuna.Study, tune: TuneConfig, verb: str, echo: Callable[[str], None], poll: float,
                    timeout: float | None, *, ready: Callable[[dict], bool], propose: Callable[[], None],
                    waiting: Callable[[dict], str]) -> None:
    """Until ``n_trials`` trials are complete (``verb``: rated, compared): ``propose()`` a trial whenever
    ``ready(counts)``, else say once per change what the person is to do (``waiting(counts)``) and poll.
    After ``timeout`` seconds, one line: the same command goes on where this one stopped."""
    target = tune.study.n_trials
    started, announced = time.monotonic(), None
    while True:
        counts = count_trials(study)
        if counts["complete"] >= target:
            return
        if timeout is not None and time.monotonic() - started > timeout:
            raise EvopropError(f"{counts['complete']} of {target} trials {verb} after {timeout:g} s; "
                               "run the same command again to go on")
        if ready(counts):
            propose()
            continue
        if announced != counts["complete"]:
            announced = counts["complete"]
            echo(f"{counts['complete']}/{target} {verb}; {waiting(counts)}: evoprop dashboard {shown(tune.storage)}")
        time.sleep(poll)


def _propose(study: optuna.Study, tune: TuneConfig, store, echo: Callable[[str], None]) -> None:
    """Ask for a trial, train it, upload its figures, and leave it RUNNING for the person to rate."""
    trial = study.ask()
    try:
        train_trial(trial, tune, store)
    except UpdateFinishedTrialError:  # rated or failed in the dashboard while it trained: the person decided
        decided = frozen(trial)
        verdict = f"rated {decided.value:g}" if decided.state == TrialState.COMPLETE else decided.state.name.lower()
        echo(f"{trial_title(trial)} was {verdict} in the dashboard before its training finished; kept as given")
        return
    except TrainingDiverged:
        fail_unless_decided(trial)
        echo(f"{trial_title(trial)} diverged; not shown for rating")
        return
    except BaseException:
        fail_unless_decided(trial)
        raise
    echo(f"{trial_title(trial)} is ready for rating (trial {trial.number})")
