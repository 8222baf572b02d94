"""``evoprop precond``: the Hessian lens, every optimizer's step seen against Newton's (Nocedal & Wright 2006)."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import build_problem, echo_files, fresh_defaults, model_options, settings_from, settings_options
from evoprop.errors import ConfigError
from evoprop.lab.precond import DEFAULT_OPTIMIZERS, PrecondSettings

_DEFAULTS = fresh_defaults(dataset="mnist", depth=1, pixels="unit", split="paper", val_fraction=0.1)


@click.command("precond")
@model_options(_DEFAULTS)
@settings_options(PrecondSettings)
@click.option("--optimizers", default=None, metavar="A,B,...",
              help="Optimizers to compare [default: sgd,momentum,adagrad,rmsprop,adam,natural,hessian-free,newton].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for precond.md, precond.csv, precond_cosine.png and precond_diagonal.png.")
def precond_command(optimizers, out, **options) -> None:
    """Compare what every optimizer does at one point with Newton's step there (the Hessian lens).

    At a run's weights (--run) or a fresh small model, the exact Hessian (or Gauss-Newton matrix)
    of the loss on a batch gives the Newton direction. Each optimizer is warmed up for K steps,
    put back at the weights with the state it built, and stepped once on the same batch. The table
    shows the cosine between its update and the Newton direction; for Adagrad, RMSprop and Adam the
    Spearman and log-Pearson correlations of their per-parameter scales with the Hessian's diagonal;
    for K-FAC (natural) the relative error of its Kronecker factors against the exact Fisher block.
    The model must be small: its d x d matrix has to fit in memory (MNIST depth 1: d = 7,850).

    Examples:

      evoprop precond --dataset mnist --depth 1 --out precond/mnist-d1

      evoprop precond --run runs/mnist-d1-adam --warmup 50 --optimizers adam,natural,newton
    """
    from evoprop.lab.precond import run_precond

    names = [n.strip() for n in optimizers.split(",") if n.strip()] if optimizers else list(DEFAULT_OPTIMIZERS)
    if not names:
        raise ConfigError("--optimizers needs at least one optimizer name")
    settings = settings_from(PrecondSettings, options, optimizers=tuple(names))
    problem = build_problem(options, _DEFAULTS)
    result = run_precond(problem, settings)
    click.echo(result.summary())
    if out is not None:
        echo_files(result.write(out))
