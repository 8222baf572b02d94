"""``evoprop gradcheck``: a model's gradient against finite differences; exit status 0 on pass, 1 on fail."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import build_problem, fresh_defaults, loss_options, model_options, positive, seed_option
from evoprop.errors import ConfigError

_DEFAULTS = fresh_defaults(dataset="mnist", depth=1, pixels="unit", split="paper", val_fraction=0.1)
EXIT_FAILED = 1


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
    import torch

    from evoprop.lab.gradcheck import check_gradients

    positive("--examples", examples)
    positive("--coords", coords, allow_zero=True)
    positive("--reg", reg, allow_zero=True)
    seed_option("--check-seed", check_seed)
    problem = build_problem(options, _DEFAULTS)
    x, y = problem.tensors("train", examples)
    gradient_fn = _analytic_gradient(problem.model, loss, reg) if gradient_kind == "analytic" else None
    result = check_gradients(problem.model, x, y, loss, reg, h=h, coords=coords, threshold=threshold, method=method,
                             dtype=getattr(torch, dtype), seed=check_seed, gradient=gradient_fn, floor=floor)
    click.echo(f"{problem.description}\n{gradient_kind} gradient of the {loss} loss"
               f"{f' + {reg:g} L2' if reg else ''} on {len(y)} training examples (loss {result.loss:.6g}), "
               f"{dtype}, h = {h:g}")
    width = max(len(t.name) for t in result.tensors)
    click.echo(f"{'tensor':<{width}}  {'shape':>12}  {'checked':>7}  {'kinks':>5}  {'centred':>9}  {'forward':>9}  "
               f"{'|grad| max':>10}")
    for t in result.tensors:
        verdict = "not checked (kinks)" if not t.checked else "ok" if result.tensor_passed(t) else "FAIL"
        shape = "x".join(str(s) for s in t.shape)
        click.echo(f"{t.name:<{width}}  {shape:>12}  {t.checked:>7}  {t.kinks:>5}  {t.max_rel_centred:>9.2e}  "
                   f"{t.max_rel_forward:>9.2e}  {t.max_abs_gradient:>10.3e}  {verdict}")
    status = "PASS" if result.passed else "FAIL"
    click.echo(f"{status}: largest {method} relative error {result.max_error:.2e} (threshold {threshold:g}) over "
               f"{sum(t.checked for t in result.tensors)} coordinates, {sum(t.kinks for t in result.tensors)} "
               "left out at kinks")
    if result.unchecked:
        click.echo(f"not checked: {', '.join(result.unchecked)}: every coordinate drawn crossed a kink between w - h "
                   "and w + h; try fewer --examples or a smaller --h")
    if not result.passed:
        ctx.exit(EXIT_FAILED)


def _analytic_gradient(model, loss: str, reg: float):
    """The hand-derived gradient of a linear classifier, as check_gradients' gradient function."""
    from evoprop.lab.linear import ANALYTIC_GRADIENTS, linear_layer, weights_of

    try:
        linear_layer(model)
    except ConfigError:
        raise ConfigError("--gradient analytic is the linear classifier's hand-derived gradient: use --depth 1") from None
    analytic = ANALYTIC_GRADIENTS[loss]

    def gradient(m, xs, ys):
        _, dW = analytic(weights_of(m), xs, ys, reg)
        return {"layers.0.weight": dW[:, :-1], "layers.0.bias": dW[:, -1]}

    return gradient
