"""The settings of one training run, validated in one place.

The same ``TrainConfig`` comes from the CLI, from a YAML/JSON file (``--config``),
or from Python; a run directory stores it resolved, so ``--resume`` rebuilds the
exact run. Keys in files may use dashes or underscores.

Each field states its facts once: its type is its annotation, its range a
``setting(default, low=..., high=...)`` beside it (field metadata, read by
:func:`check_setting`), so the CLI, config files, tune files and the Python API all
refuse the same values with the same one-line message.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evoprop.enums import ES_LOSS_NAMES, resolve_combine
from evoprop.errors import ConfigError

METHODS = ("gradient", "hybrid", "es")
ES_WRITE = ("best", "mean")
ES_PRECISIONS = ("auto", "float32", "bfloat16")
SPLITS = ("paper", "official")


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: ``low``..``high`` (closed unless ``*_open``), always finite.

    ``why`` says where a bound comes from when it is not obvious; it ends the error message.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def holds(self, value: float) -> bool:
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an int beyond float's range: no setting takes it
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, kind: str, value: float) -> str:
        """E.g. 'a positive integer', 'an integer in [0, 4294967295]', 'a number > 0'."""
        high = None if self.high == MAX_COUNT and value <= MAX_COUNT else self.high  # 2^62: said only when hit
        if self.low == 1 and not self.low_open and high is None and kind == "an integer":
            return "a positive integer"
        if self.low is not None and high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{_number(self.low)}, {_number(high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_number(self.low)}"
        return f"{kind} {'<' if self.high_open else '<='} {_number(high)}" if high is not None else f"finite {kind}"


def _number(bound: float | None) -> str:
    """A bound as written in an error: integers in full (2^32 - 1 = 4294967295), reals as %g."""
    if bound == MAX_COUNT:
        return "2^62"
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def setting(default: Any = None, *, factory: Any = None, **bounds: Any) -> Any:
    """A TrainConfig field whose range (a :class:`Range` from ``bounds``) is stored with it, in one place."""
    metadata = {"range": Range(**bounds)} if bounds else {}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


#: Seeds go to torch.Generator.manual_seed, also offset and scaled (seed + k, seed * 1_000_003 + stage):
#: 32 bits keep every derived seed inside torch's 64-bit range (and match NumPy's legacy seeds).
MAX_SEED = 2**32 - 1
#: The paper's deepest network has 10 layers; past 1,000 an MLP is a typo (and takes minutes just to build).
MAX_DEPTH = 1000
#: Initial weights lie in about ±1; a step size beyond 1e3 samples networks whose every unit saturates.
MAX_SIGMA0 = 1e3
#: A million generations per epoch is days of work at the fastest; more is a typo, not an experiment.
MAX_GENERATIONS_PER_EPOCH = 10**6
#: Sizes and counts beyond 2^62 cannot index anything a machine holds (torch indexes with int64).
MAX_COUNT = 2**62


@dataclass
class TrainConfig:
    """Every setting of a run. A field's type is its annotation and its range its ``setting(...)``:
    ``validate`` checks both for every field, then what depends on several fields."""

    # what to train
    method: str = "gradient"
    # data
    dataset: str = "mnist"
    data_dir: str | None = None
    split: str = "paper"
    val_fraction: float = setting(0.1, low=0, high=1, high_open=True)
    split_seed: int = setting(0, low=0, high=MAX_SEED)
    standardize: bool = False
    limit_train: int | None = setting(None, low=1, high=MAX_COUNT)
    limit_test: int | None = setting(None, low=1, high=MAX_COUNT)
    # model
    model: str = "mlp"  # mlp (depth, width, activation, init) or resnet18 (resnet_width)
    depth: int = setting(1, low=1, high=MAX_DEPTH, why="the deepest network of the paper has 10 layers")
    width: int = setting(200, low=1, high=MAX_COUNT)
    activation: str = "relu"
    init: str = "glorot"
    resnet_width: int = setting(64, low=1, high=4096)  # channels of the ResNet's first stage (64: ResNet-18)
    # gradient optimizer
    optimizer: str = "sgd"
    lr: float | None = setting(None, low=0, low_open=True)  # None: the optimizer's own default
    optimizer_options: dict[str, Any] = field(default_factory=dict)  # an "lr" here is the same setting as lr
    batch_size: int = setting(64, low=1, high=MAX_COUNT)
    # learning-rate / batch-size schedule (train/schedules.py); None: both stay as given, no δ logged
    schedule: str | None = None  # constant, lr-decay, batch-growth, hybrid, step, cosine
    stage_epochs: int | None = setting(None, low=1, high=MAX_COUNT)  # None: epochs // 5
    gamma: float | None = setting(None, low=0, high=1, low_open=True, high_open=True,  # None: 1/sqrt(2) (step: 0.1)
                                  why="the factor delta (for step: the lr) is multiplied by per stage")
    max_batch_size: int | None = setting(None, low=1, high=MAX_COUNT)
    min_lr: float = setting(0.0, low=0)
    milestones: list[int] | None = None  # step: epochs after which lr *= gamma; None: 1/2 and 3/4 of epochs
    noise_sample: int = setting(1024, low=0, high=MAX_COUNT)  # examples on which C is estimated per stage; 0: off
    # evolution strategy (methods hybrid and es)
    strategy: str = "auto"  # auto: standard CMA-ES (cma) if its full covariance fits in memory, else sep
    popsize: int | None = setting(None, low=2, high=MAX_COUNT)  # None: the strategy's default (4 + 3 ln d)
    sigma0: float | None = setting(None, low=0, low_open=True, high=MAX_SIGMA0,
                                   why="initial weights lie in about ±1")  # None: the initial weights' std
    es_batch_size: int = setting(256, low=1, high=MAX_COUNT)
    es_layers: list[int] | None = None  # None: [0] for hybrid, every layer for es
    generations_per_epoch: int | None = setting(None, low=1, high=MAX_GENERATIONS_PER_EPOCH,
                                                why="a million generations per epoch already takes hours")
    combine: str = "paper"  # hybrid: how a generation meets the trained layer (evoprop/enums.py COMBINE_RULES)
    sync_mean: bool = False  # hybrid: alias of combine "sync" (move the ES mean to the trained layer each generation)
    accept_batch_size: int = setting(1024, low=1, high=MAX_COUNT)  # hybrid, combine elitist/inject: acceptance batch
    es_loss: str = "nll"  # what the ES minimises on its mini-batch (population/losses.py ES_LOSSES)
    es_write: str | None = None  # what the ES writes into the model: best (hybrid default) or mean (es default)
    max_memory: str | int | None = None  # budget for one population pass, e.g. "2G"; None: 1/4 of free memory
    es_precision: str = "auto"  # the candidates' forward pass: auto (bfloat16 where native), float32, bfloat16
    strategy_options: dict[str, Any] = field(default_factory=dict)
    # run
    epochs: int = setting(10, low=1, high=MAX_COUNT)
    seed: int = setting(0, low=0, high=MAX_SEED)
    device: str = "auto"
    eval_batch_size: int = setting(8192, low=1, high=MAX_COUNT)

    def validate(self) -> "TrainConfig":
        """Check every value a user can get wrong; raise ConfigError with a one-line fix.

        First every field on its own (its type and range, :func:`check_setting`), then what
        depends on several fields. An ``lr`` in ``optimizer_options`` is moved to ``lr`` (one
        setting, two spellings: ``--opt lr=0.1`` is ``--lr 0.1``).
        """
        from evoprop.data import DATASETS
        from evoprop.device import resolve_device
        from evoprop.models import ACTIVATIONS, INITS
        from evoprop.optim.registry import check_options

        for f in dataclasses.fields(self):
            check_setting(f.name, getattr(self, f.name))
        self.lr, self.optimizer_options = merge_lr(self.lr, self.optimizer_options)
        _one_of("method", self.method, METHODS)
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("split", self.split, SPLITS)
        _one_of("activation", self.activation, ACTIVATIONS)
        _one_of("init", self.init, INITS)
        resolve_device(self.device)
        if self.noise_sample == 1:
            raise ConfigError("noise_sample must be 0 (off) or at least 2: a spread needs two gradients")
        self._validate_es()
        self._validate_model_and_schedule()
        check_options(self.optimizer, self.optimizer_options)
        return self

    def _validate_es(self) -> None:
        from evoprop.es import STRATEGIES

        _one_of("strategy", self.strategy, ("auto", *STRATEGIES))
        if self.es_layers is not None:
            if not self.es_layers:
                raise ConfigError("es_layers must be a non-empty list of layer indices, got []")
            bad = [i for i in self.es_layers if not -self.depth <= i < self.depth]
            if bad:
                raise ConfigError(f"es_layers {bad} do not exist in a network of depth {self.depth} (indices 0..{self.depth - 1})")
            resolved = [i % self.depth for i in self.es_layers]
            twice = sorted({i for i in resolved if resolved.count(i) > 1})
            if twice:
                raise ConfigError(f"es_layers names layer(s) {', '.join(map(str, twice))} more than once "
                                  f"(got {self.es_layers}); give each layer once")
        if self.es_write is not None:
            _one_of("es_write", self.es_write, ES_WRITE)
        if self.max_memory is not None:
            parse_bytes(self.max_memory)
        _one_of("es_precision", self.es_precision, ES_PRECISIONS)
        resolve_combine(self.combine, self.sync_mean)
        if self.method == "es" and resolve_combine(self.combine, self.sync_mean) != "paper":
            raise ConfigError(f"combine '{self.combine}' combines the ES with a gradient optimizer: use it with method hybrid")
        _one_of("es_loss", self.es_loss, ES_LOSS_NAMES)

    def _validate_model_and_schedule(self) -> None:
        from evoprop.models import MODELS
        from evoprop.train.schedules import check_schedule_config

        _one_of("model", self.model, MODELS)
        if self.model != "mlp" and self.method != "gradient":
            raise ConfigError(f"method {self.method} searches MLP layers by index; model {self.model} trains with "
                              "--method gradient only")
        check_schedule_config(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: "TrainConfig | None" = None) -> "TrainConfig":
        """``base`` (or the defaults) updated with ``data``; unknown keys and bad values are an error."""
        if not isinstance(data, dict):
            raise ConfigError("a config must be a mapping of setting name to value")
        data = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; valid: {', '.join(cls.field_names())}")
        for name, value in data.items():
            check_setting(name, value)
        if isinstance(data.get("optimizer_options"), dict):
            # YAML lists (e.g. Adam's betas) become the tuples torch.optim expects
            options = {k: tuple(v) if isinstance(v, list) else v for k, v in data["optimizer_options"].items()}
            if "lr" in options:  # one setting, two spellings: checked against an lr given beside it
                data["lr"], options = merge_lr(data.get("lr"), options)
            data["optimizer_options"] = options
        return dataclasses.replace(base or cls(), **data)

    @classmethod
    def from_file(cls, path: str | Path, base: "TrainConfig | None" = None) -> "TrainConfig":
        """``base`` updated with the mapping in a YAML or JSON file; an error names the file."""
        data = read_mapping(path)
        try:
            return cls.from_dict(data, base)
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def check_setting(name: str, value: Any) -> None:
    """One TrainConfig field on its own: the type of its annotation, then its range (if it has one)."""
    hint = _field_types()[name]
    check_type(name, value, hint)
    bounds = next(f for f in dataclasses.fields(TrainConfig) if f.name == name).metadata.get("range")
    if bounds is not None and value is not None and not bounds.holds(value):
        kind = "a number" if float in (hint, *typing.get_args(hint)) else "an integer"
        why = f" ({bounds.why})" if bounds.why else ""
        raise ConfigError(f"{name} must be {bounds.describe(kind, value)}{why}, got {_show(value)}")


def allowed_values(name: str) -> str | None:
    """The range of TrainConfig field ``name`` in words ('an integer in [0, 4294967295]'), or None if it has none."""
    bounds = next(f for f in dataclasses.fields(TrainConfig) if f.name == name).metadata.get("range")
    if bounds is None:
        return None
    hint = _field_types()[name]
    return bounds.describe("a number" if float in (hint, *typing.get_args(hint)) else "an integer", 0)


def check_type(name: str, value: Any, hint: Any) -> None:
    """ConfigError unless ``value`` has type ``hint`` (an annotation: int, float | None, list[int], ...)."""
    if not _has_type(value, hint):
        raise ConfigError(f"{name} must be {_describe(hint)}, got {_show(value)}")


def merge_lr(lr: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(lr, optimizer options without "lr"): an ``lr`` among the options is the learning rate itself."""
    if "lr" not in options:
        return lr, options
    rest = {k: v for k, v in options.items() if k != "lr"}
    given = options["lr"]
    check_setting("lr", given)
    if lr is not None and given != lr:
        raise ConfigError(f"the learning rate is given twice, as lr {lr!r} and as optimizer option lr {given!r}; "
                          "give it once")
    return given, rest


def _has_type(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, hint)


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin is dict:
        return "a mapping of option name to value"
    return _TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _show(value: Any) -> str:
    """A value in an error message: its repr, shortened (a 10**30 seed or a long list stays one readable line)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file holding one mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                          "save it as UTF-8 YAML or JSON") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to read") from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting name to value")
    return data


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(value: str | int) -> int:
    """'512M' / '2G' / '1.5GB' / 1048576 -> bytes (binary units); at least 1 byte, at most 2^62."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = float(value) if value <= MAX_COUNT else math.inf
    else:
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "")
        try:
            size = float(number) * _UNITS[unit]
        except ValueError:
            size = math.nan
    if not 1 <= size <= MAX_COUNT:  # also refuses nan and inf
        raise ConfigError(f"max_memory must be a size from 1 byte to 2^62 bytes, such as 512M or 2G, "
                          f"got {_show(value)}")
    return int(value) if isinstance(value, int) else int(size)


def _one_of(name: str, value: Any, valid) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")
