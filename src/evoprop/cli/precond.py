"""``evoprop precond``: the Hessian lens, every optimizer's step seen against Newton's (Nocedal & Wright 2006)."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import build_problem, echo_files, fresh_defaults, model_options, positive
from evoprop.errors import ConfigError

_DEFAULTS = fresh_defaults(dataset="mnist", depth=1, pixels="unit", split="paper", val_fraction=0.1)


@click.command("precond")
@model_options(_DEFAULTS)
@click.option("--examples", type=int, default=512, show_default=True, metavar="N",
              help="Training examples of the batch the curvature, the Newton direction and every compared step use.")
@click.option("--curvature", type=click.Choice(["hessian", "ggn"]), default="hessian", show_default=True,
              help="hessian: the exact Hessian; ggn: the Gauss-Newton matrix (the same for a depth-1 model).")
@click.option("--damping", type=float, default=1e-3, show_default=True, metavar="X",
              help="λ of the reference Newton direction -(C + λI)^-1 g (raised if C + λI is not positive definite).")
@click.option("--warmup", type=int, default=20, show_default=True, metavar="K",
              help="Steps each optimizer takes from the weights before its step is compared (builds its state).")
@click.option("--warmup-batch", type=int, default=64, show_default=True, metavar="N",
              help="Mini-batch size of the warm-up steps.")
@click.option("--optimizers", default=None, metavar="A,B,...",
              help="Optimizers to compare [default: sgd,momentum,adagrad,rmsprop,adam,natural,hessian-free,newton].")
@click.option("--warmup-seed", type=int, default=0, show_default=True, metavar="N", help="Seed of the warm-up batches.")
@click.option("--max-memory", default=None, metavar="SIZE",
              help="Memory the d x d matrices may take, e.g. 2G [default: half of what is available].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for precond.md, precond.csv, precond_cosine.png and precond_diagonal.png.")
def precond_command(examples, curvature, damping, warmup, warmup_batch, optimizers, warmup_seed, max_memory, out,
                    **options) -> None:
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
    from evoprop.lab.precond import DEFAULT_OPTIMIZERS, PrecondSettings, run_precond

    positive("--examples", examples)
    positive("--damping", damping)
    positive("--warmup", warmup, allow_zero=True)
    positive("--warmup-batch", warmup_batch)
    names = [n.strip() for n in optimizers.split(",") if n.strip()] if optimizers else list(DEFAULT_OPTIMIZERS)
    if not names:
        raise ConfigError("--optimizers needs at least one optimizer name")
    problem = build_problem(options, _DEFAULTS)
    settings = PrecondSettings(examples=examples, curvature=curvature, damping=damping, warmup=warmup,
                               warmup_batch=warmup_batch, optimizers=tuple(names), seed=warmup_seed,
                               max_memory=max_memory)
    result = run_precond(problem, settings)
    click.echo(result.summary())
    if out is not None:
        echo_files(result.write(out))
