"""``evoprop stepsize``: the CS231n optimization notes' step-size experiment, the loss after one gradient step of each
size."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import (build_problem, echo_files, fresh_defaults, loss_option, model_options, settings_from,
                                     settings_options)
from evoprop.errors import ConfigError
from evoprop.lab.stepsize import DEFAULT_STEP_SIZES, StepSizeSettings

_DEFAULTS = fresh_defaults(dataset="cifar10", depth=1, pixels="centred", split="official", val_fraction=0.0)


def _parse_sizes(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        sizes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--step-sizes expects numbers separated by commas, e.g. 1e-6,1e-5,1e-4; got '{text}'") from None
    if not sizes or any(not s > 0 for s in sizes):
        raise ConfigError(f"--step-sizes must be positive numbers, got '{text}'")
    return sizes


@click.command("stepsize")
@model_options(_DEFAULTS)
@loss_option("svm")
@click.option("--step-sizes", metavar="X,Y,...", default=None,
              help="Step sizes to try [default: 1e-10,1e-9,...,1e-1, as in the CS231n optimization notes].")
@settings_options(StepSizeSettings)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for stepsize.csv, stepsize.md and stepsize.png.")
def stepsize_command(step_sizes, out, loss, **options) -> None:
    """Take one gradient step of each size from the same weights and report the training loss after it.

    Shows the lesson of the CS231n optimization notes: the gradient gives the direction, not
    the distance. Tiny steps leave the loss unchanged, moderate ones lower it, large ones
    overshoot. By default a linear classifier on CIFAR-10 with the SVM loss (the notes'
    setting), from a random W.

    Examples:

      evoprop stepsize --out stepsize/cifar10

      evoprop stepsize --run runs/mnist-d10 --step-sizes 1e-3,1e-2,0.1,1,10

      evoprop stepsize --dataset mnist --depth 1 --pixels unit --loss softmax --start-scale 0
    """
    from evoprop.lab.stepsize import run_stepsize

    sizes = _parse_sizes(step_sizes) or list(DEFAULT_STEP_SIZES)
    settings = settings_from(StepSizeSettings, options, step_sizes=tuple(sizes), loss=loss)
    problem = build_problem(options, _DEFAULTS)
    result = run_stepsize(problem, settings)
    click.echo(result.summary())
    if out is not None:
        echo_files(result.write(out))
