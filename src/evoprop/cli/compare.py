"""``evoprop compare``: arms × seeds from a YAML file, as run directories, then one paired table."""

from __future__ import annotations

import sys

import click

from evoprop.cli.plans import echo_plan, exit_interrupted
from evoprop.cli.train import train_options
from evoprop.errors import ConfigError



@click.command("compare")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False), metavar="FILE.yaml",
              help="The comparison: base (train settings shared by every arm), arms (name -> settings over base), "
                   "seeds (a count or a list), baseline (an arm name), target_f1 and out; see below.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder of the comparison: OUT/<arm>/seed<k>/ run directories and OUT/table.md etc. "
                   "[default: the file's out, else comparisons/<file name>].")
@click.option("--seeds", type=int, metavar="N", help="Run seeds 0 … N-1 of every arm [default: the file's seeds].")
@click.option("--epochs", type=int, metavar="N",
              help="Epochs of every arm [default: the file's base epochs]. A table of fewer epochs reads only the "
                   "first N epochs of longer runs already there.")
@train_options("--device", "--data-dir", "--limit-train", "--limit-test")
@click.option("--dry-run", is_flag=True, help="List what would run (new, resume, extend, skip) and stop.")
@click.option("--progress/--no-progress", default=None,
              help="An overall bar (arms × seeds × epochs, with the current run's F1 and the time left) instead of a "
                   "line per epoch [default: when the terminal is interactive].")
def compare_command(config_file, out, seeds, epochs, device, data_dir, limit_train, limit_test, dry_run,
                    progress) -> None:
    """Train every arm × seed of FILE.yaml and compare the arms, paired seed by seed with a baseline.

    Each arm × seed is an ordinary run directory, OUT/<arm>/seed<k>/: rerunning the command
    skips finished runs, continues interrupted ones and extends shorter ones (so the same
    command goes on after Ctrl-C). Options given here (--epochs, --device, --data-dir,
    --limit-train, --limit-test) override the file's base and every arm. Then OUT/ receives
    table.md and table.csv (per arm, mean ± std over seeds of the best test F1, the
    val-selected test F1 and the final test F1, the epochs and seconds to target_f1, the
    seconds per epoch; every arm against the baseline, seed by seed: the mean difference
    in val-selected test F1 with a t-based 95 % interval and the seeds it won, and in
    epochs: how much sooner it converged and reached target_f1), f1.png (per
    arm the mean test F1 over seeds, with a min–max band), loss.png and report.md.

    FILE.yaml:

    \b
      base: {dataset: mnist, depth: 10, width: 200, epochs: 20, lr: 0.01}
      arms:
        sgd: {}
        hybrid: {method: hybrid, popsize: 1000}
      seeds: 5
      baseline: sgd
      target_f1: 0.95

    Examples:

      evoprop compare --config examples/compare-quick.yaml

      evoprop compare --config examples/compare-hybrid.yaml --seeds 3 --epochs 5 --dry-run
    """
    from evoprop.experiments.compare import command_line, compare, load_spec, plan

    for name, value in (("--seeds", seeds), ("--epochs", epochs)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    changes = {k: v for k, v in (("epochs", epochs), ("device", device), ("data_dir", data_dir),
                                 ("limit_train", limit_train), ("limit_test", limit_test)) if v is not None}
    spec = load_spec(config_file, seeds=seeds, out=out, changes=changes)
    if dry_run:
        planned = plan(spec)
        echo_plan(planned)
        return
    if progress is None:
        progress = sys.stderr.isatty()
    command = command_line(config_file, out=out, seeds=seeds, epochs=epochs, device=device, data_dir=data_dir,
                           limit_train=limit_train, limit_test=limit_test)
    try:
        result = compare(spec, device=device, progress=progress, echo=lambda line: click.echo(line, err=True),
                         command=command)
    except KeyboardInterrupt:
        exit_interrupted()
    click.echo(result.files["table_md"].read_text())
    click.echo(", ".join(str(p) for p in result.files.values()))
