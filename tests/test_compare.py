"""`evoprop compare`: arms × seeds as run directories, the table checked against them, reruns, errors.

Tiny scale: an MNIST subset, the 1-layer network, 2 arms × 2 seeds, 1 epoch (then extended to 2).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from evoprop.cli.main import main
from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.experiments.compare import compare, load_spec, plan, spec_from_mapping
from evoprop.report.stats import paired_difference, t_quantile

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "base": {"dataset": "mnist", "depth": 1, "limit_train": 2000, "limit_test": 500, "batch_size": 64, "epochs": 1},
    "arms": {"sgd": {"optimizer": "sgd", "lr": 0.01}, "hybrid": {"method": "hybrid", "strategy": "sep", "popsize": 8}},
    "seeds": 2,
    "baseline": "sgd",
    "target_f1": 0.5,
}


def quiet(_line):
    pass


def tiny_spec(tmp_path, data_dir, **changes):
    return spec_from_mapping({**TINY, "out": str(tmp_path / "cmp")}, changes={"data_dir": str(data_dir), **changes})


def read_csv(path):
    with open(path, newline="") as fh:
        return {row["method"]: row for row in csv.DictReader(fh)}


def mean_sd(values):
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def from_run_dirs(out: Path, arm: str, seeds, target: float) -> dict:
    """The numbers of one arm, recomputed from its run directories' summary.json and metrics.jsonl."""
    summaries = [json.loads((out / arm / f"seed{s}" / "summary.json").read_text()) for s in seeds]
    metrics = [[json.loads(line) for line in (out / arm / f"seed{s}" / "metrics.jsonl").read_text().splitlines()]
               for s in seeds]
    reached = [next((m for m in ms if m["test_f1"] >= target), None) for ms in metrics]
    return {
        "best": [s["best_test_f1"] for s in summaries],
        "honest": [s["val_selected_test_f1"] for s in summaries],
        "final": [ms[-1]["test_f1"] for ms in metrics],
        "spe": [sum(m["seconds"] for m in ms) / len(ms) for ms in metrics],
        "to_target": [None if r is None else r["epoch"] for r in reached],
        "seconds_to_target": [None if r is None else sum(m["seconds"] for m in ms if m["epoch"] <= r["epoch"])
                              for r, ms in zip(reached, metrics)],
    }


def check_table(out: Path, epochs: int) -> None:
    rows = read_csv(out / "table.csv")
    assert list(rows) == ["sgd", "hybrid"]
    truth = {arm: from_run_dirs(out, arm, [0, 1], 0.5) for arm in rows}
    for arm, row in rows.items():
        t = truth[arm]
        assert row["epochs"] == str(epochs) and row["seeds"] == "0;1" and row["status"] == "completed"
        for column, values in (("best_test_f1", t["best"]), ("val_selected_test_f1", t["honest"]),
                               ("final_test_f1", t["final"]), ("seconds_per_epoch", t["spe"])):
            mean, sd = mean_sd(values)
            assert float(row[column]) == pytest.approx(mean, rel=1e-5), (arm, column)
            assert float(row[column + "_std"]) == pytest.approx(sd, rel=1e-4, abs=1e-6), (arm, column)
        reached = [e for e in t["to_target"] if e is not None]
        assert row["reached_target"] == str(len(reached))
        if reached:
            assert float(row["epochs_to_target"]) == pytest.approx(sum(reached) / len(reached))
            secs = [s for s in t["seconds_to_target"] if s is not None]
            assert float(row["seconds_to_target"]) == pytest.approx(sum(secs) / len(secs), rel=1e-5)
    # paired with the baseline, seed by seed, on the honest number
    diffs = [h - s for h, s in zip(truth["hybrid"]["honest"], truth["sgd"]["honest"])]
    mean, sd = mean_sd(diffs)
    half = 12.706204736 * sd / math.sqrt(2)  # t(0.975, 1): Student-t tables
    hybrid = rows["hybrid"]
    assert hybrid["baseline"] == "sgd" and hybrid["paired_metric"] == "val_selected_test_f1"
    assert float(hybrid["diff_vs_baseline"]) == pytest.approx(mean, abs=1e-6)
    assert float(hybrid["diff_ci_low"]) == pytest.approx(mean - half, abs=1e-5)
    assert float(hybrid["diff_ci_high"]) == pytest.approx(mean + half, abs=1e-5)
    assert hybrid["seeds_won"] == str(sum(d > 0 for d in diffs)) and hybrid["seeds_paired"] == "2"
    assert rows["sgd"]["diff_vs_baseline"] == ""
    md = (out / "table.md").read_text()
    assert "Paired against sgd" in md and f"{mean:+.4f}" in md and "final test F1" in md and "F1 ≥ 0.5" in md
    for png in ("f1.png", "loss.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "Arm hybrid: method=hybrid, strategy=sep, popsize=8." in report and "## Machine" in report


@pytest.mark.slow
def test_tiny_comparison_matches_its_run_directories_and_reruns_skip_or_extend(tmp_path, data_dir):
    spec = tiny_spec(tmp_path, data_dir)
    out = spec.out
    result = compare(spec, echo=quiet)
    for arm in ("sgd", "hybrid"):
        for seed in (0, 1):
            config = yaml.safe_load((out / arm / f"seed{seed}" / "config.yaml").read_text())
            assert config["seed"] == seed and config["limit_train"] == 2000 and config["depth"] == 1
    assert yaml.safe_load((out / "hybrid" / "seed0" / "config.yaml").read_text())["method"] == "hybrid"
    assert [r.method for r in result.rows] == ["sgd", "hybrid"]
    check_table(out, epochs=1)

    metrics = {p: p.read_bytes() for p in out.glob("*/seed*/metrics.jsonl")}
    assert [p.action for p in plan(spec)] == ["skip"] * 4
    compare(spec, echo=quiet)  # a finished comparison is not rerun
    assert {p: p.read_bytes() for p in out.glob("*/seed*/metrics.jsonl")} == metrics

    longer = tiny_spec(tmp_path, data_dir, epochs=2)
    assert [(p.action, p.done, p.remaining) for p in plan(longer)] == [("extend", 1, 1)] * 4
    compare(longer, echo=quiet)
    for path, first in metrics.items():
        text = path.read_bytes()
        assert text.startswith(first) and len(text.splitlines()) == 2  # extended, the first epoch kept
    check_table(out, epochs=2)


@pytest.mark.slow
def test_an_interrupted_comparison_resumes_where_it_stopped(tmp_path, data_dir):
    spec = spec_from_mapping({**TINY, "arms": {"sgd": {}}, "seeds": 1, "base": {**TINY["base"], "epochs": 2},
                              "out": str(tmp_path / "cmp")}, changes={"data_dir": str(data_dir)})

    def interrupt(line):
        if line.startswith("  sgd seed 0: epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(spec, echo=interrupt)
    [p] = plan(spec)
    assert (p.action, p.done) == ("resume", 1)
    compare(spec, echo=quiet)
    summary = json.loads((spec.out / "sgd" / "seed0" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2


BAD = [
    ({"nosuch": 1}, "unknown key(s) nosuch; valid: title, base, arms, seeds, baseline, target_f1, out"),
    ({"arms": {}}, "arms must be a non-empty mapping"),
    ({"arms": {"sgd": {"nosuch": 1}}}, "arm 'sgd': unknown setting(s) nosuch"),
    ({"arms": {"sgd": {"lr": -1}}}, "arm 'sgd': lr must be a number > 0"),
    ({"arms": {"sgd": {"optimizer": "nosuch"}}}, "arm 'sgd': unknown optimizer 'nosuch'"),
    ({"arms": {"a/b": {}}}, "arm name 'a/b' must be letters, digits"),
    ({"arms": {"sgd": {"seed": 3}}}, "arm 'sgd' sets seed"),
    ({"arms": {"sgd": {"epochs": 3}}}, "arm 'sgd' sets epochs; every arm runs the same epochs"),
    ({"arms": {"sgd": [1, 2]}}, "arm 'sgd' must be a mapping of train settings"),
    ({"base": {"nosuch": 1}}, "base: unknown setting(s) nosuch"),
    ({"base": {"seed": 1}}, "base sets seed"),
    ({"base": {**TINY["base"], "depth": 0}}, "base: depth must be an integer in [1, 1000]"),
    ({"baseline": "adam"}, "unknown baseline 'adam'; arms: sgd, hybrid"),
    ({"seeds": 0}, "seeds must be a positive count or a list of seeds"),
    ({"seeds": [1, 1]}, "seeds lists a seed twice"),
    ({"seeds": "three"}, "seeds must be a positive count or a non-empty list"),
    ({"target_f1": 1.5}, "target_f1 must be a macro-F1 in (0, 1]"),
]


@pytest.mark.parametrize("change, words", BAD, ids=[w.split(";")[0][:40] for _, w in BAD])
def test_mistakes_in_the_file_are_one_line_errors(change, words, tmp_path, capsys):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({**TINY, "out": str(tmp_path / "cmp"), **change}, sort_keys=False))
    assert main(["compare", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"evoprop: error: {path}: ") and err.count("\n") == 1, err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "cmp").exists()  # nothing ran


@pytest.mark.parametrize("args, text, words", [
    (["--seeds", "0"], None, "--seeds must be a positive integer"),
    (["--epochs", "0"], None, "--epochs must be a positive integer"),
    (["--limit-train", "-3"], None, "limit_train must be a positive integer"),
    ([], "arms: [unclosed", "is not valid YAML"),
    ([], "- a list", "must hold a mapping"),
])
def test_mistakes_on_the_command_line_are_one_line_errors(args, text, words, tmp_path, capsys):
    path = tmp_path / "cmp.yaml"
    tiny = yaml.safe_dump({**TINY, "out": str(tmp_path / "cmp")}, sort_keys=False)
    path.write_text(text if text is not None else tiny)
    assert main(["compare", "--config", str(path), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("evoprop: error: ") and err.count("\n") == 1 and words in err, err
    assert main(["compare", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read config file" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_directory_with_other_settings_is_refused_before_anything_runs(tmp_path, data_dir, capsys):
    compare(tiny_spec(tmp_path, data_dir), echo=quiet)
    path = tmp_path / "cmp.yaml"
    other = {**TINY, "arms": {**TINY["arms"], "sgd": {"optimizer": "sgd", "lr": 0.5}}, "out": str(tmp_path / "cmp")}
    path.write_text(yaml.safe_dump(other, sort_keys=False))
    assert main(["compare", "--config", str(path), "--data-dir", str(data_dir), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "holds a run with other settings (lr: 0.01 there, 0.5 requested)" in err and err.count("\n") == 1


def test_command_line_options_override_the_file_and_the_arms(tmp_path):
    path = tmp_path / "cmp.yaml"
    file = {**TINY, "arms": {"sgd": {"limit_train": 300}}, "out": "elsewhere"}
    path.write_text(yaml.safe_dump(file, sort_keys=False))
    spec = load_spec(path, seeds=3, out=tmp_path / "here", changes={"epochs": 4, "limit_train": 100})
    assert spec.seeds == [0, 1, 2] and spec.out == tmp_path / "here" and spec.epochs == 4
    assert [(p.config.seed, p.config.epochs, p.config.limit_train) for p in plan(spec)] == \
        [(0, 4, 100), (1, 4, 100), (2, 4, 100)]
    assert [p.path for p in plan(spec)] == [tmp_path / "here" / "sgd" / f"seed{s}" for s in range(3)]
    default = load_spec(path)
    assert default.out == Path("elsewhere") and default.baseline == "sgd"
    no_out = tmp_path / "study.yaml"
    no_out.write_text(yaml.safe_dump({"arms": {"a": {}, "b": {"lr": 0.1}}, "seeds": [3, 7]}, sort_keys=False))
    spec = load_spec(no_out)
    assert spec.out == Path("comparisons/study") and spec.baseline == "a" and spec.seeds == [3, 7]


def test_t_quantiles_match_the_tables_and_the_paired_interval():
    # Student-t 0.975 quantiles (e.g. Abramowitz & Stegun, table 26.10)
    for df, t in ((1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (10, 2.2281), (29, 2.0452),
                  (120, 1.9799)):
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)
    assert t_quantile(0.95, 5) == pytest.approx(2.0150, abs=1e-4)
    p = paired_difference({0: 0.93, 1: 0.95, 2: 0.90, 3: 0.94}, {0: 0.92, 1: 0.95, 2: 0.91, 3: 0.90, 9: 0.5})
    assert p.seeds == [0, 1, 2, 3] and p.diffs == pytest.approx([0.01, 0.0, -0.01, 0.04])
    assert (p.won, p.tied, p.lost) == (2, 1, 1)
    sd = math.sqrt(sum((d - 0.01) ** 2 for d in (0.01, 0.0, -0.01, 0.04)) / 3)
    assert p.mean == pytest.approx(0.01) and p.high - p.mean == pytest.approx(3.18245 * sd / 2, rel=1e-5)
    single = paired_difference({0: 0.9}, {0: 0.8})
    assert single.mean == pytest.approx(0.1) and single.low is None and single.high is None


def readme_compare_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()
            if line.startswith("evoprop compare --config examples/compare-quick.yaml")]


@pytest.mark.slow
def test_the_readme_compare_example_runs_as_written(tmp_path, data_dir, monkeypatch, capsys):
    [command] = readme_compare_commands()
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "compare-quick.yaml", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVOPROP_DATA", str(data_dir))
    assert main(shlex.split(command)[1:]) == 0
    out = capsys.readouterr().out
    assert "Paired against sgd" in out
    assert (tmp_path / "comparisons" / "quick" / "table.md").read_text() in out
    assert {p.parent.name + "/" + p.name for p in (tmp_path / "comparisons" / "quick").glob("*/seed*")} == \
        {"sgd/seed0", "sgd/seed1", "hybrid/seed0", "hybrid/seed1"}


@pytest.mark.skipif("combine" not in {f.name for f in dataclasses.fields(TrainConfig)},
                    reason="examples/compare-hybrid.yaml uses the hybrid's combine rules (issue 20, item 1)")
def test_the_studys_file_plans_every_rule_against_sgd(tmp_path):
    spec = load_spec(REPO / "examples" / "compare-hybrid.yaml", out=tmp_path)
    assert list(spec.arms) == ["sgd", "paper", "sync", "elitist", "inject", "disjoint", "elitist-f1"]
    assert spec.baseline == "sgd" and len(spec.seeds) >= 5 and spec.epochs >= 20
    planned = plan(spec)
    assert len(planned) == 7 * len(spec.seeds) and all(p.action == "new" for p in planned)
    assert {p.config.combine for p in planned if p.config.method == "hybrid"} == \
        {"paper", "sync", "elitist", "inject", "disjoint"}
    hybrid = next(p.config for p in planned if p.arm == "elitist-f1")
    assert (hybrid.popsize, hybrid.es_batch_size, hybrid.lr, hybrid.batch_size, hybrid.depth) == \
        (1000, 256, 0.01, 64, 10)



@pytest.mark.parametrize("name, dataset, baseline, popsize", [
    ("compare-hybrid-cifar", "cifar10-gray", "sgd", 800), ("compare-hybrid-adam", "mnist", "adam", 1000)])
def test_the_follow_up_files_pit_the_best_two_rules_against_the_gradient_optimizer(tmp_path, name, dataset,
                                                                                   baseline, popsize):
    spec = load_spec(REPO / "examples" / f"{name}.yaml", out=tmp_path)
    assert list(spec.arms) == [baseline, "elitist", "inject"] and spec.baseline == baseline
    assert len(spec.seeds) == 3 and spec.epochs >= 20
    planned = plan(spec)
    assert {p.config.dataset for p in planned} == {dataset} and all(p.config.depth == 10 for p in planned)
    assert {(p.config.combine, p.config.popsize) for p in planned if p.config.method == "hybrid"} == \
        {("elitist", popsize), ("inject", popsize)}
    assert {p.config.optimizer for p in planned} == {"adam" if baseline == "adam" else "sgd"}

def test_a_config_error_names_the_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        spec_from_mapping({"arms": {"x": {"depth": 0}}}, source="mine.yaml")
    assert str(info.value).startswith("mine.yaml: arm 'x': depth must be an integer in [1, 1000]")


def test_the_readme_shows_the_quick_example_file_as_it_is():
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    [shown] = [b for b in blocks if b.startswith("# examples/compare-quick.yaml")]
    assert shown == (REPO / "examples" / "compare-quick.yaml").read_text()
