"""Three strategies for lowering a loss, after the CS231n optimization notes: random search, random local search,
the gradient.

* :func:`random_search`: N tries of theta ~ scale * N(0, I), keep the one with the lowest loss.
* :func:`local_search`: from theta, try theta + step * N(0, I); keep it if the loss is lower.
* :func:`gradient_descent`: theta <- theta - lr * grad L(theta), on the same loss.

The loss is measured on the whole training set by an *objective*: a callable mapping
P parameter vectors (P, dim) to their P losses. Two objectives compute the same numbers:

* :class:`PopulationObjective`: any evoprop model, through
  :class:`~evoprop.lab.evaluate.VectorEvaluator` (and so the population evaluator);
* :class:`LinearObjective`: a linear classifier (depth-1 model). With the bias trick its
  scores S(theta) = [x; 1] W^T are *linear* in theta, so the scores of P candidates are one
  matrix product X [W_1 ... W_P]^T that reads the data once (the population evaluator reads
  it once per candidate), and local search can use S(theta + step g) = S(theta) + step S(g):
  the noise scores S(g) of a block of proposals are again one product, and each try costs
  only its loss. The accept/reject decisions are the ones of evaluating every try from
  scratch (a test checks it).

:func:`run_search` is the whole experiment of ``evoprop search``: the chosen strategies from one
start, each judged on the training and test splits, in a :class:`SearchRun` that prints and writes itself.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from evoprop.errors import ConfigError
from evoprop.lab.evaluate import VectorEvaluator
from evoprop.lab.linear import linear_layer
from evoprop.lab.losses import Loss, LossSettings, backward_full_loss, get_loss
from evoprop.lab.plots import finish_loss_figure, new_figure, wants_log
from evoprop.lab.problem import LabRun, Problem
from evoprop.lab.settings import batch_setting, lab_setting
from evoprop.paths import make_folder
from evoprop.train.metrics import evaluate

PROPOSAL_BLOCK = 50  # proposals drawn (and, for linear models, scored) together


@dataclass
class SearchResult:
    """What a search did: the training loss per iteration and the parameters it ended with.

    ``tried[t]`` is the loss of the point evaluated at iteration t, ``kept[t]`` the loss of
    the point kept after it (random search: the best so far; local search: the current
    point; gradient descent: the point reached, the same as tried). Iteration 0 is the start
    (local search and gradient descent) or the first try (random search).
    """

    method: str
    tried: np.ndarray
    kept: np.ndarray
    vector: torch.Tensor
    accepted: int | None
    seconds: float

    @property
    def start_loss(self) -> float:
        return float(self.kept[0])

    @property
    def final_loss(self) -> float:
        return float(self.kept[-1])


# -- objectives -----------------------------------------------------------------------
class PopulationObjective:
    """Training loss of parameter vectors of any evoprop model (through the population evaluator)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "svm",
                 reg: float = 0.0, batch_size: int = 10_000, max_memory: int | None = None):
        self.evaluator = VectorEvaluator(model, x, y, loss, reg, batch_size=batch_size, max_memory=max_memory)
        self.dim = self.evaluator.dim

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.evaluator.losses(vectors)


class LinearObjective:
    """Training loss of a linear classifier's parameter vectors, from scores linear in them.

    Vectors are in the model's parameter layout: weight (C x D, row-major), then bias (C).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "svm",
                 reg: float = 0.0, batch_size: int = 10_000):
        layer = linear_layer(model)
        self.classes, self.features = layer.out_features, layer.in_features
        self.dim = self.classes * (self.features + 1)
        self.x = x.flatten(1)
        if self.x.shape[1] != self.features:
            raise ConfigError(f"the data have {self.x.shape[1]} features but the model takes {self.features}")
        self.y = y
        self.loss = get_loss(loss) if isinstance(loss, str) else loss
        self.reg, self.batch_size = float(reg), int(batch_size)

    @torch.no_grad()
    def scores(self, vectors: torch.Tensor) -> torch.Tensor:
        """(P, N, C) class scores of every example under each of the P vectors."""
        P, C, D = len(vectors), self.classes, self.features
        vectors = vectors.to(self.x.device, self.x.dtype)
        weights = vectors[:, : C * D].reshape(P * C, D).T  # (D, P*C): all candidates side by side
        bias = vectors[:, C * D :].reshape(1, P * C)
        out = torch.empty(P, len(self.x), C, dtype=self.x.dtype, device=self.x.device)
        for start in range(0, len(self.x), self.batch_size):
            part = torch.addmm(bias, self.x[start : start + self.batch_size], weights)  # (n, P*C)
            out[:, start : start + len(part)] = part.view(len(part), P, C).transpose(0, 1)
        return out

    @torch.no_grad()
    def from_scores(self, scores: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """The (P,) float64 losses of vectors whose (P, N, C) scores are given.

        Computed in the scores' own precision (a float64 copy of P x N x C float32 scores would
        cost more than the loss): local search passes float64 scores, where its small
        improvements need them.
        """
        loss = self.loss(scores, self.y).double()
        if self.reg:
            loss = loss + self.reg * vectors.double().pow(2).sum(1)
        return loss

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        out = [self.from_scores(self.scores(part), part) for part in vectors.split(PROPOSAL_BLOCK)]
        return torch.cat(out)


def make_objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "svm", reg: float = 0.0,
                   batch_size: int = 10_000, max_memory: int | None = None):
    """The fastest objective for ``model``: LinearObjective for a depth-1 model, else PopulationObjective."""
    try:
        return LinearObjective(model, x, y, loss, reg, batch_size)
    except ConfigError:
        return PopulationObjective(model, x, y, loss, reg, batch_size, max_memory)


# -- the strategies ---------------------------------------------------------------------
def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_scale(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _gaussian(rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    # drawn on the CPU so a seed gives the same search on every device
    return torch.randn(rows, dim, generator=generator, dtype=torch.float64)


def random_search(objective, tries: int = 1000, scale: float = 1e-4, seed: int = 0) -> SearchResult:
    """Strategy 1: evaluate ``tries`` vectors theta ~ scale * N(0, I) and keep the best."""
    _check_count("tries", tries)
    _check_scale("scale", scale)
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    tried, best_vector, best = [], None, math.inf
    for start in range(0, tries, PROPOSAL_BLOCK):
        block = scale * _gaussian(min(PROPOSAL_BLOCK, tries - start), objective.dim, generator)
        losses = objective(block).cpu()
        tried.append(losses)
        i = int(torch.argmin(losses))
        if float(losses[i]) < best:
            best, best_vector = float(losses[i]), block[i].clone()
    tried_np = torch.cat(tried).numpy()
    return SearchResult("random", tried_np, np.minimum.accumulate(tried_np), best_vector.float(), None,
                        time.perf_counter() - t0)


def local_search(objective, start: torch.Tensor, tries: int = 1000, step: float = 1e-4, seed: int = 0) -> SearchResult:
    """Strategy 2: ``tries`` times, propose theta + step * N(0, I) and move there if the loss is lower."""
    _check_count("tries", tries)
    _check_scale("step", step)
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    current = start.detach().double().cpu().reshape(-1)
    if current.numel() != objective.dim:
        raise ConfigError(f"the start has {current.numel()} coordinates but the objective takes {objective.dim}")
    linear = isinstance(objective, LinearObjective)
    if linear:
        current_scores = objective.scores(current.unsqueeze(0))[0].double()
        loss = float(objective.from_scores(current_scores.unsqueeze(0), current.unsqueeze(0))[0])
    else:
        loss = float(objective(current.unsqueeze(0))[0])
    tried, kept, accepted = [loss], [loss], 0
    for first in range(0, tries, PROPOSAL_BLOCK):
        noise = _gaussian(min(PROPOSAL_BLOCK, tries - first), objective.dim, generator)
        # the proposals' noise scores, S(g), for the whole block in one product
        noise_scores = objective.scores(noise) if linear else None
        for t, g in enumerate(noise):
            proposal = current + step * g
            if linear:
                proposal_scores = current_scores + step * noise_scores[t].double()
                new = float(objective.from_scores(proposal_scores.unsqueeze(0), proposal.unsqueeze(0))[0])
            else:
                new = float(objective(proposal.unsqueeze(0))[0])
            tried.append(new)
            if new < loss:
                current, loss, accepted = proposal, new, accepted + 1
                if linear:
                    current_scores = proposal_scores
            kept.append(loss)
    return SearchResult("local", np.array(tried), np.array(kept), current.float(), accepted,
                        time.perf_counter() - t0)


def gradient_descent(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "svm",
                     reg: float = 0.0, lr: float = 1e-6, steps: int = 100, batch_size: int = 10_000) -> SearchResult:
    """Strategy 3: ``steps`` steps of plain (full-batch) gradient descent from the model's weights.

    The gradient of the whole training set's loss is accumulated over data batches of
    ``batch_size`` (memory only: the step is the same). The model ends at the last point.
    """
    _check_count("steps", steps)
    _check_scale("lr", lr)
    loss_fn = get_loss(loss) if isinstance(loss, str) else loss
    params = [p for p in model.parameters()]
    optimizer = torch.optim.SGD(params, lr=lr)
    t0 = time.perf_counter()
    losses = []
    was_training = model.training
    model.eval()
    try:
        for step in range(steps + 1):
            optimizer.zero_grad(set_to_none=True)
            total = backward_full_loss(model, x, y, loss_fn, reg, batch_size)
            if not math.isfinite(total):
                raise ConfigError(f"gradient descent diverged at step {step} (loss {total}); lower --lr")
            losses.append(total)
            if step < steps:  # the last pass only measures where the last step landed
                optimizer.step()
    finally:
        model.train(was_training)
        optimizer.zero_grad(set_to_none=True)
    curve = np.array(losses)
    return SearchResult("gradient", curve, curve.copy(), parameters_to_vector(params).detach().clone(), None,
                        time.perf_counter() - t0)


def write_vector(model: nn.Module, vector: torch.Tensor) -> None:
    """Put a search's result vector into the model's parameters."""
    params = list(model.parameters())
    with torch.no_grad():
        vector_to_parameters(vector.to(params[0].device, params[0].dtype), params)


# -- the experiment ---------------------------------------------------------------------
METHODS = ("random", "local", "gradient")


@dataclass
class SearchSettings(LossSettings):
    """What :func:`run_search` does (the options of ``evoprop search``)."""

    loss: str = "svm"
    methods: tuple[str, ...] = METHODS  # run in this order, each once (the command's METHOD... arguments)
    tries: int = lab_setting(1000, "random, local: how many weight vectors to try.", check="positive")
    scale: float = lab_setting(1e-4, "random: each try is W ~ X * N(0, 1).", check="positive")
    step: float = lab_setting(1e-4, "local: each try is W + X * N(0, 1), kept if its loss is lower.", check="positive")
    start_scale: float = lab_setting(
        1e-3, "local, gradient: start from W ~ X * N(0, 1) (CS231n's start); 0 starts from the model's --init.",
        check="non-negative")
    lr: float = lab_setting(
        1e-6, "gradient: step size of plain gradient descent (suits the default centred 0-255 pixels).",
        check="positive")
    steps: int = lab_setting(100, "gradient: number of full-batch gradient steps.", check="positive")
    seed: int = lab_setting(0, "Seed of the random tries and of the start.", flag="--search-seed", check="seed")
    batch_size: int = batch_setting(10_000)


@dataclass
class SearchRun(LabRun):
    """The strategies' curves (``results``) and their rows of results.md/results.json (``rows``)."""

    loss: str
    header: str  # what was measured on how many examples
    results: list[SearchResult] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    def line(self, i: int) -> str:
        """The printed line of the i-th strategy."""
        r, row = self.results[i], self.rows[i]
        accepted = f", {r.accepted} accepted" if r.accepted is not None else ""
        return (f"{r.method:<8} {row['setting']}: training loss {r.start_loss:.4f} -> {r.final_loss:.4f}{accepted}; "
                f"train accuracy {row['train_accuracy']:.4f}, test accuracy {row['test_accuracy']:.4f} "
                f"({r.seconds:.1f} s)")

    def summary(self) -> str:
        """What ``evoprop search`` prints: the header, then one line per strategy."""
        return "\n".join([self.header] + [self.line(i) for i in range(len(self.results))])

    def write(self, out: str | Path) -> list[Path]:
        """search.csv (loss per iteration), search.png (the curves), results.md and results.json."""

        out = make_folder(out)
        with open(out / "search.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["method", "iteration", "tried_loss", "kept_loss"])
            for r in self.results:
                for i, (tried, kept) in enumerate(zip(r.tried, r.kept)):
                    writer.writerow([r.method, i, f"{tried:.8g}", f"{kept:.8g}"])
        search_figure(self.results, out / "search.png", title=f"{self.loss} loss on the training set\n{self.label}")
        lines = [f"Model and data: {self.description}", "",
                 "| method | setting | training loss (start -> end) | train accuracy | test accuracy | seconds |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {r['method']} | {r['setting']} | {r['start_loss']:.4f} -> {r['final_loss']:.4f} | "
                         f"{r['train_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['seconds']:.1f} |")
        (out / "results.md").write_text("\n".join(lines) + "\n")
        (out / "results.json").write_text(
            json.dumps({"model": self.description, "loss": self.loss, "results": self.rows}, indent=2) + "\n")
        return [out / "search.csv", out / "search.png", out / "results.md", out / "results.json"]


def run_search(problem: Problem, settings: SearchSettings,
               progress: Callable[[str], None] | None = None) -> SearchRun:
    """Lower ``problem``'s training loss with each strategy of ``settings.methods``; the model is left as it was.

    ``progress`` is called with each line of :meth:`SearchRun.summary` as soon as it is known.
    """
    s, say = settings, progress or (lambda text: None)
    x, y = problem.tensors("train")
    x_test, y_test = problem.tensors("test")
    model = problem.model
    init_vector = parameters_to_vector(model.parameters()).detach().clone()
    dim = init_vector.numel()
    if s.start_scale:
        start = s.start_scale * torch.randn(dim, generator=torch.Generator().manual_seed(s.seed + 1),
                                            dtype=torch.float64)
    else:
        start = init_vector.double()
    objective = make_objective(model, x, y, s.loss, s.reg, s.batch_size)
    run = SearchRun(problem.description, problem.short_name, s.loss,
                    f"{problem.description}\n{s.loss} loss on {len(y)} training examples, accuracy on {len(y_test)} "
                    f"test examples; {dim} parameters")
    say(run.header)
    for method in dict.fromkeys(s.methods):
        if method == "random":
            result = random_search(objective, s.tries, s.scale, seed=s.seed)
            setting = f"{s.tries} tries, scale {s.scale:g}"
        elif method == "local":
            result = local_search(objective, start, s.tries, s.step, seed=s.seed)
            setting = f"{s.tries} tries, step {s.step:g}, start scale {s.start_scale:g}"
        elif method == "gradient":
            write_vector(model, start)
            result = gradient_descent(model, x, y, s.loss, s.reg, s.lr, s.steps, s.batch_size)
            setting = f"{s.steps} steps, lr {s.lr:g}, start scale {s.start_scale:g}"
        else:
            raise ConfigError(f"unknown search method '{method}'; valid: {', '.join(METHODS)}")
        write_vector(model, result.vector)
        train = evaluate(model, x, y, problem.data.num_classes)
        test = evaluate(model, x_test, y_test, problem.data.num_classes)
        run.results.append(result)
        run.rows.append(dict(method=method, setting=setting, start_loss=result.start_loss,
                             final_loss=result.final_loss, train_accuracy=train["accuracy"],
                             test_accuracy=test["accuracy"], test_f1=test["f1"], accepted=result.accepted,
                             seconds=round(result.seconds, 2)))
        say(run.line(len(run.results) - 1))
    write_vector(model, init_vector)
    return run


def search_figure(results: Sequence[SearchResult], path: str | Path, title: str = "") -> Path:
    """Training loss kept after each iteration, one line per strategy (log x when iterations > 100)."""
    fig = new_figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    labels = {"random": "random search (best so far)", "local": "random local search", "gradient": "gradient descent"}
    for i, r in enumerate(results):
        ax.plot(np.arange(len(r.kept)), r.kept, color=f"C{i}", label=labels.get(r.method, r.method))
    return finish_loss_figure(fig, ax, path, log=any(wants_log(r.kept) for r in results),
                              xlabel="iteration (try or step)", title=title or "training loss")
