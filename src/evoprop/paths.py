"""Folders evoprop writes into."""

from __future__ import annotations

from pathlib import Path

from evoprop.errors import EvopropError


def make_folder(path: str | Path, what: str | None = None, error: type[Exception] = EvopropError) -> Path:
    """Create the folder ``path`` (and its parents), or fail in one line.

    The error reads "cannot create WHAT: reason" (WHAT defaults to the path) and is raised as ``error``.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"cannot create {what or path}: {exc.strerror or exc}") from None
    return path
