"""The command line: a real run, --help, and every user mistake as a one-line error."""

import json
import subprocess
import sys

import pytest

from evoprop.cli.main import main


def run_cli(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_train_runs_and_prints_a_one_line_summary(capsys, data_dir, tmp_path):
    status, out, err = run_cli(capsys, "train", "--data-dir", str(data_dir), "--limit-train", "1000",
                               "--limit-test", "300", "--epochs", "2", "--batch-size", "100",
                               "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("completed:") and "best test F1" in lines[0]
    assert "epoch   2/2" in err  # per-epoch lines go to stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["optimizer"] == "sgd" and summary["lr"] == 0.01


def test_config_file_with_command_line_overrides_and_opt(capsys, data_dir, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {data_dir}\nlimit_train: 500\nlimit_test: 200\nepochs: 5\noptimizer: momentum\n")
    status, _, err = run_cli(capsys, "train", "--config", str(cfg), "--epochs", "1", "--opt", "momentum=0.5",
                             "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 0, err
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "epochs: 1" in saved and "momentum: 0.5" in saved and "optimizer: momentum" in saved


def test_resume_extends_a_run(capsys, data_dir, tmp_path):
    common = ["--data-dir", str(data_dir), "--limit-train", "500", "--limit-test", "200", "--no-progress"]
    assert run_cli(capsys, "train", *common, "--epochs", "1", "--out", str(tmp_path / "r"))[0] == 0
    status, out, err = run_cli(capsys, "train", "--resume", str(tmp_path / "r"), "--epochs", "2", "--no-progress")
    assert status == 0, err
    assert "resuming" in err and "2 epochs" in out


def test_help_explains_every_option(capsys):
    status, out, _ = run_cli(capsys, "train", "--help")
    assert status == 0
    for flag in ("--dataset", "--data-dir", "--depth", "--width", "--optimizer", "--lr", "--batch-size", "--epochs",
                 "--seed", "--device", "--out", "--config", "--resume", "--init", "--val-fraction", "--opt"):
        assert flag in out, flag
    assert "glorot" in out and "adam" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--optimizer", "nosuch"], "valid: sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, natural"),
        (["train", "--batch-size", "-5"], "batch_size must be a positive integer"),
        (["train", "--depth", "ten"], "'ten' is not a valid integer"),
        (["train", "--dataset", "imagenet"], "unknown dataset"),
        (["train", "--config", "/nonexistent.yaml"], "cannot read config file"),
        (["train", "--opt", "momentum"], "KEY=VALUE"),
        (["train", "--optimizer", "sgd", "--opt", "betas=[0.9, 0.9]", "--limit-train", "10"], "no option betas"),
        (["train", "--resume", "/nonexistent-run"], "not a run directory"),
        (["train", "--resume", "/tmp", "--lr", "0.1"], "only --epochs"),
        (["train", "--device", "cuda:7"], "cuda"),
        (["train", "--bogus"], "No such option"),
    ],
)
def test_user_mistakes_are_one_line_errors(capsys, args, words):
    status, out, err = run_cli(capsys, *args)
    assert status != 0
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("evoprop: error:") and words in err
    assert "Traceback" not in err


def test_unknown_config_key_from_a_file(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 0.1\n")
    status, _, err = run_cli(capsys, "train", "--config", str(cfg))
    assert status != 0 and "unknown config key(s) learning_rate" in err


def test_the_installed_entry_point_exits_non_zero_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "evoprop", "train", "--optimizer", "nosuch"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "evoprop: error: unknown optimizer 'nosuch'; valid: sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, natural, "
        "newton, hessian-free"
    ]


def test_cifar_results_say_they_come_from_the_reconstruction(capsys, data_dir, cifar_archive, tmp_path):
    status, out, err = run_cli(capsys, "train", "--dataset", "cifar10-gray", "--data-dir", str(data_dir),
                               "--limit-train", "500", "--limit-test", "200", "--epochs", "1",
                               "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 0, err
    assert "Traceback" not in err and all(not line.startswith("  ") for line in err.splitlines())
    assert "reconstruction" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "reconstruction" in summary["dataset_note"]
