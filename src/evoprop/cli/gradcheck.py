"""``evoprop gradcheck``: a model's gradient against finite differences; exit status 0 on pass, 1 on fail."""

from __future__ import annotations

import click

from evoprop.cli.exits import EXIT_ERROR
from evoprop.cli.lab_options import build_problem, fresh_defaults, loss_options, model_options, positive, seed_option

_DEFAULTS = fresh_defaults(dataset="mnist", depth=1, pixels="unit", split="paper", val_fraction=0.1)


@click.command("gradcheck")
@model_options(_DEFAULTS)
@loss_options("softmax")
@click.option("--examples", type=int, default=32, show_default=True, metavar="N",
              help="Training examples the loss is taken over (few: fewer kinks, faster).")
@click.option("--coords", type=int, default=20, show_default=True, metavar="N",
              help="Coordinates checked per parameter tensor, drawn at random (0: all of them).")
@click.option("--h", "h", type=float, default=1e-5, show_default=True, metavar="X", help="Finite-difference step.")
@click.option("--method", type=click.Choice(["centred", "forward"]), default="centred", show_default=True,
              help="Difference that decides pass/fail (both are reported): centred (L(w+h)-L(w-h))/2h, error O(h^2), "
                   "or forward (L(w+h)-L(w))/h, error O(h).")
@click.option("--threshold", type=float, default=1e-5, show_default=True, metavar="X",
              help="Pass when every tensor's maximum relative error is at most X.")
@click.option("--floor", type=float, default=1e-2, show_default=True, metavar="X",
              help="Relative errors of components smaller than X times their tensor's largest are measured on that "
                   "scale (their finite differences are mostly rounding).")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Precision of the check (float32 shows why it is not used: rounding swamps h = 1e-5).")
@click.option("--gradient", "gradient_kind", type=click.Choice(["autograd", "analytic"]), default="autograd",
              show_default=True,
              help="Gradient under test: autograd (backpropagation), or analytic (the hand-derived SVM/softmax gradient "
                   "of a linear classifier, --depth 1).")
@click.option("--check-seed", type=int, default=0, show_default=True, metavar="N",
              help="Seed of the coordinates drawn.")
@click.pass_context
def gradcheck_command(ctx, examples, coords, h, method, threshold, floor, dtype, gradient_kind, check_seed, loss,
                      reg, **options) -> None:
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
    from evoprop.lab.gradcheck import GradCheckSettings, run_gradcheck

    positive("--examples", examples)
    positive("--coords", coords, allow_zero=True)
    positive("--reg", reg, allow_zero=True)
    seed_option("--check-seed", check_seed)
    problem = build_problem(options, _DEFAULTS)
    settings = GradCheckSettings(examples=examples, coords=coords, h=h, method=method, threshold=threshold, floor=floor,
                                 dtype=dtype, gradient=gradient_kind, seed=check_seed, loss=loss, reg=reg)
    result = run_gradcheck(problem, settings)
    click.echo(result.summary())
    if not result.passed:
        ctx.exit(EXIT_ERROR)  # the check failed
