"""``evoprop``: the command-line entry point.

Every user mistake (bad option, unknown name, missing data, unreadable config)
ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys
import warnings

import click

import evoprop
from evoprop.cli.compare import compare_command
from evoprop.cli.dashboard import dashboard_command
from evoprop.cli.exits import EXIT_DIVERGED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE
from evoprop.cli.gradcheck import gradcheck_command
from evoprop.cli.graduated import graduated_command
from evoprop.cli.landscape import landscape_command
from evoprop.cli.precond import precond_command
from evoprop.cli.report import report_command
from evoprop.cli.reproduce import reproduce_command
from evoprop.cli.search import search_command
from evoprop.cli.stepsize import stepsize_command
from evoprop.cli.train import train_command
from evoprop.cli.tune import tune_command
from evoprop.data import DataNote
from evoprop.errors import EvopropError, TrainingDiverged
from evoprop.optim import OPTIMIZERS
from evoprop.signals import stop_on_signals



@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(evoprop.__version__, prog_name="evoprop")
def cli() -> None:
    """Train neural networks with evolution strategies and gradient descent, and compare optimizers.

    Start with `evoprop train --help`.
    """


@cli.command("optimizers")
def optimizers_command() -> None:
    """List the gradient optimizers by name, with their default hyperparameters."""
    for spec in OPTIMIZERS.values():
        defaults = ", ".join(f"{k}={v}" for k, v in spec.defaults.items())
        click.echo(f"{spec.name:<10} {defaults:<40} {spec.description}")


cli.add_command(train_command)
cli.add_command(reproduce_command)
cli.add_command(report_command)
cli.add_command(compare_command)
cli.add_command(graduated_command)
cli.add_command(tune_command)
cli.add_command(dashboard_command)
cli.add_command(landscape_command)
cli.add_command(search_command)
cli.add_command(gradcheck_command)
cli.add_command(stepsize_command)
cli.add_command(precond_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, as a console script, exit with) its status."""
    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message, category, *args, **kwargs) -> None:
            # evoprop's own notes (e.g. an unofficial data archive) as one line, not Python's two-line format
            if issubclass(category, DataNote):
                click.echo(f"evoprop: note: {message}", err=True)
            else:
                original(message, category, *args, **kwargs)

        warnings.showwarning = show
        with stop_on_signals():  # `kill PID` stops a run as Ctrl-C does (evoprop.signals)
            return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        status = cli.main(args=argv, prog_name="evoprop", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except click.ClickException as exc:  # bad option or value: click's message, on one line
        _fail(exc.format_message())
        return EXIT_USAGE
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail(_after_interrupt(argv if argv is not None else sys.argv[1:]))
        return EXIT_INTERRUPTED
    except TrainingDiverged as exc:
        _fail(str(exc))
        return EXIT_DIVERGED
    except EvopropError as exc:
        _fail(str(exc))
        return EXIT_ERROR


def _after_interrupt(argv: list[str]) -> str:
    """What an interrupted command kept, and how to go on."""
    if argv[:1] == ["tune"]:
        return ("interrupted; finished trials are saved and the interrupted one is marked failed: "
                "run the same command again to continue the study")
    return "interrupted; completed epochs are saved: continue with 'evoprop train --resume RUN_DIR'"


def _fail(message: str) -> None:
    click.echo(f"evoprop: error: {' '.join(message.split())}", err=True)


def console_main() -> None:
    sys.exit(main())
