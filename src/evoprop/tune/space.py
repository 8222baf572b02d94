"""The search space of a study: which TrainConfig settings Optuna chooses, and from what.

Declared under ``search_space:`` in a tune config file, one entry per setting::

    search_space:
      lr: {low: 1.0e-4, high: 1.0, log: true}          # float, log scale
      batch_size: {choices: [32, 64, 128, 256]}        # categorical
      popsize: {low: 8, high: 64, step: 8}             # int: the setting is an integer
      optimizer: [sgd, adam]                           # a bare list is a categorical
      optimizer_options.momentum: {low: 0.0, high: 0.99, when: {optimizer: sgd}}

``type`` (float, int or categorical) may be given; otherwise a list of ``choices`` is
categorical and a range is int or float as the TrainConfig setting is. A dotted key sets
one entry of ``optimizer_options`` or ``strategy_options``. ``when`` samples an entry only
if the settings named there (sampled earlier in the list, or the base config's) have one
of the given values: a momentum only for SGD. Every value is checked against TrainConfig
before the first trial, so a typo fails at once, not after hours of trials.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from evoprop.config import TrainConfig
from evoprop.errors import ConfigError

KINDS = ("float", "int", "categorical")
#: TrainConfig settings that are mappings: a dotted key such as optimizer_options.momentum sets one entry.
OPTION_FIELDS = ("optimizer_options", "strategy_options")
_ENTRY_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}


@dataclass(frozen=True)
class Param:
    """One searched setting; ``key`` is also the Optuna parameter name."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)

    def suggest(self, trial) -> Any:
        """Ask ``trial`` (an ``optuna.Trial``) for this setting's value."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def applies(self, values: dict[str, Any], base: TrainConfig) -> bool:
        """Whether the ``when`` condition holds for the values chosen so far (else the base config's)."""
        return all(current_value(k, values, base) in allowed for k, allowed in self.when.items())

    def corners(self) -> list:
        """The values that span the entry (its bounds, or every choice): what the up-front check tries."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def grid(self) -> list:
        """Every value of the entry, for the grid sampler."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigError(f"search_space.{self.key}: the grid sampler needs a step (or choices) for a float range")
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


def parse_space(mapping: Any, base: TrainConfig) -> list[Param]:
    """The entries of ``search_space:`` in file order, each checked against TrainConfig (ConfigError if wrong)."""
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        raise ConfigError("search_space must be a mapping of setting name to range or choices")
    params = [_parse_entry(str(key).replace("-", "_"), spec) for key, spec in mapping.items()]
    check_space(params, base)
    return params


def sample_config(trial, params: list[Param], base: TrainConfig) -> TrainConfig:
    """The trial's TrainConfig: ``base`` with every applicable entry suggested by ``trial``."""
    values: dict[str, Any] = {}
    for param in params:
        if param.applies(values, base):
            values[param.key] = param.suggest(trial)
    return apply_values(base, values)


def apply_values(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """``base`` with ``values`` (dotted keys into the option mappings) set; ``base`` is not modified."""
    plain: dict[str, Any] = {}
    options = {name: dict(getattr(base, name)) for name in OPTION_FIELDS}
    for key, value in values.items():
        head, _, entry = key.partition(".")
        if entry:
            options[head][entry] = value
        else:
            plain[key] = value
    for name in OPTION_FIELDS:
        if options[name] != getattr(base, name) and name not in plain:
            plain[name] = options[name]
    return TrainConfig.from_dict(plain, base=dataclasses.replace(base))


def current_value(key: str, values: dict[str, Any], base: TrainConfig) -> Any:
    if key in values:
        return values[key]
    head, _, entry = key.partition(".")
    return getattr(base, head).get(entry) if entry else getattr(base, head)


def check_space(params: list[Param], base: TrainConfig) -> None:
    """Build and validate a TrainConfig at every bound and choice of every entry (with its ``when`` met)."""
    seen = set()
    for param in params:
        if param.key in seen:
            raise ConfigError(f"search_space names {param.key} twice")
        seen.add(param.key)
        for key in param.when:
            _check_key(key, f"search_space.{param.key}.when")
        condition = {k: allowed[0] for k, allowed in param.when.items()}
        for value in param.corners():
            try:
                apply_values(base, {**condition, param.key: value}).validate()
            except ConfigError as exc:
                raise ConfigError(f"search_space.{param.key} = {value!r} is not a valid setting: {exc}") from None


def _parse_entry(key: str, spec: Any) -> Param:
    where = f"search_space.{key}"
    _check_key(key, where)
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a list of choices or a mapping such as {{low: 0.001, high: 0.1, log: true}}")
    unknown = sorted(set(spec) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_ENTRY_KEYS))}")
    when = _parse_when(spec.get("when"), where)
    kind = spec.get("type") or ("categorical" if "choices" in spec else _range_kind(key, spec))
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown type '{kind}'; valid: {', '.join(KINDS)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: a categorical entry needs a non-empty list of choices")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"{where}: choices must be plain values (numbers, strings, true/false, null)")
        return Param(key, kind, choices=tuple(choices), when=when)
    if "choices" in spec:
        raise ConfigError(f"{where}: give either choices or a low/high range, not both")
    low, high = _number(spec, "low", where), _number(spec, "high", where)
    step = _number(spec, "step", where) if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log must be true or false")
    if not low <= high:
        raise ConfigError(f"{where}: low ({low:g}) must not exceed high ({high:g})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-scale range needs low > 0, got {low:g}")
    if log and step is not None:
        raise ConfigError(f"{where}: step and log cannot be combined (Optuna samples one or the other)")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}.step must be > 0")
    if kind == "int":
        if any(v is not None and v != int(v) for v in (low, high, step)):
            raise ConfigError(f"{where}: an int range needs integer low, high and step")
        low, high, step = int(low), int(high), (int(step) if step is not None else None)
    return Param(key, kind, low=low, high=high, log=log, step=step, when=when)


def _check_key(key: str, where: str) -> None:
    head, dot, entry = key.partition(".")
    if head not in TrainConfig.field_names():
        raise ConfigError(f"{where}: '{head}' is not a training setting; valid: {', '.join(TrainConfig.field_names())}")
    if dot and (head not in OPTION_FIELDS or not entry or "." in entry):
        raise ConfigError(f"{where}: a dotted key sets one entry of {' or '.join(OPTION_FIELDS)}, e.g. optimizer_options.momentum")


def _range_kind(key: str, spec: dict) -> str:
    """int when the setting is an integer one (batch_size, popsize...) or, for an option entry, when the bounds are."""
    head, _, entry = key.partition(".")
    if entry:
        bounds = [spec.get("low"), spec.get("high")]
        return "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in bounds) else "float"
    annotation = str(next(f.type for f in dataclasses.fields(TrainConfig) if f.name == head))
    if "float" in annotation:
        return "float"
    if "int" in annotation:
        return "int"
    raise ConfigError(f"search_space.{key}: {head} is not a number; give its choices, e.g. {head}: [a, b]")


def _number(spec: dict, name: str, where: str) -> float:
    value = spec.get(name)
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.{name} must be a number, got {value!r}")
    return value


def _parse_when(when: Any, where: str) -> dict[str, tuple]:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}.when must map setting names to a value or a list of values, e.g. {{optimizer: sgd}}")
    return {str(k).replace("-", "_"): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}
