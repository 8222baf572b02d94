"""The command line: a real run, --help, and every user mistake as a one-line error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evoprop.cli.main import main
from evoprop.config import TrainConfig


def run_cli(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
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


def test_resume_without_a_checkpoint_refuses_and_keeps_the_epochs(capsys, data_dir, tmp_path):
    common = ["--data-dir", str(data_dir), "--limit-train", "500", "--limit-test", "200", "--no-progress"]
    assert run_cli(capsys, "train", *common, "--epochs", "1", "--out", str(tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "checkpoint.pt").unlink()
    kept = (tmp_path / "r" / "metrics.jsonl").read_text()
    status, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "r"), "--epochs", "2", "--no-progress")
    assert status == 1 and len(err.strip().splitlines()) == 1 and "no checkpoint.pt" in err
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == kept


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


@pytest.mark.slow
def test_the_installed_entry_point_exits_non_zero_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "evoprop", "train", "--optimizer", "nosuch"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "evoprop: error: unknown optimizer 'nosuch'; valid: sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, natural, "
        "newton, hessian-free"
    ]


@pytest.mark.slow
def test_cifar_results_say_they_come_from_the_reconstruction(capsys, data_dir, cifar_archive, tmp_path):
    status, out, err = run_cli(capsys, "train", "--dataset", "cifar10-gray", "--data-dir", str(data_dir),
                               "--limit-train", "500", "--limit-test", "200", "--epochs", "1",
                               "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 0, err
    assert "Traceback" not in err and all(not line.startswith("  ") for line in err.splitlines())
    assert "reconstruction" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "reconstruction" in summary["dataset_note"]


# Every bad input of issue 15 (items 3 and 4): one line naming the option or file and what is wrong, exit != 0.

BIG = str(10**30)


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory, data_dir):
    """Two finished one-epoch runs of different architectures: depth 2 / width 20 and depth 1."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--data-dir", str(data_dir), "--limit-train", "200", "--limit-test", "100", "--epochs", "1",
              "--no-progress"]
    assert main(["train", *common, "--depth", "2", "--width", "20", "--out", str(root / "d2")]) == 0
    assert main(["train", *common, "--depth", "1", "--out", str(root / "d1")]) == 0
    return root


def _copy_run(small_runs, tmp_path, name="d2"):
    import shutil

    return Path(shutil.copytree(small_runs / name, tmp_path / "run"))


def _file(tmp_path, name, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _edit_checkpoint(run, edit):
    import torch

    state = torch.load(run / "checkpoint.pt", weights_only=True)
    edit(state)
    torch.save(state, run / "checkpoint.pt")
    return str(run)


def _other_architecture(small_runs, tmp_path):
    import shutil

    run = _copy_run(small_runs, tmp_path)
    shutil.copy(small_runs / "d1" / "checkpoint.pt", run / "checkpoint.pt")
    return str(run)


def _edited_depth(small_runs, tmp_path):
    run = _copy_run(small_runs, tmp_path)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("depth: 2", "depth: 3"))
    return str(run)


def _damaged(small_runs, tmp_path, name, content: bytes):
    run = _copy_run(small_runs, tmp_path)
    (run / name).write_bytes(content)
    return str(run)


NOT_UTF8 = b"depth: 2\n\xff\xfe\x00 \xc3\x28\n"
SIZE = ["--limit-train", "100", "--limit-test", "100", "--epochs", "1", "--no-progress"]

BAD_INPUTS = {
    "seed 10**30": (lambda r, t: ["train", "--seed", BIG, *SIZE], "seed must be an integer in [0, 4294967295]"),
    "split-seed 10**30": (lambda r, t: ["train", "--split-seed", BIG, *SIZE], "split_seed must be an integer in"),
    "seed in YAML": (lambda r, t: ["train", "--config", _file(t, "s.yaml", f"seed: {BIG}\n"), *SIZE],
                     "s.yaml: seed must be an integer in [0, 4294967295]"),
    "split_seed in YAML": (lambda r, t: ["train", "--config", _file(t, "s.yaml", f"split_seed: {BIG}\n"), *SIZE],
                           "s.yaml: split_seed must be an integer"),
    "width 10**12": (lambda r, t: ["train", "--depth", "2", "--width", str(10**12), *SIZE],
                     "has 795,000,000,000,010 parameters and needs ~11.3 PiB"),
    "depth 10**12": (lambda r, t: ["train", "--depth", str(10**12)], "depth must be an integer in [1, 1000]"),
    "popsize 10**12": (lambda r, t: ["train", "--method", "es", "--popsize", str(10**12), *SIZE],
                       "popsize 1,000,000,000,000) needs ~"),
    "max-memory inf": (lambda r, t: ["train", "--method", "hybrid", "--max-memory", "inf", *SIZE],
                       "max_memory must be a size from 1 byte"),
    "lr given twice": (lambda r, t: ["train", "--lr", "0.2", "--opt", "lr=0.1", *SIZE], "the learning rate is given twice"),
    "optimizer_options lr beside lr": (
        lambda r, t: ["train", "--config", _file(t, "c.yaml", "lr: 0.2\noptimizer_options: {lr: 0.1}\n"), *SIZE],
        "c.yaml: the learning rate is given twice"),
    "data_dir: 5": (lambda r, t: ["train", "--config", _file(t, "c.yaml", "data_dir: 5\n"), *SIZE],
                    "c.yaml: data_dir must be a string or null, got 5"),
    "init: [glorot]": (lambda r, t: ["train", "--config", _file(t, "c.yaml", "init: [glorot]\n"), *SIZE],
                       "c.yaml: init must be a string, got ['glorot']"),
    "non-UTF-8 config": (lambda r, t: ["train", "--config", _file(t, "c.yaml", NOT_UTF8)], "c.yaml is not UTF-8"),
    "non-UTF-8 tune file": (lambda r, t: ["tune", "--config", _file(t, "t.yaml", NOT_UTF8)], "t.yaml is not UTF-8"),
    "resume, non-UTF-8 config.yaml": (lambda r, t: ["train", "--resume", _damaged(r, t, "config.yaml", NOT_UTF8)],
                                      "config.yaml is not UTF-8"),
    "resume, another architecture's checkpoint": (
        lambda r, t: ["train", "--resume", _other_architecture(r, t), "--epochs", "2"],
        "checkpoint.pt does not match the run's config.yaml"),
    "resume, edited depth": (lambda r, t: ["train", "--resume", _edited_depth(r, t), "--epochs", "2"],
                             "checkpoint.pt does not match the run's config.yaml"),
    "resume, checkpoint lacks a trainer key": (
        lambda r, t: ["train", "--resume", _edit_checkpoint(_copy_run(r, t), lambda s: s["trainer"].pop("generator")),
                      "--epochs", "2"], "does not match the run's config.yaml"),
    "resume, checkpoint lacks torch_rng": (
        lambda r, t: ["train", "--resume", _edit_checkpoint(_copy_run(r, t), lambda s: s.pop("torch_rng")),
                      "--epochs", "2"], "checkpoint.pt lacks torch_rng"),
    "report, summary.json not a mapping": (
        lambda r, t: ["report", _damaged(r, t, "summary.json", b"[1, 2]\n"), "--out", str(t / "rep")],
        "summary.json must hold a JSON object"),
    "report, non-UTF-8 metrics.jsonl": (
        lambda r, t: ["report", _damaged(r, t, "metrics.jsonl", NOT_UTF8), "--out", str(t / "rep")],
        "metrics.jsonl is not UTF-8"),
    "report, non-UTF-8 config.yaml": (
        lambda r, t: ["report", _damaged(r, t, "config.yaml", NOT_UTF8), "--out", str(t / "rep")],
        "config.yaml is not UTF-8"),
    "generations-per-epoch 10**9": (
        lambda r, t: ["train", "--method", "hybrid", "--generations-per-epoch", str(10**9), *SIZE],
        "generations_per_epoch must be an integer in [1, 1000000]"),
    "sigma0 1e30": (lambda r, t: ["train", "--method", "es", "--sigma0", "1e30", *SIZE], "sigma0 must be a number in (0, 1000]"),
    "es-layers 0,0": (lambda r, t: ["train", "--method", "es", "--depth", "2", "--es-layers", "0,0", *SIZE],
                      "es_layers names layer(s) 0 more than once"),
    "es-layers 1,-1": (lambda r, t: ["train", "--method", "es", "--depth", "2", "--es-layers", "1,-1", *SIZE],
                       "es_layers names layer(s) 1 more than once"),
    "min-lr -1 without a schedule": (lambda r, t: ["train", "--min-lr", "-1", *SIZE], "min_lr must be a number >= 0"),
    "noise-sample -5 without a schedule": (lambda r, t: ["train", "--noise-sample", "-5", *SIZE],
                                           "noise_sample must be an integer >= 0"),
    "lr inf": (lambda r, t: ["train", "--lr", "inf", *SIZE], "lr must be a number > 0, got inf"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_input_is_one_line_and_a_non_zero_exit(capsys, monkeypatch, small_runs, data_dir, tmp_path, case):
    monkeypatch.setenv("EVOPROP_DATA", str(data_dir))
    make_args, words = BAD_INPUTS[case]
    args = make_args(small_runs, tmp_path)
    capsys.readouterr()
    status, out, err = run_cli(capsys, *args)
    assert status != 0
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("evoprop: error:") and words in err, err
    assert "Traceback" not in err


def test_opt_lr_is_the_learning_rate(capsys, data_dir, tmp_path):
    """The README: every optimizer hyperparameter can be set with --opt; lr too, and in a config file."""
    common = ["--data-dir", str(data_dir), *SIZE]
    status, out, err = run_cli(capsys, "train", *common, "--opt", "lr=0.1", "--out", str(tmp_path / "a"))
    assert status == 0, err
    assert "sgd lr 0.1 " in out
    saved = TrainConfig.from_file(tmp_path / "a" / "config.yaml")
    assert saved.lr == 0.1 and "lr" not in saved.optimizer_options
    cfg = _file(tmp_path, "c.yaml", "optimizer: adam\noptimizer_options: {lr: 0.003, eps: 1.0e-7}\n")
    status, out, err = run_cli(capsys, "train", *common, "--config", cfg, "--out", str(tmp_path / "b"))
    assert status == 0, err
    saved = TrainConfig.from_file(tmp_path / "b" / "config.yaml")
    assert saved.lr == 0.003 and saved.optimizer_options == {"eps": 1e-7}


def test_help_states_each_range_as_train_config_does(capsys):
    from evoprop.config import allowed_values

    status, out, _ = run_cli(capsys, "train", "--help")
    text = " ".join(out.split())
    assert status == 0
    for field in ("seed", "sigma0", "generations_per_epoch", "min_lr", "val_fraction", "depth"):
        assert allowed_values(field) in text, field
