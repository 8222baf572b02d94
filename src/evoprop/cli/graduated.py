"""``evoprop graduated``: compare learning-rate / batch-size schedules (implicit graduated optimization)."""

from __future__ import annotations

import sys

import click

from evoprop.cli.exits import EXIT_INTERRUPTED
from evoprop.config import TrainConfig
from evoprop.data import DATASETS
from evoprop.data.sources import DATA_DIR_HELP
from evoprop.models import MODELS
from evoprop.train.schedules import GRADUATED, SCHEDULES


# option flag -> (TrainConfig field, click type, help); None defaults, so that only what the user
# typed overrides the config file, which overrides the preset, which overrides the defaults.
_OPTIONS: list[tuple[str, str, object, str]] = [
    ("--dataset", "dataset", str, f"Data set: {', '.join(DATASETS)} [default: mnist]."),
    ("--model", "model", str, f"Model: {', '.join(MODELS)} [default: mlp]."),
    ("--depth", "depth", int, "MLP weight layers (1: softmax regression, 10: nine hidden layers) [default: 1]."),
    ("--width", "width", int, "MLP units per hidden layer [default: 200]."),
    ("--resnet-width", "resnet_width", int, "Channels of the ResNet's first stage (64: ResNet-18) [default: 64]."),
    ("--optimizer", "optimizer", str, "Gradient optimizer (see 'evoprop optimizers') [default: sgd]."),
    ("--lr", "lr", float, "Starting learning rate [default: 0.1, the paper's]."),
    ("--batch-size", "batch_size", int, "Starting batch size [default: 32, the paper's]."),
    ("--epochs", "epochs", int, "Epochs of every schedule [default: 20]."),
    ("--stage-epochs", "stage_epochs", int, "Epochs per stage [default: epochs // 5, five stages as the paper's]."),
    ("--gamma", "gamma", float,
     "Factor in (0, 1) that delta is multiplied by per stage (step: the lr, at its milestones) "
     "[default: 1/sqrt(2), the paper's; step 0.1]."),
    ("--max-batch-size", "max_batch_size", int, "Cap on the growing batch size [default: none]."),
    ("--min-lr", "min_lr", float, "Floor of the decaying learning rate [default: 0]."),
    ("--noise-sample", "noise_sample", int,
     "Training examples on which the gradient noise C is estimated at each stage start [default: 1024]."),
    ("--method", "method", str, "gradient, or hybrid (one ES generation per epoch on layer 0, MLP only) [default: gradient]."),
    ("--seed", "seed", int, "Seed of the initialisation and the mini-batch order (the same for every schedule)."),
    ("--limit-train", "limit_train", int, "Use only the first N training examples (quick looks)."),
    ("--limit-test", "limit_test", int, "Use only the first N test and validation examples."),
    ("--data-dir", "data_dir", click.Path(file_okay=False),
     DATA_DIR_HELP),
    ("--device", "device", str, "auto (a GPU when there is one), cpu, cuda or cuda:N [default: auto]."),
]


def _with_options(func):
    for flag, field, type_, help_ in reversed(_OPTIONS):
        metavar = {str: "NAME", int: "N", float: "X"}.get(type_)
        func = click.option(flag, field, type=type_, default=None, help=help_, metavar=metavar)(func)
    return func


@click.command("graduated")
@click.option("--schedules", "schedules", multiple=True, metavar="NAME[,NAME...]",
              help=f"Schedules to compare, comma-separated or repeated: {', '.join(SCHEDULES)} "
                   f"[default: {','.join(GRADUATED)}].")
@click.option("--preset", type=click.Choice(["paper"]), default=None,
              help="paper: the paper's setting (ResNet-18, CIFAR-10 official split, 200 epochs, stages of 40, lr 0.1, "
                   "batch 32, gamma 1/sqrt(2)); hours on a GPU. Options given here override it.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML or JSON file of base settings (as for 'evoprop train'); options given here override it.")
@_with_options
@click.option("--out", default="graduated", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the comparison: OUT/<schedule>/ run directories, OUT/table.csv, table.md, graduated.png.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar per epoch [default: when the terminal is interactive].")
def graduated_command(schedules, preset, config_file, out, progress, **options) -> None:
    """Train one setting under several learning-rate / batch-size schedules and compare them.

    Implicit graduated optimization (Sato & Iiduka 2023): SGD smooths the loss by
    delta = lr * C / sqrt(batch size), C the stochastic gradient's noise. constant keeps delta;
    lr-decay (lr *= gamma), batch-growth (batch /= gamma^2) and hybrid (lr *= sqrt(gamma),
    batch /= gamma) cut it by gamma every stage. C is measured at every stage start.

    Each schedule is an ordinary run directory OUT/<schedule>/ (resume one with 'evoprop
    train --resume'; rerunning this command continues where it stopped). Then OUT/table.csv
    and table.md (best and validation-selected test F1, time, and lr, batch, C and delta of
    every stage) and OUT/graduated.png (test F1, delta, lr and batch size per epoch).

    Examples:

      evoprop graduated --dataset mnist --depth 1 --epochs 4 --stage-epochs 1 --out grad-quick

      evoprop graduated --dataset mnist --depth 10 --width 200 --epochs 25 --stage-epochs 5 --out grad-mnist10

      evoprop graduated --dataset cifar10-gray --depth 10 --schedules constant,hybrid,cosine --out grad-cifar

      evoprop graduated --preset paper --device cuda --out grad-paper
    """
    from evoprop.experiments.graduated import DEFAULTS, PRESETS, compare_schedules

    base = TrainConfig.from_dict(DEFAULTS)
    if preset:
        base = TrainConfig.from_dict(PRESETS[preset], base=base)
    if config_file:
        base = TrainConfig.from_file(config_file, base=base)
    base = TrainConfig.from_dict({k: v for k, v in options.items() if v is not None}, base=base)
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        result = compare_schedules(base, out, schedules=list(schedules), progress=progress,
                                   echo=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        click.echo("evoprop: interrupted; completed epochs are saved: run the same command again to continue",
                   err=True)
        click.get_current_context().exit(EXIT_INTERRUPTED)
    click.echo(result.files["table_md"].read_text())
    click.echo(", ".join(str(p) for p in result.files.values()))
