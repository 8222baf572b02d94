"""``evoprop report``: tables and figures from existing run directories."""

from __future__ import annotations

import shlex

import click

from evoprop.errors import ConfigError


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...", type=click.Path())
@click.option("--out", default="report", show_default=True, type=click.Path(file_okay=False),
              help="Folder to write table.md, table.csv, f1.png, loss.png and report.md into.")
@click.option("--title", help="Title of the table and report [default: the paper's table, or 'Comparison of N runs'].")
@click.option("--epochs", type=int, metavar="N", help="Read only the first N epochs of every run [default: all].")
@click.option("--each-run", is_flag=True,
              help="One row per run directory, instead of one per method averaged over seeds.")
@click.option("--target-f1", type=float, metavar="X",
              help="Also the epochs and seconds each method took to first reach test macro-F1 X.")
@click.option("--baseline", metavar="METHOD",
              help="A method as the table labels it: every other method paired with it seed by seed (mean "
                   "difference in val-selected test F1 with a t-based 95 % interval, seeds won; and how many epochs sooner "
                   "it converged, and reached --target-f1, with the same interval).")
def report_command(run_dirs, out, title, epochs, each_run, target_f1, baseline) -> None:
    """Compare runs: one row per method (runs differing only in seed are averaged), with figures.

    RUN_DIR is a run directory (from 'evoprop train' or 'evoprop reproduce') or a folder
    searched for them, e.g. reproductions/table3 or runs/. Writes OUT/table.md and
    OUT/table.csv (best test F1 over epochs and its epoch, as the paper measures; the test
    F1 at the epoch chosen on validation; time; epochs; seeds; and, for reproductions, the
    paper's numbers), OUT/f1.png (test macro-F1 per epoch), OUT/loss.png and OUT/report.md
    (all of it, with every run's settings and machine).

    Examples:

      evoprop report runs/ --out report

      evoprop report reproductions/table3 --out reproductions/table3

      evoprop report runs/sgd-a runs/sgd-b runs/adam --epochs 20 --title "SGD vs Adam"

      evoprop report runs/ --baseline "gradient sgd lr 0.01" --target-f1 0.9
    """
    from evoprop.experiments import paper_references
    from evoprop.report import build_report

    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be a positive integer, got {epochs}")
    command = shlex.join(["evoprop", "report", *run_dirs, "--out", out]
                         + (["--epochs", str(epochs)] if epochs else [])
                         + (["--target-f1", f"{target_f1:g}"] if target_f1 is not None else [])
                         + (["--baseline", baseline] if baseline is not None else []))
    result = build_report(run_dirs, out, title=title, epochs=epochs, command=command, by_run=each_run,
                          target_f1=target_f1, baseline=baseline, references=paper_references())
    click.echo(result["files"]["table_md"].read_text())
    click.echo(", ".join(str(p) for p in result["files"].values()))
