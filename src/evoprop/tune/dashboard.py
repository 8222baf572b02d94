"""Serve Optuna Dashboard for a study storage, with the trials' figures (artifacts) found automatically.

Every study that ``evoprop tune`` creates records its artifact folder in a study user
attribute, so ``evoprop dashboard STORAGE`` needs no ``--artifact-dir``. The server is the
standard library's WSGI server with one thread per request (the page loads several
resources at once); it is meant for a trusted network: bind it to localhost (the
default), or put a real WSGI server in front of ``dashboard_app`` for more.
"""

from __future__ import annotations

import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import BinaryIO, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from evoprop.errors import ConfigError
from evoprop.tune.storage import is_url, open_storage, shown
from evoprop.tune.study import ARTIFACTS_ATTR


class FolderArtifactStores:
    """Optuna's artifact-store protocol over several folders (one per study): reads from whichever holds the id.

    optuna-dashboard takes one artifact store per server; a storage with several studies may
    have one folder each. Written by hand because Optuna has no such union store.
    """

    def __init__(self, folders: list[Path]):
        self.stores = [FileSystemArtifactStore(str(folder)) for folder in folders]

    def open_reader(self, artifact_id: str) -> BinaryIO:
        for store in self.stores:
            try:
                return store.open_reader(artifact_id)
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} is in none of the artifact folders")

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.stores[0].write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        for store in self.stores:
            try:
                return store.remove(artifact_id)
            except (ArtifactNotFound, FileNotFoundError):
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} is in none of the artifact folders")


def artifact_folders(storage) -> list[Path]:
    """The artifact folders the storage's studies recorded, that exist on this machine."""
    folders = []
    for study in storage.get_all_studies():
        folder = study.user_attrs.get(ARTIFACTS_ATTR)
        if folder and Path(folder).is_dir() and Path(folder) not in folders:
            folders.append(Path(folder))
    return folders


def dashboard_app(storage_spec: str, artifact_dirs: list[str | Path] | None = None):
    """The optuna-dashboard WSGI application for ``storage_spec``; returns (app, artifact folders)."""
    from optuna_dashboard import wsgi

    _check_exists(storage_spec)
    storage = open_storage(storage_spec)
    folders = [Path(d) for d in artifact_dirs] if artifact_dirs else artifact_folders(storage)
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"artifact folder {folder} does not exist")
    store = FolderArtifactStores(folders) if folders else None
    return wsgi(storage, artifact_store=store), folders


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # one line per request would drown the terminal
        pass


def make_dashboard_server(storage_spec: str, host: str = "127.0.0.1", port: int = 8080,
                          artifact_dirs: list[str | Path] | None = None,
                          log_requests: bool = False) -> tuple[WSGIServer, list[Path]]:
    """The dashboard's server, bound and not yet serving (``serve_forever``); ``port`` 0 picks a free port."""
    app, folders = dashboard_app(storage_spec, artifact_dirs)
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer,
                             handler_class=WSGIRequestHandler if log_requests else _QuietHandler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return server, folders


def serve(storage_spec: str, host: str = "127.0.0.1", port: int = 8080,
          artifact_dirs: list[str | Path] | None = None, echo: Callable[[str], None] | None = None,
          log_requests: bool = False) -> None:
    """Serve the dashboard until interrupted; ``port`` 0 picks a free port (printed in the first line)."""
    echo = echo or (lambda line: print(line, flush=True))
    server, folders = make_dashboard_server(storage_spec, host, port, artifact_dirs, log_requests)
    where = "localhost" if host in ("127.0.0.1", "::1") else host
    echo(f"Optuna Dashboard for {shown(storage_spec)}: http://{where}:{server.server_port}/dashboard "
         f"({'figures from ' + ', '.join(map(str, folders)) if folders else 'no artifact folder found'}; Ctrl-C stops)")
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("dashboard stopped", file=sys.stderr)


def _check_exists(spec: str) -> None:
    """A dashboard opens existing studies: a mistyped file name must not silently create an empty database."""
    path = Path(spec.removeprefix("sqlite:///")) if spec.startswith("sqlite:///") else (None if is_url(spec) else Path(spec))
    if path is not None and not path.is_file():
        raise ConfigError(f"no study storage at {path}; give the --storage that evoprop tune used, e.g. sqlite:///tune/NAME/study.db")
