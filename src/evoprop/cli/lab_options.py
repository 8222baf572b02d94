"""Options shared by the optimizer-lab commands (landscape, search, gradcheck, stepsize, precond).

A lab command works on a model: a saved run's (``--run RUN_DIR``) or a fresh one built
from ``--dataset/--depth/--width/...``. Model options default to None so that giving one
together with ``--run`` can be refused instead of silently ignored. Its own options are
made from its settings dataclass (:func:`settings_options`, :mod:`evoprop.lab.settings`),
and read back into it, checked, by :func:`settings_from`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import click

from evoprop.cli.train import _METAVARS, _parsed_type, setting_option
from evoprop.config import check_setting
from evoprop.errors import ConfigError
from evoprop.lab.losses import LOSSES
from evoprop.lab.problem import PIXELS, Problem, fresh_problem, run_problem
from evoprop.lab.settings import LabSetting, lab_settings


def fresh_defaults(*, dataset: str, depth: int, pixels: str, split: str, val_fraction: float) -> dict:
    """A command's defaults for a fresh model's options (pass to :func:`model_options` and :func:`build_problem`)."""
    return dict(dataset=dataset, depth=depth, width=200, activation="relu", init="glorot", seed=0, pixels=pixels,
                data_split=split, val_fraction=val_fraction)


def model_options(defaults: dict, run: bool = True):
    """Decorator adding the model/data options, with this command's ``defaults`` (shown in --help)."""
    dataset, depth, pixels = defaults["dataset"], defaults["depth"], defaults["pixels"]
    split, val_fraction = defaults["data_split"], defaults["val_fraction"]

    def decorate(func):
        fresh = "of a fresh model; not with --run"
        opts = [
            setting_option("dataset", default=dataset, help_note=fresh),
            setting_option("depth", default=depth, help_note=fresh),
            setting_option("width", default=defaults["width"], help_note=fresh),
            setting_option("activation", default=defaults["activation"], help_note=fresh),
            setting_option("init", default=defaults["init"], help_note=fresh),
            click.option("--seed", type=int, default=None, metavar="N", help="Seed of the fresh model's init [default: 0]."),
            click.option("--pixels", type=click.Choice(PIXELS), default=None,
                         help="Pixel scale: unit = [0, 1] (evoprop's), raw = 0-255, centred = 0-255 minus the training "
                              f"mean image (CS231n's preprocessing) [default: {pixels}]."),
            setting_option("split", default=split, param="data_split", help_note=fresh),
            setting_option("val_fraction", default=val_fraction, help_note=fresh),
            setting_option("limit_train"),
            setting_option("limit_test"),
            setting_option("data_dir"),
            setting_option("device", default="auto"),
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


def loss_option(default: str):
    """Decorator: ``--loss``, with this command's default (its ``--reg`` is a LossSettings field)."""
    return click.option("--loss", type=click.Choice(list(LOSSES)), default=default, show_default=True,
                        help="softmax: cross-entropy (evoprop's training loss); svm: multiclass hinge, margin 1.")


def settings_options(settings_class: type):
    """Decorator: the options of the fields of ``settings_class`` that are ``lab_setting``s, in field order:
    flag, type (the annotation), metavar, choices, help and default (shown), all from the field."""
    hints = typing.get_type_hints(settings_class)
    defaults = {f.name: f.default for f in dataclasses.fields(settings_class)}

    def decorate(func):
        for name, s in reversed(list(lab_settings(settings_class).items())):
            func = _settings_option(name, s, hints[name], defaults[name])(func)
        return func

    return decorate


def _flag(name: str, s: LabSetting) -> str:
    return s.flag or "--" + name.replace("_", "-")


def _param(name: str, s: LabSetting) -> str:
    """The name click passes the option as (from its flag, as click derives it)."""
    return _flag(name, s).removeprefix("--").replace("-", "_")


def _settings_option(name: str, s: LabSetting, hint, default):
    if s.choices is not None:
        type_, metavar = click.Choice(list(s.choices)), None
    else:
        base = _parsed_type(hint)
        type_ = base if base in (int, float) else str
        metavar = s.metavar or _METAVARS[type_]
    return click.option(_flag(name, s), _param(name, s), type=type_, default=default,
                        show_default=default is not None, metavar=metavar, help=s.help)


def settings_from(settings_class: type, options: dict, **given: Any):
    """``settings_class`` from a command's options: pops every option :func:`settings_options` made from
    ``options``, checks it as its field says (the error names the option), and adds ``given`` (the fields
    the command sets itself, e.g. a list it parsed)."""
    values = {}
    for name, s in lab_settings(settings_class).items():
        value = options.pop(_param(name, s))
        if s.check == "seed":
            seed_option(_flag(name, s), value)
        elif s.check is not None:
            positive(_flag(name, s), value, allow_zero=s.check == "non-negative")
        values[name] = value
    return settings_class(**values, **given)


def build_problem(options: dict, defaults: dict) -> Problem:
    """The model and data the options describe (pops the model/data options from ``options``)."""
    given = {k: options.pop(k) for k in list(defaults) if k in options}
    run_dir = options.pop("run_dir", None)
    common = dict(data_dir=options.pop("data_dir"), device=options.pop("device") or "auto",
                  limit_train=options.pop("limit_train"), limit_test=options.pop("limit_test"))
    if run_dir is not None:
        clash = sorted(k for k, v in given.items() if v is not None)
        if clash:
            names = ", ".join("--" + ("split" if k == "data_split" else k).replace("_", "-") for k in clash)
            raise ConfigError(f"--run uses the run's own model and data; drop {names}")
        return run_problem(run_dir, **common)
    values = {k: (v if v is not None else defaults[k]) for k, v in given.items()}
    for name in ("dataset", "depth", "width", "activation", "init", "seed", "val_fraction"):  # as TrainConfig checks them
        _check(name, values[name])
    _check("split", values["data_split"], "--split")
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
