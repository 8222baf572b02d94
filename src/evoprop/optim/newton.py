"""Newton's method with Levenberg–Marquardt damping: the update every other optimizer approximates.

Seed 001 writes Newton's method as w ← w − γ H⁻¹ g and reads every optimizer as an
approximation of H (Adagrad and Adam by a diagonal, the natural gradient by the Fisher).
This is the method itself, for models small enough that the d × d Hessian of the mini-batch
loss fits in memory (MNIST softmax regression: d = 7,850, 246 MB in float32). One step:

1. **Gradient and Hessian** of the mini-batch loss f at θ: g on the whole batch, H exactly by
   ``torch.func`` (reverse-over-reverse: the Jacobian of the gradient, ``chunk_size`` columns at a
   time) on the first ``hessian_batch`` rows of the batch (512 by default; None: all of them). Fewer
   rows than the batch is subsampled Newton (Byrd, Chin, Neveitt & Nocedal 2011): g stays exact and
   the cost of H is proportional to the rows it uses. On the 2-core CPU a 7,850 × 7,850 Hessian on
   4,096 rows took 171 s at load 9, which is why the default does not use them all.
2. **Damped solve** (Levenberg–Marquardt; Nocedal & Wright 2006, §10.3): d = −(H + λI)⁻¹ g by a
   Cholesky factorization (``torch.linalg.cholesky_ex``); where H + λI is not positive definite
   (H is indefinite away from a minimum of a non-convex loss, or rounding) λ is multiplied by
   ``boost`` until it is.
3. **Backtracking line search** (Armijo; Nocedal & Wright Alg. 3.1): the step α d with α = γ
   (``lr``, 1 by default: the full Newton step) halved while
   f(θ + α d) > f(θ) + c₁ α gᵀd, at most ``max_backtracks`` times; if no α qualifies, θ stays.
4. **Adapting λ by the reduction ratio** (Nocedal & Wright (4.4); Martens 2010, §4.1):
   ρ = (f(θ + s) − f(θ)) / (q(s) − q(0)),  q(s) = gᵀs + ½ sᵀ H s,  s = α d.
   ρ < ¼ (the quadratic model promised too much): λ ← λ · ``boost`` (3/2);
   ρ > ¾ (it predicted well): λ ← λ / ``boost``; otherwise λ stays. λ never falls below
   ``min_damping``. λ and the step count are optimizer state (``state_dict``), so a resumed run
   continues with the λ it had reached.

Memory: the Hessian, H + λI and its Cholesky factor are three d × d matrices. Before any
work the optimizer compares their size with ``max_memory`` (bytes, or a size such as "2G";
default: half the memory available on the parameters' device) and refuses, naming d and
the bytes, when they would not fit.

Use: ``opt.step(BatchLoss(model, x, y))`` (every evoprop trainer does this for it); the step
returns the loss at the weights it started from, like torch.optim's closures.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn
from torch.func import grad, jacrev

from evoprop.device import available_memory, parse_bytes
from evoprop.errors import ConfigError, TrainingDiverged
from evoprop.optim.batch import BatchLoss, FlatParams, require_batch_loss
from evoprop.optim.damped import DampedStep, count
from evoprop.optim.registry import register_optimizer



class Newton(DampedStep):
    """Damped Newton's method on the exact mini-batch Hessian (``step(BatchLoss(model, x, y))``).

    Args (besides those of :class:`~evoprop.optim.damped.DampedStep`: params, model, lr, damping, boost,
    min_damping, max_backtracks):
        hessian_batch: rows of each mini-batch the Hessian is computed on (None: all of them).
        chunk_size: Hessian columns computed at once (memory of the intermediate passes).
        max_memory: bytes (or "2G") the d × d matrices may take; None: half of what is available.
    """

    name = "newton"
    # λ's floor: a Tikhonov term that keeps every step partly a gradient step, so that a step does not
    # fit its batch of 4,096 with 7,850 weights and forget the others. 0.05 was chosen on the validation
    # split of MNIST softmax regression among 1e-6, 0.01, 0.05, 0.1, 0.2 and 1 (RESULTS.md, "Newton's
    # method and Hessian-free"); plain Levenberg–Marquardt is min_damping=1e-6.
    shared_defaults = {"min_damping": 0.05}

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], model: nn.Module, *,
                 hessian_batch: int | None = 512, chunk_size: int = 512, max_memory: int | str | None = None,
                 **shared: Any):
        count(chunk_size, "chunk_size")
        if hessian_batch is not None:
            count(hessian_batch, "hessian_batch")
        super().__init__(params, model, **{**self.shared_defaults, **shared})
        self.hessian_batch = hessian_batch
        self.chunk_size = chunk_size
        first = self.flat.params[0]
        check_hessian_memory(self.flat.dim, first.dtype, first.device, max_memory, "newton")

    def hessian(self, batch: BatchLoss, theta: torch.Tensor | None = None, rows: int | None = None) -> torch.Tensor:
        """The exact d × d Hessian of the batch loss at θ (default: the current weights) on ``rows`` rows."""
        theta = self.flat.vector() if theta is None else theta
        return exact_hessian(batch, self.flat, theta, rows, self.chunk_size)

    @torch.no_grad()
    def step(self, closure: BatchLoss | None = None) -> torch.Tensor:
        """One damped Newton step on the mini-batch of ``closure``; returns the loss before it."""
        batch = require_batch_loss(closure, "newton")
        theta, g, f0 = self._gradient(batch)
        rows = self.hessian_batch if self.hessian_batch is not None and self.hessian_batch < len(batch) else None
        h = self.hessian(batch, theta, rows)
        if not torch.isfinite(h).all():
            raise TrainingDiverged("newton: the Hessian is not finite; lower lr or raise damping")
        direction, lam = damped_solve(h, g, self.damping, self.boost)

        def predicted(alpha: float) -> float:  # q(s) − q(0) of the undamped model, s = α d
            s = alpha * direction
            return float(g @ s + 0.5 * (s @ (h @ s)))

        self._take_step(batch, theta, g, f0, direction, predicted, lam)
        return f0.detach()


def exact_hessian(batch: BatchLoss, flat: FlatParams, theta: torch.Tensor, rows: int | None = None,
                  chunk_size: int = 512) -> torch.Tensor:
    """∇²f(θ) of the batch loss on its first ``rows`` rows: the Jacobian of the gradient, ``chunk_size`` columns at once."""
    with torch.enable_grad():
        return jacrev(grad(lambda t: batch.loss(flat, t, rows)), chunk_size=chunk_size)(theta.detach())


def damped_solve(h: torch.Tensor, g: torch.Tensor, lam: float, boost: float, max_tries: int = 60
                 ) -> tuple[torch.Tensor, float]:
    """d = −(H + λI)⁻¹ g by Cholesky, λ multiplied by ``boost`` until H + λI is positive definite."""
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    for _ in range(max_tries):
        factor, info = torch.linalg.cholesky_ex(h + lam * eye)
        if int(info) == 0:
            return -torch.cholesky_solve(g.unsqueeze(1), factor).squeeze(1), lam
        lam *= boost
    raise TrainingDiverged(f"newton: H + λI is not positive definite even at λ = {lam:.3g}")


def check_hessian_memory(dim: int, dtype: torch.dtype, device: torch.device, max_memory: Any, name: str,
                         matrices: int = 3) -> None:
    """Raise a one-line ConfigError when ``matrices`` d × d matrices exceed the memory budget."""
    budget = parse_bytes(max_memory) if max_memory is not None else available_memory(device) // 2
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = matrices * dim * dim * itemsize
    if need > budget:
        raise ConfigError(
            f"{name}: the Hessian of d = {dim:,} parameters needs {matrices} x {dim:,}^2 x {itemsize} bytes = "
            f"{_size(need)}, over the budget of {_size(budget)} (max_memory); use a smaller model "
            f"(e.g. --depth 1) or --optimizer hessian-free, which never forms the matrix"
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def _register() -> None:
    register_optimizer(
        "newton",
        Newton,
        Newton.defaults(),
        "Newton's method: exact mini-batch Hessian, Levenberg-Marquardt damping, Cholesky, Armijo line search",
        needs_model=True,
    )


_register()
