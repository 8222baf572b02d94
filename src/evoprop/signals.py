"""SIGTERM stops evoprop as Ctrl-C does, and neither breaks into a database write.

``kill PID``, a batch scheduler's time limit (Slurm sends SIGTERM first) and torchrun stopping
the other workers of a failed job all send SIGTERM, and a job started in the background by a
shell ignores Ctrl-C's SIGINT (POSIX). Python's default SIGTERM ends the process at once, so a run
would keep ``status: running`` and its owner; here it raises :class:`KeyboardInterrupt` instead,
which every command already turns into a clean stop (run marked ``interrupted``, a tuning trial
marked failed, exit status 130).

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside a database call
(SQLAlchemy, sqlite3, psycopg, Optuna's storages) that can leave a statement open that holds
SQLite's lock: the trial's "failed" record then cannot be written, by this process or another
("database is locked"), and the trial stays RUNNING. So a signal that arrives there is delivered
again 50 ms later, until the main thread is out of that code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for Ctrl-C; a stop by SIGTERM exits with it too

_STORAGE_CODE = ("sqlalchemy", "sqlite3", "psycopg", "optuna.storages", "optuna.study._tell")
_RETRY_SECONDS = 0.05
_terminated = False


def terminated() -> bool:
    """Whether SIGTERM reached this process while :func:`stop_on_signals` was active."""
    return _terminated


def _in_storage_code(frame: FrameType | None) -> bool:
    """Whether the innermost code outside evoprop, from ``frame`` outwards, is a database client's."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == "evoprop" or module.startswith("evoprop."):
            return False
        if module.startswith(_STORAGE_CODE):
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global _terminated
    if _in_storage_code(frame):
        timer = threading.Timer(_RETRY_SECONDS, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    if signum == signal.SIGTERM:
        _terminated = True
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise KeyboardInterrupt in the main thread, outside database calls.

    SIGINT keeps being ignored where it was (a background job); the old handlers are put back after.
    Does nothing off the main thread (Python delivers signals to the main thread only).
    """
    global _terminated
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _terminated = False
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _interrupt)
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
