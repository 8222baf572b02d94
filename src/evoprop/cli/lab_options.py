"""Options shared by the optimizer-lab commands (landscape, search, gradcheck, stepsize, precond).

A lab command works on a model: a saved run's (``--run RUN_DIR``) or a fresh one built
from ``--dataset/--depth/--width/...``. Model options default to None so that giving one
together with ``--run`` can be refused instead of silently ignored.
"""

from __future__ import annotations

import math

import click

from evoprop.config import check_setting
from evoprop.data import DATASETS
from evoprop.data.sources import DATA_DIR_HELP
from evoprop.errors import ConfigError
from evoprop.lab.losses import LOSSES
from evoprop.lab.problem import PIXELS, Problem, fresh_problem, run_problem
from evoprop.models import ACTIVATIONS, INITS


def fresh_defaults(*, dataset: str, depth: int, pixels: str, split: str, val_fraction: float) -> dict:
    """A command's defaults for a fresh model's options (pass to :func:`model_options` and :func:`build_problem`)."""
    return dict(dataset=dataset, depth=depth, width=200, activation="relu", init="glorot", seed=0, pixels=pixels,
                data_split=split, val_fraction=val_fraction)


def model_options(defaults: dict, run: bool = True):
    """Decorator adding the model/data options, with this command's ``defaults`` (shown in --help)."""
    dataset, depth, pixels = defaults["dataset"], defaults["depth"], defaults["pixels"]
    split, val_fraction = defaults["data_split"], defaults["val_fraction"]

    def decorate(func):
        opts = [
            click.option("--dataset", type=click.Choice(DATASETS), default=None,
                         help=f"Data set of a fresh model [default: {dataset}]."),
            click.option("--depth", type=int, default=None, metavar="N",
                         help=f"Weight layers of a fresh MLP; 1 is the linear classifier W [x; 1] [default: {depth}]."),
            click.option("--width", type=int, default=None, metavar="N", help="Units per hidden layer [default: 200]."),
            click.option("--activation", type=click.Choice(list(ACTIVATIONS)), default=None,
                         help="Hidden activation [default: relu]."),
            click.option("--init", type=click.Choice(list(INITS)), default=None,
                         help="Weight initialisation of a fresh model [default: glorot]."),
            click.option("--seed", type=int, default=None, metavar="N", help="Seed of the fresh model's init [default: 0]."),
            click.option("--pixels", type=click.Choice(PIXELS), default=None,
                         help="Pixel scale: unit = [0, 1] (evoprop's), raw = 0-255, centred = 0-255 minus the training "
                              f"mean image (CS231n's preprocessing) [default: {pixels}]."),
            click.option("--split", "data_split", type=click.Choice(["paper", "official"]), default=None,
                         help=f"How the data are split (see 'evoprop train --help') [default: {split}]."),
            click.option("--val-fraction", type=float, default=None, metavar="X",
                         help=f"Validation share of the train part [default: {val_fraction}]."),
            click.option("--limit-train", type=int, default=None, metavar="N",
                         help="Use only the first N training examples [default: all]."),
            click.option("--limit-test", type=int, default=None, metavar="N",
                         help="Use only the first N test (and validation) examples [default: all]."),
            click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help=DATA_DIR_HELP),
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        ]
        if run:
            opts.insert(0, click.option(
                "--run", "run_dir", type=click.Path(file_okay=False), default=None,
                help="A run directory from 'evoprop train': its model at the last completed epoch, with its own data "
                     "and preprocessing. Without it, a fresh model is built from the options below."))
        for opt in reversed(opts):
            func = opt(func)
        return func

    return decorate


def loss_options(default: str):
    def decorate(func):
        func = click.option("--reg", type=float, default=0.0, show_default=True, metavar="X",
                            help="L2 regularisation strength: adds reg * (sum of squared parameters).")(func)
        return click.option("--loss", type=click.Choice(list(LOSSES)), default=default, show_default=True,
                            help="softmax: cross-entropy (evoprop's training loss); svm: multiclass hinge, margin 1.")(func)

    return decorate


def build_problem(options: dict, defaults: dict) -> Problem:
    """The model and data the options describe (pops the model/data options from ``options``)."""
    given = {k: options.pop(k) for k in list(defaults) if k in options}
    run_dir = options.pop("run_dir", None)
    common = dict(data_dir=options.pop("data_dir"), device=options.pop("device"),
                  limit_train=options.pop("limit_train"), limit_test=options.pop("limit_test"))
    if run_dir is not None:
        clash = sorted(k for k, v in given.items() if v is not None)
        if clash:
            names = ", ".join("--" + ("split" if k == "data_split" else k).replace("_", "-") for k in clash)
            raise ConfigError(f"--run uses the run's own model and data; drop {names}")
        return run_problem(run_dir, **common)
    values = {k: (v if v is not None else defaults[k]) for k, v in given.items()}
    for name in ("depth", "width", "seed", "val_fraction"):  # the ranges of `evoprop train`'s options, stated once
        _check(name, values[name])
    for name in ("limit_train", "limit_test"):
        _check(name, common[name])
    return fresh_problem(values["dataset"], depth=values["depth"], width=values["width"],
                         activation=values["activation"], init=values["init"], seed=values["seed"],
                         split=values["data_split"], val_fraction=values["val_fraction"], pixels=values["pixels"],
                         **common)


def echo_files(files) -> None:
    """Print the files a lab command wrote, on one line."""
    click.echo(", ".join(str(f) for f in files))


def positive(name: str, value, allow_zero: bool = False) -> None:
    """A ConfigError unless ``value`` is a finite positive number (or 0 when allowed)."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")


def seed_option(flag: str, value) -> None:
    """A seed option of a lab command (e.g. --direction-seed): in the range of TrainConfig's seeds."""
    _check("seed", value, flag)


def _check(name: str, value, flag: str | None = None) -> None:
    """A model/data option checked as TrainConfig checks its setting ``name``, the error naming the option."""
    try:
        check_setting(name, value)
    except ConfigError as exc:
        raise ConfigError(f"{flag or '--' + name.replace('_', '-')}: {exc}") from None
