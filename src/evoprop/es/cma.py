"""Standard CMA-ES (Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772, 2016).

Weighted recombination, cumulative step-size adaptation (CSA), rank-one and
rank-μ covariance updates, active (negative) weights by default, all with the
tutorial's default constants. Per generation the work is two matrix products:
sampling ``Y = Z Aᵀ`` (P·d² multiply-adds) and the rank-μ update
``Yᵀ diag(w°) Y`` (P·d², or μ·d² with ``active=False``), never a P×d×d tensor
and never a Python loop over samples. The factor A is refreshed lazily, see
:mod:`evoprop.es.cov`.

One generation (``_update``) is the tutorial's summary (its Appendix A), step by step:
mean (eq. 42), p_σ (eq. 43), h_σ and p_c (eq. 45), C with active weights (eqs. 46-47),
then σ (eq. 44), which must come last: eqs. 42-47 use the σ the population was drawn with.

Over several processes (``slices=S``, :mod:`evoprop.es.slices`; ``torchrun``, see
:mod:`evoprop.train.sharded`): every process holds the same C and the same factor A (each refreshes
it from the same C, so to the same bits on the CPU), draws z for its own slices only, samples
y = A z for them and evaluates its rows; the P losses are all-gathered and every process ranks all
P. Each process then forms, slice by slice over its own rows, the mean's Σ w_i y_i:λ and
Σ w_i z_i:λ (eqs. 41-43, O(d)) and the rank-μ product Σ w°_i y_i:λ y_i:λᵀ (eq. 47, O(d²); with
active weights over every row, the negative ones rescaled by eq. 46, else over the μ selected);
the per-slice parts are all-gathered and added in slice order, so S processes reach the state of
one process with the same ``slices``, bit for bit. Communication per generation is therefore
O(S·d²): S · (2d + L) values of the work dtype, L the lower block triangle of a d x d matrix
(``cov.lower_size``: d² up to d = 1,024, about d²/2 · (1 + 1/⌈d/1,024⌉) above). At d = 7,850 (a
784 x 10 layer with biases) that is 34.7 M float32 values, 139 MB per slice and generation (the
whole d x d would be 246 MB); ``sep`` sends 2d values per slice, ``lmma`` d.
"""

from __future__ import annotations

from typing import Any

import torch

from .cov import FullCovariance, RankMu
from .family import CMAFamily


class CMA(FullCovariance, CMAFamily):
    """Full-covariance CMA-ES.

    Args:
        x0: initial mean, 1-D tensor (its dtype/device are used throughout).
        sigma0: initial step size (> 0).
        popsize: λ, default 4 + ⌊3 ln d⌋.
        seed: seed of the private ``torch.Generator``.
        mu: number of positive weights (default ⌊λ/2⌋).
        active: use negative weights (active CMA, the tutorial's default).
        method: covariance factorization, ``"auto"`` | ``"eigh"`` | ``"cholesky"``.
        c1, cmu, cc, cs, ds: override the tutorial's learning rates.
        state_dtype: dtype of mean, paths and C (default float64).
        slices: draw each population in that many slices (default 1: one draw, as always), so that
            several processes can share them (see the module docstring and :mod:`evoprop.es.slices`).
    """

    name = "cma"
    _state_tensors = CMAFamily._state_tensors + FullCovariance._cov_tensors
    _state_scalars = FullCovariance._cov_scalars

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 mu: int | None = None, active: bool = True, method: str = "auto",
                 c1: float | None = None, cmu: float | None = None, cc: float | None = None,
                 cs: float | None = None, ds: float | None = None,
                 state_dtype: torch.dtype | None = None, slices: int = 1) -> None:
        super().__init__(x0, sigma0, popsize, seed=seed, mu=mu, active=active, state_dtype=state_dtype,
                         rates=dict(c1=c1, cmu=cmu, cc=cc, cs=cs, ds=ds))
        self._init_slices(slices)
        self._active = bool(active)
        self._init_cov(method)
        # pycma's lazy-update gap, in generations
        self._gap = 1.0 / (self._rates.c1 + self._rates.cmu + 1e-23) / self._dim / 10.0

    def _before_ask(self) -> None:
        self._refresh_if_due(self._gap)

    def _update(self, z: torch.Tensor, y: torch.Tensor, order: torch.Tensor, f: torch.Tensor) -> None:
        ws = self._own_rows(self._by_sample(self._w, order))  # weight of each of this process's samples
        wpos = ws.clamp_min(0).to(self._work_dtype)
        # the rank-μ product's weights: w° (eq. 46) on every sample, or only the μ positive ones
        wc = (self._active_weights(ws, z) if self._active else ws.clamp_min(0)).to(self._work_dtype)
        if self._slices == 1:
            y_w = (wpos @ y).to(self._state_dtype)  # ⟨y⟩_w = Σ w_i y_i:λ (eq. 41; positive weights sum to 1)
            z_w = (wpos @ z).to(self._state_dtype)  # its whitened step: C^{-1/2} ⟨y⟩_w = B z_w
            sel = None if self._active else (ws > 0).nonzero().squeeze(1)
            rank_mu = (y, wc) if sel is None else (y[sel], wc[sel])
        else:  # the same sums, slice by slice over the processes (evoprop.es.slices)
            y_w, z_w, rank_mu = self._weighted_sums(z, y, wpos, wc)
        self._update_mean(y_w)
        self._update_p_sigma(self._to_white(z_w), self._rates.cs)
        h_sigma = self._h_sigma()
        self._update_p_c(y_w, h_sigma)
        self._update_C(rank_mu, h_sigma)
        self._update_sigma()

    def _active_weights(self, ws: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """w°_i = w_i · (1 if w_i ≥ 0 else d / ||C^{-1/2} y_i||²) (Hansen 2016, eq. 46), for the rows
        ``ws`` and ``z`` hold (this process's).

        ||C^{-1/2} y_i|| = ||z_i||. Injected points get no negative weight (see ``inject``).
        Drawn in slices, the norms are taken slice by slice (see ``Strategy._per_slice``).
        """
        wo = ws.clone()
        wo[: self._injected_rows].clamp_(min=0)
        for rows in self._local_slices():
            w = wo[rows]  # (a view: written into wo)
            neg = w < 0
            if bool(neg.any()):
                znorm2 = (z[rows][neg.nonzero().squeeze(1)].to(self._state_dtype) ** 2).sum(1)
                w[neg] = w[neg] * self._dim / znorm2.clamp_min(1e-30)
        return wo

    def _update_C(self, rank_mu: RankMu, h_sigma: bool) -> None:
        """C ← (1 + c_1 δ(h_σ) − c_1 − c_μ Σw) C + c_1 p_c p_cᵀ + c_μ Σ w°_i y_i y_iᵀ (Hansen 2016, eq. 47)."""
        r = self._rates
        C = self._C
        C.mul_(self._rank_one_decay(h_sigma) - r.cmu * self._wsum)
        C.addr_(self._pc, self._pc, alpha=r.c1)
        self._add_rank_mu(rank_mu, r.cmu)
        self._dirty = True
