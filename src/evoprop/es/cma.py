"""Standard CMA-ES (Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772, 2016).

Weighted recombination, cumulative step-size adaptation (CSA), rank-one and
rank-μ covariance updates, active (negative) weights by default, all with the
tutorial's default constants. Per generation the work is two matrix products:
sampling ``Y = Z Aᵀ`` (P·d² multiply-adds) and the rank-μ update
``Yᵀ diag(w°) Y`` (P·d², or μ·d² with ``active=False``), never a P×d×d tensor
and never a Python loop over samples. The factor A is refreshed lazily, see
:mod:`evoprop.es.cov`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import Strategy, cma_learning_rates, log_weights, override_rates
from .cov import FullCovariance, add_weighted_gram_lower


class CMA(FullCovariance, Strategy):
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
    """

    name = "cma"
    _state_tensors = ("_ps", "_pc") + FullCovariance._cov_tensors
    _state_scalars = FullCovariance._cov_scalars

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 mu: int | None = None, active: bool = True, method: str = "auto",
                 c1: float | None = None, cmu: float | None = None, cc: float | None = None,
                 cs: float | None = None, ds: float | None = None,
                 state_dtype: torch.dtype | None = None) -> None:
        super().__init__(x0, sigma0, popsize, seed=seed, state_dtype=state_dtype)
        from evoprop.errors import ConfigError

        lam, n = self._popsize, self._dim
        if mu is not None and not (1 <= mu <= lam):
            raise ConfigError(f"mu must be in [1, popsize={lam}], got {mu}")
        _, mueff, _ = log_weights(lam, n, mu=mu)
        rates = cma_learning_rates(n, mueff)
        override_rates(rates, c1=c1, cmu=cmu, cc=cc, cs=cs, ds=ds)
        w, mueff, _ = log_weights(lam, n, mu=mu, active=active, c1=rates["c1"], cmu=rates["cmu"])
        self._w = w.to(device=self._device, dtype=self._sdtype)
        self._wsum = float(w.sum())
        self._mueff = mueff
        self._active = bool(active)
        self._rates = rates
        self._ps = torch.zeros(n, device=self._device, dtype=self._sdtype)
        self._pc = torch.zeros(n, device=self._device, dtype=self._sdtype)
        self._init_cov(method)
        # pycma's lazy-update gap, in generations
        self._gap = 1.0 / (rates["c1"] + rates["cmu"] + 1e-23) / n / 10.0

    def _before_ask(self) -> None:
        self._refresh_if_due(self._gap)

    def _update(self, z: torch.Tensor, y: torch.Tensor, order: torch.Tensor, f: torch.Tensor) -> None:
        r = self._rates
        n, wd, sd = self._dim, self._dtype, self._sdtype
        ws = self._by_sample(self._w, order)  # weight of each sample, state dtype
        wpos = ws.clamp_min(0).to(wd)
        yw = (wpos @ y).to(sd)  # Σ w_i y_i:λ  (positive weights sum to 1)
        zw = (wpos @ z).to(sd)
        sigma = self._sigma
        # mean (c_m = 1)
        self._mean.add_(yw, alpha=sigma)
        # step-size path and h_σ
        self._csa(self._ps, self._to_white(zw), r["cs"], self._mueff)
        g = self._generation + 1
        ps_norm = float(self._ps.norm())
        hsig = ps_norm / math.sqrt(1.0 - (1.0 - r["cs"]) ** (2 * g)) < (1.4 + 2.0 / (n + 1.0)) * self._chin
        cc = r["cc"]
        self._pc.mul_(1.0 - cc)
        if hsig:
            self._pc.add_(yw, alpha=math.sqrt(cc * (2.0 - cc) * self._mueff))
        # covariance: (1 + c1 δ(h_σ) - c1 - cμ Σw) C + c1 p_c p_cᵀ + cμ Σ w°_i y_i y_iᵀ
        if self._active:
            wo = ws.clone()
            wo[: self._injected_rows].clamp_(min=0)  # no negative weight for injected points (see inject)
            neg = wo < 0
            if bool(neg.any()):
                znorm2 = (z[neg.nonzero().squeeze(1)].to(sd) ** 2).sum(1)  # ||C^{-1/2} y_i||² = ||z_i||²
                wo[neg] = wo[neg] * n / znorm2.clamp_min(1e-30)
            rows = y
            wrow = wo.to(wd)
        else:
            sel = (ws > 0).nonzero().squeeze(1)
            rows = y[sel]
            wrow = ws[sel].to(wd)
        delta = 0.0 if hsig else cc * (2.0 - cc)
        C = self._C
        C.mul_(1.0 + r["c1"] * delta - r["c1"] - r["cmu"] * self._wsum)
        C.addr_(self._pc, self._pc, alpha=r["c1"])
        add_weighted_gram_lower(C, rows, wrow, r["cmu"])
        self._dirty = True
        self._csa_sigma(self._ps, r["cs"], r["ds"])
