"""Hyperparameter optimisation of evoprop runs with Optuna (``evoprop tune``, ``evoprop dashboard``).

    settings   the tune config file: base training settings, search space, study settings
    space      the search space: parse, check, sample a trial's TrainConfig
    objective  one trial = one ordinary run directory, pruned on its per-epoch validation metric
    storage    SQLite / any SQLAlchemy URL / journal file, with heartbeats and retries of dead workers' trials
    study      samplers, pruners, worker processes, the best configuration as a config file
    artifacts  each trial's figures, uploaded for Optuna Dashboard
    hitl       human-in-the-loop: a person's rating in the dashboard is the objective
    compare    human-in-the-loop by comparison: a person picks the worst of k trials shown side by side
    dashboard  serve Optuna Dashboard for a storage
"""

from evoprop.tune.settings import StudySettings, TuneConfig, load_tune_config
from evoprop.tune.study import StudyResult, best_config, open_study, run_study

__all__ = ["StudyResult", "StudySettings", "TuneConfig", "best_config", "load_tune_config", "open_study",
           "run_study"]
