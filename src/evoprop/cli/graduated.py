"""``evoprop graduated``: compare learning-rate / batch-size schedules (implicit graduated optimization)."""

from __future__ import annotations

import sys

import click

from evoprop.cli.plans import exit_interrupted
from evoprop.cli.train import setting_options
from evoprop.config import TrainConfig
from evoprop.train.schedules import GRADUATED, SCHEDULES


#: The train settings this command takes, as `evoprop train` has them (help, type, range: from the fields);
#: None defaults, so that only what the user typed overrides the config file, which overrides the
#: preset, which overrides the defaults.
SETTINGS = ("dataset", "model", "depth", "width", "resnet_width", "optimizer", "lr", "batch_size", "epochs",
            "stage_epochs", "gamma", "max_batch_size", "min_lr", "noise_sample", "method", "seed", "limit_train",
            "limit_test", "data_dir", "device")


#: What these settings are in a comparison of schedules, added to their help (the rest is the field's).
NOTES = {
    "lr": "the starting value, which the schedules change",
    "batch_size": "the starting value, which the schedules change",
    "epochs": "of every schedule",
    "stage_epochs": "by default five stages, as the paper's",
    "gamma": "the default 1/sqrt(2) is the paper's",
    "method": "here gradient or hybrid: es has no learning rate or batch size to schedule",
    "seed": "the same for every schedule",
}


def _shown_defaults() -> dict:
    """The defaults of experiments/graduated.py (not TrainConfig's), as --help shows them."""
    from evoprop.experiments.graduated import DEFAULTS

    paper = {"lr", "batch_size"}  # the paper's starting values
    return {k: f"{v}, the paper's" if k in paper else v for k, v in DEFAULTS.items()}


@click.command("graduated")
@click.option("--schedules", "schedules", multiple=True, metavar="NAME[,NAME...]",
              help=f"Schedules to compare, comma-separated or repeated: {', '.join(SCHEDULES)} "
                   f"[default: {','.join(GRADUATED)}].")
@click.option("--preset", type=click.Choice(["paper"]), default=None,
              help="paper: the paper's setting (ResNet-18, CIFAR-10 official split, 200 epochs, stages of 40, lr 0.1, "
                   "batch 32, gamma 1/sqrt(2)); hours on a GPU. Options given here override it.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML or JSON file of base settings (as for 'evoprop train'); options given here override it.")
@setting_options(SETTINGS, defaults=_shown_defaults(), notes=NOTES)
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
        exit_interrupted()
    click.echo(result.files["table_md"].read_text())
    click.echo(", ".join(str(p) for p in result.files.values()))
