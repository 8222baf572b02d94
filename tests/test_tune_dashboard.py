"""evoprop dashboard serves a study with its figures; human-in-the-loop trials wait for a rating given in it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from optuna.trial import TrialState

from evoprop.cli.main import main
from evoprop.tune import hitl, load_tune_config
from evoprop.tune.dashboard import dashboard_app
from evoprop.tune.hitl import run_human_study
import tune_helpers
from tune_helpers import subprocess_env, write_tune_config

PNG = b"\x89PNG\r\n\x1a\n"

one_torch_thread = tune_helpers.one_torch_thread  # autouse: every test here trains on one thread


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


@pytest.mark.slow
def test_evoprop_dashboard_serves_the_study_page_and_the_trials_figures_on_loopback(tmp_path, data_dir, capsys):
    config = write_tune_config(tmp_path / "seen.yaml", data_dir, train={"epochs": 1})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["tune", "--config", str(config), "--n-trials", "2", "--storage", storage,
                 "--out", str(tmp_path / "out")]) == 0
    server = subprocess.Popen([sys.executable, "-m", "evoprop", "dashboard", storage, "--port", "0"],
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()  # "Optuna Dashboard for ...: http://localhost:PORT/dashboard (...)"
        assert "http://localhost:" in first, server.stderr.read()
        base = first.split("http://", 1)[1].split("/dashboard", 1)[0]
        assert str(tmp_path / "out" / "artifacts") in first  # found through the study, no --artifact-dir needed
        page = _get(f"http://{base}/dashboard/studies/1").decode()
        assert "<title>Optuna Dashboard</title>" in page
        study = json.loads(_get(f"http://{base}/api/studies/1"))
        assert [t["state"] for t in study["trials"]] == ["Complete", "Complete"]
        assert study["objective_names"] == ["val_f1"]
        trial = study["trials"][0]
        assert {a["filename"] for a in trial["artifacts"]} == {"learning_curve.png", "first_layer.png"}
        figure = _get(f"http://{base}/artifacts/1/{trial['trial_id']}/{trial['artifacts'][0]['artifact_id']}")
        assert figure.startswith(PNG)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_dashboard_refuses_a_storage_that_does_not_exist(tmp_path, capsys):
    assert main(["dashboard", f"sqlite:///{tmp_path / 'typo.db'}"]) == 1
    assert "no study storage at" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


def _study_exists(storage: str) -> bool:
    from evoprop.tune.storage import open_storage

    path = storage.removeprefix("sqlite:///")
    return Path(path).exists() and bool(open_storage(storage).get_all_studies())


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_human_in_the_loop_trials_wait_for_a_rating_posted_like_the_dashboard_form(tmp_path, data_dir):
    config = write_tune_config(tmp_path / "rate.yaml", data_dir, train={"epochs": 1},
                               study={"human": True, "n_trials": 2, "waiting": 1,
                                      "rating": {"widget": "choice", "choices": ["bad", "good"], "values": [0, 1]}})
    tune = load_tune_config(config, {}, {"storage": f"sqlite:///{tmp_path / 'study.db'}", "out": str(tmp_path / "o")})
    outcome: dict = {}

    def propose():
        try:
            outcome["result"] = run_human_study(tune, echo=lambda line: None, poll=0.1, timeout=60)
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    study_loop = threading.Thread(target=propose)
    study_loop.start()
    while study_loop.is_alive() and not _study_exists(tune.storage):  # the loop creates the study first
        time.sleep(0.05)
    app, _ = dashboard_app(tune.storage, [tune.artifact_dir])
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    ratings = {}
    try:
        deadline = time.monotonic() + 60
        while study_loop.is_alive() and time.monotonic() < deadline:
            study = json.loads(_get(f"{base}/api/studies/1"))
            assert study["form_widgets"]["widgets"][0]["choices"] == ["bad", "good"]
            ready = [t for t in study["trials"]
                     if t["state"] == "Running" and t["artifacts"] and t["number"] not in ratings]
            if ready:  # the person looks at the figures and clicks "good" for the first trial, "bad" after
                trial = ready[0]
                ratings[trial["number"]] = 1.0 if not ratings else 0.0
                assert _post(f"{base}/api/trials/{trial['trial_id']}/tell",
                             {"state": "Complete", "values": [ratings[trial["number"]]]}) == 204
            time.sleep(0.1)
        study_loop.join(timeout=10)
    finally:
        server.shutdown()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {t.number: t.value for t in trials} == ratings  # the ratings are the trials' values
    assert result.best.number == min(ratings) and result.best_config_path.is_file()
    assert all(t.user_attrs["run_status"] == "completed" for t in trials)


def test_a_wrong_rating_widget_is_one_clear_error(tmp_path, data_dir):
    from evoprop.errors import ConfigError
    from evoprop.tune.hitl import rating_widget

    with pytest.raises(ConfigError, match="as many|same length"):
        rating_widget({"widget": "choice", "choices": ["a", "b"], "values": [1]})
    with pytest.raises(ConfigError, match="unknown study.rating.widget 'stars'"):
        rating_widget({"widget": "stars"})
    assert rating_widget({}).max == 10.0  # the default: a slider from 1 to 10


@pytest.mark.slow
def test_a_rating_or_a_fail_given_while_the_trial_still_trains_is_taken_and_the_study_goes_on(
        tmp_path, data_dir, monkeypatch):
    config = write_tune_config(tmp_path / "early.yaml", data_dir, train={"epochs": 3, "limit_train": 2000},
                               study={"human": True, "n_trials": 2, "waiting": 1})
    tune = load_tune_config(config, {}, {"storage": f"sqlite:///{tmp_path / 'study.db'}", "out": str(tmp_path / "o")})
    outcome: dict = {}
    # trial 0: rated 7 while training; trial 1: failed while training; trial 2 onwards: rated 3 once shown
    verdicts = [{"state": "Complete", "values": [7.0]}, {"state": "Fail"}]
    # The person presses Submit (or Fail trial) during the trial's first epochs: the real training of
    # trials 0 and 1 holds after its first epoch until the verdict is posted, so "while it trains" holds
    # on any machine (timing alone lost the race on a loaded CI runner).
    posted = [threading.Event() for _ in verdicts]
    train_trial = hitl.train_trial

    def train_while_the_person_decides(trial, tune, store, echo=None, on_epoch=None):
        def hold(record):
            if record["epoch"] == 1 and trial.number < len(posted):
                assert posted[trial.number].wait(60), f"no verdict for trial {trial.number}"
        return train_trial(trial, tune, store, echo, on_epoch=hold)

    monkeypatch.setattr(hitl, "train_trial", train_while_the_person_decides)

    def propose():
        try:
            outcome["result"] = run_human_study(tune, echo=lambda line: None, poll=0.05, timeout=90)
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    study_loop = threading.Thread(target=propose)
    study_loop.start()
    while study_loop.is_alive() and not _study_exists(tune.storage):
        time.sleep(0.02)
    app, _ = dashboard_app(tune.storage, [tune.artifact_dir])
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    told, early = {}, []
    try:
        deadline = time.monotonic() + 90
        while study_loop.is_alive() and time.monotonic() < deadline:
            study = json.loads(_get(f"{base}/api/studies/1"))
            for trial in study["trials"]:
                if trial["state"] != "Running" or trial["number"] in told:
                    continue
                training = not trial["artifacts"]
                if trial["number"] < len(verdicts) and training:
                    summary = tmp_path / "o" / "trials" / f"trial-{trial['number']:04d}" / "summary.json"
                    early.append(not summary.exists() or json.loads(summary.read_text())["status"] == "running")
                    body = verdicts[trial["number"]]
                elif not training:
                    body = {"state": "Complete", "values": [3.0]}
                else:
                    continue
                assert _post(f"{base}/api/trials/{trial['trial_id']}/tell", body) == 204
                told[trial["number"]] = body
                if trial["number"] < len(posted):
                    posted[trial["number"]].set()
            time.sleep(0.02)
        study_loop.join(timeout=30)
    finally:
        server.shutdown()
    assert "error" not in outcome, outcome.get("error")
    assert early == [True, True], "the verdicts did not arrive while the trials trained"
    trials = outcome["result"].study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].value == 7.0  # the early rating is the trial's value
    assert [t.value for t in trials if t.state == TrialState.COMPLETE] == [7.0, 3.0]  # and the study went on
    assert json.loads((tmp_path / "o" / "trials" / "trial-0000" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_compare_mode_keeps_k_trials_to_compare_and_replaces_the_worst_posted_like_the_dashboard(tmp_path, data_dir):
    from evoprop.tune.compare import FIGURE_ATTR, run_compare_study

    config = write_tune_config(tmp_path / "pairs.yaml", data_dir, train={"epochs": 1},
                               study={"human": "compare", "n_trials": 3, "waiting": 2, "sampler": "random"})
    tune = load_tune_config(config, {}, {"storage": f"sqlite:///{tmp_path / 'study.db'}", "out": str(tmp_path / "o")})
    outcome: dict = {}

    def propose():
        try:
            outcome["result"] = run_compare_study(tune, echo=lambda line: None, poll=0.05, timeout=60)
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    study_loop = threading.Thread(target=propose)
    study_loop.start()
    while study_loop.is_alive() and not _study_exists(tune.storage):
        time.sleep(0.05)
    app, _ = dashboard_app(tune.storage, [tune.artifact_dir])
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    shown_pairs = []
    try:
        deadline = time.monotonic() + 60
        while study_loop.is_alive() and time.monotonic() < deadline:
            study = json.loads(_get(f"{base}/api/studies/1"))
            assert study["is_preferential"] and study["feedback_component_type"]["output_type"] == "artifact"
            worse = {w for _, w in study["preferences"]}
            active = [t for t in study["trials"] if t["state"] in ("Running", "Complete") and t["number"] not in worse]
            ready = [t for t in active if any(a["key"] == FIGURE_ATTR for a in t["user_attrs"])]
            if len(active) == 2 and len(ready) == 2 and [t["number"] for t in ready] not in shown_pairs:
                shown_pairs.append([t["number"] for t in ready])  # the person clicks the earlier one as the worse
                assert _post(f"{base}/api/studies/1/preference", {"mode": "ChooseWorst", "candidates": shown_pairs[-1],
                                                                   "clicked": shown_pairs[-1][0]}) == 204
            time.sleep(0.05)
        study_loop.join(timeout=10)
    finally:
        server.shutdown()
    assert "error" not in outcome, outcome.get("error")
    assert shown_pairs == [[0, 1], [1, 2]]  # the worst left, the next proposal joined the one kept
    result = outcome["result"]
    assert [t.state for t in result.study.get_trials()] == [TrialState.COMPLETE] * 3
    assert result.best.number == 2 and result.best_config_path.is_file()


@pytest.mark.parametrize("study, message", [
    ({"human": "stars"}, "study.human must be false, true (= rate), rate or compare"),
    ({"human": "compare", "waiting": 1}, "it needs 2 or more"),
    ({"human": "compare", "figures": False}, "it needs study.figures: true"),
])
def test_a_wrong_human_in_the_loop_mode_is_one_clear_error(tmp_path, data_dir, study, message):
    from evoprop.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_tune_config(write_tune_config(tmp_path / "h.yaml", data_dir, study=study))
    assert message in str(err.value)
