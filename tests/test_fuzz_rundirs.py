"""Damaged run directories, and runs killed mid-way: `train --resume` and `report` recover or say so in one line.

Every file of a run (config.yaml, metrics.jsonl, summary.json, checkpoint.pt) is in turn
truncated, overwritten with binary noise, emptied or deleted. Each command then either
recovers safely (a resumed run completes with consistent files, a report is written) or
ends with one line ``evoprop: error: ...`` and a non-zero exit: never a traceback.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoprop.cli.main import main
from evoprop.runs import RunDir

FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt")
NOISE = bytes(range(256)) * 4  # not UTF-8, not YAML, not JSON, not a zip archive

DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "one byte": lambda data: data[:1],
    "binary": lambda data: NOISE,
    "empty": lambda data: b"",
    "missing": None,
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    """A two-epoch run (depth 2, so a config read back as defaults does not fit its checkpoint)."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    status = main(["train", "--data-dir", str(data_dir), "--limit-train", "200", "--limit-test", "100", "--depth", "2",
                   "--width", "16", "--epochs", "2", "--out", str(out), "--no-progress"])
    assert status == 0
    return out


def _damage(run: Path, name: str, how: str) -> None:
    path = run / name
    if DAMAGE[how] is None:
        path.unlink()
    else:
        path.write_bytes(DAMAGE[how](path.read_bytes()))


def _one_line_or_success(capsys, args) -> int:
    capsys.readouterr()
    status = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    if status != 0:
        errors = [line for line in err.splitlines() if line.startswith("evoprop: error:")]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return status


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_resume_of_a_damaged_run_recovers_or_is_one_line(capsys, finished_run, tmp_path, name, how):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    _damage(run, name, how)
    status = _one_line_or_success(capsys, ["train", "--resume", str(run), "--epochs", "3", "--no-progress"])
    if status == 0:  # a safe recovery: the run went on to epoch 3 and its files agree again
        summary = RunDir(run).read_summary()
        assert summary["status"] == "completed" and summary["epochs"] == 3
        assert [r["epoch"] for r in RunDir(run).read_metrics()] == [1, 2, 3]


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_report_of_a_damaged_run_recovers_or_is_one_line(capsys, finished_run, tmp_path, name, how):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    _damage(run, name, how)
    status = _one_line_or_success(capsys, ["report", str(run), "--out", str(tmp_path / "report")])
    if status == 0:
        assert (tmp_path / "report" / "table.md").is_file()


def test_a_metrics_line_cut_by_a_kill_is_left_out(finished_run, tmp_path):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "train_lo')  # an append interrupted mid-line
    assert [r["epoch"] for r in RunDir(run).read_metrics()] == [1, 2]


def _wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _status_in_report(run: Path, out: Path) -> str:
    assert main(["report", str(run), "--out", str(out)]) == 0
    with open(out / "table.csv", newline="") as fh:
        return next(csv.DictReader(fh))["status"]


@pytest.mark.slow
def test_a_killed_run_reads_as_interrupted_and_resumes_cleanly(data_dir, tmp_path):
    """kill -9 mid-run: `report` says interrupted (not running), the stale checkpoint.pt.tmp goes on resume."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "evoprop", "train", "--data-dir", str(data_dir), "--limit-train",
                             "3000", "--limit-test", "100", "--batch-size", "8", "--epochs", "1000", "--out", str(run),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count("\n") >= 1,
                  "the first epoch")
        assert _status_in_report(run, tmp_path / "live") == "running"
        status = main(["train", "--resume", str(run), "--no-progress"])
        assert status != 0  # a live run is not resumed a second time
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (run / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # what a kill during a save leaves
    assert RunDir(run).read_summary()["status"] == "running"  # the killed process could not say otherwise
    assert _status_in_report(run, tmp_path / "dead") == "interrupted"
    done = len(RunDir(run).read_metrics())
    assert main(["train", "--resume", str(run), "--epochs", str(done + 1), "--no-progress"]) == 0
    assert not (run / "checkpoint.pt.tmp").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == done + 1 and "owner" not in summary


@pytest.mark.slow
def test_sigterm_stops_a_background_run_cleanly_and_it_resumes(data_dir, tmp_path):
    """`kill PID` (SIGTERM, as a scheduler or torchrun sends) to a run started as a shell's background job,
    which ignores Ctrl-C: the run stops with one line and status 130, its summary says `interrupted`
    with no owner left behind (so any machine may resume it), and `--resume` completes it."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    background = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731  what `cmd &` does
    proc = subprocess.Popen([sys.executable, "-m", "evoprop", "train", "--data-dir", str(data_dir), "--limit-train",
                             "3000", "--limit-test", "100", "--batch-size", "8", "--epochs", "1000", "--out", str(run),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=background)
    try:
        _wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count("\n") >= 1,
                  "the first epoch")
        proc.send_signal(signal.SIGINT)  # ignored, as in any background job
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("evoprop: error: interrupted; completed epochs are saved")
    summary = RunDir(run).read_summary()
    assert summary["status"] == "interrupted" and "owner" not in summary
    done = len(RunDir(run).read_metrics())
    assert done >= 1 and summary["epochs"] == done
    assert main(["train", "--resume", str(run), "--epochs", str(done + 1), "--no-progress"]) == 0
    assert RunDir(run).read_summary()["status"] == "completed"
