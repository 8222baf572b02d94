"""A tune config file: the base training settings, the search space, and how the study runs.

    train:          # any key of `evoprop train --config`: the settings every trial shares
      dataset: mnist
      depth: 1
      epochs: 5
    search_space:   # what Optuna chooses per trial (see evoprop.tune.space)
      lr: {low: 1.0e-4, high: 1.0, log: true}
    study:          # everything optional; `evoprop tune` options override it
      metric: val_f1      # a per-epoch metric of the validation (or train) split, never test_*
      n_trials: 20

The ``study`` keys and their defaults are the fields of :class:`StudySettings`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoprop.config import MAX_SEED, TrainConfig, check_type, one_of, read_mapping
from evoprop.errors import ConfigError
from evoprop.tune.space import Param, parse_space

SAMPLERS = ("tpe", "cmaes", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("maximize", "minimize")
REDUCTIONS = ("best", "last")
WIDGETS = ("slider", "choice")
#: Human-in-the-loop modes: a rating per trial (evoprop.tune.hitl), or the worst of k side by side (evoprop.tune.compare).
HUMAN_MODES = ("rate", "compare")
#: Per-epoch metrics a trial can be scored on; test_* are refused (see check_metric).
METRICS = ("val_f1", "val_accuracy", "val_loss", "train_loss")
#: Heartbeats and the grace period are sleeps and timeouts: beyond a day they only hide a dead worker.
MAX_SECONDS = 86_400
#: Worker processes one `evoprop tune` starts on its machine (each trains a model); more is a typo.
MAX_JOBS = 256


@dataclass
class StudySettings:
    name: str | None = None  # None: the config file's name without its suffix
    metric: str = "val_f1"
    direction: str | None = None  # None: minimize a *_loss metric, maximize anything else
    reduce: str = "best"  # the trial's value: the metric's best epoch, or its last
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the Optuna sampler
    seed: int | None = 0  # the sampler's seed in the process creating the study; others derive theirs (study.py)
    pruner: str = "median"
    pruner_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the Optuna pruner
    n_trials: int = 20  # finished (complete or pruned) trials the study should hold, over all workers
    storage: str | None = None  # None: sqlite:///<out>/study.db
    out: str | None = None  # None: tune/<name>
    artifact_dir: str | None = None  # None: <out>/artifacts
    n_jobs: int = 1  # worker processes started by this command
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 60  # seconds without a heartbeat after which a trial counts as dead, is failed and retried
    max_retry: int = 3  # retries of a trial whose worker died
    figures: bool = True  # draw each trial's figures and upload them for the dashboard (~0.3 s a trial)
    # human-in-the-loop: false; rate (or true): a person's rating in the dashboard is a trial's value;
    # compare: a person picks the worst of `waiting` trials shown side by side (preferential optimization)
    human: bool | str = False
    rating: dict[str, Any] = field(default_factory=dict)  # the rating widget (see evoprop.tune.hitl)
    waiting: int = 2  # human-in-the-loop: trials ready for rating at once; compare: trials shown side by side

    @property
    def maximize(self) -> bool:
        return self.resolved_direction == "maximize"

    @property
    def resolved_direction(self) -> str:
        if self.human:
            return "maximize"  # a rating: higher is better
        return self.direction or ("minimize" if self.metric.endswith("loss") else "maximize")


@dataclass
class TuneConfig:
    train: TrainConfig
    space: list[Param]
    study: StudySettings

    @property
    def out(self) -> Path:
        return Path(self.study.out or Path("tune") / self.study.name)

    @property
    def storage(self) -> str:
        return self.study.storage or f"sqlite:///{self.out / 'study.db'}"

    @property
    def artifact_dir(self) -> Path:
        return Path(self.study.artifact_dir or self.out / "artifacts")


def load_tune_config(path: str | Path | None, train_overrides: dict[str, Any] | None = None,
                     study_overrides: dict[str, Any] | None = None) -> TuneConfig:
    """Read a tune config file (or none: defaults), apply command-line overrides, check everything."""
    data = read_mapping(path) if path is not None else {}
    unknown = sorted(set(data) - {"train", "search_space", "study"})
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)} in {path}; valid: train, search_space, study")
    train_overrides = dict(train_overrides or {})
    space = data.get("search_space")
    searched = {str(k).replace("-", "_") for k in space} if isinstance(space, dict) else set()  # else parse_space says
    clash = sorted(k for k in train_overrides if k in searched)
    if clash:
        raise ConfigError(f"{', '.join(clash)} is searched (search_space in {path}); give it on the command line "
                          "only after removing it from search_space")
    train = TrainConfig.from_dict(_mapping(data.get("train"), "train"))
    train = TrainConfig.from_dict(train_overrides, base=train)
    train.validate()
    study = _study_settings(_mapping(data.get("study"), "study"), study_overrides or {}, path)
    check_metric(study, train)
    return TuneConfig(train=train, space=parse_space(data.get("search_space"), train), study=study)


def check_metric(study: StudySettings, train: TrainConfig) -> None:
    """The objective is a validation (or train) metric: choosing hyperparameters on test would bias every test number."""
    if study.human:
        return
    if study.metric.startswith("test"):
        raise ConfigError(f"the objective metric must not be a test-split metric ('{study.metric}'): hyperparameters "
                          "chosen on the test split make its numbers optimistic; use val_f1 (the default), "
                          "val_accuracy or val_loss")
    if study.metric not in METRICS:
        raise ConfigError(f"unknown metric '{study.metric}'; valid: {', '.join(METRICS)}")
    if study.metric.startswith("val") and not train.val_fraction:
        raise ConfigError(f"metric {study.metric} needs a validation split: set train.val_fraction above 0 (e.g. 0.1)")


def _study_settings(data: dict, overrides: dict, path) -> StudySettings:
    names = [f.name for f in dataclasses.fields(StudySettings)]
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown study key(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    hints = typing.get_type_hints(StudySettings)
    for name, value in data.items():
        check_type(f"study.{name}", value, hints[name])
    study = StudySettings(**data)
    if study.name is None:
        study.name = Path(path).stem if path is not None else "evoprop"
    one_of("study.sampler", study.sampler, SAMPLERS)
    one_of("study.pruner", study.pruner, PRUNERS)
    one_of("study.reduce", study.reduce, REDUCTIONS)
    if study.direction is not None:
        one_of("study.direction", study.direction, DIRECTIONS)
    for name in ("n_trials", "n_jobs", "heartbeat_interval", "grace_period", "waiting"):
        value = getattr(study, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"study.{name} must be a positive integer, got {value!r}")
    if isinstance(study.max_retry, bool) or not isinstance(study.max_retry, int) or study.max_retry < 0:
        raise ConfigError(f"study.max_retry must be an integer >= 0, got {study.max_retry!r}")
    if study.seed is not None and not 0 <= study.seed <= MAX_SEED:
        raise ConfigError(f"study.seed must be an integer in [0, {MAX_SEED}] or null, got {study.seed!r}")
    if study.n_jobs > MAX_JOBS:
        raise ConfigError(f"study.n_jobs must be at most {MAX_JOBS} worker processes, got {study.n_jobs}")
    for name in ("heartbeat_interval", "grace_period"):
        if getattr(study, name) > MAX_SECONDS:
            raise ConfigError(f"study.{name} must be at most {MAX_SECONDS} seconds (a day), got {getattr(study, name)}")
    if study.grace_period <= study.heartbeat_interval:
        raise ConfigError("study.grace_period must be longer than study.heartbeat_interval, or live trials are failed")
    for name in ("sampler_options", "pruner_options", "rating"):
        if not isinstance(getattr(study, name), dict):
            raise ConfigError(f"study.{name} must be a mapping")
    if not isinstance(study.figures, bool):
        raise ConfigError("study.figures must be true or false")
    if study.human is True:
        study.human = "rate"
    if study.human is not False and study.human not in HUMAN_MODES:
        raise ConfigError(f"study.human must be false, true (= rate), rate or compare, got {study.human!r}")
    if study.human == "compare":
        if not study.figures:
            raise ConfigError("study.human: compare shows each trial's figure; it needs study.figures: true")
        if study.waiting < 2:
            raise ConfigError("study.human: compare shows study.waiting trials side by side; it needs 2 or more")
    return study


def _mapping(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"the {name} section must be a mapping")
    return value

