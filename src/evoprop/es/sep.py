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

from .base import Strategy, cma_learning_rates, log_weights, override_rates


class SepCMA(Strategy):
    """Diagonal CMA-ES.

    Args: as :class:`~evoprop.es.cma.CMA` (x0, sigma0, popsize, seed, mu, c1,
    cmu, cc, cs, ds, state_dtype), without ``active`` and ``method``.
    """

    name = "sep"
    # The update needs only z: with y = z ⊙ D, Σ w y = D ⊙ Σ w z and Σ w y² = D² ⊙ Σ w z².
    # So ask() builds x in y's memory and no (P, d) y is kept: at d = 157,000, P = 1,000
    # each such buffer is 628 MB of freshly faulted pages per generation.
    _keeps_y = False
    _state_tensors = ("_ps", "_pc", "_var")

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 mu: int | None = None, c1: float | None = None, cmu: float | None = None,
                 cc: float | None = None, cs: float | None = None, ds: float | None = None,
                 state_dtype: torch.dtype | None = None) -> None:
        super().__init__(x0, sigma0, popsize, seed=seed, state_dtype=state_dtype)
        from evoprop.errors import ConfigError

        lam, n = self._popsize, self._dim
        if mu is not None and not (1 <= mu <= lam):
            raise ConfigError(f"mu must be in [1, popsize={lam}], got {mu}")
        w, mueff, _ = log_weights(lam, n, mu=mu)
        rates = cma_learning_rates(n, mueff)
        scale = (n + 2.0) / 3.0
        rates["c1"] = min(1.0, rates["c1"] * scale)
        rates["cmu"] = min(1.0 - rates["c1"], rates["cmu"] * scale)
        override_rates(rates, c1=c1, cmu=cmu, cc=cc, cs=cs, ds=ds)
        self._w = w.to(device=self._device, dtype=self._sdtype)
        self._mueff = mueff
        self._rates = rates
        self._ps = torch.zeros(n, device=self._device, dtype=self._sdtype)
        self._pc = torch.zeros(n, device=self._device, dtype=self._sdtype)
        self._var = torch.ones(n, device=self._device, dtype=self._sdtype)  # diagonal of C
        self._std = torch.ones(n, device=self._device, dtype=self._dtype)

    def _after_load(self) -> None:
        self._std = self._var.sqrt().to(self._dtype)

    def _sample(self, z: torch.Tensor) -> torch.Tensor:
        return z * self._std

    def _candidates(self, z: torch.Tensor, out: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        # m + sigma * (z ⊙ D) in one pass over z, with no (P, d) temporary
        x = out if out is not None else torch.empty_like(z)
        m = self._mean.to(self._dtype).unsqueeze(0)
        return torch.addcmul(m, z, self._std.unsqueeze(0), value=self._sigma, out=x), None

    def _whiten(self, y: torch.Tensor) -> torch.Tensor:
        return y / self._std

    def _update(self, z: torch.Tensor, y: torch.Tensor, order: torch.Tensor, f: torch.Tensor) -> None:
        r = self._rates
        n, wd, sd = self._dim, self._dtype, self._sdtype
        ws = self._by_sample(self._w, order).to(wd)  # zero for the unselected
        zw, zsq = weighted_moments(z, ws)
        zw = zw.to(sd)
        yw = zw * self._var.sqrt()
        self._mean.add_(yw, alpha=self._sigma)
        self._csa(self._ps, zw, r["cs"], self._mueff)
        g = self._generation + 1
        hsig = float(self._ps.norm()) / math.sqrt(1.0 - (1.0 - r["cs"]) ** (2 * g)) < \
            (1.4 + 2.0 / (n + 1.0)) * self._chin
        cc = r["cc"]
        self._pc.mul_(1.0 - cc)
        if hsig:
            self._pc.add_(yw, alpha=math.sqrt(cc * (2.0 - cc) * self._mueff))
        rank_mu = zsq.to(sd) * self._var  # Σ w y², from z
        delta = 0.0 if hsig else cc * (2.0 - cc)
        var = self._var
        var.mul_(1.0 + r["c1"] * delta - r["c1"] - r["cmu"])
        var.addcmul_(self._pc, self._pc, value=r["c1"])
        var.add_(rank_mu, alpha=r["cmu"])
        var.clamp_(min=float(var.max()) * 1e-30)
        self._std = var.sqrt().to(wd)
        self._csa_sigma(self._ps, r["cs"], r["ds"])

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
        # a copy (squared in place below); index_select gathers rows ~1.8x faster than z[idx]
        block, w = z.index_select(0, idx), weights[idx]
        first.addmv_(block.T, w)
        second.addmv_(block.square_().T, w)
    return first, second
