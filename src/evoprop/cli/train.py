"""``evoprop train``: one training run, from options and/or a config file."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing

import click

from evoprop.config import Setting, TrainConfig, allowed_values, merge_lr
from evoprop.distributed import is_main
from evoprop.errors import ConfigError
from evoprop.optim import parse_option_value
from evoprop.runs import run_training, summary_line


class _IntList(click.ParamType):
    """'10,15' -> [10, 15]: a list[int] setting (the step schedule's milestones, the ES's layers)."""

    name = "N[,N...]"
    #: field -> (what the values are, and whether a bad one is a setting error as in a config file,
    #: rather than a usage error): es_layers' message has always been the setting's own.
    WORDS = {"milestones": ("epoch numbers such as 10 or 10,15", False),
             "es_layers": ("layer indices such as 0 or 0,1", True)}

    def __init__(self, field: str, flag: str):
        self.words, self.as_setting_error = self.WORDS.get(field, ("integers such as 1 or 1,2", False))
        self.flag = flag

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [int(part) for part in str(value).split(",")]
        except ValueError:
            if self.as_setting_error:
                raise ConfigError(f"{self.flag} expects {self.words}, got '{value}'") from None
            self.fail(f"expects {self.words}, got '{value}'", param, ctx)


_METAVARS = {str: "NAME", int: "N", float: "X"}


def _parsed_type(hint):
    """What an option of a field parses: the first type of its annotation other than None, unsubscripted
    (int for ``int | None``, list for ``list[int] | None``, str for ``str | int | None``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def setting_flag(name: str, config_class: type = TrainConfig) -> str:
    """The option of TrainConfig field ``name``: its metadata's flag, else --name-with-dashes."""
    return config_class.settings()[name].flag or "--" + name.replace("_", "-")


def setting_option(name: str, *, default=None, config_class: type = TrainConfig, param: str | None = None,
                   help_note: str = ""):
    """The click option of TrainConfig field ``name``, everything from the field: its type (the
    annotation), help (its ``setting(help=...)`` with the choices), range and default (``default``: the
    one a command shows instead). It defaults to None, so that only what the user typed overrides a
    config file, which overrides the defaults; a "pairs" setting (--opt) gives a tuple of KEY=VALUE.
    ``param``: the Python name click passes it as (default: the field's); ``help_note``: words added
    in brackets after the help (a command that uses the setting for something narrower says so)."""
    f = next(f for f in dataclasses.fields(config_class) if f.name == name)
    meta: Setting = f.metadata["setting"]
    base = _parsed_type(typing.get_type_hints(config_class)[name])
    flag = setting_flag(name, config_class)
    help_ = meta.help_text()
    param = param or name
    allowed = allowed_values(name) if name in TrainConfig.field_names() else None
    if allowed and allowed != "a positive integer":  # the range, from the field (its one statement)
        help_ = f"{help_.rstrip('.')}: {allowed}."
    if help_note:
        help_ = f"{help_.rstrip('.')} ({help_note})."
    if default is None and meta.default_text is None and f.default is not dataclasses.MISSING:
        default = f.default  # a factory's ({} for --opt) is not shown
    shown = default if default is not None else meta.default_text
    if shown is not None:
        help_ = f"{help_} [default: {shown}]"
    if meta.cli_type == "pairs":
        return click.option(flag, param, multiple=True, metavar="KEY=VALUE", help=help_)
    if base is bool:  # a flag pair
        return click.option(f"{flag}/--no-{flag.removeprefix('--')}", param, default=None, help=help_)
    type_ = {list: _IntList(name, flag), int: int, float: float}.get(base, str)
    if meta.cli_type == "directory":
        type_ = click.Path(file_okay=False)
    return click.option(flag, param, type=type_, default=None, help=help_,
                        metavar=meta.metavar or _METAVARS.get(type_))


def setting_options(names=None, *, defaults: dict | None = None, notes: dict | None = None, plain: bool = False,
                    config_class: type = TrainConfig):
    """Decorator: the options of TrainConfig fields ``names`` (all, in field order, when None), as
    :func:`setting_option` makes them; ``defaults``: the defaults this command shows instead of
    TrainConfig's; ``notes``: field -> the ``help_note`` of a command that uses it for something narrower;
    ``plain``: leave out the repeatable KEY=VALUE settings (--opt, --es-opt)."""
    settings = config_class.settings()
    names = list(settings) if names is None else list(names)
    unknown = [n for n in names if n not in settings]
    if unknown:
        raise ValueError(f"TrainConfig has no field {', '.join(unknown)}")
    names = [n for n in names if not (plain and settings[n].cli_type == "pairs")]

    def decorate(func):
        for name in reversed(names):
            func = setting_option(name, default=(defaults or {}).get(name), config_class=config_class,
                                  help_note=(notes or {}).get(name, ""))(func)
        return func

    return decorate


def train_options(*flags: str):
    """Decorator: the named options of `evoprop train` (same name, type and help; default None), for a
    command that passes them on to its runs, e.g. ``@train_options("--device", "--data-dir")``."""
    by_flag = {setting_flag(name): name for name in TrainConfig.field_names()}
    missing = sorted(set(flags) - set(by_flag))
    if missing:
        raise ValueError(f"evoprop train has no option {', '.join(missing)}")
    return setting_options([name for name in TrainConfig.field_names() if setting_flag(name) in flags])


@click.command("train")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML or JSON file of settings (keys as the options, e.g. batch_size: 64); options given here override it.")
@setting_options(notes={"epochs": "with --resume: the new total, to extend a run"})
@click.option("--out", type=click.Path(file_okay=False),
              help="Run directory to create [default: runs/<time>-<dataset>-d<depth>-<method>-<optimizer>].")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Continue the run in this directory from its last completed epoch, with its saved settings.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar per epoch [default: when the terminal is interactive].")
def train_command(config_file, optimizer_options, strategy_options, out, resume, progress, **options) -> None:
    """Train a model with a gradient optimizer, an evolution strategy, or both, and record every epoch.

    Writes RUN_DIR/config.yaml, metrics.jsonl (train/test/val loss, accuracy, macro-F1 and
    seconds per epoch), summary.json and checkpoint.pt, and ends with a one-line summary:
    the paper's number (best test F1 over epochs and its epoch) and the honest number
    (test F1 at the epoch with the best validation F1).

    Examples:

      evoprop train --dataset mnist --depth 1 --optimizer sgd --lr 0.01 --batch-size 256 --epochs 3

      evoprop train --method hybrid --dataset mnist --depth 10 --width 200 --optimizer sgd --lr 0.01
      --batch-size 64 --popsize 1000 --epochs 3

      evoprop train --method es --dataset mnist --depth 1 --strategy sep --popsize 1000 --epochs 1

      evoprop train --dataset mnist --depth 10 --lr 0.1 --batch-size 32 --schedule hybrid --stage-epochs 5
      --epochs 25
    """
    opt, es_opt = optimizer_options, strategy_options
    given = {k: v for k, v in options.items() if v is not None}
    if progress is None:
        progress = sys.stderr.isatty()
    if resume is not None:
        extra = (sorted(set(given) - {"epochs"}) + (["config"] if config_file else []) + (["opt"] if opt else [])
                 + (["es_opt"] if es_opt else []))
        if extra or out:
            raise ConfigError(
                "--resume continues a run with its saved settings; only --epochs may be given with it "
                f"(got {', '.join('--' + k.replace('_', '-') for k in extra + (['out'] if out else []))})"
            )
        summary, run = run_training(resume=resume, epochs=given.get("epochs"), progress=progress)
    else:
        opts = _parse_opts(opt, "--opt")
        if "lr" in opts:  # --opt lr=X is --lr X (both given: they must agree)
            given["lr"], opts = merge_lr(given.get("lr"), opts)
        config = TrainConfig.from_file(config_file) if config_file else TrainConfig()
        config = TrainConfig.from_dict(given, base=config)
        if opts:
            config.optimizer_options = {**config.optimizer_options, **opts}
        if es_opt:
            config.strategy_options = {**config.strategy_options, **_parse_opts(es_opt, "--es-opt")}
        summary, run = run_training(config, out=out, progress=progress)
    if is_main():  # under torchrun only rank 0 prints
        click.echo(summary_line(summary, run))


def _parse_opts(pairs: tuple[str, ...], flag: str) -> dict:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{pair}'")
        parsed[key.strip().replace("-", "_")] = parse_option_value(value)
    return parsed
