"""The Hessian lens: what each optimizer does at a point, against Newton's step there.

Every optimizer can be read as an approximation of Newton's method w ← w − γ H⁻¹ g (Nocedal &
Wright 2006): Adagrad, RMSprop and Adam replace H by a diagonal (√G, √v), the natural gradient by
the Fisher matrix (K-FAC, Martens & Grosse 2015: by a Kronecker product per layer), plain SGD by
the identity. This
module measures how good each approximation is at one set of weights θ₀ and one batch:

* the **curvature** C at θ₀ on the batch — the exact Hessian (``torch.func``) or the
  Gauss–Newton matrix (equal to the Hessian for a model linear in its parameters, e.g. the
  depth-1 softmax regression), and the **Newton direction** d_N = −(C + λI)⁻¹ g;
* each optimizer is **warmed up** for k steps on training mini-batches from θ₀ (its state —
  accumulators, momentum, K-FAC factors, λ — is then what it would have in training), put back
  at θ₀ with that state, and stepped once on the same batch; its **update** u = θ₁ − θ₀ is
  compared with d_N by the cosine cos(u, d_N) (1: the Newton direction, up to length);
* for the diagonal methods, the **per-parameter scale** they divide the gradient by —
  √(Adagrad's G), √(RMSprop's v), √(Adam's v̂) — against the Hessian's diagonal: Spearman's
  rank correlation and the Pearson correlation of the logarithms, over the parameters where both
  are positive (MNIST's always-black border pixels have zero gradient and zero curvature);
* for K-FAC, the **relative error** ‖A ⊗ G − F_l‖_F / ‖F_l‖_F of each layer's Kronecker factors
  against the exact Fisher block F_l of that layer (the Fisher of a softmax output is the
  Gauss–Newton matrix: Martens 2014, §9.2).

``newton`` is stepped without warm-up at the lens's own λ, on the whole batch: its cosine is 1 by
construction, a check that the lens and the optimizer compute the same step.

:func:`run_precond` is the whole experiment of ``evoprop precond`` on a problem, in a
:class:`PrecondRun` that prints and writes itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from evoprop.errors import ConfigError
from evoprop.lab.plots import new_figure, save
from evoprop.lab.problem import Problem
from evoprop.lab.settings import lab_setting
from evoprop.optim import make_optimizer
from evoprop.optim.batch import BatchLoss, FlatParams
from evoprop.optim.hessian_free import ggn_product
from evoprop.optim.newton import check_hessian_memory, damped_solve, exact_hessian
from evoprop.optim.registry import get_spec
from evoprop.paths import make_folder

CURVATURES = ("hessian", "ggn")
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "natural", "hessian-free", "newton")
#: the state entry whose square root is each diagonal method's per-parameter scale
DIAGONAL_STATE = {"adagrad": "sum", "rmsprop": "square_avg", "adam": "exp_avg_sq"}


@dataclass
class LensRow:
    """One optimizer seen through the lens (None where a measure does not apply)."""

    name: str
    cosine: float
    spearman: float | None = None
    pearson_log: float | None = None
    kfac_error: float | None = None
    pairs: int | None = None  # parameters the correlations are over


@dataclass
class Lens:
    """The lens at one point: rows per optimizer and the diagonals behind the figures."""

    rows: list[LensRow]
    curvature: str
    dim: int
    examples: int
    warmup: int
    damping: float  # λ of the Newton direction (raised from the requested one if C + λI was not positive definite)
    hessian_diagonal: np.ndarray
    scales: dict[str, np.ndarray] = field(default_factory=dict)  # name -> per-parameter scale (diagonal methods, K-FAC)


def curvature_matrix(batch: BatchLoss, flat: FlatParams, theta: torch.Tensor, kind: str = "hessian",
                     chunk_size: int = 512) -> torch.Tensor:
    """The d × d Hessian or Gauss–Newton matrix of the batch loss at θ."""
    if kind == "hessian":
        return exact_hessian(batch, flat, theta, None, chunk_size)
    if kind != "ggn":
        raise ConfigError(f"unknown curvature '{kind}'; valid: {', '.join(CURVATURES)}")
    product = ggn_product(batch, flat, theta)
    eye = torch.eye(flat.dim, dtype=theta.dtype, device=theta.device)
    return torch.cat([vmap(product)(eye[i: i + chunk_size]) for i in range(0, flat.dim, chunk_size)])


def lens(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    *,
    optimizers: tuple[str, ...] | list[str] = DEFAULT_OPTIMIZERS,
    warmup: int = 20,
    warmup_batch: int = 64,
    curvature: str = "hessian",
    damping: float = 1e-3,
    seed: int = 0,
    max_memory=None,
) -> Lens:
    """Compare every optimizer in ``optimizers`` with Newton's step at ``model``'s weights on the batch (x, y).

    Warm-up mini-batches of ``warmup_batch`` rows are drawn (seeded) from (train_x, train_y).
    ``model`` is left as it was.
    """
    if curvature not in CURVATURES:
        raise ConfigError(f"unknown curvature '{curvature}'; valid: {', '.join(CURVATURES)}")
    if warmup < 0 or warmup_batch < 1:
        raise ConfigError(f"warm-up steps must be >= 0 and the warm-up batch >= 1, got {warmup} and {warmup_batch}")
    if not damping > 0:
        raise ConfigError(f"damping must be > 0, got {damping}")
    for name in optimizers:
        get_spec(name)  # an unknown name fails before the expensive part
    params = list(model.parameters())
    flat = FlatParams(params, model)
    check_hessian_memory(flat.dim, params[0].dtype, params[0].device, max_memory, "precond")
    theta0 = flat.vector()
    batch = BatchLoss(model, x, y)
    with torch.enable_grad():
        g = torch.func.grad(lambda t: batch.loss(flat, t))(theta0)
    c = curvature_matrix(batch, flat, theta0, curvature)
    newton_dir, lam = damped_solve(c, g, damping, boost=10.0)
    diag = c.diagonal().detach().cpu().double().numpy()
    fisher = None  # the Gauss–Newton (= Fisher) matrix, computed once if K-FAC is looked at
    if "natural" in optimizers:
        fisher = c if curvature == "ggn" or _linear_in_params(model) else curvature_matrix(batch, flat, theta0, "ggn")
    del c

    out = Lens([], curvature, flat.dim, len(y), warmup, lam, diag)
    generator = torch.Generator().manual_seed(seed)
    for name in optimizers:
        net = copy.deepcopy(model)
        net_flat = FlatParams(list(net.parameters()), net)
        if name == "newton":  # no warm-up: its only state is λ, set to the lens's own
            opt = make_optimizer(name, net.parameters(), model=net, damping=lam, min_damping=lam,
                                 hessian_batch=None, max_memory=max_memory)
        else:
            opt = make_optimizer(name, net.parameters(), model=net)
            for _ in range(warmup):
                idx = torch.randint(len(train_y), (warmup_batch,), generator=generator).to(train_y.device)
                _step(opt, net, train_x[idx], train_y[idx])
            net_flat.write(theta0)
        _step(opt, net, x, y)
        update = net_flat.vector() - theta0
        row = LensRow(name, _cosine(update, newton_dir))
        if name in DIAGONAL_STATE:
            scale = torch.cat([opt.state[p][DIAGONAL_STATE[name]].reshape(-1) for p in net_flat.params]).sqrt()
            scale = scale.detach().cpu().double().numpy()
            out.scales[name] = scale
            row.spearman, row.pearson_log, row.pairs = correlations(scale, diag)
        if name == "natural":
            row.kfac_error, out.scales[name] = _kfac_error(opt, net, net_flat, fisher)
        out.rows.append(row)
        if hasattr(opt, "remove_hooks"):
            opt.remove_hooks()
    return out


def _step(opt: torch.optim.Optimizer, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One step the way evoprop's trainer takes it."""
    if getattr(opt, "needs_batch", False):
        opt.step(BatchLoss(model, x, y))
        return
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    norm = float(a.norm() * b.norm())
    return float(a @ b) / norm if norm > 0 else math.nan


def _linear_in_params(model: nn.Module) -> bool:
    """A single nn.Linear (the depth-1 MLP): its Hessian is exactly its Gauss–Newton matrix."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return len(linears) == 1 and sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in linears[0].parameters())


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 0 ... n-1, ties given their average rank."""
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v))
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def correlations(scale: np.ndarray, diag: np.ndarray) -> tuple[float | None, float | None, int]:
    """(Spearman ρ, Pearson r of the logs, pairs) over the parameters where both are positive."""
    keep = (scale > 0) & (diag > 0) & np.isfinite(scale) & np.isfinite(diag)
    n = int(keep.sum())
    if n < 3:
        return None, None, n
    a, b = scale[keep], diag[keep]
    spearman = float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])
    pearson = float(np.corrcoef(np.log(a), np.log(b))[0, 1])
    return spearman, pearson, n


def _kfac_error(opt, net: nn.Module, flat: FlatParams, fisher: torch.Tensor) -> tuple[float | None, np.ndarray]:
    """‖A ⊗ G − F_block‖ / ‖F_block‖ over K-FAC's layers (Frobenius, pooled), and diag(A ⊗ G) in θ's order."""
    offsets = dict(zip(flat.names, np.cumsum([0] + flat.sizes[:-1]).tolist()))
    names = {id(p): n for n, p in net.named_parameters()}
    diag = np.full(flat.dim, np.nan)
    err2 = ref2 = 0.0
    for layer_name in opt.preconditioned:
        module = net.get_submodule(layer_name)
        state = opt.state[module.weight]
        if "A" not in state:
            continue
        out_f, in_f = module.weight.shape
        with_bias = state["A"].shape[0] == in_f + 1  # K-FAC appends the bias column when it trains the bias
        w0 = offsets[names[id(module.weight)]]
        # K-FAC's vec(W̄) stacks the columns of W̄ = [W, b]: entry (i, o) -> W[o, i], or b[o] when i == in_f
        cols = torch.arange(in_f + with_bias).repeat_interleave(out_f)
        rows = torch.arange(out_f).repeat(len(cols) // out_f)
        index = w0 + rows * in_f + cols
        if with_bias:
            b0 = offsets[names[id(module.bias)]]
            index = torch.where(cols == in_f, b0 + rows, index)
        kron = torch.kron(state["A"].double(), state["G"].double())
        block = fisher[index][:, index].double()
        err2 += float((kron - block).square().sum())
        ref2 += float(block.square().sum())
        diag[index.numpy()] = kron.diagonal().cpu().numpy()
    return (math.sqrt(err2 / ref2) if ref2 > 0 else None), diag


def table(result: Lens, fmt: str = "md") -> str:
    """The lens as a Markdown (``fmt="md"``) or CSV table."""
    head = ["optimizer", "cos(update, newton)", "spearman(scale, diag H)", "pearson(log scale, log diag H)",
            "kfac factor error", "pairs"]
    lines = []
    for r in result.rows:
        cells = [r.name, _num(r.cosine), _num(r.spearman), _num(r.pearson_log), _num(r.kfac_error),
                 "" if r.pairs is None else str(r.pairs)]
        lines.append(cells)
    if fmt == "csv":
        return "\n".join(",".join(c.replace(",", ";") for c in row) for row in [head, *lines]) + "\n"
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    out += ["| " + " | ".join(c or "–" for c in row) + " |" for row in lines]
    return "\n".join(out) + "\n"


def _num(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


# -- the experiment ---------------------------------------------------------------------
@dataclass
class PrecondSettings:
    """What :func:`run_precond` compares (the options of ``evoprop precond``)."""

    examples: int = lab_setting(
        512, "Training examples of the batch the curvature, the Newton direction and every compared step use.",
        check="positive")
    curvature: str = lab_setting(
        "hessian", "hessian: the exact Hessian; ggn: the Gauss-Newton matrix (the same for a depth-1 model).",
        choices=CURVATURES)
    damping: float = lab_setting(
        1e-3, "λ of the reference Newton direction -(C + λI)^-1 g (raised if C + λI is not positive definite).",
        check="positive")
    warmup: int = lab_setting(
        20, "Steps each optimizer takes from the weights before its step is compared (builds its state).",
        metavar="K", check="non-negative")
    warmup_batch: int = lab_setting(64, "Mini-batch size of the warm-up steps.", check="positive")
    optimizers: tuple[str, ...] = DEFAULT_OPTIMIZERS  # the command parses its --optimizers A,B,...
    seed: int = lab_setting(0, "Seed of the warm-up batches.", flag="--warmup-seed")
    max_memory: str | int | None = lab_setting(
        None, "Memory the d x d matrices may take, e.g. 2G [default: half of what is available].", metavar="SIZE")


@dataclass
class PrecondRun:
    """The lens with a header saying where it looked."""

    header: str
    label: str  # the model and data in a few words, for the figures' titles
    lens: Lens = field(repr=False)

    def summary(self) -> str:
        """What ``evoprop precond`` prints, and precond.md holds: the header and the table."""
        return self.header + "\n\n" + table(self.lens)

    def write(self, out: str | Path) -> list[Path]:
        """precond.md, precond.csv, precond_cosine.png and precond_diagonal.png."""

        out = make_folder(out)
        (out / "precond.md").write_text(self.summary())
        (out / "precond.csv").write_text(table(self.lens, "csv"))
        return [out / "precond.md", out / "precond.csv",
                precond_cosine_figure(self.lens, out / "precond_cosine.png",
                                      title=f"cos(update, Newton direction)\n{self.label}"),
                precond_diagonal_figure(self.lens, out / "precond_diagonal.png",
                                        title=f"curvature diagonal vs preconditioner, {self.label}")]


def run_precond(problem: Problem, settings: PrecondSettings) -> PrecondRun:
    """The lens at ``problem``'s weights, on the first ``examples`` training examples."""
    s = settings
    x, y = problem.tensors("train", s.examples)
    train_x, train_y = problem.tensors("train")
    result = lens(problem.model, x, y, train_x, train_y, optimizers=list(s.optimizers), warmup=s.warmup,
                  warmup_batch=s.warmup_batch, curvature=s.curvature, damping=s.damping, seed=s.seed,
                  max_memory=s.max_memory)
    header = (f"{problem.description}\n{s.curvature} of the mean cross-entropy on {result.examples} training examples, "
              f"d = {result.dim:,}; Newton direction at λ = {result.damping:g}; "
              f"each optimizer warmed up for {s.warmup} steps of batch {s.warmup_batch} at its defaults")
    return PrecondRun(header, problem.short_name, result)


_SCALE_LABELS = {"adagrad": "Adagrad √G", "rmsprop": "RMSprop √v", "adam": "Adam √v", "natural": "K-FAC diag(A ⊗ G)"}


def precond_diagonal_figure(lens: Lens, path: str | Path, title: str = "") -> Path:
    """One log-log panel per method: the curvature's diagonal (x) against the method's per-parameter scale (y)."""
    names = [n for n in lens.scales if n in _SCALE_LABELS]
    fig = new_figure(figsize=(3.4 * max(len(names), 1), 3.6))
    axes = np.atleast_1d(fig.subplots(1, max(len(names), 1)))
    rows = {r.name: r for r in lens.rows}
    for ax, name in zip(axes, names):
        scale, diag = lens.scales[name], lens.hessian_diagonal
        keep = (scale > 0) & (diag > 0) & np.isfinite(scale)
        ax.loglog(diag[keep], scale[keep], linestyle="none", marker=".", markersize=1.5, alpha=0.4, color="C0")
        ax.set_xlabel(f"diag {'H' if lens.curvature == 'hessian' else 'G'} (exact)")
        ax.set_ylabel(_SCALE_LABELS[name])
        r = rows[name]
        note = (f"Spearman {r.spearman:.2f}, log-Pearson {r.pearson_log:.2f}" if r.spearman is not None
                else f"factor error {r.kfac_error:.2f}" if r.kfac_error is not None else "")
        ax.set_title(f"{name}\n{note}", fontsize=9)
    fig.suptitle(title or "the curvature's diagonal against each method's preconditioner", fontsize=10)
    return save(fig, path)


def precond_cosine_figure(lens: Lens, path: str | Path, title: str = "") -> Path:
    """The cosine between each optimizer's update and the Newton direction, one bar each."""
    fig = new_figure(figsize=(6.4, 0.45 * len(lens.rows) + 1.4))
    ax = fig.add_subplot()
    names = [r.name for r in lens.rows]
    values = [r.cosine for r in lens.rows]
    ax.barh(names, values, color=["C3" if v < 0 else "C0" for v in values])
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlim(min(-0.05, min(values, default=0) - 0.05), 1.05)
    ax.invert_yaxis()
    ax.set_xlabel("cos(update, Newton direction)")
    ax.set_title(title or "how Newton-like is each optimizer's step", fontsize=10)
    return save(fig, path)
