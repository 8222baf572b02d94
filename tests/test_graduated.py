"""``evoprop graduated``: four schedules on a tiny MNIST subset, its table and figure, rerun and errors."""

import csv
import json

import pytest

from evoprop.cli.main import main

TINY = ("--dataset", "mnist", "--depth", "1", "--epochs", "2", "--stage-epochs", "1", "--limit-train", "400",
        "--limit-test", "100", "--batch-size", "20", "--noise-sample", "128", "--device", "cpu", "--no-progress")


def run_cli(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_graduated_runs_the_four_schedules_and_writes_table_and_figure(capsys, data_dir, tmp_path):
    out = tmp_path / "grad"
    status, stdout, err = run_cli(capsys, "graduated", *TINY, "--data-dir", str(data_dir), "--out", str(out))
    assert status == 0, err
    with open(out / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["schedule"] for r in rows] == ["constant", "lr-decay", "batch-growth", "hybrid"]
    for r in rows:
        assert 0 < float(r["best_test_f1"]) <= 1 and 0 < float(r["val_selected_test_f1"]) <= 1
        assert float(r["seconds"]) > 0 and r["status"] == "completed"
    # δ of each stage: constant's lr and b stay, the others cut δ by γ = 1/√2 at equal C (the second stage's C
    # is measured after the first epoch, the same for all four: their first epochs are identical)
    c2 = {r["schedule"]: float(r["noise_c_stage2"]) for r in rows}
    assert len({round(v, 9) for v in c2.values()}) == 1
    d = {r["schedule"]: (float(r["delta_stage1"]), float(r["delta_stage2"])) for r in rows}
    assert len({v[0] for v in d.values()}) == 1
    for name in ("lr-decay", "batch-growth"):
        assert d[name][1] == pytest.approx(d["constant"][1] / 2**0.5, rel=1e-5)  # the CSV keeps 6 digits
    assert d["hybrid"][1] == pytest.approx(d["constant"][1] / 2**0.5, rel=1e-2)  # b 20/γ = 28.3 -> 28
    assert [r["batch_size_stage2"] for r in rows] == ["20", "20", "40", "28"]
    assert (out / "graduated.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| hybrid |" in (out / "table.md").read_text() and "δ per stage" in stdout
    for name in ("constant", "hybrid"):
        assert json.loads((out / name / "summary.json").read_text())["schedule"] == name
    # evoprop report on the same runs draws δ, lr and batch size per epoch too
    status, _, err = run_cli(capsys, "report", str(out), "--out", str(tmp_path / "report"))
    assert status == 0, err
    assert (tmp_path / "report" / "schedule.png").is_file()
    assert "(schedule.png)" in (tmp_path / "report" / "report.md").read_text()
    # the same command again: every run is done, nothing is retrained, the table is rewritten
    status, _, err = run_cli(capsys, "graduated", *TINY, "--data-dir", str(data_dir), "--out", str(out))
    assert status == 0 and err.count(": done") == 4 and "epoch " not in err


@pytest.mark.slow
def test_graduated_refuses_a_folder_with_other_settings_and_bad_schedules(capsys, data_dir, tmp_path):
    out = tmp_path / "grad"
    args = ("graduated", *TINY, "--data-dir", str(data_dir), "--epochs", "1", "--out", str(out))
    status, _, err = run_cli(capsys, *args, "--schedules", "constant")
    assert status == 0, err
    status, _, err = run_cli(capsys, *args, "--schedules", "constant", "--lr", "0.05")
    assert status == 1 and err.startswith("evoprop: error:") and "(lr: 0.1 there, 0.05 requested)" in err
    assert len(err.strip().splitlines()) == 1
    status, _, err = run_cli(capsys, *args, "--schedules", "constant,warmup")
    assert status == 1 and "unknown schedule(s) warmup" in err
    status, _, err = run_cli(capsys, *args, "--schedules", "hybrid", "--gamma", "2")
    assert status == 1 and "gamma must be a number in (0, 1)" in err


def test_graduated_help_has_examples_and_the_paper_preset(capsys):
    status, out, _ = run_cli(capsys, "graduated", "--help")
    assert status == 0 and "evoprop graduated --dataset mnist" in out and "--preset" in out


def test_train_accepts_the_schedule_options(capsys, data_dir, tmp_path):
    status, _, err = run_cli(capsys, "train", "--data-dir", str(data_dir), "--limit-train", "300", "--limit-test",
                             "100", "--epochs", "3", "--lr", "0.1", "--schedule", "step", "--milestones", "1,2",
                             "--noise-sample", "0", "--out", str(tmp_path / "r"), "--no-progress")
    assert status == 0, err
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.1, 0.01, 0.001])
    status, _, err = run_cli(capsys, "train", "--milestones", "1,x")
    assert status == 2 and "expects epoch numbers" in err


def test_the_paper_preset_is_resnet18_on_cifar10_in_five_stages_of_40_epochs():
    from evoprop.config import TrainConfig
    from evoprop.experiments.graduated import DEFAULTS, PAPER_PRESET, schedule_config
    from evoprop.runs.launch import resolve_config
    from evoprop.train.schedules import schedule_from_config

    base = TrainConfig.from_dict(PAPER_PRESET, base=TrainConfig.from_dict(DEFAULTS))
    config = resolve_config(schedule_config(base, "batch-growth"))
    schedule = schedule_from_config(config)
    assert (config.model, config.dataset, config.lr, config.batch_size) == ("resnet18", "cifar10", 0.1, 32)
    assert [first for _, first, _ in schedule.stages()] == [1, 41, 81, 121, 161]
    assert [schedule.batch_size_at(e) for e in (1, 41, 81, 121, 161)] == [32, 64, 128, 256, 512]
    assert schedule.delta(200, 1.0) / schedule.delta(1, 1.0) == pytest.approx(0.5**2)  # (1/√2)^4
