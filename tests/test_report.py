"""`evoprop report`: tables and figures from any run directories (plain runs, reproductions, a mix)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from evoprop.cli.main import main
from evoprop.config import TrainConfig
from evoprop.errors import EvopropError
from evoprop.experiments import TABLES, paper_references, reproduce
from evoprop.report import build_report, find_run_dirs, group_runs, load_run, load_runs, table_rows
from evoprop.report.tables import mean_std
from evoprop.runs import run_training


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """Three plain runs (SGD seeds 0 and 1, Adam seed 0, 3 epochs each) and a tiny reproduction."""
    root = tmp_path_factory.mktemp("runs")
    base = dict(data_dir=str(data_dir), limit_train=1000, limit_test=300, epochs=3, batch_size=100)
    quiet = lambda line: None  # noqa: E731
    for name, extra in (("sgd-a", dict(seed=0)), ("sgd-b", dict(seed=1)), ("adam", dict(optimizer="adam"))):
        run_training(TrainConfig.from_dict({**base, **extra}), out=root / "plain" / name, echo=quiet)
    reproduce("table1", root / "repro", epochs=2, rows=["adam", "sgd-0.01"], data_dir=data_dir, limit_train=500,
              limit_test=200, echo=quiet)
    return root


@pytest.mark.slow
def test_plain_runs_group_by_method_with_seeds_averaged(runs, tmp_path):
    result = build_report([runs / "plain"], tmp_path / "out")
    for name in ("table.md", "table.csv", "f1.png", "loss.png", "report.md"):
        assert (tmp_path / "out" / name).is_file(), name
    rows = read_csv(tmp_path / "out" / "table.csv")
    assert [r["method"] for r in rows] == ["gradient adam lr 0.001", "gradient sgd lr 0.01"]  # folder order
    adam, sgd = rows
    assert sgd["runs"] == "2" and sgd["seeds"] == "0;1" and sgd["best_test_f1_std"] != ""
    assert adam["runs"] == "1" and adam["best_test_f1_std"] == ""
    assert sgd["paper_f1"] == "" and sgd["epochs"] == "3"
    # the mean over seeds of the per-run headline numbers
    each = [json.loads((runs / "plain" / n / "summary.json").read_text()) for n in ("sgd-a", "sgd-b")]
    assert float(sgd["best_test_f1"]) == pytest.approx(sum(s["best_test_f1"] for s in each) / 2, abs=1e-6)
    assert float(sgd["val_selected_test_f1"]) == pytest.approx(
        sum(s["val_selected_test_f1"] for s in each) / 2, abs=1e-6)
    md = (tmp_path / "out" / "table.md").read_text()
    assert "paper F1" not in md and "±" in md and "Comparison of 3 runs" in md
    assert result["title"] == "Comparison of 3 runs"


def test_reproduction_runs_keep_the_papers_numbers(runs, tmp_path):
    result = build_report([runs / "repro" / "table1"], tmp_path, references=paper_references())
    rows = read_csv(tmp_path / "table.csv")
    assert [(r["row_id"], r["paper_f1"], r["paper_epoch"]) for r in rows] == [("adam", "0.924", "19"),
                                                                             ("sgd-0.01", "0.922", "749")]
    assert result["title"] == "Table 1: MNIST, one weight layer"
    assert float(rows[0]["diff_vs_paper"]) == pytest.approx(float(rows[0]["best_test_f1"]) - 0.924, abs=1e-5)


def test_a_mix_of_runs_labels_each_group_apart(runs, tmp_path):
    result = build_report([runs / "plain" / "adam", runs / "repro"], tmp_path, references=paper_references())
    labels = [r.method for r in result["rows"]]
    assert labels[:2] == ["Adam", "SGD lr 0.01"]  # reproductions first, in the paper's order
    assert labels[2].startswith("mnist d1 gradient adam lr 0.001")
    assert len(set(labels)) == len(labels)


@pytest.mark.slow
def test_report_reads_the_papers_tables_only_as_data_given_to_it(runs, tmp_path):
    """report/ never imports experiments/: without references a reproduction is an ordinary comparison."""
    import subprocess
    import sys

    code = "import sys, evoprop.report; print(any(m.startswith('evoprop.experiments') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    assert build_report([runs / "repro" / "table1"], tmp_path)["title"] == "Comparison of 2 runs"
    refs = paper_references()
    assert refs["table3"].row_ids == tuple(TABLES["table3"].row_ids)
    one, three = "\n".join(refs["table1"].notes), "\n".join(refs["table3"].notes)
    assert 'Table 1\'s "SGD lr 0.001"' in one and 'Table 1\'s "SGD lr 0.001"' not in three
    assert '**The "CMA-ES" rows' in one and '**The "CMA-ES" rows' not in three
    assert "**The hybrid rows" in three and "**The hybrid rows" not in one


def test_epochs_truncates_every_run(runs, tmp_path):
    records = load_runs([runs / "plain"], max_epochs=1)
    assert all(len(r.history) == 1 and r.total_epochs == 3 and r.headline["epochs"] == 1 for r in records)
    assert all(r.headline["best_epoch"] == 1 for r in records)
    first = next(r for r in records if r.path.name == "sgd-a")
    full = load_run(runs / "plain" / "sgd-a")
    assert full.headline["best_test_f1"] >= first.headline["best_test_f1"] == first.history[0]["test_f1"]


def test_each_run_gives_one_row_per_directory(runs):
    groups = group_runs(load_runs([runs / "plain"]), by_run=True)
    assert len(groups) == 3 and len({g.label for g in groups}) == 3


def test_runs_differing_in_a_setting_are_told_apart(runs, tmp_path, data_dir):
    other = tmp_path / "sgd-bs50"
    run_training(TrainConfig.from_dict(dict(data_dir=str(data_dir), limit_train=1000, limit_test=300, epochs=1,
                                            batch_size=50)), out=other, echo=lambda line: None)
    rows = table_rows(group_runs(load_runs([runs / "plain" / "sgd-a", other])))
    assert sorted(r.method for r in rows) == ["gradient sgd lr 0.01 (batch_size=100)",
                                              "gradient sgd lr 0.01 (batch_size=50)"]


@pytest.mark.slow
def test_a_repeated_seed_is_counted_once_and_named(runs, tmp_path):
    """Two runs of seed 0 are one seed: no '± std' over repeats, and the note says which run was left out."""
    import shutil

    repeat = tmp_path / "sgd-a-again"
    shutil.copytree(runs / "plain" / "sgd-a", repeat)
    result = build_report([runs / "plain" / "sgd-a", repeat], tmp_path / "one-seed")
    [row] = result["rows"]
    assert row["runs"] == 1 and row["seeds"] == "0" and row["best_test_f1_std"] is None
    assert row["duplicate_run_dirs"] in (str(repeat.resolve()), str((runs / "plain" / "sgd-a").resolve()))
    md = (tmp_path / "one-seed" / "table.md").read_text()
    assert "±" not in md and "1 more run(s) with a seed already counted" in md and "not another seed" in md
    # with a second seed beside the repeat: two seeds, averaged
    [row] = build_report([runs / "plain" / "sgd-a", repeat, runs / "plain" / "sgd-b"], tmp_path / "two")["rows"]
    assert row["runs"] == 2 and row["seeds"] == "0;1" and row["best_test_f1_std"] is not None


def test_an_interrupted_run_without_its_checkpoint_is_not_offered_to_continue(runs, tmp_path):
    import shutil

    copy = tmp_path / "seed0"
    shutil.copytree(runs / "repro" / "table1" / "sgd-0.01" / "seed0", copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    build_report([copy], tmp_path / "with")
    md = (tmp_path / "with" / "table.md").read_text()
    assert "interrupted after 2 epoch(s) (to continue: the same 'evoprop reproduce'" in md
    (copy / "checkpoint.pt").unlink()
    build_report([copy], tmp_path / "without")
    md = (tmp_path / "without" / "table.md").read_text()
    assert "stopped without a checkpoint after 2 epoch(s)" in md and "cannot be continued, only rerun" in md
    assert "to continue" not in md


@pytest.mark.slow
def test_a_resnet_run_is_labelled_by_its_network(runs, tmp_path, data_dir):
    resnet = tmp_path / "resnet"
    run_training(TrainConfig.from_dict(dict(data_dir=str(data_dir), model="resnet18", resnet_width=4, limit_train=64,
                                            limit_test=32, epochs=1, batch_size=32, noise_sample=0)),
                 out=resnet, echo=lambda line: None)
    labels = sorted(r.method for r in build_report([runs / "plain" / "adam", resnet], tmp_path / "out")["rows"])
    assert labels == ["mnist d1 gradient adam lr 0.001", "mnist resnet18-w4 gradient sgd lr 0.01"]


def test_mean_and_sample_std():
    assert mean_std([1.0, None]) == (1.0, None)
    mean, std = mean_std([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and std == pytest.approx(math.sqrt(0.04))  # n - 1 in the denominator
    assert mean_std([None]) == (None, None)


def test_find_run_dirs_and_its_errors(runs, tmp_path):
    assert len(find_run_dirs([runs])) == 5
    assert find_run_dirs([runs / "plain" / "adam", runs / "plain"])[0].name == "adam"  # no duplicates
    assert len(find_run_dirs([runs / "plain" / "adam", runs / "plain"])) == 3
    with pytest.raises(EvopropError, match="does not exist"):
        find_run_dirs([tmp_path / "nosuch"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvopropError, match="is not a run directory and holds none"):
        find_run_dirs([tmp_path / "empty"])


@pytest.mark.slow
def test_cli_report(capsys, runs, tmp_path):
    status = main(["report", str(runs / "plain"), "--out", str(tmp_path / "r"), "--epochs", "2",
                   "--title", "SGD vs Adam"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.startswith("# SGD vs Adam") and "| gradient adam lr 0.001 |" in out and "report.md" in out
    assert read_csv(tmp_path / "r" / "table.csv")[0]["epochs"] == "2"
    report = (tmp_path / "r" / "report.md").read_text()
    assert "evoprop report" in report and "reading the first 2 epochs" in report
    assert main(["report", str(runs / "plain"), "--out", str(tmp_path / "e"), "--each-run"]) == 0
    assert len(read_csv(tmp_path / "e" / "table.csv")) == 3


@pytest.mark.parametrize("args, words", [
    (["report", "/nonexistent/run"], "evoprop: error: /nonexistent/run does not exist"),
    (["report"], "evoprop: error: Missing argument 'RUN_DIR...'"),
])
def test_cli_report_mistakes(capsys, args, words):
    status = main(args)
    _, err = capsys.readouterr()
    assert status != 0 and words in err and len(err.strip().splitlines()) == 1


def test_cli_report_on_a_folder_without_runs(capsys, tmp_path):
    status = main(["report", str(tmp_path), "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert status == 1 and "is not a run directory and holds none" in err


def test_notes_flag_collapse_far_numbers_and_short_runs():
    from evoprop.report.tables import TableRow, table_notes

    row = TableRow("hybrid (Adam)", {"status": "completed", "best_test_f1": 0.61, "best_epoch": 1,
                                     "final_test_f1": 0.02, "paper_f1": 0.98, "paper_epoch": 18, "epochs": 3,
                                     "diff_vs_paper": -0.37, "dataset_note": "CIFAR-10 JPEG-decoded reconstruction"})
    # a row whose seeds stand at different epochs (one still running) says so, not just its shortest seed's
    running = TableRow("CMA-ES (sep)", {"status": "completed", "best_test_f1": 0.9, "final_test_f1": 0.9,
                                        "paper_f1": 0.918, "paper_epoch": 32, "epochs": 15, "max_epochs": 50})
    notes = "\n".join(table_notes([row, running]))
    assert "fell from 0.6100 (epoch 1) to 0.0200" in notes
    assert "more than 0.02: hybrid (Adam)" in notes
    assert "paper epoch 18, run 3)" in notes and "CMA-ES (sep) (paper epoch 32, run 15–50)" in notes
    assert "Data: CIFAR-10 JPEG-decoded reconstruction." in notes


def test_report_pairs_with_a_baseline_and_times_a_target(capsys, runs, tmp_path):
    status = main(["report", str(runs / "plain"), "--out", str(tmp_path / "p"), "--baseline", "gradient sgd lr 0.01",
                   "--target-f1", "0.3"])
    out, err = capsys.readouterr()
    assert status == 0, err
    adam, sgd = read_csv(tmp_path / "p" / "table.csv")
    summaries = {n: json.loads((runs / "plain" / n / "summary.json").read_text()) for n in ("sgd-a", "adam")}
    # the only seed both have is 0: one paired difference, no interval
    assert float(adam["diff_vs_baseline"]) == pytest.approx(
        summaries["adam"]["val_selected_test_f1"] - summaries["sgd-a"]["val_selected_test_f1"], abs=1e-6)
    assert adam["seeds_paired"] == "1" and adam["diff_ci_low"] == "" and sgd["diff_vs_baseline"] == ""
    assert adam["target_f1"] == "0.3" and sgd["reached_target"] in ("0", "1", "2")
    assert "Paired against gradient sgd lr 0.01" in out and "epochs to F1 ≥ 0.3" in out
    # and in epochs: how much sooner Adam converged (the paper's convergence epoch), seed by seed
    assert float(adam["best_epoch_diff"]) == summaries["adam"]["best_epoch"] - summaries["sgd-a"]["best_epoch"]
    assert adam["best_epoch_paired"] == "1" and sgd["best_epoch_diff"] == ""
    assert "Δ convergence epoch (paper's) (mean)" in out and "Δ epochs to F1 ≥ 0.3 (mean)" in out
    assert "--target-f1 0.3 --baseline 'gradient sgd lr 0.01'" in (tmp_path / "p" / "report.md").read_text()


@pytest.mark.parametrize("args, words", [
    (["--baseline", "nosuch"], "unknown baseline 'nosuch'; the methods are: 'gradient adam lr 0.001', "
                               "'gradient sgd lr 0.01'"),
    (["--target-f1", "1.5"], "target_f1 must be a macro-F1 in (0, 1], got 1.5"),
])
def test_report_baseline_and_target_mistakes_are_one_line(args, words, capsys, runs, tmp_path):
    assert main(["report", str(runs / "plain"), "--out", str(tmp_path / "x"), *args]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_long_curves_get_a_log_epoch_axis():
    # over the paper's 1,000 epochs a linear axis hides the first tens, where the rows differ
    from evoprop.report.figures import LOG_EPOCHS, _epoch_axis, _figure, _longest

    scales = {}
    for epochs in (20, LOG_EPOCHS, 1000):
        ax = _figure().add_subplot()
        ax.plot(range(1, epochs + 1), [0.5] * epochs)
        ax.axhline(0.9)  # a paper line (x in axes coordinates) does not count as epochs
        _epoch_axis(ax, _longest(ax))
        scales[epochs] = (ax.get_xscale(), ax.get_xlabel())
    assert scales == {20: ("linear", "epoch"), LOG_EPOCHS: ("log", "epoch (log scale)"),
                      1000: ("log", "epoch (log scale)")}
