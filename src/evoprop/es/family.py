"""What ``cma`` and ``sep`` share (Hansen, "The CMA Evolution Strategy: A Tutorial",
arXiv:1604.00772, 2016): the constructor's opening (weights, learning rates, paths), the
stall indicator h_σ and the rank-one evolution path p_c (eq. 45)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import Strategy
from .constants import CMARates, log_weights


class CMAFamily(Strategy):
    """A strategy with CSA, a rank-one path p_c and the tutorial's learning rates (``CMARates``)."""

    _state_tensors = Strategy._state_tensors + ("_pc",)

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 mu: int | None = None, active: bool = False, separable: bool = False,
                 rates: dict[str, float | None] | None = None, state_dtype: torch.dtype | None = None) -> None:
        """``rates``: the learning rates the user gave (None: the default), see ``CMARates.overridden``.
        ``separable``: c_1, c_μ scaled for a diagonal C. ``active``: negative weights (eqs. 50-53),
        which depend on c_1 and c_μ, so they are computed after the rates."""
        super().__init__(x0, sigma0, popsize, seed=seed, state_dtype=state_dtype)
        w, mueff = self._positive_weights(mu)
        r = CMARates.tutorial(self._dim, mueff)
        if separable:
            r = r.separable(self._dim)
        r = r.overridden(**(rates or {}))
        if active:  # (μ_eff, of the positive weights, is unchanged)
            w, mueff, _ = log_weights(self._popsize, self._dim, mu=mu, active=True, c1=r.c1, cmu=r.cmu)
        self._w = w.to(device=self._device, dtype=self._state_dtype)
        self._wsum = float(w.sum())
        self._mueff = mueff
        self._rates = r
        self._pc = torch.zeros(self._dim, device=self._device, dtype=self._state_dtype)

    @property
    def rates(self) -> CMARates:
        """The learning rates in use (c_σ, d_σ, c_c, c_1, c_μ)."""
        return self._rates

    @property
    def p_c(self) -> torch.Tensor:
        """The rank-one evolution path p_c (Hansen 2016, eq. 45; a copy, state dtype)."""
        return self._pc.clone()

    def _h_sigma(self) -> bool:
        """h_σ (Hansen 2016, under eq. 45): false while ||p_σ|| is large, which stalls p_c after a
        σ increase (e.g. at the start, while p_σ has not yet reached its stationary length)."""
        g = self._generation + 1
        cs = self._rates.cs
        return float(self._ps.norm()) / math.sqrt(1.0 - (1.0 - cs) ** (2 * g)) < \
            (1.4 + 2.0 / (self._dim + 1.0)) * self._chin

    def _update_p_c(self, y_w: torch.Tensor, h_sigma: bool) -> None:
        """p_c ← (1 − c_c) p_c + h_σ √(c_c (2 − c_c) μ_eff) ⟨y⟩_w (Hansen 2016, eq. 45)."""
        cc = self._rates.cc
        self._pc.mul_(1.0 - cc)
        if h_sigma:
            self._pc.add_(y_w, alpha=math.sqrt(cc * (2.0 - cc) * self._mueff))

    def _rank_one_decay(self, h_sigma: bool) -> float:
        """The factor 1 + c_1 δ(h_σ) − c_1 of C in eq. 47, δ(h_σ) = (1 − h_σ) c_c (2 − c_c): the
        variance p_c lost while stalled is given back."""
        r = self._rates
        delta = 0.0 if h_sigma else r.cc * (2.0 - r.cc)
        return 1.0 + r.c1 * delta - r.c1

    def _update_sigma(self) -> None:
        """Cumulative step-size adaptation (Hansen 2016, eq. 44)."""
        self._update_sigma_csa(self._rates.cs, self._rates.ds)
