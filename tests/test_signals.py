"""SIGTERM and SIGINT stop evoprop with KeyboardInterrupt, but never in the middle of a database write."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event

from evoprop.signals import stop_on_signals


def test_a_signal_during_a_database_write_is_raised_after_the_write(tmp_path):
    """SIGTERM arriving while Optuna's SQLite storage executes a statement: the write completes, the
    interrupt comes right after it (not inside it, where it would leave SQLite locked), and the trial
    can then be marked failed."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    fired = []

    def during_write(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("INSERT") and not fired:
            fired.append(statement)
            os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this frame, inside SQLAlchemy's execute

    event.listen(storage.engine, "before_cursor_execute", during_write)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), stop_on_signals():
        trial.report(0.5, step=1)
        time.sleep(10)  # the interrupt lands here, once the write is done
    assert fired and time.monotonic() - started < 5
    event.remove(storage.engine, "before_cursor_execute", during_write)
    assert study.trials[0].intermediate_values == {1: 0.5}
    study.tell(trial, state=TrialState.FAIL)
    other = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")  # another connection
    assert other.trials[0].state == TrialState.FAIL


def test_sigint_stays_ignored_where_it_was_and_the_old_handlers_come_back():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's SIGINT
    term = signal.getsignal(signal.SIGTERM)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (term, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == term
    finally:
        signal.signal(signal.SIGINT, before)
