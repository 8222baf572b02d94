"""``evoprop landscape``: a model's loss along a random line and over a random plane through its weights."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import (build_problem, echo_files, fresh_defaults, loss_option, model_options, settings_from,
                                     settings_options)
from evoprop.errors import ConfigError
from evoprop.lab.landscape import MAX_GRID, MAX_POINTS, LandscapeSettings

_DEFAULTS = fresh_defaults(dataset="mnist", depth=1, pixels="unit", split="paper", val_fraction=0.1)


@click.command("landscape")
@model_options(_DEFAULTS)
@loss_option("softmax")
@settings_options(LandscapeSettings)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for landscape_1d.png, landscape_2d.png, landscape.npz, landscape_1d.csv, landscape_2d.csv "
                   "and landscape.json.")
def landscape_command(out, loss, **options) -> None:
    """Draw the loss along a random line L(W + a W1) and on a random plane L(W + a W1 + b W2).

    W is a saved run's weights (--run) or a fresh model's. The grid is a population:
    its points are evaluated in batches by the population evaluator. Writes OUT/landscape_1d.png
    (loss and accuracy against a), OUT/landscape_2d.png (contours and colour map over (a, b)),
    the raw grids as OUT/landscape.npz and CSV files, and OUT/landscape.json (settings and
    headline numbers).

    Examples:

      evoprop landscape --run runs/mnist-d10 --out landscape/mnist-d10

      evoprop landscape --dataset mnist --depth 1 --out landscape/fresh

      evoprop landscape --run runs/mnist-d10 --on test --examples 0 --grid 41 --range 0.5 --out big
    """
    from evoprop.lab.landscape import run_landscape

    settings = settings_from(LandscapeSettings, options, loss=loss)
    for name, value, most in (("--points", settings.points, MAX_POINTS), ("--grid", settings.grid, MAX_GRID)):
        if not 2 <= value <= most:
            raise ConfigError(f"{name} must be at least 2 and at most {most}, got {value}")
    problem = build_problem(options, _DEFAULTS)
    result = run_landscape(problem, settings, progress=click.echo, folder=out)
    echo_files(result.write(out))
