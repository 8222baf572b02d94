"""``evoprop tune``: an Optuna study over evoprop training settings, from a tune config file."""

from __future__ import annotations

import click

from evoprop.cli.train import setting_options
from evoprop.runs import RunDir
from evoprop.tune.settings import METRICS, PRUNERS, SAMPLERS, load_tune_config
from evoprop.tune.storage import shown


@click.command("tune")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), required=True,
              help="Tune config file (YAML/JSON) with sections train, search_space and study; "
                   "see examples/tune-mnist.yaml.")
@click.option("--n-trials", type=int, metavar="N",
              help="Finished (complete or pruned) trials the study should hold, over all its workers and earlier "
                   "runs; run again with a larger N to add trials [default: study.n_trials, else 20].")
@click.option("--storage", metavar="URL",
              help="Where the study lives: sqlite:///FILE.db, any SQLAlchemy URL (postgresql://...), or a journal "
                   "file path such as study.log [default: sqlite:///OUT/study.db].")
@click.option("--study-name", metavar="NAME", help="Study name in the storage [default: study.name, else the config file's name].")
@click.option("--n-jobs", type=int, metavar="N",
              help="Worker processes this command starts on the study (more can join from other shells or "
                   "machines with the same --storage) [default: 1].")
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Folder for the trials' run directories (OUT/trials/trial-NNNN), their figures and best.yaml "
                   "[default: tune/NAME].")
@click.option("--artifact-dir", type=click.Path(file_okay=False),
              help="Folder of the figures uploaded for Optuna Dashboard [default: OUT/artifacts].")
@click.option("--sampler", type=click.Choice(SAMPLERS), help="Optuna sampler [default: study.sampler, else tpe].")
@click.option("--sampler-seed", type=int, metavar="N",
              help="Seed of the sampler in the process that creates the study; processes joining it derive "
                   "their own, so they never replay its proposals [default: study.seed, else 0].")
@click.option("--pruner", type=click.Choice(PRUNERS), help="Pruner fed with the per-epoch metric [default: median].")
@click.option("--metric", type=click.Choice(METRICS),
              help="Per-epoch metric a trial is scored on (never a test-split one) [default: val_f1].")
@click.option("--human", type=click.Choice(["rate", "compare", "off"]),
              help="Human-in-the-loop in Optuna Dashboard (evoprop dashboard STORAGE): rate: a person's rating is a "
                   "trial's value; compare: a person picks the worst of study.waiting trials shown side by side "
                   "[default: study.human, else off].")
@click.option("--verbose", is_flag=True, help="Print every epoch of every trial, not one line per trial.")
@setting_options(plain=True)  # --opt/--es-opt: the tune file's optimizer_options/strategy_options
def tune_command(config_file, n_trials, storage, study_name, n_jobs, out, artifact_dir, sampler, sampler_seed,
                 pruner, metric, human, verbose, **train_options) -> None:
    """Search training settings with Optuna; every trial is an ordinary run directory.

    The config file's train section holds the settings every trial shares, search_space what
    Optuna chooses (float/int ranges, log scale, steps, categorical choices), study how
    (metric, sampler, pruner, n_trials...). Training options given here (--epochs,
    --limit-train, ...) override the train section (their defaults below apply only where
    neither sets them). Ends with the best trial and OUT/best.yaml,
    which `evoprop train --config` accepts. Watch it with `evoprop dashboard STORAGE`.

    Examples:

      evoprop tune --config examples/tune-mnist.yaml --study-name quick --n-trials 3 --epochs 1

      evoprop tune --config examples/tune-mnist.yaml --n-trials 40 --n-jobs 2

      evoprop tune --config examples/tune-mnist-human.yaml --storage sqlite:///rate.db
    """
    train = {k: v for k, v in train_options.items() if v is not None}
    study = dict(n_trials=n_trials, storage=storage, name=study_name, n_jobs=n_jobs, out=out,
                 artifact_dir=artifact_dir, sampler=sampler, seed=sampler_seed, pruner=pruner, metric=metric,
                 human=False if human == "off" else human)
    tune = load_tune_config(config_file, train, study)
    echo = lambda line: click.echo(line, err=True)  # noqa: E731  progress on stderr, the result on stdout
    echo(f"study '{tune.study.name}' in {shown(tune.storage)}: {len(tune.space)} searched setting(s), "
         f"{tune.study.n_trials} trials, sampler {tune.study.sampler}, "
         + {"rate": "objective: a person's rating",
            "compare": f"objective: a person's choice among {tune.study.waiting} trials side by side"}.get(
             tune.study.human, f"objective: {tune.study.metric} ({tune.study.resolved_direction}), "
                               f"pruner {tune.study.pruner}"))
    if tune.study.human == "compare":
        from evoprop.tune.compare import run_compare_study

        result = run_compare_study(tune, echo)
    elif tune.study.human:
        from evoprop.tune.hitl import run_human_study

        result = run_human_study(tune, echo)
    else:
        from evoprop.tune.study import run_study

        result = run_study(tune, echo, verbose=verbose)
    _print_result(tune, result)


def _print_result(tune, result) -> None:
    c = result.counts
    click.echo(f"study '{tune.study.name}': {c['finished']} finished ({c['complete']} complete, {c['pruned']} pruned), "
               f"{c['fail']} failed, {c['running']} running | {shown(tune.storage)}")
    if result.best is None:
        click.echo("no trial completed: no best configuration")
        return
    if tune.study.human == "compare":
        click.echo(f"best: trial {result.best.number} ({trial_params(result.best)}), never the worst of a "
                   f"comparison, preferred over the most trials | config: {result.best_config_path} "
                   f"(evoprop train --config {result.best_config_path})")
        return
    what = "rating" if tune.study.human else tune.study.metric
    ranked = sorted(result.study.get_trials(deepcopy=False, states=(result.best.state,)),
                    key=lambda t: t.value, reverse=tune.study.maximize)
    for trial in ranked[:5]:
        click.echo(f"  trial {trial.number:>4}  {what} {trial.value:.4f}  {trial_params(trial)}")
    honest = _val_selected_test_f1(result.best.user_attrs.get("run_dir"))
    click.echo(f"best: trial {result.best.number}, {what} {result.best.value:.4f}"
               + (f" | its test F1 at the validation-chosen epoch {honest:.4f} (reported, never used to choose)"
                  if honest is not None else "")
               + f" | config: {result.best_config_path} (evoprop train --config {result.best_config_path})")


def trial_params(trial) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())


def _val_selected_test_f1(run_dir: str | None) -> float | None:
    return RunDir(run_dir).summary_or_empty().get("val_selected_test_f1") if run_dir else None
