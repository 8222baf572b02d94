"""The lab's commands end to end at tiny scale: landscape, search, gradcheck, stepsize, and their errors."""

import json

import numpy as np
import pytest

from evoprop.cli.main import main


def run_cli(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """A 1-epoch depth-3 MNIST run on 600 examples."""
    out = tmp_path_factory.mktemp("lab") / "run"
    status = main(["train", "--data-dir", str(data_dir), "--depth", "3", "--width", "16", "--limit-train", "600",
                   "--limit-test", "200", "--epochs", "1", "--out", str(out), "--no-progress"])
    assert status == 0
    return out


@pytest.mark.slow
def test_landscape_of_a_saved_run_writes_both_plots_and_the_grids(capsys, data_dir, trained_run, tmp_path):
    out = tmp_path / "ls"
    status, stdout, err = run_cli(capsys, "landscape", "--run", trained_run, "--data-dir", data_dir, "--out", out,
                                  "--examples", "200", "--points", "5", "--grid", "3")
    assert status == 0, err
    for name in ("landscape_1d.png", "landscape_2d.png", "landscape.npz", "landscape_1d.csv", "landscape_2d.csv",
                 "landscape.json"):
        assert (out / name).stat().st_size > 0, name
    meta = json.loads((out / "landscape.json").read_text())
    grids = np.load(out / "landscape.npz")
    assert grids["line_loss"].shape == (5,) and grids["plane_loss"].shape == (3, 3)
    # the centre of the line and of the plane is the run's own loss at its saved weights
    assert grids["line_loss"][2] == pytest.approx(meta["center_loss"], rel=1e-5)
    assert grids["plane_loss"][1, 1] == pytest.approx(meta["center_loss"], rel=1e-5)
    assert "after epoch 1" in stdout and "depth 3 width 16" in stdout


@pytest.mark.slow
def test_landscape_around_a_fresh_model(capsys, data_dir, tmp_path):
    status, stdout, err = run_cli(capsys, "landscape", "--dataset", "mnist", "--depth", "1", "--data-dir", data_dir,
                                  "--out", tmp_path, "--examples", "100", "--only", "line", "--points", "3",
                                  "--direction", "gaussian", "--range", "0.01", "--loss", "svm")
    assert status == 0, err
    assert (tmp_path / "landscape_1d.png").exists() and not (tmp_path / "landscape_2d.png").exists()
    assert "fresh glorot init" in stdout and "svm loss" in stdout


def test_search_runs_all_three_strategies_and_writes_its_results(capsys, data_dir, tmp_path):
    status, stdout, err = run_cli(capsys, "search", "random", "local", "gradient", "--dataset", "mnist",
                                  "--data-dir", data_dir, "--limit-train", "500", "--limit-test", "200",
                                  "--tries", "60", "--steps", "10", "--out", tmp_path)
    assert status == 0, err
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [r["method"] for r in rows] == ["random", "local", "gradient"]
    for r in rows:
        assert r["final_loss"] < r["start_loss"] or r["method"] == "random"
        assert 0 <= r["test_accuracy"] <= 1
    assert rows[-1]["test_accuracy"] > rows[0]["test_accuracy"]  # following the gradient beats guessing
    lines = (tmp_path / "search.csv").read_text().splitlines()
    assert lines[0] == "method,iteration,tried_loss,kept_loss" and len(lines) == 1 + 60 + 61 + 11
    assert (tmp_path / "search.png").stat().st_size > 0 and "| random |" in (tmp_path / "results.md").read_text()
    assert stdout.count("test accuracy") == 3


def test_gradcheck_passes_with_exit_status_0(capsys, data_dir):
    status, stdout, err = run_cli(capsys, "gradcheck", "--dataset", "mnist", "--depth", "3", "--width", "16",
                                  "--data-dir", data_dir, "--examples", "8", "--coords", "5")
    assert status == 0, err
    assert stdout.strip().splitlines()[-1].startswith("PASS: largest centred relative error")
    assert "layers.2.bias" in stdout


def test_gradcheck_of_the_hand_derived_svm_gradient(capsys, data_dir):
    status, stdout, err = run_cli(capsys, "gradcheck", "--depth", "1", "--loss", "svm", "--reg", "0.1",
                                  "--gradient", "analytic", "--data-dir", data_dir, "--examples", "8")
    assert status == 0, err
    assert "analytic gradient of the svm loss + 0.1 L2" in stdout


def test_gradcheck_exits_1_when_the_gradient_is_wrong(capsys, data_dir, monkeypatch):
    from evoprop.lab import gradcheck

    right = gradcheck.autograd_gradients

    def wrong(model, x, y, loss, reg):
        grads = right(model, x, y, loss, reg)
        grads["layers.0.bias"] = -grads["layers.0.bias"]
        return grads

    monkeypatch.setattr(gradcheck, "autograd_gradients", wrong)
    status, stdout, err = run_cli(capsys, "gradcheck", "--depth", "2", "--width", "8", "--data-dir", data_dir,
                                  "--examples", "8", "--coords", "5")
    assert status == 1
    assert "FAIL" in stdout.splitlines()[-1]
    assert [line.split()[0] for line in stdout.splitlines() if line.endswith("FAIL")] == ["layers.0.bias"]


def test_gradcheck_in_float32_fails(capsys, data_dir):
    status, stdout, _ = run_cli(capsys, "gradcheck", "--depth", "1", "--data-dir", data_dir, "--examples", "8",
                                "--coords", "10", "--dtype", "float32")
    assert status == 1 and stdout.splitlines()[-1].startswith("FAIL")


def test_stepsize_sweep_reports_every_step_size(capsys, data_dir, tmp_path):
    status, stdout, err = run_cli(capsys, "stepsize", "--dataset", "mnist", "--data-dir", data_dir,
                                  "--limit-train", "500", "--out", tmp_path)
    assert status == 0, err
    rows = (tmp_path / "stepsize.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[1].startswith("1e-10,")
    after = [float(r.split(",")[1]) for r in rows[1:]]
    before = float(stdout.split("loss before the step: ")[1].split()[0])
    assert after[0] == pytest.approx(before, rel=1e-4)  # a 1e-10 step changes nothing
    assert min(after) < before < after[-1]  # some step helps; 0.1 overshoots
    assert (tmp_path / "stepsize.png").stat().st_size > 0


@pytest.mark.parametrize("args, words", [
    (["landscape", "--out", "x", "--range", "-1"], "--range must be positive"),
    (["landscape", "--out", "x", "--grid", "1"], "--grid must be at least 2"),
    (["landscape", "--out", "x", "--run", "/nonexistent-run"], "not a run directory"),
    (["landscape", "--out", "x", "--run", "/tmp", "--depth", "3"], "drop --depth"),
    (["landscape", "--direction", "sideways", "--out", "x"], "sideways"),
    (["search", "sideways"], "sideways"),
    (["search", "random", "--tries", "0"], "--tries must be positive"),
    (["gradcheck", "--depth", "2", "--gradient", "analytic"], "use --depth 1"),
    (["gradcheck", "--h", "0"], "the step h must be positive"),
    (["stepsize", "--step-sizes", "1e-3,big"], "--step-sizes expects numbers"),
    (["landscape", "--dataset", "nosuch", "--out", "x"], "unknown dataset 'nosuch'"),
    (["gradcheck", "--split", "nope"], "unknown split 'nope'"),
])
def test_user_mistakes_are_one_line_errors(capsys, data_dir, monkeypatch, args, words):
    monkeypatch.setenv("EVOPROP_DATA", str(data_dir))
    status, _, err = run_cli(capsys, *args)
    assert status != 0
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("evoprop: error:") and words in err
