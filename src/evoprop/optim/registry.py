"""Name -> torch.optim optimizer, with documented defaults.

Defaults follow the optimizer notes this project reproduces where they give sane values (Adagrad eps 1e-8; RMSprop
E[g²] <- 0.9 E[g²] + 0.1 g², lr 0.001; Adam's standard beta1 = 0.9,
beta2 = 0.999 — the slide's 0.9999 / 1e-8 are a misprint) and PyTorch's
otherwise. Every default can be overridden per run. The registry is open:
``register_optimizer`` adds a name (the natural-gradient optimizer does).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from evoprop import yamlio
from evoprop.errors import ConfigError


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one named optimizer."""

    name: str
    factory: Callable[..., torch.optim.Optimizer]  # factory(params, **hyperparameters)
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    needs_model: bool = False  # factory(params, model=model, **hyperparameters): e.g. K-FAC hooks the layers

    def accepted_options(self) -> set[str]:
        """Hyperparameter names the factory accepts (besides the parameters and the model)."""
        params = inspect.signature(self.factory).parameters
        return {n for n, p in params.items() if n not in ("params", "model") and p.kind is not p.VAR_POSITIONAL}


OPTIMIZERS: dict[str, OptimizerSpec] = {}


def register_optimizer(
    name: str,
    factory: Callable[..., torch.optim.Optimizer],
    defaults: dict[str, Any],
    description: str,
    *,
    needs_model: bool = False,
) -> OptimizerSpec:
    """Make ``name`` available to every trainer and to the CLI's ``--optimizer``.

    ``needs_model``: the factory also takes ``model=`` (the module being trained), which
    ``make_optimizer`` then requires.
    """
    spec = OptimizerSpec(name, factory, dict(defaults), description, needs_model)
    OPTIMIZERS[name] = spec
    return spec


def get_spec(name: str) -> OptimizerSpec:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise ConfigError(f"unknown optimizer '{name}'; valid: {', '.join(OPTIMIZERS)}") from None


def check_options(name: str, options: dict[str, Any]) -> OptimizerSpec:
    """The spec of ``name``, after checking that it accepts every key of ``options``."""
    spec = get_spec(name)
    unknown = set(options) - spec.accepted_options()
    if unknown:
        raise ConfigError(
            f"optimizer '{name}' has no option {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(spec.accepted_options()))}"
        )
    return spec


def check_optimizer_settings(config) -> None:
    """The optimizer group of a TrainConfig (called by ``TrainConfig.validate``): it takes its options."""
    check_options(config.optimizer, config.optimizer_options)


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float | None = None,
    *,
    model: torch.nn.Module | None = None,
    **options: Any,
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` over ``params``: its defaults, then ``options``, then ``lr`` if given.

    ``model`` (the module ``params`` belong to) is passed on to optimizers that need it (the
    natural gradient hooks its layers) and ignored by the others.
    """
    spec = check_options(name, options)
    if spec.needs_model and model is None:
        raise ConfigError(f"optimizer '{name}' needs the model: make_optimizer('{name}', params, model=model)")
    hyper = {**spec.defaults, **options}
    if lr is not None:
        hyper["lr"] = lr
    if "lr" in hyper and not hyper["lr"] > 0:
        raise ConfigError(f"learning rate must be > 0, got {hyper['lr']}")
    try:
        return spec.factory(params, model=model, **hyper) if spec.needs_model else spec.factory(params, **hyper)
    except ConfigError:  # already one of ours: keep its message
        raise
    except (ValueError, TypeError) as exc:  # torch.optim's own range checks
        raise ConfigError(f"optimizer '{name}': {exc}") from None


def parse_option_value(text: str) -> Any:
    """'0.9' -> 0.9, '1e-6' -> 1e-06, 'true' -> True, '[0.9, 0.99]' -> (0.9, 0.99): YAML scalars, lists as tuples."""
    value = yamlio.load(text)
    return tuple(value) if isinstance(value, list) else value


register_optimizer("sgd", torch.optim.SGD, {"lr": 0.01}, "plain mini-batch SGD: w <- w - lr*g")
register_optimizer(
    "momentum",
    torch.optim.SGD,
    {"lr": 0.01, "momentum": 0.9},
    "SGD with heavy-ball momentum (dw <- m*dw - lr*g)",
)
register_optimizer(
    "nesterov",
    torch.optim.SGD,
    {"lr": 0.01, "momentum": 0.9, "nesterov": True},
    "SGD with Nesterov momentum",
)
register_optimizer(
    "adagrad", torch.optim.Adagrad, {"lr": 0.01, "eps": 1e-8}, "Adagrad: lr / sqrt(sum g^2 + eps), eps 1e-8"
)
register_optimizer(
    "adadelta",
    torch.optim.Adadelta,
    {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "Adadelta: running averages of g^2 and of updates (rho 0.9)",
)
register_optimizer(
    "rmsprop",
    torch.optim.RMSprop,
    {"lr": 0.001, "alpha": 0.9, "eps": 1e-8},
    "RMSprop: E[g^2] <- 0.9 E[g^2] + 0.1 g^2, lr 0.001",
)
register_optimizer(
    "adam",
    torch.optim.Adam,
    {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8},
    "Adam: first and second moment estimates, betas (0.9, 0.999)",
)
