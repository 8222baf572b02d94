"""``evoprop search``: random search, random local search and gradient descent on one training loss."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import (build_problem, echo_files, fresh_defaults, loss_option, model_options, settings_from,
                                     settings_options)
from evoprop.lab.search import METHODS, SearchSettings

# The setting of the CS231n optimization notes: a linear classifier on CIFAR-10 (official 50,000 / 10,000
# split), mean-centred 0-255 pixels, multiclass SVM loss.
_DEFAULTS = fresh_defaults(dataset="cifar10", depth=1, pixels="centred", split="official", val_fraction=0.0)


@click.command("search")
@click.argument("methods", nargs=-1, required=True, type=click.Choice(METHODS), metavar="METHOD...")
@model_options(_DEFAULTS, run=False)
@loss_option("svm")
@settings_options(SearchSettings)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for search.csv (loss per iteration), search.png (the curves), results.md and results.json.")
def search_command(methods, out, loss, **options) -> None:
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
    from evoprop.lab.search import run_search

    settings = settings_from(SearchSettings, options, methods=tuple(methods), loss=loss)
    problem = build_problem(options, _DEFAULTS)
    result = run_search(problem, settings, progress=click.echo)
    if out is not None:
        echo_files(result.write(out))
