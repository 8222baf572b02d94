"""``evoprop landscape``: a model's loss along a random line and over a random plane through its weights."""

from __future__ import annotations

import click

from evoprop.cli.lab_options import (build_problem, echo_files, fresh_defaults, loss_options, model_options, positive,
                                     seed_option)
from evoprop.errors import ConfigError

_DEFAULTS = fresh_defaults(dataset="mnist", depth=1, pixels="unit", split="paper", val_fraction=0.1)


#: The most grid points on the line and per axis of the plane (every point is one evaluation of the loss).
MAX_POINTS, MAX_GRID = 10_001, 1_001


@click.command("landscape")
@model_options(_DEFAULTS)
@loss_options("softmax")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for landscape_1d.png, landscape_2d.png, landscape.npz, landscape_1d.csv, landscape_2d.csv "
                   "and landscape.json.")
@click.option("--on", "on_split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True,
              help="Data split the loss is measured on.")
@click.option("--examples", type=int, default=2000, show_default=True, metavar="N",
              help="Measure on the first N examples of the split (0: all of it; time grows with N).")
@click.option("--direction", type=click.Choice(["filter", "gaussian"]), default="filter", show_default=True,
              help="filter: Gaussian rescaled filter by filter (each output neuron's row) to the weights' norms, "
                   "Li et al. 2018; gaussian: plain N(0, 1) per weight (its natural range is far smaller: try "
                   "--range 0.05).")
@click.option("--bias", "bias_mode", type=click.Choice(["zero", "weights"]), default="zero", show_default=True,
              help="filter directions on biases and normalisation-layer parameters: zero (they stay put; Li et al.'s "
                   "default) or weights (the parameter itself).")
@click.option("--range", "limit", type=float, default=1.0, show_default=True, metavar="R",
              help="a and b run from -R to R.")
@click.option("--points", type=int, default=51, show_default=True, metavar="N", help=f"Grid points on the line (2 to {MAX_POINTS}).")
@click.option("--grid", type=int, default=21, show_default=True, metavar="N", help=f"Grid points per axis of the plane (2 to {MAX_GRID}).")
@click.option("--only", type=click.Choice(["both", "line", "plane"]), default="both", show_default=True,
              help="Compute the line, the plane, or both.")
@click.option("--direction-seed", type=int, default=0, show_default=True, metavar="N",
              help="Seed of the random directions.")
@click.option("--batch-size", type=int, default=1000, show_default=True, metavar="N",
              help="Examples per evaluation pass (memory only: results do not change).")
def landscape_command(out, on_split, examples, direction, bias_mode, limit, points, grid, only, direction_seed,
                      batch_size, loss, reg, **options) -> None:
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
    from evoprop.lab.landscape import LandscapeSettings, run_landscape

    positive("--examples", examples, allow_zero=True)
    positive("--range", limit)
    positive("--batch-size", batch_size)
    positive("--reg", reg, allow_zero=True)
    seed_option("--direction-seed", direction_seed)
    for name, value, most in (("--points", points, MAX_POINTS), ("--grid", grid, MAX_GRID)):
        if not 2 <= value <= most:
            raise ConfigError(f"{name} must be at least 2 and at most {most}, got {value}")
    problem = build_problem(options, _DEFAULTS)
    settings = LandscapeSettings(split=on_split, examples=examples, loss=loss, reg=reg, direction=direction,
                                 bias=bias_mode, range=limit, points=points, grid=grid, only=only,
                                 direction_seed=direction_seed, batch_size=batch_size)
    result = run_landscape(problem, settings, progress=click.echo, folder=out)
    echo_files(result.write(out))
