"""Property tests: any value of any setting is either a valid config or one ConfigError line.

Hypothesis draws values for every TrainConfig field and every key of a tune file: integers
far out of range, NaN, ±inf, negative and huge floats, values of the wrong type, unknown
keys. Whatever it draws, reading and checking the settings (what `evoprop train` and
`evoprop tune` do before anything is trained) must end in a valid config or in one
``ConfigError`` whose message is one line: never another exception type, never a hang.
Examples are bounded and derandomized, so the tests are deterministic and fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evoprop.config import TrainConfig, check_setting
from evoprop.errors import ConfigError
from evoprop.runs.launch import resolve_config
from evoprop.tune.settings import StudySettings, load_tune_config

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

FIELDS = TrainConfig.field_names()

#: What a user (or a typo) can put anywhere: numbers of every size and sign, NaN and the
#: infinities, and values of the wrong type.
ANY_VALUE = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, 2, -1, 2**31, 2**32, 2**63, 2**64, 10**12, 10**30, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30, 1e-300, 0.0, 0.5]),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.lists(st.integers(min_value=-3, max_value=3) | st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers() | st.floats(), max_size=2),
)

#: Values a valid setting can also take, so that valid configs are drawn too.
PLAUSIBLE = {
    "method": st.sampled_from(["gradient", "hybrid", "es"]),
    "optimizer": st.sampled_from(["sgd", "adam", "momentum"]),
    "schedule": st.sampled_from([None, "lr-decay", "step", "cosine", "hybrid"]),
    "strategy": st.sampled_from(["auto", "sep", "cma"]),
}


def _value_for(name: str):
    return (PLAUSIBLE[name] | ANY_VALUE) if name in PLAUSIBLE else ANY_VALUE


def _settings(max_size: int = 4):
    """A few TrainConfig fields (now and then an unknown key) with drawn values."""
    names = st.sampled_from([*FIELDS, "epochz", "learning-rate"])
    return st.dictionaries(names, st.none(), max_size=max_size).flatmap(
        lambda keys: st.fixed_dictionaries({k: _value_for(k) for k in keys}))


def _assert_one_line(exc: ConfigError) -> None:
    message = str(exc)
    assert message and "\n" not in message, message


def _assert_valid(config: TrainConfig) -> None:
    for name in FIELDS:  # a config that passed holds only values that pass on their own
        check_setting(name, getattr(config, name))


@pytest.mark.slow
@FUZZ
@given(_settings())
def test_any_train_settings_give_a_valid_config_or_one_config_error(data):
    try:
        config = resolve_config(TrainConfig.from_dict(data))
    except ConfigError as exc:
        _assert_one_line(exc)
    else:
        _assert_valid(config)


@pytest.mark.slow
@FUZZ
@given(st.sampled_from(FIELDS), ANY_VALUE)
def test_any_value_of_one_setting_is_valid_or_one_config_error(name, value):
    """One field at a time: every field meets every kind of value (the case a user's typo is)."""
    try:
        config = resolve_config(TrainConfig.from_dict({name: value}))
    except ConfigError as exc:
        _assert_one_line(exc)
    else:
        _assert_valid(config)


STUDY_FIELDS = [f.name for f in dataclasses.fields(StudySettings)]
NUMBER = st.sampled_from([0, 1, 3, 1e-4, 0.1, 64, -1, 10**30, math.nan, math.inf, -math.inf]) | ANY_VALUE
#: A search-space entry: mostly the shape the docs give ({low, high, log, step, choices, when}), with drawn values.
SPACE_ENTRY = st.one_of(
    st.fixed_dictionaries({"low": NUMBER, "high": NUMBER}, optional={"log": ANY_VALUE, "step": NUMBER,
                                                                     "type": ANY_VALUE, "bogus": ANY_VALUE}),
    st.fixed_dictionaries({"choices": ANY_VALUE}, optional={"when": ANY_VALUE}),
    ANY_VALUE,
)
SPACE_KEYS = st.sampled_from(["lr", "batch_size", "popsize", "optimizer", "depth", "sigma0",
                              "optimizer_options.momentum", "nosuch", "lr.x"])
BASE_TRAIN = {"dataset": "mnist", "depth": 1, "epochs": 1}


def _tune_file():
    """A tune file that is mostly right: a valid train section with a few drawn settings, a drawn
    search space, a study section with a few drawn keys; now and then a section of the wrong type."""
    train = _settings(max_size=2).map(lambda drawn: {**BASE_TRAIN, **drawn})
    space = st.dictionaries(SPACE_KEYS, SPACE_ENTRY, max_size=2)
    study = st.dictionaries(st.sampled_from([*STUDY_FIELDS, "bogus"]), st.none(), max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: NUMBER for k in keys}))
    wrong = ANY_VALUE.filter(lambda v: v is not None and not isinstance(v, dict))
    def mostly(right):  # one time in eight the section is not a mapping
        return st.integers(0, 7).flatmap(lambda i: right if i else wrong)

    return st.fixed_dictionaries({"train": mostly(train), "search_space": mostly(space), "study": mostly(study)},
                                 optional={"extra": ANY_VALUE})


@pytest.mark.slow
@FUZZ
@given(_tune_file())
def test_any_tune_file_gives_a_valid_study_or_one_config_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.json"
        path.write_text(json.dumps(data))  # NaN and Infinity as JSON writes them; read back as such
        try:
            tune = load_tune_config(path)
        except ConfigError as exc:
            _assert_one_line(exc)
        else:
            _assert_valid(tune.train)
