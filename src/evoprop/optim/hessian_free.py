"""Hessian-free optimization (Martens, ICML 2010): Newton steps without ever forming a d × d matrix.

Each step minimizes the damped quadratic model of the mini-batch loss around θ,

    q_λ(s) = gᵀs + ½ sᵀ (G + λI) s,

by the method of conjugate gradients (CG; Nocedal & Wright 2006, Alg. 5.2), which needs the
curvature matrix only through products G v. G is the generalized Gauss–Newton matrix
(Schraudolph 2002; Martens 2010, §4.2) of the mean softmax cross-entropy of the logits z(θ):

    G = (1/m) Σ_n J_nᵀ H_n J_n,   H_n = diag(p_n) − p_n p_nᵀ,   p_n = softmax(z_n),

J_n = ∂z_n/∂θ. It is positive semi-definite (unlike the Hessian of a non-convex net), so CG is
well posed, and one product costs a forward-mode pass (J v: ``torch.func.jvp``) and a
reverse-mode pass (Jᵀ u: ``torch.func.vjp``) on the ``curvature_batch`` first rows of the batch —
Martens' curvature mini-batch (§4.3), smaller than the gradient's because the curvature
needs fewer examples than the gradient to be estimated usefully.

The pieces of one step, in Martens' terms:

1. g: the gradient of the loss on the whole mini-batch.
2. CG on (G + λI) s = −g, **warm-started** from ``decay`` (0.95) times the previous step's CG
   solution (§4.5; from zero if that start is worse than zero), for at most ``cg_iters``
   iterations, stopped earlier by Martens' progress test (§4.4): at iteration i, with
   k = max(10, i/10), stop when the model's value φ_i = q_λ(s_i) < 0 improved by less than
   k·``cg_tol`` relative over the last k iterations: (φ_i − φ_{i−k}) / φ_i < k·``cg_tol``.
3. A backtracking (Armijo) line search along the CG solution s on the whole batch, from α = γ
   (``lr``, 1 by default), halving while the loss does not decrease sufficiently.
4. Levenberg–Marquardt λ (§4.1): ρ = (f(θ + αs) − f(θ)) / (q(αs) − q(0)) with the undamped model
   q; ρ < ¼: λ ← λ·``boost``; ρ > ¾: λ ← λ/``boost`` (Martens: 3/2).

Left out from Martens 2010: the diagonal CG preconditioner (it needs per-example squared
gradients) and backtracking over the stored CG iterates (here: a line search along the last).
λ, the previous CG solution and the step count are optimizer state (``state_dict``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jvp, vjp

from evoprop.optim.batch import BatchLoss, FlatParams, require_batch_loss
from evoprop.optim.damped import DampedStep, count, positive
from evoprop.optim.registry import register_optimizer


def ggn_product(batch: BatchLoss, flat: FlatParams, theta: torch.Tensor, rows: int | None = None
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ G v, the Gauss–Newton matrix of the batch's mean cross-entropy at θ times v (no d × d matrix)."""

    def logits(t: torch.Tensor) -> torch.Tensor:
        return batch.logits(flat, t, rows)

    with torch.enable_grad():
        z, pullback = vjp(logits, theta)  # the reverse pass is recorded once per step
    z = z.detach()
    p = torch.softmax(z.reshape(-1, z.shape[-1]), dim=-1)
    m = p.shape[0]

    def product(v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            _, jv = jvp(logits, (theta,), (v,))
        u = jv.reshape(-1, z.shape[-1])
        hu = (p * u - p * (p * u).sum(dim=1, keepdim=True)) / m  # H_n J_n v of the mean loss
        (gv,) = pullback(hu.reshape(z.shape))
        return gv.detach()

    return product


class HessianFree(DampedStep):
    """Hessian-free optimization (Martens 2010): CG on Gauss–Newton products (``step(BatchLoss(model, x, y))``).

    Args (besides those of :class:`~evoprop.optim.damped.DampedStep`: params, model, lr, damping, boost,
    min_damping, max_backtracks; lr is γ, the first step length the line search tries along the CG solution):
        cg_iters: the most CG iterations per step (each one Gauss–Newton product).
        cg_tol: Martens' relative-progress tolerance ε of the CG stopping test (5e-4).
        decay: the warm start of CG is ``decay`` times the previous solution (Martens: 0.95; 0: cold).
        curvature_batch: rows of each mini-batch the products use (None: all of them).
    """

    name = "hessian-free"

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], model: nn.Module, *,
                 cg_iters: int = 30, cg_tol: float = 5e-4, decay: float = 0.95, curvature_batch: int | None = 256,
                 **shared: Any):
        positive(cg_tol, "cg_tol")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay <= 1:
            raise ValueError(f"decay must be a number in [0, 1], got {decay!r}")
        count(cg_iters, "cg_iters")
        if curvature_batch is not None:
            count(curvature_batch, "curvature_batch")
        super().__init__(params, model, **{**self.shared_defaults, **shared})
        self.cg_iters = cg_iters
        self.cg_tol = float(cg_tol)
        self.decay = float(decay)
        self.curvature_batch = curvature_batch

    @torch.no_grad()
    def step(self, closure: BatchLoss | None = None) -> torch.Tensor:
        """One Hessian-free step on the mini-batch of ``closure``; returns the loss before it."""
        batch = require_batch_loss(closure, "hessian-free")
        if batch.loss_fn is not F.cross_entropy:
            raise ValueError("hessian-free's Gauss-Newton matrix is that of the mean cross-entropy of logits: "
                             "use BatchLoss's default loss_fn")
        state = self._state()
        theta, g, f0 = self._gradient(batch)
        rows = self.curvature_batch if self.curvature_batch is not None and self.curvature_batch < len(batch) else None
        gv = ggn_product(batch, self.flat, theta, rows)

        previous = state.get("direction")
        start = previous.reshape(-1) * self.decay if previous is not None and self.decay > 0 else None
        s, s_gs, iters = conjugate_gradient(gv, g, self.damping, start, self.cg_iters, self.cg_tol)
        slope = float(g @ s)
        last = self._take_step(batch, theta, g, f0, s,
                               lambda alpha: alpha * slope + 0.5 * alpha * alpha * s_gs,  # q(αs) − q(0), undamped
                               self.damping)
        state["direction"] = s  # CG's next warm start
        last["cg_iters"] = iters
        return f0.detach()


def conjugate_gradient(
    product: Callable[[torch.Tensor], torch.Tensor],
    g: torch.Tensor,
    lam: float,
    start: torch.Tensor | None,
    max_iters: int,
    tol: float,
) -> tuple[torch.Tensor, float, int]:
    """Minimize φ(s) = gᵀs + ½ sᵀ(G + λI)s by CG (Nocedal & Wright Alg. 5.2) with Martens' stopping test.

    Returns (s, sᵀGs, iterations); ``product(v)`` = G v. With A = G + λI, b = −g and the residual
    r = b − A s that CG updates anyway, φ(s) = ½ sᵀAs − bᵀs = −½ sᵀ(r + b): no extra products.
    """

    def apply(v: torch.Tensor) -> torch.Tensor:
        return product(v) + lam * v

    b = -g
    if start is not None:
        r = b - apply(start)
        if float(-0.5 * start @ (r + b)) < 0:  # φ(start) < φ(0) = 0: worth starting from
            s = start.clone()
        else:
            s, r = torch.zeros_like(g), b.clone()
    else:
        s, r = torch.zeros_like(g), b.clone()
    direction = r.clone()
    rr = float(r @ r)
    values: list[float] = []  # φ after each iteration
    iters = 0
    for i in range(1, max_iters + 1):
        a_dir = apply(direction)
        curvature = float(direction @ a_dir)
        if curvature <= 0 or rr == 0:  # G + λI ≻ 0, so only at an exact solution
            break
        step = rr / curvature
        s.add_(direction, alpha=step)
        r.sub_(a_dir, alpha=step)
        iters = i
        phi = float(-0.5 * s @ (r + b))  # φ(s) = ½sᵀAs − bᵀs with As = b − r
        values.append(phi)
        k = max(10, i // 10)
        if i > k and phi < 0 and (phi - values[-1 - k]) / phi < k * tol:
            break
        rr_new = float(r @ r)
        direction.mul_(rr_new / rr).add_(r)
        rr = rr_new
    # sᵀGs = sᵀ(As) − λ‖s‖² = sᵀ(b − r) − λ‖s‖²
    s_gs = float(s @ (b - r)) - lam * float(s @ s)
    return s, s_gs, iters


def _register() -> None:
    register_optimizer(
        "hessian-free",
        HessianFree,
        HessianFree.defaults(),
        "Hessian-free (Martens 2010): CG on Gauss-Newton products (jvp/vjp), LM damping, warm-started CG",
        needs_model=True,
    )


_register()
