"""Human-in-the-loop tuning driven through Optuna Dashboard in a real (headless Chromium) browser.

Rating: open the study's trial list, open the waiting trial, see its figures, set the slider,
press Submit; the rating becomes the trial's value and the study proposes the next trial.
Comparison: the study page shows k trials' figures side by side; clicking "Worst" on one
records the others as preferred, and the next k trials are shown.

Needs Playwright (the ``browser`` extra) and Debian's ``chromium`` (no browser download);
.ci/run installs both. With EVOPROP_SCREENSHOTS=docs/tune the screenshots of the README
are written there (they always go to the test's temporary folder too).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from evoprop.tune import load_tune_config
from evoprop.tune.compare import FIGURE_ATTR, run_compare_study
from evoprop.tune.dashboard import make_dashboard_server
from evoprop.tune.hitl import run_human_study
from evoprop.tune.storage import open_storage
import tune_helpers
from tune_helpers import write_tune_config

one_torch_thread = tune_helpers.one_torch_thread  # autouse: every test here trains on one thread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e .[browser])")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    with playwright.sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to start as root (CI containers)
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class StudyLoop:
    """The study's propose-and-wait loop in a thread (as `evoprop tune` runs it in its shell)."""

    def __init__(self, run, tune):
        self.tune, self.result, self.error = tune, None, None
        self.thread = threading.Thread(target=self._main, args=(run,), daemon=True)
        self.thread.start()

    def _main(self, run) -> None:
        try:
            self.result = run(self.tune, echo=lambda line: None, poll=0.05, timeout=120)
        except Exception as exc:  # handed to the test
            self.error = exc

    def trials(self):
        storage = open_storage(self.tune.storage)
        studies = storage.get_all_studies() if Path(self.tune.storage.removeprefix("sqlite:///")).exists() else []
        return storage.get_all_trials(studies[0]._study_id) if studies else []

    def wait_for(self, condition, what: str, seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.error is None, self.error
            trials = self.trials()
            if condition(trials):
                return trials
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; trials: {[(t.number, t.state) for t in self.trials()]}")


@pytest.fixture
def dashboard():
    servers = []

    def start(tune) -> str:
        server, _ = make_dashboard_server(tune.storage, port=0, artifact_dirs=[tune.artifact_dir])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("EVOPROP_SCREENSHOTS"):
        folder = Path(os.environ["EVOPROP_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, folder / name)


def _preferences(tune) -> set[tuple[int, int]]:
    """(better, worse) trial numbers recorded in the study by the dashboard."""
    import optuna
    from optuna_dashboard.preferential import load_study

    study = load_study(study_name=tune.study.name, storage=open_storage(tune.storage),
                       sampler=optuna.samplers.RandomSampler())
    return {(better.number, worse.number) for better, worse in study.get_preferences()}


def _figures_loaded(page, count: int) -> None:
    """``count`` artifact images on the page, every one decoded by the browser (not a broken image)."""
    images = page.locator("img[src*='/artifacts/']")
    images.nth(count - 1).wait_for(timeout=20_000)
    page.wait_for_function(
        f"() => {{ const ims = [...document.querySelectorAll(\"img[src*='/artifacts/']\")];"
        f" return ims.length >= {count} && ims.every(im => im.complete && im.naturalWidth > 0); }}", timeout=20_000)


@pytest.mark.slow
def test_a_person_rates_a_waiting_trial_in_the_browser_and_the_study_proposes_the_next(tmp_path, data_dir, browser,
                                                                                       dashboard):
    config = write_tune_config(tmp_path / "rate.yaml", data_dir, train={"epochs": 2},
                               study={"human": True, "n_trials": 2, "waiting": 1,
                                      "rating": {"min": 1, "max": 10, "step": 1,
                                                 "labels": [[1, "noise"], [10, "clean digits"]],
                                                 "description": "Do the ten weight templates look like digits?"}})
    tune = load_tune_config(config, {}, {"storage": f"sqlite:///{tmp_path / 'study.db'}", "out": str(tmp_path / "o")})
    loop = StudyLoop(run_human_study, tune)
    loop.wait_for(lambda ts: ts and ts[0].user_attrs.get("run_status") == "completed", "trial 0 to be trained")
    page = browser.new_page(viewport={"width": 1280, "height": 1180})  # tall enough to show the figures
    page.goto(f"{dashboard(tune)}/dashboard/studies/1/trials")

    page.get_by_text("Trial 0", exact=True).first.click()  # the waiting trial in the list
    page.get_by_text("Set Objective Value Form").wait_for()
    _figures_loaded(page, 2)  # its learning curve and its first-layer weights
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(6):  # from 1 to 7
        slider.press("ArrowRight")
    assert slider.get_attribute("aria-valuenow") == "7"
    _screenshot(page, tmp_path, "hitl.png")
    page.get_by_role("button", name="Submit").click()

    trials = loop.wait_for(lambda ts: ts[0].state == TrialState.COMPLETE and len(ts) == 2, "the rating and trial 1")
    assert trials[0].value == 7.0  # the rating is the trial's value ...
    # ... and the sampler, told it, proposed the next trial, which the browser shows after a reload
    loop.wait_for(lambda ts: ts[1].user_attrs.get("run_status") == "completed", "trial 1 to be trained")
    page.reload()
    page.get_by_text("Trial 1", exact=True).first.click()
    _figures_loaded(page, 2)
    page.get_by_role("button", name="Submit").click()  # rated 1 (the slider's start)
    loop.thread.join(timeout=60)
    assert loop.error is None, loop.error
    assert {t.number: t.value for t in loop.result.study.get_trials()} == {0: 7.0, 1: 1.0}
    assert loop.result.best.number == 0 and loop.result.best_config_path.is_file()


@pytest.mark.slow
def test_a_person_picks_the_worst_of_three_side_by_side_and_the_next_three_are_shown(tmp_path, data_dir, browser,
                                                                                      dashboard):
    config = write_tune_config(tmp_path / "pick.yaml", data_dir, train={"epochs": 1},
                               study={"human": "compare", "n_trials": 4, "waiting": 3})
    tune = load_tune_config(config, {}, {"storage": f"sqlite:///{tmp_path / 'study.db'}", "out": str(tmp_path / "o")})
    loop = StudyLoop(run_compare_study, tune)
    ready = lambda numbers: lambda ts: all(  # noqa: E731
        len(ts) > n and FIGURE_ATTR in ts[n].user_attrs for n in numbers)
    loop.wait_for(ready([0, 1, 2]), "three trials to compare")
    page = browser.new_page(viewport={"width": 1500, "height": 540})  # the three side by side
    page.goto(f"{dashboard(tune)}/dashboard/studies/1")  # a preferential study opens on its comparison page

    page.get_by_text("Which trial is the worst?").wait_for()
    _figures_loaded(page, 3)
    cards = page.locator(".MuiCard-root")
    assert [cards.nth(i).get_by_text(f"Trial {n}", exact=True).count() for i, n in enumerate([0, 1, 2])] == [1, 1, 1]
    _screenshot(page, tmp_path, "compare.png")
    cards.filter(has_text="Trial 1").get_by_role("button", name="Worst").click()  # trial 1 is the worst of 0, 1, 2

    loop.wait_for(lambda ts: all(t.state == TrialState.COMPLETE for t in ts[:3]), "the comparison to be recorded")
    assert _preferences(tune) == {(0, 1), (2, 1)}  # each other trial preferred over the worst
    loop.wait_for(ready([3]), "the trial that replaces trial 1")
    page.reload()
    page.get_by_text("Which trial is the worst?").wait_for()
    _figures_loaded(page, 3)
    shown = sorted(int(t.split()[1]) for t in cards.locator("text=/^Trial \\d+$/").all_inner_texts())
    assert shown == [0, 2, 3]  # the worst left, the next proposal took its place
    cards.filter(has_text="Trial 0").get_by_role("button", name="Worst").click()

    loop.thread.join(timeout=60)
    assert loop.error is None, loop.error
    assert _preferences(tune) == {(0, 1), (2, 1), (2, 0), (3, 0)}
    assert loop.result.best.number == 2  # never the worst, preferred over two trials
    assert "preferred over 2 trial(s)" in loop.result.best_config_path.read_text()
