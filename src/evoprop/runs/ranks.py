"""A run trained by several processes (torchrun): only rank 0 writes the run directory and prints.

The other ranks read what they need (the config and checkpoint of a resumed run) and see the run
directory through :class:`FollowerRunDir`, whose writes do nothing.
"""

from __future__ import annotations

from pathlib import Path

from evoprop import distributed as dist
from evoprop.runs.rundir import RunDir


class FollowerRunDir(RunDir):
    """A run directory as a rank other than 0 sees it: readable, never written."""

    def write_config(self, config, *, world_size=None) -> None:
        pass

    def write_metrics(self, history) -> None:
        pass

    def append_metrics(self, record) -> None:
        pass

    def write_summary(self, summary) -> None:
        pass

    def save_checkpoint(self, state) -> None:
        pass

    def write_marker(self, marker) -> None:
        pass

    def remove_stale_temporaries(self) -> list[Path]:
        return []


def agreed_path(path: Path) -> Path:
    """Rank 0's run directory path on every rank (a default path holds the time, which may differ)."""
    return Path(dist.broadcast_object(str(path)))


def open_run(path: Path, config) -> RunDir:
    """After every rank built its trainer: rank 0 creates the run directory, the others follow it."""
    dist.barrier()  # every rank checked the directory (ensure_new, live_owner) before rank 0 writes it
    world_size = dist.current().world_size  # recorded in config.yaml (and summary.json)
    return RunDir.create(path, config, world_size=world_size) if dist.is_main() else FollowerRunDir(path)


def follow(run: RunDir) -> RunDir:
    """A resumed run's directory as this rank should use it."""
    dist.barrier()
    return run if dist.is_main() else FollowerRunDir(run.path)
