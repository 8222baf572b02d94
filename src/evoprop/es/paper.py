"""The CMA-ES of the reproduced paper (the CMA-ES + SGD hybrid, see
:mod:`evoprop.experiments.paper_tables`), written as an IGO update (Ollivier, Arnold, Auger &
Hansen, "Information-Geometric Optimization Algorithms", JMLR 18, 2017): its equations
(1)-(5) exactly as printed.

With N the population, x_1..x_N sorted best first, m the mean *before* the update:

    (1) m ← m + η_m Σ_i w̃_i (x_i − m)
    (2) C ← C + η_c Σ_i w̃_i ((x_i − m)(x_i − m)ᵀ / σ − C)
    (3) p_σ ← p_σ + C^(−1/2) (m_new − m_old) / σ
    (4) σ ← σ · exp(||p_σ|| / E||N(0, I)|| − 1)
    (5) w̃_i = (1/N) · w((i − ½) / N),  w(q) = 1 if q < 0.4 else 0

with η_m = 1 and η_c = 1 / (d² Σ_i w̃_i²).  The population is drawn from N(m, σ² C).

How we read the ambiguous parts (``faithful=True``, the default):

* w̃_i = 1/N for the best 40 % (exactly those i with (i − ½)/N < 0.4), so
  Σ w̃ = 0.4 (approximately; ⌈0.4N − ½⌉/N exactly) and the mean moves 40 % of
  the way to the centroid of the elite, as printed (no renormalisation).
* "Σ_i w_i²" in η_c is Σ_i w̃_i² = k/N² (k elite samples), the weights actually
  used, so η_c = N²/(k d²) and the effective rate of (2) is η_c Σ w̃ = N/d² —
  the same order as the standard c_μ ≈ 2 μ_eff/d² = 0.8 N/d². (Reading w as the
  unnormalised 0/1 weights would give η_c Σ w̃ = 1/(N d²): C would not move.)
  If N/d² > 0.5 (tiny problems only: N > d²/2) the factor (1 − η_c Σ w̃) of C
  would fall below 0.5 and C could lose definiteness, so η_c is capped at
  0.5/Σ w̃ so that C stays positive definite. ``eta_c`` overrides it.
* (2) divides the outer product by σ, not σ² as printed; with x − m = σ y this
  adds σ·y yᵀ, so C's scale follows σ. m in (2) is the old mean.
* (3) has no decay and no normalisation: p_σ is a plain sum. C^(−1/2) is the
  inverse square root of the covariance the population was *sampled from*
  (the pre-update C, as in every CMA-ES), computed from the same lazily
  refreshed factor as ``cma`` (cadence 1/(η_c Σ w̃)/d/10 generations); above
  ``EIGH_MAX_DIM`` (10) dimensions that factor is the Cholesky factor L and L⁻¹
  stands in for C^(−1/2) (same norm for each step; see :mod:`evoprop.es.cov`).
* E||N(0, I)|| is the exact value √2 Γ((d+1)/2)/Γ(d/2).

What breaks when run literally: p_σ is never forgotten, so ||p_σ|| only grows
as a random walk (plus a drift while the elite keeps moving the mean one
way). Early on ||p_σ|| ≪ E||N|| and σ shrinks by up to e⁻¹ per generation;
once ||p_σ|| exceeds E||N|| (after ~N/0.4 generations of random walk or
~2.6√d generations of drift), σ grows every generation without bound, and C,
whose update (2) adds σ·y yᵀ, grows with it. On the sphere (d = 90, σ0 = 0.5)
σ falls to 5e-5 by generation 23 and the spread of the samples passes
1e20 × σ0 at generation 66, where the search stops with
:class:`~evoprop.errors.StrategyDiverged` (see :mod:`evoprop.es.base`); its
message says to use ``cma`` or ``faithful=False``. ``--strategy auto`` never
picks this variant.
``faithful=False`` keeps (1), (2) with σ² and the same weights and η_c, but
replaces (3)-(4) by standard CSA: p_σ ← (1 − c_σ) p_σ + √(c_σ(2 − c_σ) μ_eff)
C^(−1/2) (m_new − m_old) / (σ η_m Σ w̃) and σ ← σ exp(c_σ/d_σ (||p_σ||/E||N|| − 1)),
with the tutorial's c_σ and d_σ for μ_eff = 1/Σ(w̃/Σw̃)².
"""

from __future__ import annotations

import math
from typing import Any

import torch

from evoprop.errors import ConfigError

from .base import Strategy
from .constants import CMARates
from .cov import FullCovariance, RankMu


def paper_weights(popsize: int, elite: float = 0.4) -> torch.Tensor:
    """w̃_i = (1/N) w((i − ½)/N) with w(q) = 1 for q < elite, best first (float64)."""
    i = torch.arange(1, popsize + 1, dtype=torch.float64)
    return ((i - 0.5) / popsize < elite).to(torch.float64) / popsize


def paper_eta_c(dim: int, weights: torch.Tensor) -> float:
    """η_c = 1/(d² Σ w̃²) as printed, capped at 0.5/Σ w̃ (see the module docstring)."""
    printed = 1.0 / (dim**2 * float((weights**2).sum()))
    return min(printed, 0.5 / float(weights.sum()))


class PaperCMA(FullCovariance, Strategy):
    """The reproduced paper's CMA-ES, equations (1)-(5) (see the module docstring).

    Args:
        x0, sigma0, popsize, seed, state_dtype: as for every strategy.
        faithful: equations (3)-(4) as printed (default) or with standard CSA.
        eta_m: mean learning rate (printed: 1).
        eta_c: covariance learning rate (default: printed formula, capped).
        elite: fraction of the population with weight 1 (printed: 0.4).
        method: covariance factorization, ``"auto"`` | ``"eigh"`` | ``"cholesky"``.
        slices: draw each population in that many slices, as ``cma`` (default 1: one draw).
    """

    name = "paper"
    _state_tensors = Strategy._state_tensors + FullCovariance._cov_tensors
    _state_scalars = FullCovariance._cov_scalars

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 faithful: bool = True, eta_m: float = 1.0, eta_c: float | None = None,
                 elite: float = 0.4, method: str = "auto", state_dtype: torch.dtype | None = None,
                 slices: int = 1) -> None:
        super().__init__(x0, sigma0, popsize, seed=seed, state_dtype=state_dtype)
        self._init_slices(slices)
        n, N = self._dim, self._popsize
        if not (0.0 < elite <= 1.0):
            raise ConfigError(f"elite must be in (0, 1], got {elite}")
        w = paper_weights(N, elite)
        if float(w.sum()) == 0.0:
            raise ConfigError(f"elite={elite} selects nobody out of popsize={N}")
        if not (eta_m > 0 and math.isfinite(eta_m)):
            raise ConfigError(f"eta_m must be a positive number, got {eta_m}")
        if eta_c is None:
            eta_c = paper_eta_c(n, w)
        elif not (0.0 < eta_c and eta_c * float(w.sum()) <= 1.0):
            raise ConfigError(f"eta_c must be in (0, 1/Σw̃ = {1.0 / float(w.sum()):.4g}], got {eta_c}")
        self._w = w.to(device=self._device, dtype=self._state_dtype)
        self._wsum = float(w.sum())
        self._eta_m = float(eta_m)
        self._eta_c = float(eta_c)
        self._faithful = bool(faithful)
        wn = w[w > 0] / w.sum()
        self._mueff = float(1.0 / (wn**2).sum())
        rates = CMARates.tutorial(n, self._mueff)
        self._cs, self._ds = rates.cs, rates.ds
        self._init_cov(method)
        self._gap = 1.0 / (self._eta_c * self._wsum) / n / 10.0

    @property
    def _remedy(self) -> str:  # what to change when the search diverges (see Strategy._diverged)
        if self._faithful:
            return ("equations (3)-(4) as printed never damp the step size, so σ collapses or explodes: use "
                    "--strategy cma (standard CMA-ES), or keep this one with --es-opt faithful=false")
        return "lower sigma0 (--sigma0) or use --strategy cma (standard CMA-ES)"

    @property
    def _unbounded(self) -> str:  # as printed, σ explodes on any fitness: the equations, not the fitness
        return "" if self._faithful else super()._unbounded

    @property
    def eta_c(self) -> float:
        return self._eta_c

    def _before_ask(self) -> None:
        self._refresh_if_due(self._gap)

    def _update(self, z: torch.Tensor, y: torch.Tensor, order: torch.Tensor, f: torch.Tensor) -> None:
        ws = self._own_rows(self._by_sample(self._w, order))  # weight of each of this process's samples
        if self._slices == 1:
            sel = (ws > 0).nonzero().squeeze(1)
            w_sel = ws[sel].to(self._work_dtype)
            y_sel = y[sel]
            y_w = (w_sel @ y_sel).to(self._state_dtype)  # Σ w̃_i y_i = Σ w̃_i (x_i − m)/σ
            z_w = (w_sel @ z[sel]).to(self._state_dtype)
            rank_mu = (y_sel, w_sel)
        else:  # the same sums, slice by slice over the processes (evoprop.es.slices)
            w = ws.to(self._work_dtype)
            y_w, z_w, rank_mu = self._weighted_sums(z, y, w, w)
        self._update_mean(y_w, self._eta_m)  # (1)
        self._update_C(rank_mu)  # (2)
        # C^{-1/2}(m_new − m_old)/σ = η_m C^{-1/2} Σ w̃ y = η_m B Σ w̃ z (the C sampled from)
        white = self._to_white(z_w) * self._eta_m
        if self._faithful:
            self._ps.add_(white)  # (3): a plain sum, never forgotten
            self._scale_sigma(float(self._ps.norm()) / self._chin - 1.0)  # (4): no damping
        else:  # standard CSA (Hansen 2016, eqs. 43-44) on the normalised mean shift
            self._update_p_sigma(white / (self._eta_m * self._wsum), self._cs)
            self._update_sigma_csa(self._cs, self._ds)

    def _update_C(self, rank_mu: RankMu) -> None:
        """(2): C ← (1 − η_c Σ w̃) C + η_c Σ w̃_i (x_i − m)(x_i − m)ᵀ/σ, i.e. σ y yᵀ as printed
        (y yᵀ, i.e. /σ², if not faithful); ``rank_mu`` is Σ w̃_i y_i y_iᵀ over the elite."""
        scale = self._sigma if self._faithful else 1.0
        self._C.mul_(1.0 - self._eta_c * self._wsum)
        self._add_rank_mu(rank_mu, self._eta_c * scale)
        self._dirty = True
