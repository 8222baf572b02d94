"""``evoprop gradcheck``: a model's gradient against finite differences; exit status 0 on pass, 1 on fail."""

from __future__ import annotations

import click

from evoprop.cli.exits import EXIT_ERROR
from evoprop.cli.lab_options import build_problem, fresh_defaults, loss_option, model_options, settings_from, settings_options
from evoprop.lab.gradcheck import GradCheckSettings

_DEFAULTS = fresh_defaults(dataset="mnist", depth=1, pixels="unit", split="paper", val_fraction=0.1)


@click.command("gradcheck")
@model_options(_DEFAULTS)
@loss_option("softmax")
@settings_options(GradCheckSettings)
@click.pass_context
def gradcheck_command(ctx, loss, **options) -> None:
    """Compare a model's gradient with numerical gradients (finite differences), tensor by tensor.

    For each parameter tensor, prints how many coordinates were compared, how many crossed a
    kink (a ReLU unit or SVM margin changing side between w-h and w+h: left out, as there the
    finite difference is wrong, not the gradient), the largest relative error
    |a - n| / max(|a|, |n|) with centred and with forward differences, and the verdict.
    Exits with status 0 when every tensor passes, 1 otherwise.

    Examples:

      evoprop gradcheck --dataset mnist --depth 10 --width 200

      evoprop gradcheck --run runs/mnist-d10 --coords 50

      evoprop gradcheck --dataset cifar10 --depth 1 --loss svm --reg 0.01 --gradient analytic --coords 0
    """
    from evoprop.lab.gradcheck import run_gradcheck

    settings = settings_from(GradCheckSettings, options, loss=loss)
    problem = build_problem(options, _DEFAULTS)
    result = run_gradcheck(problem, settings)
    click.echo(result.summary())
    if not result.passed:
        ctx.exit(EXIT_ERROR)  # the check failed
