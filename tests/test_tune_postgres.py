"""evoprop tune on a real PostgreSQL server: a throwaway cluster, two workers, one killed mid-trial; bad URLs.

The cluster is made with the server's own tools (initdb, pg_ctl) in a temporary folder,
listens on 127.0.0.1 on a free port with password (SCRAM) authentication, and is stopped at
the end. PostgreSQL refuses to run as root: as root the tools run as the ``postgres`` user.
The test is skipped only where no PostgreSQL server binaries are installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evoprop.cli.main import main
from evoprop.errors import ConfigError
from evoprop.tune.storage import open_storage
import tune_helpers
from tune_helpers import subprocess_env, write_tune_config

one_torch_thread = tune_helpers.one_torch_thread  # autouse: every test here trains on one thread

USER, PASSWORD, DATABASE = "evoprop", "s3cret-Pw", "evoprop"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _server_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/VERSION/bin (newest)."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb")).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = _server_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="evoprop-pg-"))  # not pytest's tmp_path: its folders are private to root
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    (folder / "pw").write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(folder / "pw", "postgres")

    def tool(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{args[0]} failed: {done.stdout}{done.stderr}"

    tool(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={folder / 'pw'}",
         "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--no-sync")
    tool(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
         "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off", "start")
    try:
        import psycopg  # the postgres extra (installed by .ci/run)

        with psycopg.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _tune(config, storage, out, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evoprop", "tune", "--config", str(config), "--storage", storage,
                             "--out", str(out), *extra], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_workers_on_postgresql_one_killed_mid_trial_lose_and_duplicate_no_trial(tmp_path, data_dir, postgres_url):
    config = write_tune_config(
        tmp_path / "pg.yaml", data_dir, train={"epochs": 40, "batch_size": 16, "limit_train": 300},
        study={"pruner": "none", "figures": False, "heartbeat_interval": 1, "grace_period": 2, "sampler": "random"})
    out = tmp_path / "out"
    victim = _tune(config, postgres_url, out, "--n-trials", "3")
    time.sleep(0.5)  # the victim creates the study; the survivor joins it
    survivor = _tune(config, postgres_url, out, "--n-trials", "3")
    mine = f":{victim.pid}"
    study, target = None, None
    deadline = time.monotonic() + 90
    while target is None and time.monotonic() < deadline:  # kill the victim in the middle of one of its trials
        try:
            study = study or optuna.load_study(study_name="pg", storage=open_storage(postgres_url))
        except KeyError:  # not created yet
            pass
        for trial in study.get_trials(deepcopy=False) if study is not None else []:
            if (trial.state == TrialState.RUNNING and trial.intermediate_values
                    and trial.user_attrs.get("worker", "").endswith(mine)):
                target = trial.number
        assert victim.poll() is None, victim.communicate()[1]
        time.sleep(0.05)
    assert target is not None, "the victim never trained a trial"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=180)
    assert survivor.returncode == 0, err

    trials = optuna.load_study(study_name="pg", storage=open_storage(postgres_url)).get_trials()
    killed = trials[target]
    assert killed.state == TrialState.FAIL  # judged dead by the survivor (no heartbeat for 2 s)
    retries = [t for t in trials if t.user_attrs.get("retry_of") == target]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == killed.params
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 3  # none lost
    assert all(t.state in FINISHED or t is killed or t.user_attrs.get("run_status") == "surplus" for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 3  # none duplicated
    assert len({t.user_attrs["run_dir"] for t in finished}) == 3
    assert all(Path(t.user_attrs["run_dir"], "summary.json").is_file() for t in finished)


@pytest.mark.slow
@pytest.mark.parametrize("change, reason", [
    ({"password": "wrong-Pw"}, "password authentication failed"),
    ({"database": "nosuchdb"}, 'database "nosuchdb" does not exist'),
    ({"port": "1"}, "Connection refused"),
])
def test_a_wrong_postgresql_url_or_password_is_one_line_without_the_password(tmp_path, data_dir, postgres_url, capsys,
                                                                            change, reason):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    bad = url.set(password=change.get("password", PASSWORD), database=change.get("database", DATABASE),
                  port=int(change.get("port", url.port))).render_as_string(hide_password=False)
    with pytest.raises(ConfigError) as err:
        open_storage(bad)
    message = str(err.value)
    assert reason in message and "\n" not in message
    assert PASSWORD not in message and "wrong-Pw" not in message and ":***@" in message

    config = write_tune_config(tmp_path / "bad.yaml", data_dir)
    assert main(["tune", "--config", str(config), "--storage", bad, "--out", str(tmp_path / "o")]) == 1
    printed = capsys.readouterr()
    lines = [line for line in printed.err.splitlines() if line.startswith("evoprop: error:")]
    assert len(lines) == 1 and reason in lines[0] and "Traceback" not in printed.err
    assert PASSWORD not in printed.err + printed.out and "wrong-Pw" not in printed.err + printed.out
