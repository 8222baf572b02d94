"""The CMA family's default constants (Hansen, "The CMA Evolution Strategy: A Tutorial",
arXiv:1604.00772, 2016, Table 1 and eqs. 48-58): population size, recombination weights,
learning rates, and E||N(0, I)||."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from evoprop.errors import ConfigError

__all__ = ["CMARates", "default_popsize", "expected_norm", "log_weights"]


def default_popsize(dim: int) -> int:
    """λ = 4 + ⌊3 ln d⌋ (Hansen 2016, eq. 48)."""
    return 4 + int(math.floor(3.0 * math.log(dim)))


def expected_norm(d: int) -> float:
    """E||N(0, I_d)|| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2), exactly (via lgamma)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2.0) - math.lgamma(d / 2.0))


def log_weights(popsize: int, dim: int, *, mu: int | None = None, active: bool = False,
                c1: float | None = None, cmu: float | None = None) -> tuple[torch.Tensor, float, float]:
    """Recombination weights (Hansen 2016, eqs. 49-53).

    Returns ``(weights, mueff, mueff_minus)`` with ``weights`` of length ``popsize``
    (float64, best first): positive weights ln((λ+1)/2) - ln i for the best ``mu``
    (default ⌊λ/2⌋) summing to 1; then, if ``active``, negative weights scaled by
    min(α_μ⁻, α_μeff⁻, α_posdef⁻) (needs ``c1``/``cmu``); otherwise zeros.
    """
    lam = popsize
    mu = lam // 2 if mu is None else mu
    i = torch.arange(1, lam + 1, dtype=torch.float64)
    wp = math.log((lam + 1) / 2.0) - torch.log(i)  # eq. 49
    pos = wp[:mu].clamp_min(0)
    mueff = float(pos.sum() ** 2 / (pos**2).sum())
    w = torch.zeros(lam, dtype=torch.float64)
    w[:mu] = pos / pos.sum()  # eq. 53, positive part
    neg = wp[mu:]
    neg = neg[neg < 0]
    mueff_minus = float(neg.sum() ** 2 / (neg**2).sum()) if neg.numel() else 0.0
    if active and neg.numel():
        if c1 is None or cmu is None:
            raise ConfigError("active weights need c1 and cmu")
        alpha_mu = 1.0 + c1 / cmu  # eq. 50
        alpha_mueff = 1.0 + 2.0 * mueff_minus / (mueff + 2.0)  # eq. 51
        alpha_posdef = (1.0 - c1 - cmu) / (dim * cmu)  # eq. 52
        scale = min(alpha_mu, alpha_mueff, alpha_posdef)
        w[lam - neg.numel():] = scale * neg / neg.abs().sum()  # eq. 53, negative part
    return w, mueff, mueff_minus


@dataclass(frozen=True)
class CMARates:
    """Learning rates of CMA-ES: c_σ, d_σ (step size), c_c (rank-one path), c_1, c_μ (covariance)."""

    cs: float
    ds: float
    cc: float
    c1: float
    cmu: float

    @classmethod
    def tutorial(cls, dim: int, mueff: float) -> CMARates:
        """The defaults of Hansen 2016, eqs. 55-58, with α_cov = 2."""
        n = float(dim)
        alpha_cov = 2.0
        c1 = alpha_cov / ((n + 1.3) ** 2 + mueff)  # eq. 57
        cmu = min(1.0 - c1, alpha_cov * (mueff - 2.0 + 1.0 / mueff)
                  / ((n + 2.0) ** 2 + alpha_cov * mueff / 2.0))  # eq. 58
        cs = (mueff + 2.0) / (n + mueff + 5.0)  # eq. 55
        ds = 1.0 + 2.0 * max(0.0, math.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0) + cs  # eq. 55
        cc = (4.0 + mueff / n) / (n + 4.0 + 2.0 * mueff / n)  # eq. 56
        return cls(cs=cs, ds=ds, cc=cc, c1=c1, cmu=cmu)

    def separable(self, dim: int) -> CMARates:
        """c_1 and c_μ multiplied by (d + 2)/3 for a diagonal C (Ros & Hansen, PPSN 2008)."""
        scale = (dim + 2.0) / 3.0
        c1 = min(1.0, self.c1 * scale)
        return dataclasses.replace(self, c1=c1, cmu=min(1.0 - c1, self.cmu * scale))

    def overridden(self, **given: float | None) -> CMARates:
        """These rates with every one the user gave (not None) checked and put in."""
        for k, v in given.items():
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{k} must be a positive number, got {v}")
        return dataclasses.replace(self, **{k: float(v) for k, v in given.items() if v is not None})
