"""``evoprop dashboard``: Optuna Dashboard for the studies of a storage, with every trial's figures."""

from __future__ import annotations

import click


@click.command("dashboard")
@click.argument("storage")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 127.0.0.1 keeps the dashboard on this machine (use 0.0.0.0 only on a "
                   "trusted network: anyone who reaches it can rate and delete trials).")
@click.option("--port", type=int, default=8080, show_default=True, help="Port to listen on; 0 picks a free one.")
@click.option("--artifact-dir", "artifact_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Folder of the trials' figures, repeatable [default: the folders the studies recorded].")
@click.option("--log-requests", is_flag=True, help="Print one line per HTTP request.")
def dashboard_command(storage, host, port, artifact_dirs, log_requests) -> None:
    """Serve Optuna Dashboard for STORAGE (what `evoprop tune --storage` used) until Ctrl-C.

    Open the printed address in a browser: each study's trials, their parameters, values,
    learning curves and figures, and, for a human-in-the-loop study, the rating form.

    Examples:

      evoprop dashboard sqlite:///tune/tune-mnist/study.db

      evoprop dashboard study.log --port 8081
    """
    from evoprop.tune.dashboard import serve

    serve(storage, host=host, port=port, artifact_dirs=list(artifact_dirs) or None, log_requests=log_requests)
