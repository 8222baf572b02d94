"""``evoprop search``: random search, random local search and gradient descent on one training loss."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import (build_problem, echo_files, fresh_defaults, loss_options, model_options, positive,
                                     seed_option)
from evoprop.lab.search import METHODS

# The setting of the CS231n optimization notes: a linear classifier on CIFAR-10 (official 50,000 / 10,000
# split), mean-centred 0-255 pixels, multiclass SVM loss.
_DEFAULTS = fresh_defaults(dataset="cifar10", depth=1, pixels="centred", split="official", val_fraction=0.0)


@click.command("search")
@click.argument("methods", nargs=-1, required=True, type=click.Choice(METHODS), metavar="METHOD...")
@model_options(_DEFAULTS, run=False)
@loss_options("svm")
@click.option("--tries", type=int, default=1000, show_default=True, metavar="N",
              help="random, local: how many weight vectors to try.")
@click.option("--scale", type=float, default=1e-4, show_default=True, metavar="X",
              help="random: each try is W ~ X * N(0, 1).")
@click.option("--step", type=float, default=1e-4, show_default=True, metavar="X",
              help="local: each try is W + X * N(0, 1), kept if its loss is lower.")
@click.option("--start-scale", type=float, default=1e-3, show_default=True, metavar="X",
              help="local, gradient: start from W ~ X * N(0, 1) (CS231n's start); 0 starts from the model's --init.")
@click.option("--lr", type=float, default=1e-6, show_default=True, metavar="X",
              help="gradient: step size of plain gradient descent (suits the default centred 0-255 pixels).")
@click.option("--steps", type=int, default=100, show_default=True, metavar="N",
              help="gradient: number of full-batch gradient steps.")
@click.option("--search-seed", type=int, default=0, show_default=True, metavar="N",
              help="Seed of the random tries and of the start.")
@click.option("--batch-size", type=int, default=10_000, show_default=True, metavar="N",
              help="Examples per evaluation pass (memory only: results do not change).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for search.csv (loss per iteration), search.png (the curves), results.md and results.json.")
def search_command(methods, tries, scale, step, start_scale, lr, steps, search_seed, batch_size, out, loss, reg,
                   **options) -> None:
    """Lower the training loss by random search, random local search or gradient descent, and compare.

    METHOD is one or more of: random (try N random weight vectors, keep the best), local
    (perturb the weights, keep a change only if the loss drops) and gradient (plain
    gradient descent on the same loss). The loss is measured on the whole training split;
    each method reports its final training loss and its test accuracy. The defaults are the
    setting of the CS231n optimization notes: a linear classifier W (10 x 3073, the bias trick) on
    CIFAR-10 RGB with the multiclass SVM loss, 1,000 tries, scale and step 1e-4.

    Examples:

      evoprop search random local gradient --out search/cifar10

      evoprop search local --tries 200 --limit-train 5000

      evoprop search gradient --dataset mnist --pixels unit --lr 0.1 --steps 200 --loss softmax
    """
    from evoprop.lab.search import SearchSettings, run_search

    for name, value in (("--tries", tries), ("--steps", steps), ("--batch-size", batch_size), ("--scale", scale),
                        ("--step", step), ("--lr", lr)):
        positive(name, value)
    positive("--start-scale", start_scale, allow_zero=True)
    positive("--reg", reg, allow_zero=True)
    seed_option("--search-seed", search_seed)
    problem = build_problem(options, _DEFAULTS)
    settings = SearchSettings(methods=tuple(methods), tries=tries, scale=scale, step=step, start_scale=start_scale,
                              lr=lr, steps=steps, seed=search_seed, batch_size=batch_size, loss=loss, reg=reg)
    result = run_search(problem, settings, progress=click.echo)
    if out is not None:
        echo_files(result.write(out))
