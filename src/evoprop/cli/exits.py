"""The `evoprop` command's exit statuses, written once (README, "Exit status")."""

from evoprop.signals import EXIT_INTERRUPTED  # 130: Ctrl-C or SIGTERM (tuning's worker processes use it too)

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_ERROR = 1        # a user mistake or a failed check: one line on stderr
EXIT_USAGE = 2        # a bad option (click's own status)
EXIT_DIVERGED = 3     # the loss or the evolution strategy diverged; the last good epoch is kept
