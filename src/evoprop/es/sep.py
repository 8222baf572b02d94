"""Separable (diagonal) CMA-ES: Ros & Hansen, "A simple modification in CMA-ES achieving
linear time and space complexity", PPSN 2008.

The covariance is diagonal, C = diag(D²); sampling is the elementwise product
y = z ⊙ D, and C^{-1/2} y = z. Memory is O(d) besides the population. Learning
rates are the tutorial's c1, cμ multiplied by (d + 2) / 3 (Ros & Hansen's
rule), with positive weights only (as the ``cmaes`` package's SepCMA).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .family import CMAFamily


class SepCMA(CMAFamily):
    """Diagonal CMA-ES.

    Args: as :class:`~evoprop.es.cma.CMA` (x0, sigma0, popsize, seed, mu, c1,
    cmu, cc, cs, ds, state_dtype), without ``active`` and ``method``; and ``slices``: draw each
    population in that many slices, each from its own (seed, generation, slice) stream, and add the
    update's sums slice by slice (:mod:`evoprop.es.slices`), so that several processes can each hold
    a share of the slices (:meth:`~evoprop.es.base.Strategy.shard`) and reach the state a single
    process with the same ``slices`` reaches, bit for bit. 1 (the default): one draw, as always.
    """

    name = "sep"
    # The update needs only z: with y = z ⊙ D, Σ w y = D ⊙ Σ w z and Σ w y² = D² ⊙ Σ w z².
    # So ask() builds x in y's memory and no (P, d) y is kept (at large P·d a fresh buffer
    # per generation costs more page faults than the update itself).
    _keeps_y = False
    _state_tensors = CMAFamily._state_tensors + ("_var",)

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 mu: int | None = None, c1: float | None = None, cmu: float | None = None,
                 cc: float | None = None, cs: float | None = None, ds: float | None = None,
                 state_dtype: torch.dtype | None = None, slices: int = 1) -> None:
        super().__init__(x0, sigma0, popsize, seed=seed, mu=mu, separable=True, state_dtype=state_dtype,
                         rates=dict(c1=c1, cmu=cmu, cc=cc, cs=cs, ds=ds))
        self._init_slices(slices)
        n = self._dim
        self._var = torch.ones(n, device=self._device, dtype=self._state_dtype)  # diagonal of C
        self._std = torch.ones(n, device=self._device, dtype=self._work_dtype)

    def _after_load(self) -> None:
        self._std = self._var.sqrt().to(self._work_dtype)

    def _sample(self, z: torch.Tensor) -> torch.Tensor:
        return z * self._std

    def _candidates(self, z: torch.Tensor, out: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        # m + sigma * (z ⊙ D) in one pass over z, with no (P, d) temporary
        x = out if out is not None else torch.empty_like(z)
        m = self._mean.to(self._work_dtype).unsqueeze(0)
        return torch.addcmul(m, z, self._std.unsqueeze(0), value=self._sigma, out=x), None

    def _whiten(self, y: torch.Tensor) -> torch.Tensor:
        return y / self._std

    def _update(self, z: torch.Tensor, y: torch.Tensor, order: torch.Tensor, f: torch.Tensor) -> None:
        ws = self._by_sample(self._w, order).to(self._work_dtype)  # zero for the unselected
        z_w, z_sq = self._moments(z, ws)  # Σ w_i z_i, Σ w_i z_i²
        z_w = z_w.to(self._state_dtype)  # = C^{-1/2} ⟨y⟩_w
        y_w = z_w * self._var.sqrt()  # ⟨y⟩_w = D ⊙ z_w (eq. 41)
        self._update_mean(y_w)
        self._update_p_sigma(z_w, self._rates.cs)
        h_sigma = self._h_sigma()
        self._update_p_c(y_w, h_sigma)
        self._update_C(z_sq, h_sigma)
        self._update_sigma()

    def _moments(self, z: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ w z, Σ w z²) over the population; with slices, each slice's sums over its own rows (this
        process's z holds its slices' rows), gathered and added in slice order."""
        if self._slices == 1:
            return weighted_moments(z, ws)
        d = self._dim

        def fill(out: torch.Tensor, z_k: torch.Tensor, w_k: torch.Tensor) -> None:
            first, second = weighted_moments(z_k, w_k)
            out[:d].copy_(first)
            out[d:].copy_(second)

        total = self._slice_sums(2 * d, fill, z, self._own_rows(ws))  # S·2d values over the processes
        return total[:d], total[d:]

    def _update_C(self, z_sq: torch.Tensor, h_sigma: bool) -> None:
        """The diagonal of Hansen 2016, eq. 47 (positive weights only, Σw = 1):
        C_ii ← (1 + c_1 δ(h_σ) − c_1 − c_μ) C_ii + c_1 p_c,i² + c_μ Σ w_j y_j,i², with Σ w y² = D² ⊙ Σ w z²."""
        r = self._rates
        rank_mu = z_sq.to(self._state_dtype) * self._var
        var = self._var
        var.mul_(self._rank_one_decay(h_sigma) - r.cmu)
        var.addcmul_(self._pc, self._pc, value=r.c1)
        var.add_(rank_mu, alpha=r.cmu)
        var.clamp_(min=float(var.max()) * 1e-30)  # keep every variance positive in floating point
        self._std = var.sqrt().to(self._work_dtype)

    def _covariance_problem(self) -> str | None:
        var = self._var
        if not bool(torch.isfinite(var).all()):
            return "its variances (the diagonal covariance) became non-finite"
        if not float(var.min()) > 0:
            return "a variance of its diagonal covariance is no longer positive"
        return None

    def _max_std(self) -> float:
        return math.sqrt(float(self._var.max()))

    def _condition(self) -> float:
        return float(self._var.max() / self._var.min())

    @property
    def variances(self) -> torch.Tensor:
        """The diagonal of C (a copy); the sampling variances are σ² C_ii."""
        return self._var.clone()


def weighted_moments(z: torch.Tensor, weights: torch.Tensor, rows: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_i w_i z_i, Σ_i w_i z_i²) over the rows with non-zero weight, a few rows at a time.

    One pass over the selected rows only (half of the population), and never a (P, d)
    temporary: at d = 157,000, P = 1,000 a full ``weights @ z`` alone reads 628 MB.
    """
    first = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
    second = torch.zeros_like(first)
    selected = weights.nonzero().squeeze(1)
    for idx in selected.split(rows):
        # a copy (squared in place below); index_select gathers rows faster than z[idx]
        block, w = z.index_select(0, idx), weights[idx]
        first.addmv_(block.T, w)
        second.addmv_(block.square_().T, w)
    return first, second
