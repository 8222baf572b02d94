"""What the commands that run many runs (compare, reproduce, graduated) print the same way."""

from __future__ import annotations

import click

from evoprop.cli.exits import EXIT_INTERRUPTED


def echo_plan(planned) -> None:
    """``--dry-run``: one line per planned run (what would run, resume or be skipped), then the epochs left."""
    for i, p in enumerate(planned, start=1):
        click.echo(f"[{i}/{len(planned)}] {p.name}: {p.describe()} -> {p.path}")
    click.echo(f"{sum(p.remaining for p in planned)} epochs to run")


def exit_interrupted() -> None:
    """Ctrl-C: every completed epoch is on disk, and the same command continues from there."""
    click.echo("evoprop: interrupted; completed epochs are saved: run the same command again to continue", err=True)
    click.get_current_context().exit(EXIT_INTERRUPTED)
