"""Many workers on one study: they share the trials without duplicates, and a killed worker's trial is retried."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from evoprop.tune import load_tune_config, run_study
from evoprop.tune.storage import open_storage
import tune_helpers
from tune_helpers import subprocess_env, write_tune_config

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

one_torch_thread = tune_helpers.one_torch_thread  # autouse: every test here trains on one thread


def _tune(config, storage, out, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evoprop", "tune", "--config", str(config), "--storage", storage,
                             "--out", str(out), *extra], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_workers_in_two_commands_share_one_journal_study_without_duplicates(tmp_path, data_dir):
    config = write_tune_config(tmp_path / "shared.yaml", data_dir,
                               study={"pruner": "none", "figures": False, "sampler": "random"})
    storage, out = str(tmp_path / "study.log"), tmp_path / "out"
    # one command with two workers (itself and a process it starts; sampler seeds 0 and 1) and a third worker
    # started beside it (seed 7), all on one journal file
    first = _tune(config, storage, out, "--n-trials", "8", "--n-jobs", "2")
    second = _tune(config, storage, out, "--n-trials", "8", "--sampler-seed", "7")
    for process in (first, second):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    trials = optuna.load_study(study_name="shared", storage=open_storage(storage)).get_trials()
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 8
    assert all(t.state in FINISHED or t.user_attrs.get("run_status") == "surplus" for t in trials)  # nothing else left
    run_dirs = [t.user_attrs["run_dir"] for t in finished]
    assert len(set(run_dirs)) == 8 and all((out / "trials").joinpath(d).is_dir() for d in run_dirs)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 8  # no two workers proposed the same trial


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_killed_workers_trial_is_marked_failed_and_retried_with_the_same_settings(tmp_path, data_dir, kind):
    config = write_tune_config(
        tmp_path / "kill.yaml", data_dir, train={"epochs": 40, "batch_size": 16, "limit_train": 300},
        study={"pruner": "none", "figures": False, "heartbeat_interval": 1, "grace_period": 2})
    storage = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "study.log")
    out = tmp_path / "out"
    worker = _tune(config, storage, out, "--n-trials", "2")
    study = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill the worker in the middle of its first trial
        if study is None and (tmp_path / ("s.db" if kind == "sqlite" else "study.log")).exists():
            try:
                study = optuna.load_study(study_name="kill", storage=open_storage(storage))
            except KeyError:  # created but not yet named
                pass
        if study is not None and any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            break
        assert worker.poll() is None, worker.communicate()[1]
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed = study.get_trials()[0]
    assert killed.state == TrialState.RUNNING  # nobody has noticed yet

    tune = load_tune_config(config, {}, {"storage": storage, "out": str(out), "n_trials": 2})
    result = run_study(tune, echo=lambda line: None)

    trials = result.study.get_trials()
    assert trials[0].state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params and retries[0].system_attrs["failed_trial"] == 0
    assert result.counts["finished"] == 2 and result.counts["running"] == 0
    # the restarted worker's sampler does not replay the dead one's: its new trial is not trial 0 again
    fresh = [t for t in trials if t.number > 0 and "retry_of" not in t.user_attrs]
    assert len(fresh) == 1 and fresh[0].params != killed.params


@pytest.mark.slow
def test_the_same_command_with_more_trials_adds_new_trials_instead_of_replaying_the_first(tmp_path, data_dir):
    from evoprop.cli.main import main

    config = write_tune_config(tmp_path / "more.yaml", data_dir, train={"epochs": 1},
                               study={"pruner": "none", "figures": False})
    args = ["tune", "--config", str(config), "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", str(tmp_path / "o")]
    assert main(args + ["--n-trials", "3"]) == 0
    assert main(args + ["--n-trials", "6"]) == 0  # joins the study: its sampler must not start where the first did
    trials = optuna.load_study(study_name="more", storage=open_storage(f"sqlite:///{tmp_path / 's.db'}")).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6


@pytest.mark.slow
def test_a_fresh_single_worker_study_with_a_seed_is_reproducible(tmp_path, data_dir):
    params = []
    for name in ("a", "b"):
        config = write_tune_config(tmp_path / f"{name}.yaml", data_dir, train={"epochs": 1, "limit_train": 200},
                                   study={"pruner": "none", "figures": False, "name": "same"})
        tune = load_tune_config(config, {}, {"storage": f"sqlite:///{tmp_path / name}.db", "out": str(tmp_path / name),
                                             "n_trials": 2})
        params.append([t.params for t in run_study(tune, echo=lambda line: None).study.get_trials()])
    assert params[0] == params[1]


@pytest.mark.slow
def test_worker_processes_take_the_users_thread_setting(tmp_path, data_dir):
    config = write_tune_config(tmp_path / "threads.yaml", data_dir, train={"epochs": 1, "limit_train": 200},
                               study={"pruner": "none", "figures": False})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    # two threads per worker as the user said, not the machine's cores shared out (1 each on 2 cores)
    env = {**subprocess_env(), "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-m", "evoprop", "tune", "--config", str(config), "--storage", storage,
                           "--out", str(tmp_path / "o"), "--n-trials", "4", "--n-jobs", "2"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="threads", storage=open_storage(storage)).get_trials()
    # (both the worker in the command's own process and the one it spawns used to set cores // n_jobs)
    assert {t.user_attrs["threads"] for t in trials if t.state in FINISHED} == {2}


_TRAIN_THEN_DIE = """
import os, signal, sys
from evoprop.tune import load_tune_config
from evoprop.tune.objective import train_trial
from evoprop.tune.study import open_study

tune = load_tune_config(sys.argv[1], {}, {"storage": sys.argv[2], "out": sys.argv[3]})
study = open_study(tune)

def objective(trial):
    train_trial(trial, tune, None)  # the run finishes (summary: completed) ...
    os.kill(os.getpid(), signal.SIGKILL)  # ... and the worker dies before it tells the study

study.optimize(objective, n_trials=1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_run_that_finished_before_its_worker_died_is_adopted_not_retrained(tmp_path, data_dir, kind):
    config = write_tune_config(tmp_path / "adopt.yaml", data_dir,
                               study={"pruner": "none", "figures": False, "heartbeat_interval": 1, "grace_period": 2})
    storage = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "study.log")
    out = tmp_path / "out"
    died = subprocess.run([sys.executable, "-c", _TRAIN_THEN_DIE, str(config), storage, str(out)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    first = out / "trials" / "trial-0000"
    assert json.loads((first / "summary.json").read_text())["status"] == "completed"
    metrics_before = (first / "metrics.jsonl").read_text()

    tune = load_tune_config(config, {}, {"storage": storage, "out": str(out), "n_trials": 1})
    result = run_study(tune, echo=lambda line: None)

    dead, retry = result.study.get_trials()
    assert dead.state == TrialState.FAIL and retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["run_dir"] == str(first.resolve())  # the finished run is the retry's run
    assert not (out / "trials" / "trial-0001").exists()  # nothing was trained again
    assert (first / "metrics.jsonl").read_text() == metrics_before
    summary = json.loads((first / "summary.json").read_text())
    assert retry.value == summary["best_val_f1"] and sorted(retry.intermediate_values) == [1, 2]


@pytest.mark.slow
def test_sigterm_to_a_two_worker_tune_stops_both_workers_and_marks_their_trials_failed(tmp_path, data_dir):
    """`kill PID` of `evoprop tune --n-jobs 2` (SIGTERM reaches that process only, not the worker it spawned):
    both workers stop within seconds, each marks its trial failed (none is left running for the heartbeat to
    find), and the command ends with one line and status 130."""
    config = write_tune_config(tmp_path / "term.yaml", data_dir, train={"epochs": 100000, "batch_size": 16, "limit_train": 300},
                               study={"pruner": "none", "figures": False, "sampler": "random"})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    command = _tune(config, storage, tmp_path / "out", "--n-trials", "4", "--n-jobs", "2")
    study = None
    deadline = time.monotonic() + 240  # a busy machine starts the second worker slowly
    while time.monotonic() < deadline:  # until both workers train a trial (of more epochs than they can finish)
        if study is None and (tmp_path / "s.db").exists():
            try:
                study = optuna.load_study(study_name="term", storage=open_storage(storage))
            except KeyError:
                pass
        if study is not None and sum(bool(t.intermediate_values) for t in study.get_trials(deepcopy=False)
                                     if t.state == TrialState.RUNNING) == 2:
            break
        assert command.poll() is None, command.communicate()[1]
        time.sleep(0.1)
    else:
        command.kill()
        raise AssertionError("the two workers did not both start a trial")
    training = {t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING}
    command.send_signal(signal.SIGTERM)
    try:
        _, err = command.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        left = subprocess.run(["ps", "-o", "pid,ppid,stat,args", "--ppid", str(command.pid)], capture_output=True,
                              text=True).stdout
        for line in left.splitlines()[1:]:  # the worker it started, if it is still there
            os.kill(int(line.split()[0]), signal.SIGKILL)
        command.kill()
        _, err = command.communicate()
        raise AssertionError(f"still running 120 s after SIGTERM; its child processes:\n{left}\n{err[-4000:]}")
    assert command.returncode == 130, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "error" in line] == [
        "evoprop: error: interrupted; finished trials are saved and the interrupted one is marked failed: run the "
        "same command again to continue the study"]
    states = {t.number: t.state for t in study.get_trials()}
    assert TrialState.RUNNING not in states.values()
    assert len(training) == 2 and all(states[number] == TrialState.FAIL for number in training), states
