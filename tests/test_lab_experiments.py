"""The lab's experiments as library calls: run_X(problem, XSettings) -> a result that prints and writes itself."""

import json

import pytest

from evoprop.errors import EvopropError
from evoprop.lab.gradcheck import GradCheckSettings, run_gradcheck
from evoprop.lab.landscape import LandscapeSettings, run_landscape
from evoprop.lab.problem import fresh_problem
from evoprop.lab.search import SearchSettings, run_search
from evoprop.lab.stepsize import StepSizeSettings, run_stepsize


@pytest.fixture(scope="module")
def problem(data_dir):
    return fresh_problem("mnist", depth=1, data_dir=data_dir, device="cpu", limit_train=300, limit_test=100)


@pytest.mark.slow
def test_landscape_reports_as_it_goes_and_writes_its_files(problem, tmp_path):
    said = []
    result = run_landscape(problem, LandscapeSettings(examples=100, points=5, grid=3), progress=said.append,
                           folder=tmp_path)
    assert "\n".join(said) == result.summary() and len(said) == 3
    files = result.write(tmp_path / "out")
    assert [f.name for f in files] == ["landscape_1d.png", "landscape_1d.csv", "landscape_2d.png",
                                       "landscape_2d.csv", "landscape.npz", "landscape.json"]
    assert json.loads(files[-1].read_text())["examples"] == 100


def test_search_leaves_the_model_as_it_was(problem, tmp_path):
    before = [p.detach().clone() for p in problem.model.parameters()]
    result = run_search(problem, SearchSettings(methods=("local", "random", "local"), tries=10, steps=2))
    assert [r["method"] for r in result.rows] == ["local", "random"]  # each once, in the order given
    assert all((a == b).all() for a, b in zip(before, problem.model.parameters()))
    assert result.summary().count("test accuracy") == 2
    assert [f.name for f in result.write(tmp_path)] == ["search.csv", "search.png", "results.md", "results.json"]


def test_stepsize_and_gradcheck_summaries(problem, tmp_path):
    sweep = run_stepsize(problem, StepSizeSettings(step_sizes=(1e-6, 1e-5), start_scale=0))
    assert "from its initial weights" in sweep.summary() and sweep.summary().endswith("step size 1e-05")
    assert (tmp_path / "stepsize.md") in sweep.write(tmp_path)
    check = run_gradcheck(problem, GradCheckSettings(examples=8, coords=3))
    assert check.passed and check.summary().splitlines()[-1].startswith("PASS")


def test_an_output_folder_that_cannot_be_made_is_one_error(problem, tmp_path):
    (tmp_path / "file").write_text("")
    sweep = run_stepsize(problem, StepSizeSettings(step_sizes=(1e-6,), start_scale=0))
    with pytest.raises(EvopropError, match="cannot create .*file/x"):
        sweep.write(tmp_path / "file" / "x")
