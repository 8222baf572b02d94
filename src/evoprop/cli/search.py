"""``evoprop search``: random search, random local search and gradient descent on one training loss."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from evoprop.cli.lab_options import build_problem, fresh_defaults, loss_options, model_options, positive, seed_option
from evoprop.errors import EvopropError

# The seed's setting: a linear classifier on CIFAR-10 (official 50,000 / 10,000 split), CS231n's
# mean-centred 0-255 pixels, multiclass SVM loss.
_DEFAULTS = fresh_defaults(dataset="cifar10", depth=1, pixels="centred", split="official", val_fraction=0.0)
_METHODS = ("random", "local", "gradient")


@click.command("search")
@click.argument("methods", nargs=-1, required=True, type=click.Choice(_METHODS), metavar="METHOD...")
@model_options(_DEFAULTS, run=False)
@loss_options("svm")
@click.option("--tries", type=int, default=1000, show_default=True, metavar="N",
              help="random, local: how many weight vectors to try.")
@click.option("--scale", type=float, default=1e-4, show_default=True, metavar="X",
              help="random: each try is W ~ X * N(0, 1).")
@click.option("--step", type=float, default=1e-4, show_default=True, metavar="X",
              help="local: each try is W + X * N(0, 1), kept if its loss is lower.")
@click.option("--start-scale", type=float, default=1e-3, show_default=True, metavar="X",
              help="local, gradient: start from W ~ X * N(0, 1) (CS231n's start); 0 starts from the model's --init.")
@click.option("--lr", type=float, default=1e-6, show_default=True, metavar="X",
              help="gradient: step size of plain gradient descent (suits the default centred 0-255 pixels).")
@click.option("--steps", type=int, default=100, show_default=True, metavar="N",
              help="gradient: number of full-batch gradient steps.")
@click.option("--search-seed", type=int, default=0, show_default=True, metavar="N",
              help="Seed of the random tries and of the start.")
@click.option("--batch-size", type=int, default=10_000, show_default=True, metavar="N",
              help="Examples per evaluation pass (memory only: results do not change).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for search.csv (loss per iteration), search.png (the curves), results.md and results.json.")
def search_command(methods, tries, scale, step, start_scale, lr, steps, search_seed, batch_size, out, loss, reg,
                   **options) -> None:
    """Lower the training loss by random search, random local search or gradient descent, and compare.

    METHOD is one or more of: random (try N random weight vectors, keep the best), local
    (perturb the weights, keep a change only if the loss drops) and gradient (plain
    gradient descent on the same loss). The loss is measured on the whole training split;
    each method reports its final training loss and its test accuracy. The defaults are
    seed 002's (CS231n's) setting: a linear classifier W (10 x 3073, the bias trick) on
    CIFAR-10 RGB with the multiclass SVM loss, 1,000 tries, scale and step 1e-4.

    Examples:

      evoprop search random local gradient --out search/cifar10

      evoprop search local --tries 200 --limit-train 5000

      evoprop search gradient --dataset mnist --pixels unit --lr 0.1 --steps 200 --loss softmax
    """
    import torch
    from torch.nn.utils import parameters_to_vector

    from evoprop.lab import search as lab
    from evoprop.lab.plots import search_figure
    from evoprop.train.metrics import evaluate

    for name, value in (("--tries", tries), ("--steps", steps), ("--batch-size", batch_size), ("--scale", scale),
                        ("--step", step), ("--lr", lr)):
        positive(name, value)
    positive("--start-scale", start_scale, allow_zero=True)
    positive("--reg", reg, allow_zero=True)
    seed_option("--search-seed", search_seed)
    methods = list(dict.fromkeys(methods))  # each once, in the order given
    problem = build_problem(options, _DEFAULTS)
    x, y = problem.tensors("train")
    x_test, y_test = problem.tensors("test")
    model = problem.model
    init_vector = parameters_to_vector(model.parameters()).detach().clone()
    dim = init_vector.numel()
    if start_scale:
        start = start_scale * torch.randn(dim, generator=torch.Generator().manual_seed(search_seed + 1),
                                          dtype=torch.float64)
    else:
        start = init_vector.double()
    objective = lab.make_objective(model, x, y, loss, reg, batch_size)
    click.echo(f"{problem.description}\n{loss} loss on {len(y)} training examples, accuracy on {len(y_test)} test "
               f"examples; {dim} parameters")

    results, rows = [], []
    for method in methods:
        if method == "random":
            result = lab.random_search(objective, tries, scale, seed=search_seed)
            setting = f"{tries} tries, scale {scale:g}"
        elif method == "local":
            result = lab.local_search(objective, start, tries, step, seed=search_seed)
            setting = f"{tries} tries, step {step:g}, start scale {start_scale:g}"
        else:
            lab.write_vector(model, start)
            result = lab.gradient_descent(model, x, y, loss, reg, lr, steps, batch_size)
            setting = f"{steps} steps, lr {lr:g}, start scale {start_scale:g}"
        lab.write_vector(model, result.vector)
        train = evaluate(model, x, y, problem.data.num_classes)
        test = evaluate(model, x_test, y_test, problem.data.num_classes)
        row = dict(method=method, setting=setting, start_loss=result.start_loss, final_loss=result.final_loss,
                   train_accuracy=train["accuracy"], test_accuracy=test["accuracy"], test_f1=test["f1"],
                   accepted=result.accepted, seconds=round(result.seconds, 2))
        results.append(result)
        rows.append(row)
        accepted = f", {result.accepted} accepted" if result.accepted is not None else ""
        click.echo(f"{method:<8} {setting}: training loss {result.start_loss:.4f} -> {result.final_loss:.4f}{accepted}; "
                   f"train accuracy {train['accuracy']:.4f}, test accuracy {test['accuracy']:.4f} "
                   f"({result.seconds:.1f} s)")
    lab.write_vector(model, init_vector)
    if out is not None:
        files = _write(Path(out), results, rows, problem.description, problem.short_name, loss, search_figure)
        click.echo(", ".join(str(f) for f in files))


def _write(out: Path, results, rows, description: str, label: str, loss: str, search_figure) -> list[Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvopropError(f"cannot create {out}: {exc.strerror or exc}") from None
    with open(out / "search.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "iteration", "tried_loss", "kept_loss"])
        for r in results:
            for i, (tried, kept) in enumerate(zip(r.tried, r.kept)):
                writer.writerow([r.method, i, f"{tried:.8g}", f"{kept:.8g}"])
    search_figure(results, out / "search.png", title=f"{loss} loss on the training set\n{label}")
    lines = [f"Model and data: {description}", "",
             "| method | setting | training loss (start -> end) | train accuracy | test accuracy | seconds |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['setting']} | {r['start_loss']:.4f} -> {r['final_loss']:.4f} | "
                     f"{r['train_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['seconds']:.1f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"model": description, "loss": loss, "results": rows}, indent=2) + "\n")
    return [out / "search.csv", out / "search.png", out / "results.md", out / "results.json"]

