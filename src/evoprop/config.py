"""The settings of one training run, validated in one place.

The same ``TrainConfig`` comes from the CLI, from a YAML/JSON file (``--config``),
or from Python; a run directory stores it resolved, so ``--resume`` rebuilds the
exact run. Keys in files may use dashes or underscores.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evoprop.errors import ConfigError

METHODS = ("gradient", "hybrid", "es")
ES_WRITE = ("best", "mean")
ES_PRECISIONS = ("auto", "float32", "bfloat16")
SPLITS = ("paper", "official")


@dataclass
class TrainConfig:
    # what to train
    method: str = "gradient"
    # data
    dataset: str = "mnist"
    data_dir: str | None = None
    split: str = "paper"
    val_fraction: float = 0.1
    split_seed: int = 0
    standardize: bool = False
    limit_train: int | None = None
    limit_test: int | None = None
    # model
    model: str = "mlp"  # mlp (depth, width, activation, init) or resnet18 (resnet_width)
    depth: int = 1
    width: int = 200
    activation: str = "relu"
    init: str = "glorot"
    resnet_width: int = 64  # channels of the ResNet's first stage (64: ResNet-18)
    # gradient optimizer
    optimizer: str = "sgd"
    lr: float | None = None  # None: the optimizer's own default
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    # learning-rate / batch-size schedule (train/schedules.py); None: both stay as given, no δ logged
    schedule: str | None = None  # constant, lr-decay, batch-growth, hybrid, step, cosine
    stage_epochs: int | None = None  # None: epochs // 5
    gamma: float | None = None  # factor per stage; None: 1/sqrt(2) (step: 0.1)
    max_batch_size: int | None = None
    min_lr: float = 0.0
    milestones: list[int] | None = None  # step: epochs after which lr *= gamma; None: 1/2 and 3/4 of epochs
    noise_sample: int = 1024  # examples on which C (gradient noise) is estimated per stage; 0: off
    # evolution strategy (methods hybrid and es)
    strategy: str = "auto"  # auto: the paper's CMA-ES if its full covariance fits in memory, else sep
    popsize: int | None = None  # None: the strategy's default (4 + 3 ln d)
    sigma0: float | None = None  # None: the standard deviation of the initial searched weights
    es_batch_size: int = 256
    es_layers: list[int] | None = None  # None: [0] for hybrid, every layer for es
    generations_per_epoch: int | None = None  # None: 1 for hybrid, one pass over train for es
    combine: str = "paper"  # hybrid: how a generation meets the trained layer (train/layer_search.py COMBINE_RULES)
    sync_mean: bool = False  # hybrid: alias of combine "sync" (move the ES mean to the trained layer each generation)
    accept_batch_size: int = 1024  # hybrid, combine elitist/inject: examples of each acceptance mini-batch
    es_loss: str = "nll"  # what the ES minimises on its mini-batch (population/losses.py ES_LOSSES)
    es_write: str | None = None  # what the ES writes into the model: best (hybrid default) or mean (es default)
    max_memory: str | int | None = None  # budget for one population pass, e.g. "2G"; None: 1/4 of free memory
    es_precision: str = "auto"  # the candidates' forward pass: auto (bfloat16 where native), float32, bfloat16
    strategy_options: dict[str, Any] = field(default_factory=dict)
    # run
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 8192

    def validate(self) -> "TrainConfig":
        """Check every value a user can get wrong; raise ConfigError with a one-line fix."""
        from evoprop.data import DATASETS
        from evoprop.device import resolve_device
        from evoprop.models import ACTIVATIONS, INITS
        from evoprop.optim.registry import check_options

        _one_of("method", self.method, METHODS)
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("split", self.split, SPLITS)
        _one_of("activation", self.activation, ACTIVATIONS)
        _one_of("init", self.init, INITS)
        resolve_device(self.device)
        for name in ("depth", "width", "batch_size", "epochs", "eval_batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("limit_train", "limit_test", "generations_per_epoch"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        self._validate_es()
        self._validate_model_and_schedule()
        if not isinstance(self.seed, int) or not isinstance(self.split_seed, int):
            raise ConfigError("seed and split_seed must be integers")
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be a number > 0, got {self.lr!r}")
        if not isinstance(self.optimizer_options, dict):
            raise ConfigError("optimizer_options must be a mapping of option name to value")
        check_options(self.optimizer, self.optimizer_options)
        return self

    def _validate_es(self) -> None:
        from evoprop.es import STRATEGIES

        _one_of("strategy", self.strategy, ("auto", *STRATEGIES))
        _positive_int("es_batch_size", self.es_batch_size)
        if self.popsize is not None and (isinstance(self.popsize, bool) or not isinstance(self.popsize, int)
                                         or self.popsize < 2):
            raise ConfigError(f"popsize must be an integer >= 2, got {self.popsize!r}")
        if self.sigma0 is not None and not (isinstance(self.sigma0, (int, float)) and 0 < self.sigma0 < float("inf")):
            raise ConfigError(f"sigma0 must be a number > 0, got {self.sigma0!r}")
        if self.es_layers is not None:
            if not isinstance(self.es_layers, list) or not self.es_layers or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in self.es_layers):
                raise ConfigError(f"es_layers must be a non-empty list of layer indices, got {self.es_layers!r}")
            bad = [i for i in self.es_layers if not -self.depth <= i < self.depth]
            if bad:
                raise ConfigError(f"es_layers {bad} do not exist in a network of depth {self.depth} (indices 0..{self.depth - 1})")
        if self.es_write is not None:
            _one_of("es_write", self.es_write, ES_WRITE)
        if self.max_memory is not None:
            parse_bytes(self.max_memory)
        _one_of("es_precision", self.es_precision, ES_PRECISIONS)
        from evoprop.train.layer_search import resolve_combine

        resolve_combine(self.combine, self.sync_mean)
        if self.method == "es" and resolve_combine(self.combine, self.sync_mean) != "paper":
            raise ConfigError(f"combine '{self.combine}' combines the ES with a gradient optimizer: use it with method hybrid")
        _positive_int("accept_batch_size", self.accept_batch_size)
        from evoprop.population.losses import ES_LOSSES

        _one_of("es_loss", self.es_loss, ES_LOSSES)
        if not isinstance(self.strategy_options, dict):
            raise ConfigError("strategy_options must be a mapping of option name to value")

    def _validate_model_and_schedule(self) -> None:
        from evoprop.models import MODELS
        from evoprop.train.schedules import check_schedule_config

        _one_of("model", self.model, MODELS)
        _positive_int("resnet_width", self.resnet_width)
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
        """``base`` (or the defaults) updated with ``data``; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError("a config must be a mapping of setting name to value")
        data = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; valid: {', '.join(cls.field_names())}")
        if isinstance(data.get("optimizer_options"), dict):
            # YAML lists (e.g. Adam's betas) become the tuples torch.optim expects
            data["optimizer_options"] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in data["optimizer_options"].items()
            }
        return dataclasses.replace(base or cls(), **data)

    @classmethod
    def from_file(cls, path: str | Path, base: "TrainConfig | None" = None) -> "TrainConfig":
        return cls.from_dict(read_mapping(path), base)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file holding one mapping."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
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
    """'512M' / '2G' / '1.5GB' / 1048576 -> bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "")
    try:
        size = float(number) * _UNITS[unit]
    except ValueError:
        size = -1
    if not size > 0:
        raise ConfigError(f"max_memory must be a size such as 512M or 2G, got {value!r}")
    return int(size)


def _one_of(name: str, value: Any, valid) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
