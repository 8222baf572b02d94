"""Where a study lives, so that many workers can share it and a dead worker's trial is retried.

``open_storage(spec)`` accepts

* any SQLAlchemy URL: ``sqlite:///study.db`` (the default, one machine) or
  ``postgresql+psycopg://user:pass@host/db`` (several machines; the driver is psycopg 3, the
  ``postgres`` extra; a plain ``postgresql://`` URL uses it too when psycopg2 is not installed);
* a file path without ``://`` (e.g. ``study.log``): Optuna's journal file storage, one
  append-only log that processes on one machine or on a shared file system can use
  without a database server.

With ``heartbeat_interval`` every running trial records a heartbeat; a trial whose last
heartbeat is older than ``grace_period`` seconds belonged to a worker that died (killed,
out of memory, machine lost). The next worker to start a trial marks it failed, and
Optuna's ``RetryHeartbeatStaleTrialCallback`` (formerly ``RetryFailedTrialCallback``)
queues a copy with the same parameters, which some worker then runs. Optuna's database
storage has heartbeats built in; its journal storage does not, so
:class:`HeartbeatJournalStorage` adds them through Optuna's own heartbeat interface
(a heartbeat is a timestamp in a trial system attribute).

A URL's password is never printed: :func:`shown` writes it as ``***`` wherever evoprop
names a storage (progress lines, errors, best.yaml).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the protocol optimize() drives; no public alias
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from evoprop.errors import ConfigError
from evoprop.paths import make_folder

HEARTBEAT_ATTR = "evoprop:heartbeat"


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with heartbeats, so a killed worker's trial is failed and retried as with a database.

    Heartbeats are wall-clock times: workers on several machines need synchronised clocks (NTP).
    """

    def __init__(self, path: str | Path, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None):
        super().__init__(JournalFileBackend(str(path)))
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:  # another worker already judged this trial dead; nothing to keep alive
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        now = time.time()
        return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if HEARTBEAT_ATTR in t.system_attrs and now - t.system_attrs[HEARTBEAT_ATTR] > grace]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback


def is_url(spec: str) -> bool:
    return "://" in spec


def shown(spec: str) -> str:
    """``spec`` as evoprop prints it: a URL's password replaced by ***."""
    password = _password(spec)
    return spec if not password else spec.replace(password, "***")


def _password(spec: str) -> str | None:
    if not is_url(spec):
        return None
    from sqlalchemy.engine import make_url

    try:
        return make_url(spec).password
    except Exception:  # not even a URL SQLAlchemy can parse: hide whatever stands between ':' and '@'
        rest = spec.split("://", 1)[1].rsplit("@", 1)
        return rest[0].split(":", 1)[1] if len(rest) == 2 and ":" in rest[0] else None


def _driver_url(spec: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 (the postgres extra) where only it is installed."""
    import importlib.util

    if spec.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + spec.removeprefix("postgresql://")
    return spec


def open_storage(spec: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int | None = 3) -> optuna.storages.BaseStorage:
    """The storage ``spec`` names (see the module doc); with heartbeats when ``heartbeat_interval`` is given.

    A SQLite file's folder, or a journal file's, is created if missing.
    """
    retry = None
    if heartbeat_interval is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    if not is_url(spec):
        path = Path(spec)
        if path.is_file() and path.read_bytes()[:16] == b"SQLite format 3\x00":
            raise ConfigError(f"{spec} is a SQLite database; name it as a URL: sqlite:///{spec}")
        _make_parent(path, spec)
        return HeartbeatJournalStorage(path, heartbeat_interval, grace_period, retry)
    if spec.startswith("sqlite:///"):
        _make_parent(Path(spec.removeprefix("sqlite:///")), spec)
    kwargs = {}
    if heartbeat_interval is not None:
        kwargs = dict(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                      heartbeat_stale_trial_callback=retry)
    try:
        return _rdb_storage(_driver_url(spec), kwargs)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot open storage {shown(spec)}: the database driver '{exc.name}' is not installed "
                          "(for postgresql+psycopg://: pip install 'evoprop[postgres]', i.e. psycopg 3)") from None
    except Exception as exc:  # sqlalchemy's errors for a bad URL, an unreachable server, a wrong password
        raise ConfigError(f"cannot open storage {shown(spec)}: {_reason(exc, spec)}") from None


def _reason(exc: Exception, spec: str) -> str:
    """The first line of a driver's error, without SQLAlchemy's '(psycopg.OperationalError)' prefix or the password."""
    import re

    text = str(getattr(exc, "orig", None) or exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if "FATAL" in line), lines[0] if lines else type(exc).__name__)
    reason = re.sub(r"^\([\w.]+\)\s*", "", reason)
    password = _password(spec)
    return reason.replace(password, "***") if password else reason


def _rdb_storage(spec: str, kwargs: dict, attempts: int = 5) -> RDBStorage:
    """RDBStorage(spec); retried when workers starting together race to create the same new database's tables."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(spec, **kwargs)
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _make_parent(path: Path, spec: str) -> None:
    if str(path) in ("", ":memory:"):
        return
    make_folder(path.parent, f"the folder of storage {spec}", ConfigError)
