"""Paired comparison over seeds: mean difference with a Student-t 95 % confidence interval.

Two arms run with the same seeds share the data split, the initial weights and the order of
the mini-batches, so the per-seed difference d_k = a_k − b_k removes what the seeds have in
common; over n seeds

    d̄ ± t_{0.975, n−1} · s_d / √n                               (the paired t interval)

with s_d the sample standard deviation of the d_k (Student 1908; e.g. Wasserman, *All of
Statistics*, §10.2). With n = 1 there is no interval.

The t quantile is computed here, without SciPy: the Student-t distribution function for an
integer number of degrees of freedom ν has a closed form in θ = arctan(t/√ν)
(Abramowitz & Stegun 1964, eq. 26.7.3 for odd ν, 26.7.4 for even ν), inverted by bisection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def t_cdf_two_sided(t: float, df: int) -> float:
    """A(t | ν) = P(|T| ≤ t) for T Student-t with ν = ``df`` degrees of freedom (A&S 26.7.3–4), t ≥ 0."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        # 26.7.3: (2/π)[θ + sin θ (cos θ + (2/3) cos³θ + … + (2·4⋯(ν−3))/(1·3⋯(ν−2)) cos^(ν−2) θ)]
        if df == 1:
            return 2 * theta / math.pi
        term, total = c, c
        for k in range(3, df - 1, 2):  # term_k = term_{k-2} · (k−1)/k · cos²θ
            term *= (k - 1) / k * c * c
            total += term
        return 2 / math.pi * (theta + s * total)
    # 26.7.4: sin θ [1 + (1/2) cos²θ + (1·3)/(2·4) cos⁴θ + …
    #                + (1·3⋯(ν−3))/(2·4⋯(ν−2)) cos^(ν−2) θ]
    term, total = 1.0, 1.0
    for k in range(2, df - 1, 2):
        term *= (k - 1) / k * c * c
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p in (0.5, 1)) of Student's t with ``df`` degrees of freedom: t_{0.975,4} = 2.776."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must be in (0.5, 1), got {p!r}")
    target = 2 * p - 1  # P(|T| <= t) = 2p - 1
    low, high = 0.0, 1.0
    while t_cdf_two_sided(high, df) < target:
        high *= 2
    for _ in range(200):  # bisection to machine precision
        mid = (low + high) / 2
        if t_cdf_two_sided(mid, df) < target:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


@dataclass
class Paired:
    """The paired comparison of an arm with the baseline over the seeds both have."""

    seeds: list[int]
    diffs: list[float]  # arm − baseline, per seed, in the order of ``seeds``
    mean: float | None
    low: float | None  # the 95 % interval; None with fewer than two seeds
    high: float | None
    won: int  # seeds where the arm is strictly better
    lost: int

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def tied(self) -> int:
        return self.n - self.won - self.lost


def paired_difference(arm: dict[int, float], baseline: dict[int, float], level: float = 0.95) -> Paired:
    """Per-seed differences arm − baseline over the seeds both have (values None are left out)."""
    seeds = sorted(s for s in arm if s in baseline and arm[s] is not None and baseline[s] is not None)
    diffs = [float(arm[s]) - float(baseline[s]) for s in seeds]
    n = len(diffs)
    if not n:
        return Paired([], [], None, None, None, 0, 0)
    mean = sum(diffs) / n
    low = high = None
    if n > 1:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    return Paired(seeds, diffs, mean, low, high, won=sum(d > 0 for d in diffs), lost=sum(d < 0 for d in diffs))
