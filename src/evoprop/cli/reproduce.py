"""``evoprop reproduce``: rerun one of the paper's tables (or all four) and write its table folder."""

from __future__ import annotations

import sys

import click

from evoprop.cli.plans import echo_plan, exit_interrupted
from evoprop.data.sources import DATA_DIR_HELP
from evoprop.experiments.paper_tables import PAPER_EPOCHS, TABLES



def _rows_help() -> str:
    per_table = "; ".join(f"{name}: {', '.join(t.row_ids)}" for name, t in TABLES.items())
    return f"Rows to run, by id, comma-separated or repeated [default: all]. {per_table}."


@click.command("reproduce")
@click.argument("table", metavar="TABLE")
@click.option("--epochs", type=int, default=PAPER_EPOCHS, show_default=True, metavar="N",
              help="Epochs of every row (the paper's: 1000). A table of fewer epochs reads only the first N epochs "
                   "of longer runs already there.")
@click.option("--rows", "rows", multiple=True, metavar="ID[,ID...]", help=_rows_help())
@click.option("--out", default="reproductions", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the reproductions: OUT/TABLE/ROW/seedK/ run directories and OUT/TABLE/ results.")
@click.option("--seed", type=int, default=0, show_default=True, metavar="N", help="First seed.")
@click.option("--seeds", type=int, default=1, show_default=True, metavar="K",
              help="Run seeds SEED … SEED+K-1 of every row (K at most 1000); the table shows mean ± sample std over them.")
@click.option("--device", default=None, metavar="NAME",
              help="auto (a GPU when there is one), cpu, cuda or cuda:N [default: auto].")
@click.option("--init", default=None, metavar="NAME",
              help="Weight initialisation of every row: glorot (default; the paper does not say), lecun, he, torch.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help=DATA_DIR_HELP)
@click.option("--limit-train", type=int, metavar="N",
              help="Quick look: only the first N training examples (no longer the paper's setting).")
@click.option("--limit-test", type=int, metavar="N", help="Quick look: only the first N test and validation examples.")
@click.option("--dry-run", is_flag=True,
              help="List every row's settings and what would run (new, resume, extend, skip), and stop.")
@click.option("--progress/--no-progress", default=None,
              help="An overall bar (rows × epochs, with the current row's F1 and the time left) instead of a line "
                   "per epoch [default: when the terminal is interactive].")
def reproduce_command(table, epochs, rows, out, seed, seeds, device, init, data_dir, limit_train, limit_test,
                      dry_run, progress) -> None:
    """Rerun the paper's TABLE (table1, table2, table3, table4 or all) with its settings.

    Every row (method) is an ordinary run directory, OUT/TABLE/ROW/seedK/: a finished row is
    not rerun, an interrupted one continues where it stopped, a shorter one is extended
    (so rerunning the same command after Ctrl-C goes on). Then OUT/TABLE/ receives
    table.md and table.csv (the paper's F1 and convergence epoch beside ours: the best
    test F1 over epochs, as the paper measures, and the test F1 at the epoch chosen on
    validation), f1.png (test macro-F1 per epoch, one line per method), loss.png and
    report.md (all of it, with the settings and the machine).

    Tables: table1 MNIST 1 layer; table2 CIFAR-10 gray 1 layer; table3 MNIST 10 layers;
    table4 CIFAR-10 gray 10 layers. Beside the paper's rows: in tables 1-2 the CMA-ES
    corrected (cma-es-csa: standard step-size control, an epoch = one pass over the
    training data; cma-es-sep: the same with separable CMA-ES, the row that fits a CPU;
    in table1 also cma-es-sep-l2, that row with an L2 term in its fitness), the printed
    one being cma-es; in tables 3-4 each hybrid row with the combination
    rules elitist and inject (hybrid-sgd-elitist, ...). Every row is paired seed by seed
    with sgd-0.01 in table.md.

    Examples:

      evoprop reproduce table3 --epochs 3 --out repro

      evoprop reproduce table1 --epochs 20 --rows adam --out repro

      evoprop reproduce all --epochs 50 --seeds 3

      evoprop reproduce table1 --epochs 1000 --seeds 3 --rows adam,sgd-0.001,sgd-0.01 --dry-run
    """
    from evoprop.experiments.reproduce import plan, reproduce

    kwargs = dict(epochs=epochs, rows=list(rows) or None, seed=seed, seeds=seeds, device=device, init=init,
                  data_dir=data_dir, limit_train=limit_train, limit_test=limit_test)
    if dry_run:
        planned = plan(table, out, **kwargs)
        for name, line in dict.fromkeys((f"{p.table.name} {p.row.id}", p.settings_line) for p in planned):
            click.echo(f"{name}: {line}")
        echo_plan(planned)
        return
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        results = reproduce(table, out, progress=progress, echo=lambda line: click.echo(line, err=True), **kwargs)
    except KeyboardInterrupt:
        exit_interrupted()
    for result in results:
        click.echo(result.files["table_md"].read_text())
        click.echo(f"{result.table.name}: {', '.join(str(p) for p in result.files.values())}\n")

