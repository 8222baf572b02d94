"""The settings of one training run: each field describes itself, and is validated in one place.

The same ``TrainConfig`` comes from the CLI, from a YAML/JSON file (``--config``),
or from Python; a run directory stores it resolved, so ``--resume`` rebuilds the
exact run. Keys in files may use dashes or underscores.

Each field states its facts once: its type is its annotation; everything else is its
``setting(default, group=..., help=..., low=..., high=..., choices=..., applies_to=...,
affects_results=...)`` (field metadata: a :class:`Setting` and a :class:`Range`). From it
come the ``evoprop train`` options and their ``--help`` (``cli/train.py``), the checks of
:func:`check_setting` (so the CLI, config files, tune files and the Python API refuse the
same values with the same one-line message), and which settings a report compares
(:func:`applies`). A new setting is one field here plus the code that uses it.

Settings are grouped by concern (:data:`GROUPS`: data, model, optimizer, schedule,
evolution, run) in their metadata, not in nested dataclasses: ``TrainConfig.group("evolution")``
is a view of the flat fields. This is deliberate: run directories' config.yaml, the
examples, tune files and docs/results hold flat keys (``popsize: 1000``), and must keep
loading, resuming and being written the same way. Each group's rules across fields are one
function in the module that owns the concern (:data:`GROUP_CHECKS`).
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
from typing import Any, Callable

import yaml

from evoprop import yamlio
from evoprop.data import DATASETS
from evoprop.data.sources import DATA_DIR_HELP
from evoprop.device import MAX_COUNT, check_device_setting
from evoprop.enums import COMBINE_RULES, ES_LOSS_NAMES
from evoprop.errors import ConfigError
from evoprop.es import STRATEGIES
from evoprop.models import ACTIVATIONS, INITS, MODELS
from evoprop.models.zoo import check_model_settings
from evoprop.optim import OPTIMIZERS
from evoprop.optim.registry import check_optimizer_settings
from evoprop.train.layer_search import check_evolution_settings
from evoprop.train.schedules import SCHEDULES, check_schedule_config

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


#: Seeds go to torch.Generator.manual_seed, also offset and scaled (seed + k, seed * 1_000_003 + stage):
#: 32 bits keep every derived seed inside torch's 64-bit range (and match NumPy's legacy seeds).
MAX_SEED = 2**32 - 1
#: The paper's deepest network has 10 layers; past 1,000 an MLP is a typo (and takes minutes just to build).
MAX_DEPTH = 1000
#: Initial weights lie in about ±1; a step size beyond 1e3 samples networks whose every unit saturates.
MAX_SIGMA0 = 1e3
#: An ES fitness's L2 coefficient: beyond 1e3 the penalty outweighs any data loss at the initial weights.
MAX_ES_WEIGHT_DECAY = 1e3
#: A million generations per epoch is days of work at the fastest; more is a typo, not an experiment.
MAX_GENERATIONS_PER_EPOCH = 10**6


#: The concerns a setting belongs to (``setting(group=...)``), in the order ``validate`` checks them.
GROUPS = ("data", "model", "optimizer", "schedule", "evolution", "run")
#: The methods that train with a gradient optimizer / with an evolution strategy.
GRADIENT_METHODS = ("gradient", "hybrid")
ES_METHODS = ("hybrid", "es")


@dataclass(frozen=True)
class Setting:
    """What a TrainConfig field says about itself (its ``metadata["setting"]``), read by the CLI and the reports.

    group: its concern (:data:`GROUPS`). help: one paragraph for ``--help`` ("{choices}" is replaced by the
    choices). choices: the valid values (a tuple, or a function returning them: the modules that define them
    are imported only when asked). applies_to: the methods that use it; models: the models that use it
    (None: all); hidden: used only by a network with a hidden layer (depth > 1). affects_results: False for a
    setting that only says where or in how much memory a run computes (data_dir, device, ...);
    identifies_method: False for one that differs between runs of one method (seed, epochs, the resolved
    sigma0), so a report groups runs by the others. default_text: the default in words, for a default that
    is resolved at run time. flag, metavar, cli_type: its command-line option (default ``--field-name``;
    cli_type "pairs": repeatable KEY=VALUE, "directory": a folder).
    """

    group: str
    help: str | Callable[[], str]
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    applies_to: tuple[str, ...] = METHODS
    models: tuple[str, ...] | None = None
    hidden: bool = False
    affects_results: bool = True
    identifies_method: bool = True
    default_text: str | None = None
    flag: str | None = None
    metavar: str | None = None
    cli_type: str | None = None

    def valid_values(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def help_text(self) -> str:
        text = self.help() if callable(self.help) else self.help
        choices = self.valid_values()
        return text.replace("{choices}", ", ".join(choices)) if choices is not None else text


def setting(default: Any = None, *, factory: Any = None, group: str, help: str | Callable[[], str],
            why: str = "", **options: Any) -> Any:
    """A TrainConfig field with everything it says about itself: a :class:`Setting` (``group``, ``help``,
    ``options``) and its range (a :class:`Range` from the ``low``/``high``/``*_open`` options and ``why``)."""
    bounds = {k: options.pop(k) for k in ("low", "high", "low_open", "high_open") if k in options}
    if group not in GROUPS:
        raise ValueError(f"unknown setting group {group!r}; valid: {', '.join(GROUPS)}")
    metadata: dict[str, Any] = {"setting": Setting(group=group, help=help, **options)}
    if bounds:
        metadata["range"] = Range(**bounds, why=why)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


#: Keys a run's config.yaml records beside the settings: how the run was trained, not what it computes
#: (``world_size``: the processes torchrun started; :meth:`evoprop.runs.rundir.RunDir.write_config`).
#: :meth:`TrainConfig.from_dict` accepts and drops them, so the file still loads with ``--config`` and
#: ``--resume`` in any number of processes.
RECORDED_KEYS = ("world_size",)


@dataclass
class TrainConfig:
    """Every setting of a run, grouped by concern in each field's ``setting(group=...)``.

    A field's type is its annotation; its group, help, range, choices and the methods it
    applies to are its ``setting(...)`` (see :class:`Setting`). ``validate`` checks every
    field on its own, then each group's cross-field rules (:data:`GROUP_CHECKS`).
    """

    # what to train
    method: str = setting(
        "gradient", group="run", choices=METHODS,
        help="gradient: the optimizer alone; hybrid: the paper's Algorithm 2 (each epoch one ES generation on the "
             "searched layer(s), the best candidate written in, then one epoch of the optimizer on all layers); es: "
             "the evolution strategy alone (the paper's 'CMA-ES' rows).")
    # data
    dataset: str = setting("mnist", group="data", choices=DATASETS,
                           help="Data set: {choices} (cifar10-gray: Gray = 0.299R + 0.587G + 0.114B).")
    data_dir: str | None = setting(None, group="data", affects_results=False, cli_type="directory",
                                   help=DATA_DIR_HELP)
    split: str = setting(
        "paper", group="data", choices=SPLITS,
        help="paper: MNIST's first 55,000 training images as 49,500 train / 5,500 test, CIFAR-10's 50,000 as "
             "40,000 / 10,000; official: the official train and test sets.")
    val_fraction: float = setting(
        0.1, group="data", low=0, high=1, high_open=True,
        help="Fraction of the train part held out for validation (the honest protocol); 0 trains on all of it.")
    split_seed: int = setting(0, group="data", low=0, high=MAX_SEED,
                              help="Seed of the train/val/test permutation (independent of --seed).")
    standardize: bool = setting(
        False, group="data",
        help="Standardise inputs per channel with the train split's mean and std (pixels are in [0, 1] either way).")
    limit_train: int | None = setting(None, group="data", low=1, high=MAX_COUNT, default_text="all",
                                      help="Use only the first N training examples (quick experiments).")
    limit_test: int | None = setting(None, group="data", low=1, high=MAX_COUNT, default_text="all",
                                     help="Use only the first N test (and validation) examples.")
    # model
    model: str = setting(
        "mlp", group="model", choices=tuple(MODELS),
        help="Model: {choices}. resnet18 (CIFAR-style stem, 1 or 3 input channels) trains with --method gradient; "
             "--depth, --width, --activation and --init are the MLP's.")
    depth: int = setting(1, group="model", models=("mlp",), low=1, high=MAX_DEPTH,
                         why="the deepest network of the paper has 10 layers",
                         help="Number of weight layers: 1 = softmax regression, 10 = nine hidden layers.")
    width: int = setting(200, group="model", models=("mlp",), hidden=True, low=1, high=MAX_COUNT,
                         help="Units in every hidden layer.")
    activation: str = setting("relu", group="model", models=("mlp",), hidden=True,
                              choices=tuple(ACTIVATIONS), help="Hidden activation: {choices}.")
    init: str = setting(
        "glorot", group="model", models=("mlp",), choices=tuple(INITS),
        help="Weight initialisation: glorot (Glorot-uniform, the default: with PyTorch's own default a 10-layer ReLU "
             "MLP trained by SGD stays at chance), lecun, he, torch.")
    resnet_width: int = setting(64, group="model", models=("resnet18",), low=1, high=4096,
                                help="Channels of the ResNet's first stage (64: ResNet-18; 16 trains on a CPU).")
    # gradient optimizer
    optimizer: str = setting("sgd", group="optimizer", applies_to=GRADIENT_METHODS,
                             choices=lambda: tuple(OPTIMIZERS),
                             help="Gradient optimizer: {choices} (see 'evoprop optimizers').")
    lr: float | None = setting(None, group="optimizer", applies_to=GRADIENT_METHODS, low=0, low_open=True,
                               default_text="the optimizer's own, e.g. sgd 0.01, adam 0.001",
                               help="Learning rate.")
    # an "lr" here is the same setting as lr
    optimizer_options: dict[str, Any] = setting(
        factory=dict, group="optimizer", applies_to=GRADIENT_METHODS, flag="--opt", cli_type="pairs",
        help="An optimizer hyperparameter, repeatable: --opt momentum=0.95 --opt 'betas=[0.9, 0.99]'.")
    batch_size: int = setting(64, group="optimizer", applies_to=GRADIENT_METHODS, low=1, high=MAX_COUNT,
                              help="Mini-batch size of the gradient optimizer (under torchrun: the global batch, "
                                   "split over the processes).")
    # how the gradient of a batch is summed (trainer.py): one part per process under torchrun (DDP)
    batch_parts: int | None = setting(
        None, group="optimizer", applies_to=GRADIENT_METHODS, low=1, high=MAX_COUNT,
        default_text="1; under torchrun the number of processes",
        help="Take each gradient batch in this many contiguous parts and average their gradients, as "
             "DistributedDataParallel does over that many processes: one process with --batch-parts 2 takes "
             "the steps of 2 processes bit for bit (on the CPU). Under torchrun a multiple of the processes.")
    # learning-rate / batch-size schedule (train/schedules.py); None: both stay as given, no δ logged
    schedule: str | None = setting(
        None, group="schedule", applies_to=GRADIENT_METHODS, choices=tuple(SCHEDULES),
        default_text="none, nothing logged",
        help="Learning-rate / batch-size schedule, with the gradient noise C and the smoothing degree "
             "delta = lr*C/sqrt(b) logged per epoch: constant; lr-decay (lr *= gamma per stage); batch-growth "
             "(batch /= gamma^2); hybrid (lr *= sqrt(gamma), batch /= gamma: delta *= gamma); step (lr *= gamma at "
             "the milestones); cosine.")
    stage_epochs: int | None = setting(None, group="schedule", applies_to=GRADIENT_METHODS, low=1, high=MAX_COUNT,
                                       default_text="epochs // 5", help="Epochs per stage of the schedule.")
    gamma: float | None = setting(None, group="schedule", applies_to=GRADIENT_METHODS,
                                  low=0, high=1, low_open=True, high_open=True,
                                  why="the factor delta (for step: the lr) is multiplied by per stage",
                                  default_text="1/sqrt(2), step 0.1",
                                  help="Factor per stage in (0, 1): delta (step: the lr) is multiplied by it.")
    max_batch_size: int | None = setting(None, group="schedule", applies_to=GRADIENT_METHODS, low=1, high=MAX_COUNT,
                                         default_text="no cap",
                                         help="Largest batch a batch-growth or hybrid schedule grows to.")
    min_lr: float = setting(0.0, group="schedule", applies_to=GRADIENT_METHODS, low=0,
                            help="Smallest learning rate a schedule lowers to (cosine: its end).")
    milestones: list[int] | None = setting(
        None, group="schedule", applies_to=GRADIENT_METHODS, metavar="N[,N...]",
        default_text="1/2 and 3/4 of the epochs",
        help="step schedule: epochs after which lr *= gamma, e.g. 10,15.")
    noise_sample: int = setting(
        1024, group="schedule", applies_to=GRADIENT_METHODS, low=0, high=MAX_COUNT,
        help="Training examples on which the gradient noise C is estimated at each stage start; 0: off.")
    # evolution strategy (methods hybrid and es)
    strategy: str = setting(
        "auto", group="evolution", applies_to=ES_METHODS, choices=("auto", *STRATEGIES),
        help="Evolution strategy (hybrid, es): {choices}. auto: standard CMA-ES (cma) when its full covariance fits "
             "in memory (d up to ~10k), else separable CMA-ES.")
    popsize: int | None = setting(
        None, group="evolution", applies_to=ES_METHODS, low=2, high=MAX_COUNT,
        default_text="the strategy's, 4 + 3 ln d",
        help="Population size: candidates evaluated per generation.")
    # the resolved value follows from the initial weights, so it differs between seeds of one method
    sigma0: float | None = setting(
        None, group="evolution", applies_to=ES_METHODS, identifies_method=False,
        low=0, low_open=True, high=MAX_SIGMA0, why="initial weights lie in about ±1",
        default_text="the standard deviation of the initial searched weights", help="Initial step size.")
    es_batch_size: int = setting(256, group="evolution", applies_to=ES_METHODS, low=1, high=MAX_COUNT,
                                 help="Mini-batch on which each generation's candidates are evaluated.")
    es_layers: list[int] | None = setting(
        None, group="evolution", applies_to=ES_METHODS, metavar="I[,J...]", default_text="hybrid 0, es all",
        help="Indices of the weight layers the ES searches, e.g. 0 or 0,1.")
    generations_per_epoch: int | None = setting(
        None, group="evolution", applies_to=ES_METHODS, low=1, high=MAX_GENERATIONS_PER_EPOCH,
        why="a million generations per epoch already takes hours",
        default_text="hybrid 1, spread evenly over the epoch's gradient steps when more; es one per mini-batch over "
                     "the training split",
        help="ES generations per epoch.")
    combine: str = setting(
        "paper", group="evolution", applies_to=("hybrid",), choices=COMBINE_RULES,
        help="hybrid: how each generation meets the gradient-trained layer. paper: the ES mean evolves on its own and "
             "the generation's best is written in (Algorithm 2); sync: the mean is moved to the trained layer first; "
             "elitist: as sync, and the best candidate replaces the trained layer only if it has a lower loss on an "
             "independent acceptance batch (--accept-batch-size); inject: the ES keeps its mean, the trained layer is "
             "injected into its population (Hansen 2011), with elitist's acceptance; disjoint: the ES alone trains "
             "the searched layer, the optimizer the rest.")
    sync_mean: bool = setting(
        False, group="evolution", applies_to=("hybrid",),
        help="hybrid: the same as --combine sync (move the ES mean to the trained layer before each generation).")
    accept_batch_size: int = setting(
        1024, group="evolution", applies_to=("hybrid",), low=1, high=MAX_COUNT,
        help="hybrid, --combine elitist or inject: training examples in each generation's acceptance mini-batch, "
             "drawn from its own seeded stream.")
    es_loss: str = setting(
        "nll", group="evolution", applies_to=ES_METHODS, choices=ES_LOSS_NAMES,
        help="What the ES minimises on its mini-batch (hybrid, es): nll (cross-entropy), error (1 - accuracy) or f1 "
             "(1 - macro-F1), computed for all candidates at once; the gradient optimizer keeps cross-entropy.")
    es_weight_decay: float = setting(
        0.0, group="evolution", applies_to=ES_METHODS, low=0, high=MAX_ES_WEIGHT_DECAY,
        why="a larger penalty outweighs any data loss at the initial weights",
        help="L2 term of the ES fitness (hybrid, es): each candidate scores its mini-batch loss + (lambda/2)||theta||^2 "
             "over the searched parameters, so a mini-batch the searched layer separates stops rewarding ever larger "
             "weights; the acceptance test of elitist and inject compares the same sum. 0: none (the paper's).")
    es_write: str | None = setting(
        None, group="evolution", applies_to=ES_METHODS, choices=ES_WRITE,
        default_text="hybrid best (the paper), es mean",
        help="What the ES writes into the model after a generation: best or mean.")
    max_memory: str | int | None = setting(
        None, group="evolution", applies_to=ES_METHODS, affects_results=False, default_text="1/4 of free memory",
        help="Memory budget of one population pass, e.g. 2G; larger populations run in chunks.")
    es_precision: str = setting(
        "auto", group="evolution", applies_to=ES_METHODS, choices=ES_PRECISIONS,
        help="Arithmetic of the candidates' forward pass: auto, float32 or bfloat16. bfloat16 is about 1.5-2x faster "
             "on CPUs with AVX512-BF16/AMX and on NVIDIA Ampere or later, and ranks the candidates the same to ~1e-4 "
             "(the model, the written weights and the ES state stay float32). auto: bfloat16 where the hardware has "
             "it and the searched layer has layers after it (they are what runs in bfloat16), else float32; the "
             "choice is recorded in config.yaml.")
    strategy_options: dict[str, Any] = setting(
        factory=dict, group="evolution", applies_to=ES_METHODS, flag="--es-opt", cli_type="pairs",
        help="A strategy option, repeatable (see evoprop.es), e.g. --es-opt memory=20 for lmma.")
    # run
    epochs: int = setting(10, group="run", identifies_method=False, low=1, high=MAX_COUNT,
                          help="Number of epochs.")
    seed: int = setting(0, group="run", identifies_method=False, low=0, high=MAX_SEED,
                        help="Seed of the model's initialisation and of the mini-batch order.")
    device: str = setting("auto", group="run", affects_results=False,
                          help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
    eval_batch_size: int = setting(8192, group="run", affects_results=False, low=1, high=MAX_COUNT,
                                   help="Batch size for evaluation (memory only; results do not change).")

    def validate(self) -> "TrainConfig":
        """Check every value a user can get wrong; raise ConfigError with a one-line fix.

        First every field on its own (its type, range and choices, :func:`check_setting`), then
        each group's rules across fields (:data:`GROUP_CHECKS`, each owned by its module). An
        ``lr`` in ``optimizer_options`` is moved to ``lr`` (one setting, two spellings:
        ``--opt lr=0.1`` is ``--lr 0.1``).
        """
        for f in dataclasses.fields(self):
            check_setting(f.name, getattr(self, f.name))
        self.lr, self.optimizer_options = merge_lr(self.lr, self.optimizer_options)
        for group in GROUPS:
            for check in GROUP_CHECKS[group]:
                check(self)
        return self

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Every field's :class:`Setting`, in field order."""
        return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls)}

    @classmethod
    def group(cls, name: str) -> list[str]:
        """The fields of one concern (:data:`GROUPS`), e.g. ``TrainConfig.group("evolution")``."""
        if name not in GROUPS:
            raise ValueError(f"unknown setting group {name!r}; valid: {', '.join(GROUPS)}")
        return [field_name for field_name, s in cls.settings().items() if s.group == name]

    @classmethod
    def location_settings(cls) -> list[str]:
        """The settings that only say where or in how much memory a run computes (``affects_results=False``:
        data_dir, device, ...): a run directory may go on under other values of these."""
        return [field_name for field_name, s in cls.settings().items() if not s.affects_results]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: "TrainConfig | None" = None) -> "TrainConfig":
        """``base`` (or the defaults) updated with ``data``; unknown keys and bad values are an error
        (:data:`RECORDED_KEYS`, a run's records, are dropped)."""
        if not isinstance(data, dict):
            raise ConfigError("a config must be a mapping of setting name to value")
        data = {str(k).replace("-", "_"): v for k, v in data.items()}
        data = {k: v for k, v in data.items() if k not in RECORDED_KEYS}
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


#: Each group's rules across fields, as "module:function" (called with the config): each lives in the
#: module that owns the concern and uses the settings. A group's fields on their own (type, range,
#: choices) are checked from their metadata before these run.
GROUP_CHECKS: dict[str, tuple[Callable[["TrainConfig"], None], ...]] = {
    "data": (),
    "model": (check_model_settings,),
    "optimizer": (check_optimizer_settings,),
    "schedule": (check_schedule_config,),
    "evolution": (check_evolution_settings,),
    "run": (check_device_setting,),
}


def applies(name: str, config: Any) -> bool:
    """Whether setting ``name`` shapes a run with ``config`` (a TrainConfig or its mapping): its method,
    model and depth use it (an ES-only run ignores lr, a gradient run popsize, a 1-layer MLP its width)."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    s = TrainConfig.settings()[name]
    model = get("model", "mlp") or "mlp"
    return (applies_to_method(name, get("method"))
            and (s.models is None or model in s.models)
            and not (s.hidden and model == "mlp" and get("depth") == 1))


def applies_to_method(name: str, method: str | None) -> bool:
    """Whether a run of ``method`` uses setting ``name`` at all (e.g. lr: gradient and hybrid); a record
    without a method (None) is taken to use every setting."""
    return method is None or method in TrainConfig.settings()[name].applies_to


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def check_setting(name: str, value: Any) -> None:
    """One TrainConfig field on its own: the type of its annotation, its range and its choices (if it has them)."""
    hint = _field_types()[name]
    check_type(name, value, hint)
    if value is None:
        return
    bounds = _metadata(name).get("range")
    if bounds is not None and not bounds.holds(value):
        kind = "a number" if float in (hint, *typing.get_args(hint)) else "an integer"
        why = f" ({bounds.why})" if bounds.why else ""
        raise ConfigError(f"{name} must be {bounds.describe(kind, value)}{why}, got {_show(value)}")
    choices = TrainConfig.settings()[name].valid_values()
    if choices is not None:
        one_of(name, value, choices)


def _metadata(name: str) -> Any:
    return next(f for f in dataclasses.fields(TrainConfig) if f.name == name).metadata


def allowed_values(name: str) -> str | None:
    """The range of TrainConfig field ``name`` in words ('an integer in [0, 4294967295]'), or None if it has none."""
    bounds = _metadata(name).get("range")
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
        data = json.loads(text) if path.suffix == ".json" else yamlio.load(text)
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




def one_of(name: str, value: Any, valid) -> None:
    """A ConfigError naming the valid values unless ``value`` is one of them (a setting's, a tune file's)."""
    if value not in valid:
        raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")
