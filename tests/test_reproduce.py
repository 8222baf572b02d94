"""`evoprop reproduce`: the paper's tables, end to end at tiny scale; skip / resume / extend; errors.

Tiny scale: data subsets (limit_train / limit_test), small populations and hidden layers, 1-2
epochs, through ``reproduce(..., overrides=...)``. The paper's own settings are checked on the
configs, not run.
"""

from __future__ import annotations

import csv
import json

import pytest

from evoprop.cli.main import main
from evoprop.errors import ConfigError, EvopropError
from evoprop.experiments import TABLES, get_tables, plan, reproduce
from evoprop.experiments.paper_tables import ROW_IDS

FILES = ("table.md", "table.csv", "f1.png", "loss.png", "report.md")
REQUIRED_COLUMNS = ["method", "paper_f1", "paper_epoch", "best_test_f1", "best_epoch", "val_selected_test_f1",
                    "seconds", "epochs"]
TINY = {"popsize": 12, "width": 16, "strategy_options": {}}


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def quiet(_line):
    pass


def check_table_folder(folder, table_name, epochs, row_ids=None):
    table = TABLES[table_name]
    paper_rows = table.select(row_ids)
    for name in FILES:
        assert (folder / name).is_file(), name
    for png in ("f1.png", "loss.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(folder / "table.csv")
    assert list(rows[0])[: len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS
    assert [r["row_id"] for r in rows] == [p.id for p in paper_rows]
    for r, paper in zip(rows, paper_rows):
        assert r["method"] == paper.label
        assert r["paper_f1"] == ("" if paper.paper_f1 is None else f"{paper.paper_f1:g}")
        assert r["paper_epoch"] == ("" if paper.paper_epoch is None else str(paper.paper_epoch))
        best, honest = float(r["best_test_f1"]), float(r["val_selected_test_f1"])
        assert 0.0 <= honest <= best <= 1.0  # the test-selected number can only flatter
        assert 1 <= int(r["best_epoch"]) <= epochs and int(r["epochs"]) == epochs
        assert float(r["seconds"]) > 0 and r["status"] == "completed"
    md = (folder / "table.md").read_text()
    report = (folder / "report.md").read_text()
    assert f"Table {table.number}" in md and "val-selected" in md
    for paper in paper_rows:
        assert paper.label in md and (paper.paper_f1 is None or f"{paper.paper_f1:.3f}" in md)
    assert "![Test macro-F1 per epoch](f1.png)" in report and "![Loss per epoch](loss.png)" in report
    assert "## Machine" in report and "## Settings" in report and "torch" in report
    return rows


@pytest.mark.slow
def test_table3_end_to_end_at_tiny_scale(data_dir, tmp_path):
    out = tmp_path / "repro"
    [result] = reproduce("table3", out, epochs=2, data_dir=data_dir, limit_train=600, limit_test=300,
                         overrides={**TINY, "strategy": "sep"}, echo=quiet)
    assert result.dir == out / "table3"
    rows = check_table_folder(result.dir, "table3", epochs=2)
    assert [r["strategy"] for r in rows[:2]] == ["sep", "sep"]  # the resolved strategy is shown
    for row in TABLES["table3"].rows:
        run = out / "table3" / row.id / "seed0"
        assert (run / "checkpoint.pt").is_file() and (run / "config.yaml").is_file()
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
        marker = json.loads((run / "reproduction.json").read_text())
        assert marker["table"] == "table3" and marker["row"] == row.id and marker["paper_f1"] == row.paper_f1
    for rule in ("elitist", "inject"):  # the combination rules' rows beside the paper's Algorithm 2
        assert f"combine: {rule}" in (out / "table3" / f"hybrid-sgd-{rule}" / "seed0" / "config.yaml").read_text()
    md = (result.dir / "table.md").read_text()
    assert "| hybrid (SGD), elitist | — | — |" in md and "sep P=12 (combine inject)" in md
    assert "## Paired against SGD lr 0.01" in md  # every row paired with the baseline row, seed by seed
    report = (result.dir / "report.md").read_text()
    assert "sep, P=12" in report and "popsize=12" in report  # overrides are stated: not the paper's table
    assert "combine elitist" in report
    assert "evoprop reproduce table3 --epochs 2" in report


@pytest.mark.slow
def test_table1_end_to_end_with_the_papers_cma_es(data_dir, tmp_path):
    printed = ["cma-es", "adam", "sgd-0.001", "sgd-0.01"]  # the corrected CMA-ES rows: tests of their own below
    [result] = reproduce("table1", tmp_path, epochs=2, rows=printed, data_dir=data_dir, limit_train=2000,
                         limit_test=500, overrides={"popsize": 12}, echo=quiet)
    rows = check_table_folder(result.dir, "table1", epochs=2, row_ids=printed)
    by_id = {r["row_id"]: r for r in rows}
    assert by_id["cma-es"]["strategy"] == "paper" and by_id["cma-es"]["popsize"] == "12"
    assert float(by_id["adam"]["best_test_f1"]) > 0.3  # well above chance even at this scale
    config = (tmp_path / "table1" / "cma-es" / "seed0" / "config.yaml").read_text()
    assert "generations_per_epoch: 1" in config and "method: es" in config
    metrics = [json.loads(line) for line in (tmp_path / "table1" / "cma-es" / "seed0" / "metrics.jsonl").open()]
    assert [m["generations"] for m in metrics] == [1, 2]  # one generation per epoch


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table2", "table4"])
def test_cifar_tables_end_to_end_say_the_data_is_a_reconstruction(name, data_dir, cifar_archive, tmp_path):
    [result] = reproduce(name, tmp_path, epochs=1, data_dir=data_dir, limit_train=400, limit_test=200,
                         overrides={**TINY, "strategy": "sep"}, echo=quiet)
    check_table_folder(result.dir, name, epochs=1)
    note = read_csv(result.dir / "table.csv")[0]["dataset_note"]
    if note:  # the shared CIFAR-10 is a JPEG-decoded reconstruction: every result must say so
        assert note in (result.dir / "table.md").read_text()
        assert note in (result.dir / "report.md").read_text()


@pytest.mark.slow
def test_rerun_skips_extends_and_truncates(data_dir, tmp_path):
    common = dict(rows=["adam"], data_dir=data_dir, limit_train=500, limit_test=200, echo=quiet)
    reproduce("table1", tmp_path, epochs=1, **common)
    metrics = tmp_path / "table1" / "adam" / "seed0" / "metrics.jsonl"
    first = metrics.read_text()
    assert [p.action for p in plan("table1", tmp_path, epochs=1, **{k: v for k, v in common.items() if k != "echo"})] \
        == ["skip"]
    reproduce("table1", tmp_path, epochs=1, **common)
    assert metrics.read_text() == first  # a finished row is not rerun
    [p] = plan("table1", tmp_path, epochs=3, rows=["adam"], data_dir=data_dir, limit_train=500, limit_test=200)
    assert (p.action, p.done, p.remaining) == ("extend", 1, 2)
    [result] = reproduce("table1", tmp_path, epochs=3, **common)
    assert metrics.read_text().startswith(first) and len(metrics.read_text().splitlines()) == 3
    assert read_csv(result.files["table_csv"])[0]["epochs"] == "3"
    [result] = reproduce("table1", tmp_path, epochs=2, **common)  # a shorter table reads the first 2 epochs
    assert read_csv(result.files["table_csv"])[0]["epochs"] == "2"
    assert len(metrics.read_text().splitlines()) == 3


def test_an_interrupted_row_resumes(data_dir, tmp_path):
    common = dict(rows=["sgd-0.01"], data_dir=data_dir, limit_train=500, limit_test=200)

    def interrupt(line):
        if line.startswith("  sgd-0.01 seed 0: epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reproduce("table1", tmp_path, epochs=2, echo=interrupt, **common)
    [p] = plan("table1", tmp_path, epochs=2, **common)
    assert (p.action, p.done) == ("resume", 1)
    [result] = reproduce("table1", tmp_path, epochs=2, echo=quiet, **common)
    summary = json.loads((tmp_path / "table1" / "sgd-0.01" / "seed0" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert len(json.loads((p.path / "reproduction.json").read_text())["sessions"]) == 2


def test_a_row_without_its_checkpoint_is_not_started_over(data_dir, tmp_path):
    """Run data kept without checkpoint.pt (as committed results are): extending or resuming it would start
    again from epoch 1 over the epochs recorded, so the plan refuses, before anything runs, in one line."""
    common = dict(rows=["sgd-0.01"], data_dir=data_dir, limit_train=500, limit_test=200)
    reproduce("table1", tmp_path, epochs=1, echo=quiet, **common)
    seed0 = tmp_path / "table1" / "sgd-0.01" / "seed0"
    (seed0 / "checkpoint.pt").unlink()
    kept = (seed0 / "metrics.jsonl").read_text()
    assert [p.action for p in plan("table1", tmp_path, epochs=1, **common)] == ["skip"]  # reading needs no checkpoint
    for action, summary in (("extend", None), ("resume", {"status": "interrupted"})):
        if summary:
            data = json.loads((seed0 / "summary.json").read_text())
            (seed0 / "summary.json").write_text(json.dumps({**data, **summary}))
        with pytest.raises(EvopropError, match="records 1 epoch.*no checkpoint.pt, so it cannot be continued"):
            plan("table1", tmp_path, epochs=2, **common)
        with pytest.raises(EvopropError, match="cannot be continued"):
            reproduce("table1", tmp_path, epochs=2, echo=quiet, **common)
        assert (seed0 / "metrics.jsonl").read_text() == kept, action


@pytest.mark.slow
def test_seeds_give_mean_and_sample_std_with_an_overall_bar(data_dir, tmp_path, capsys):
    [result] = reproduce("table1", tmp_path, epochs=1, rows=["sgd-0.01"], seed=3, seeds=2, data_dir=data_dir,
                         limit_train=500, limit_test=200, echo=quiet, progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "table1 sgd-0.01 s4" in err and "F1 0." in err  # rows x epochs, current row, its F1
    assert (tmp_path / "table1" / "sgd-0.01" / "seed3").is_dir() and (tmp_path / "table1" / "sgd-0.01" / "seed4").is_dir()
    [row] = read_csv(result.files["table_csv"])
    assert row["seeds"] == "3;4" and row["runs"] == "2" and row["best_test_f1_std"] != ""
    assert "±" in result.files["table_md"].read_text()


def test_a_diverging_row_is_recorded_and_not_rerun(data_dir, tmp_path):
    lines = []
    common = dict(rows=["sgd-0.01"], data_dir=data_dir, limit_train=500, limit_test=200, overrides={"lr": 1e38})
    [result] = reproduce("table1", tmp_path, epochs=2, echo=lines.append, **common)
    assert any("diverged" in line for line in lines)
    assert "diverged" in result.files["table_md"].read_text()
    [p] = plan("table1", tmp_path, epochs=2, **common)
    assert p.action == "diverged" and p.remaining == 0


def test_every_table_and_row_of_the_paper_is_there():
    assert list(TABLES) == ["table1", "table2", "table3", "table4"]
    assert len(get_tables("all")) == 4 and get_tables("3") == [TABLES["table3"]]
    expected = {
        "table1": {"cma-es": (0.918, 32), "cma-es-csa": (0.918, 32), "cma-es-sep": (0.918, 32),
                   "cma-es-sep-l2": (0.918, 32), "adam": (0.924, 19), "sgd-0.001": (0.907, None),
                   "sgd-0.01": (0.922, 749)},
        "table2": {"cma-es": (0.317, 33), "cma-es-csa": (0.317, 33), "cma-es-sep": (0.317, 33), "adam": (0.299, 63),
                   "sgd-0.001": (0.312, 223), "sgd-0.01": (0.311, 64)},
        "table3": {"hybrid-sgd": (0.982, 10), "hybrid-sgd-elitist": (None, None), "hybrid-sgd-inject": (None, None),
                   "hybrid-adam": (0.980, 18), "hybrid-adam-elitist": (None, None), "hybrid-adam-inject": (None, None),
                   "adam": (0.982, 82), "sgd-0.001": (0.963, 118), "sgd-0.01": (0.970, 24)},
        "table4": {"hybrid-sgd": (0.327, 8), "hybrid-sgd-elitist": (None, None), "hybrid-sgd-inject": (None, None),
                   "adam": (0.402, 27), "sgd-0.001": (0.436, 164), "sgd-0.01": (0.442, 40)},
    }
    for name, rows in expected.items():
        assert {r.id: (r.paper_f1, r.paper_epoch) for r in TABLES[name].rows} == rows
        for row in TABLES[name].rows:
            assert row.id in ROW_IDS
            config = TABLES[name].config(row).validate()
            assert (config.epochs, config.init, config.split, config.val_fraction) == (1000, "glorot", "paper", 0.1)


@pytest.mark.parametrize("table, row, expected", [
    ("table1", "cma-es", dict(dataset="mnist", depth=1, method="es", strategy="paper", popsize=5000,
                              es_batch_size=256, generations_per_epoch=1)),
    ("table1", "adam", dict(optimizer="adam", lr=0.001, batch_size=256, method="gradient")),
    ("table1", "sgd-0.001", dict(optimizer="sgd", lr=0.001, batch_size=256)),
    ("table2", "cma-es", dict(dataset="cifar10-gray", depth=1, method="es", popsize=4000, es_batch_size=256)),
    ("table2", "sgd-0.01", dict(optimizer="sgd", lr=0.01, batch_size=64)),
    ("table3", "hybrid-sgd", dict(dataset="mnist", depth=10, width=200, method="hybrid", strategy="auto",
                                  popsize=1000, es_batch_size=256, optimizer="sgd", lr=0.01, batch_size=64)),
    ("table3", "hybrid-adam", dict(method="hybrid", optimizer="adam", lr=0.01, batch_size=64, popsize=1000)),
    ("table3", "adam", dict(optimizer="adam", lr=0.001, batch_size=64)),
    ("table4", "hybrid-sgd", dict(dataset="cifar10-gray", depth=10, width=200, method="hybrid", popsize=800)),
    # the corrected CMA-ES rows: standard CSA in (3)-(4), one pass over the training data per epoch
    ("table1", "cma-es", dict(strategy="paper", strategy_options={}, generations_per_epoch=1)),
    ("table1", "cma-es-csa", dict(method="es", strategy="paper", strategy_options={"faithful": False}, popsize=5000,
                                  es_batch_size=256, generations_per_epoch=None)),
    ("table1", "cma-es-sep", dict(method="es", strategy="sep", strategy_options={}, popsize=5000,
                                  es_batch_size=256, generations_per_epoch=None, es_weight_decay=0.0)),
    # beside it (not the minimal correction): the same with an L2 term in the fitness, λ chosen on validation
    ("table1", "cma-es-sep-l2", dict(method="es", strategy="sep", strategy_options={}, popsize=5000,
                                     es_batch_size=256, generations_per_epoch=None, es_weight_decay=1e-4)),
    ("table2", "cma-es-csa", dict(dataset="cifar10-gray", strategy="paper", strategy_options={"faithful": False},
                                  popsize=4000, generations_per_epoch=None)),
    ("table2", "cma-es-sep", dict(dataset="cifar10-gray", strategy="sep", popsize=4000, generations_per_epoch=None)),
    # the combination rules beside the paper's Algorithm 2 (combine "paper")
    ("table3", "hybrid-sgd", dict(combine="paper")),
    ("table3", "hybrid-sgd-elitist", dict(method="hybrid", strategy="auto", combine="elitist", popsize=1000,
                                          es_batch_size=256, optimizer="sgd", lr=0.01, batch_size=64)),
    ("table3", "hybrid-adam-inject", dict(method="hybrid", combine="inject", optimizer="adam", lr=0.01,
                                          popsize=1000)),
    ("table4", "hybrid-sgd-elitist", dict(dataset="cifar10-gray", combine="elitist", popsize=800)),
    ("table4", "hybrid-sgd-inject", dict(dataset="cifar10-gray", combine="inject", popsize=800)),
])
def test_rows_carry_the_papers_settings(table, row, expected):
    config = TABLES[table].config(row)
    assert {k: getattr(config, k) for k in expected} == expected


def test_the_rule_rows_follow_hybrid_rules_and_carry_no_paper_numbers():
    from evoprop.experiments.paper_tables import HYBRID_RULES

    assert HYBRID_RULES == ("elitist", "inject")  # the default; the lead picks from the hybrid study
    for name, paper_rows in (("table3", ("hybrid-sgd", "hybrid-adam")), ("table4", ("hybrid-sgd",))):
        table = TABLES[name]
        for paper_id in paper_rows:
            paper = table.config(paper_id).to_dict()
            for rule in HYBRID_RULES:
                row = table.row(f"{paper_id}-{rule}")
                assert (row.paper_f1, row.paper_epoch) == (None, None) and row.label.endswith(f", {rule}")
                assert {k: v for k, v in table.config(row).to_dict().items() if v != paper[k]} == {"combine": rule}


def test_dry_run_lists_the_corrected_and_rule_rows_with_their_settings(capsys, tmp_path):
    assert main(["reproduce", "table1", "--epochs", "1000", "--seeds", "3", "--out", str(tmp_path), "--dry-run"]) == 0
    out, _ = capsys.readouterr()
    assert "table1 cma-es: CMA-ES (as printed): es paper P=5000, 1 gen/epoch\n" in out
    assert "table1 cma-es-csa: CMA-ES (CSA, 1 epoch = 1 pass): es paper P=5000, one pass/epoch, faithful=False\n" in out
    assert "table1 cma-es-sep: sep-CMA-ES (1 epoch = 1 pass): es sep P=5000, one pass/epoch\n" in out
    assert ("table1 cma-es-sep-l2: sep-CMA-ES + L2 0.0001 (1 epoch = 1 pass): es sep P=5000, one pass/epoch, "
            "ES fitness + L2 0.0001\n") in out
    assert "[21/21] table1 sgd-0.01 seed 2: new run, 1000 epochs" in out and "21000 epochs to run" in out
    assert main(["reproduce", "table4", "--epochs", "200", "--out", str(tmp_path), "--dry-run"]) == 0
    out, _ = capsys.readouterr()
    assert "table4 hybrid-sgd: hybrid (SGD): hybrid auto P=800 + sgd lr 0.01\n" in out
    assert "table4 hybrid-sgd-elitist: hybrid (SGD), elitist: hybrid auto P=800 + sgd lr 0.01, combine elitist\n" in out
    assert "table4 hybrid-sgd-inject: hybrid (SGD), inject: hybrid auto P=800 + sgd lr 0.01, combine inject\n" in out
    assert not (tmp_path / "table1").exists()  # a dry run writes nothing


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


@pytest.mark.slow
def test_the_corrected_cma_es_row_learns_where_the_printed_one_stalls(data_dir, tmp_path):
    # 1,024 training images: 4 ES mini-batches of 256, so the corrected row makes 4 generations per epoch
    [result] = reproduce("table1", tmp_path, epochs=3, rows=["cma-es", "cma-es-sep", "cma-es-sep-l2"], data_dir=data_dir,
                         limit_train=1024, limit_test=500, overrides={"popsize": 20}, echo=quiet)
    printed, corrected = (_metrics(tmp_path / "table1" / row / "seed0") for row in ("cma-es", "cma-es-sep"))
    assert [m["generations"] for m in printed] == [1, 2, 3] and [m["generations"] for m in corrected] == [4, 8, 12]
    # as printed, σ collapses (e^(||p_σ||/E||N|| - 1) < 1 every generation) and the loss barely moves
    assert printed[2]["sigma"] < printed[0]["sigma"] / 3
    assert printed[0]["test_loss"] - printed[2]["test_loss"] < 0.03
    # corrected: σ held by standard CSA, and the test loss falls and the F1 rises epoch after epoch
    assert corrected[2]["sigma"] > 0.8 * corrected[0]["sigma"]
    losses = [m["test_loss"] for m in corrected]
    assert losses[0] > losses[1] > losses[2] and losses[0] - losses[2] > 0.1
    assert corrected[2]["test_f1"] > corrected[0]["test_f1"] + 0.05
    rows = {r["row_id"]: r for r in read_csv(result.files["table_csv"])}
    assert rows["cma-es-sep"]["es_options"] == "one pass/epoch" and rows["cma-es"]["es_options"] == "1 gen/epoch"
    assert rows["cma-es-sep-l2"]["es_options"] == "one pass/epoch, ES fitness + L2 0.0001"
    assert "sep P=20 (one pass/epoch)" in result.files["table_md"].read_text()


@pytest.mark.slow
def test_the_papers_cma_es_with_standard_csa_learns(data_dir, tmp_path):
    # the minimal correction itself: the paper's strategy (full covariance, d = 7,850), faithful=False
    reproduce("table1", tmp_path, epochs=3, rows=["cma-es-csa"], data_dir=data_dir, limit_train=1024,
              limit_test=500, overrides={"popsize": 20}, echo=quiet)
    run = tmp_path / "table1" / "cma-es-csa" / "seed0"
    assert "faithful: false" in (run / "config.yaml").read_text()
    metrics = _metrics(run)
    assert [m["generations"] for m in metrics] == [4, 8, 12]
    assert 0.8 < metrics[2]["sigma"] / metrics[0]["sigma"] < 1.25
    losses = [m["test_loss"] for m in metrics]
    assert losses[0] > losses[1] > losses[2] and losses[0] - losses[2] > 0.05


def test_options_change_every_row_and_the_layout_is_stable(tmp_path):
    planned = plan("all", tmp_path, epochs=5, rows=["adam", "sgd-0.01"], seed=2, seeds=2, init="lecun",
                   device="cpu")
    assert len(planned) == 4 * 2 * 2
    assert planned[0].path == tmp_path / "table1" / "adam" / "seed2"
    assert all(p.action == "new" and p.remaining == 5 for p in planned)
    assert {(p.config.init, p.config.device, p.config.epochs) for p in planned} == {("lecun", "cpu", 5)}
    assert [p.row.id for p in plan("table4", tmp_path, rows="hybrid-sgd,adam")] == ["hybrid-sgd", "adam"]


@pytest.mark.parametrize("kwargs, words", [
    (dict(table="table9"), "unknown table 'table9'; valid: table1, table2, table3, table4, all"),
    (dict(table="table4", rows=["hybrid-adam"]),
     "unknown row 'hybrid-adam' for table4; valid: hybrid-sgd, hybrid-sgd-elitist, hybrid-sgd-inject, adam"),
    (dict(table="all", rows=["nosuch"]), "unknown row 'nosuch' for the tables; valid: cma-es, cma-es-csa, cma-es-sep, cma-es-sep-l2, adam"),
    (dict(table="table1", epochs=0), "epochs must be a positive integer"),
    (dict(table="table1", seeds=0), "seeds must be a positive integer"),
    (dict(table="table1", init="nosuch"), "unknown init 'nosuch'"),
    (dict(table="table1", overrides={"nosuch": 1}), "unknown override(s) nosuch"),
])
def test_mistakes_are_one_line_errors(kwargs, words, tmp_path):
    with pytest.raises(ConfigError) as info:
        plan(out=tmp_path, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_a_run_dir_with_other_settings_is_refused(data_dir, tmp_path):
    reproduce("table1", tmp_path, epochs=1, rows=["adam"], data_dir=data_dir, limit_train=300, limit_test=100,
              echo=quiet)
    with pytest.raises(EvopropError, match=r"holds a run with other settings \(init: glorot there, lecun requested\)"):
        plan("table1", tmp_path, epochs=1, rows=["adam"], data_dir=data_dir, limit_train=300, limit_test=100,
             init="lecun")


@pytest.mark.slow
def test_cli_reproduce_prints_the_table_and_resumes(capsys, data_dir, tmp_path):
    args = ["reproduce", "table1", "--epochs", "1", "--rows", "adam", "--rows", "sgd-0.01", "--out", str(tmp_path),
            "--data-dir", str(data_dir), "--limit-train", "500", "--limit-test", "200", "--no-progress"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "| Adam | 0.924 | 19 |" in out and "| SGD lr 0.01 | 0.922 | 749 |" in out
    assert "table.csv" in out and "[1/2] table1 adam seed 0: new run, 1 epoch" in err
    assert main(args[:-1] + ["--dry-run"]) == 0
    out, _ = capsys.readouterr()
    assert "done (1 epoch), not rerun" in out and "0 epochs to run" in out


@pytest.mark.parametrize("args, words", [
    (["reproduce", "table5"], "evoprop: error: unknown table 'table5'; valid: table1, table2, table3, table4, all"),
    (["reproduce", "table2", "--rows", "hybrid-sgd"], "evoprop: error: unknown row 'hybrid-sgd' for table2"),
    (["reproduce", "table1", "--epochs", "x"], "evoprop: error:"),
])
def test_cli_mistakes(capsys, args, words):
    status = main(args + ["--dry-run"])
    _, err = capsys.readouterr()
    assert status != 0 and words in err and len(err.strip().splitlines()) == 1


def test_cli_help_names_tables_rows_and_options(capsys):
    assert main(["reproduce", "--help"]) == 0
    out, _ = capsys.readouterr()
    for word in ("--epochs", "--rows", "--out", "--seed", "--seeds", "--device", "--init", "table1", "cma-es",
                 "hybrid-adam", "sgd-0.001", "report.md"):
        assert word in out, word
