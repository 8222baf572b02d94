"""A full covariance matrix with a lazily refreshed square-root factor (shared by ``cma`` and ``paper``).

Storage: ``C`` (d x d) in the state dtype (float64 by default) accumulates the
updates (on its lower block triangle only, see ``add_weighted_gram_lower``); the sampling factor ``A`` (C ≈ A Aᵀ, samples y = z Aᵀ) is kept in the
work dtype (x0's dtype), so a float32 search samples with a float32 matmul.
At d = 7,850: C float64 = 493 MB, A float32 = 246 MB (+ B float32 = 246 MB for eigh).

Two factorizations (``method``):

* ``"eigh"``: C = B D² Bᵀ, A = B D, the textbook symmetric square root;
  C^{-1/2} y = B z for y = A z.
* ``"cholesky"``: C = L Lᵀ, A = L; the whitened step is z itself, i.e. L⁻¹ is
  used in place of C^{-1/2} (Krause, Arbonès & Igel, "CMA-ES with optimal
  covariance update and storage complexity", NeurIPS 2016, show this leaves the
  algorithm's behaviour unchanged to first order, since L changes as slowly as C).
  Reason: at large d an eigendecomposition costs tens of times a Cholesky factorization
  (BENCHMARKS.md, "The sampling factor").
* ``"auto"`` (default): eigh up to ``EIGH_MAX_DIM`` = 10 dimensions, Cholesky above.
  Chosen by measurement (``benchmarks/es_speed.py --factors`` and ``es_quality.py --factors``,
  BENCHMARKS.md, "eigh or Cholesky below d = 1,000"): above d = 10 eigh is slower per
  generation for the same evaluation counts; up to d = 10 it costs nothing more, so the
  textbook's C^{-1/2} is kept there.

Refresh cadence (pycma's): the factor is recomputed only when at least
``gap = 1 / (c1 + cmu) / d / 10`` generations have passed since the last one.
Cholesky runs in the work dtype and falls back to float64. The factor (and B, D)
are part of ``state_dict`` so that a resumed run samples with exactly the same
(possibly stale) factor.

Numerical trouble, case by case:

* C numerically indefinite (rounding has pushed some eigenvalues to ≤ 0; the largest
  is positive and none is below minus the largest): **repaired**, the standard remedy
  (pycma repairs it too, by adding the previous smallest eigenvalue to C's diagonal
  and decomposing again): the eigenvalues are floored at ``repair_floor(d)`` × the
  largest (10 · d · eps, above the rounding error of C itself), C is replaced by the
  repaired matrix, and its factor is taken from the repaired eigen form directly (for
  ``"cholesky"``: L = Rᵀ from the QR of (B D)ᵀ, which cannot fail the way a Cholesky
  of the rebuilt C can).
* C non-finite, a non-positive variance on its diagonal, no positive eigenvalue, or a
  negative eigenvalue larger in size than the largest positive one (a broken update,
  not rounding): nothing is left to repair; :class:`~evoprop.errors.StrategyDiverged` (see
  :mod:`evoprop.es.base`). The diagonal is checked after every ``tell`` (O(d)), the
  lower triangle at every refresh of the factor.
"""

from __future__ import annotations

import math
from typing import Union

import torch

from evoprop.errors import ConfigError

EIGH_MAX_DIM = 10  # measured: see the module docstring
BLOCK = 1024  # column block of the triangular products below
_METHODS = ("auto", "eigh", "cholesky")


def repair_floor(d: int) -> float:
    """Relative floor of the eigenvalues of a repaired covariance: 10 · d · eps(float64).

    Below about d · eps · λ_max an eigenvalue of C is rounding noise (of the updates that
    built C, and of any rebuild B diag(λ) Bᵀ), so flooring at that level changes C by no
    more than its own rounding, and the repaired factor has a condition number of at most
    1/√(10 d eps) (2e6 at d = 100, 5e4 at d = 157,000).
    """
    return 10.0 * d * torch.finfo(torch.float64).eps


def _bounds(d: int) -> list[tuple[int, int]]:
    nb = max(1, math.ceil(d / BLOCK))
    edges = [round(i * d / nb) for i in range(nb + 1)]
    return list(zip(edges[:-1], edges[1:]))


def lower_matmul_t(z: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """z @ L.T for lower-triangular L, skipping the zero blocks (≈ (1 + 1/nb)/2 of the flops).

    Computed as (L zᵀ)ᵀ, one contiguous block row of L zᵀ per product; the result
    is returned as a transposed (column-major) view, which the rank-μ update
    reads without a copy.
    """
    bounds = _bounds(L.shape[0])
    if len(bounds) == 1:
        return z @ L.T
    yT = torch.empty(L.shape[0], z.shape[0], dtype=z.dtype, device=z.device)
    for s, e in bounds:
        torch.mm(L[s:e, :e], z[:, :e].T, out=yT[s:e])
    return yT.T


def add_weighted_gram_lower(C: torch.Tensor, Y: torch.Tensor, w: torch.Tensor, alpha: float) -> None:
    """C += alpha · Yᵀ diag(w) Y on the lower block triangle only (one product per block row).

    The products run in Y's dtype and are accumulated into C's (float64) lower
    triangle; the strictly upper blocks of C are left stale and never read
    (Cholesky and eigh read the lower triangle; ``covariance`` symmetrizes).
    """
    wY = w.to(Y.dtype).unsqueeze(1) * Y
    for s, e in _bounds(C.shape[0]):
        C[s:e, :e].add_((Y[:, s:e].T @ wY[:, :e]).to(C.dtype), alpha=alpha)


def lower_size(d: int) -> int:
    """How many values the lower block triangle of a d x d matrix holds (the blocks C[s:e, :e] that
    ``add_weighted_gram_lower`` writes): about d²/2 · (1 + 1/nb), nb = ⌈d / BLOCK⌉ block rows."""
    return sum((e - s) * e for s, e in _bounds(d))


def weighted_gram_lower_into(out: torch.Tensor, Y: torch.Tensor, w: torch.Tensor) -> None:
    """Yᵀ diag(w) Y on the lower block triangle, packed block row after block row into the 1-D ``out``
    (``lower_size(d)`` values, Y's dtype): what ``add_weighted_gram_lower`` adds, as a tensor to send."""
    wY = w.to(Y.dtype).unsqueeze(1) * Y
    offset = 0
    for s, e in _bounds(Y.shape[1]):
        n = (e - s) * e
        torch.mm(Y[:, s:e].T, wY[:, :e], out=out[offset:offset + n].view(e - s, e))
        offset += n


def add_lower_packed(C: torch.Tensor, packed: torch.Tensor, alpha: float) -> None:
    """C += alpha · the lower block triangle ``packed`` (as ``weighted_gram_lower_into`` lays it out)."""
    offset = 0
    for s, e in _bounds(C.shape[0]):
        n = (e - s) * e
        C[s:e, :e].add_(packed[offset:offset + n].view(e - s, e).to(C.dtype), alpha=alpha)
        offset += n


def symmetrized(C: torch.Tensor) -> torch.Tensor:
    """The full symmetric matrix whose lower triangle C holds."""
    return C.tril() + C.tril(-1).T


#: The rank-μ product Σ w°_i y_i y_iᵀ of one generation: (rows, their weights), multiplied out when added
#: to C, or (drawn in slices) its lower block triangle already summed over the slices, packed.
RankMu = Union[tuple[torch.Tensor, torch.Tensor], torch.Tensor]


class FullCovariance:
    """Mixin for strategies with a full d x d covariance. Needs the ``Strategy`` attributes."""

    _cov_tensors = ("_C", "_A", "_B", "_D")
    _cov_scalars = ("_last_refresh", "_factor_method", "_dirty")

    def _init_cov(self, method: str) -> None:
        if method not in _METHODS:
            raise ConfigError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
        if method == "auto":
            method = "eigh" if self._dim <= EIGH_MAX_DIM else "cholesky"
        self._factor_method = method
        d, dev = self._dim, self._device
        self._C = torch.eye(d, device=dev, dtype=self._state_dtype)
        self._A = None  # None: identity (C = I at the start, no d x d matmul needed)
        self._B = None  # eigenvectors (eigh only), work dtype
        self._D = torch.ones(d, device=dev, dtype=self._state_dtype)  # sqrt eigenvalues / diag of L
        self._last_refresh = 0
        self._dirty = False

    # -- factorization ---------------------------------------------------
    def _refresh_if_due(self, gap: float) -> None:
        g = self._generation
        if not self._dirty or g < self._last_refresh + gap:
            return
        self._factorize()
        self._last_refresh = g
        self._dirty = False

    def _factorize(self) -> None:
        C = self._C
        problem = self._lower_triangle_problem()
        if problem:
            raise self._diverged(problem, self._generation + 1)
        if self._factor_method == "cholesky":
            for dt in dict.fromkeys((self._work_dtype, torch.float64)):
                L, info = torch.linalg.cholesky_ex(C.to(dt))
                if int(info) == 0 and bool(torch.isfinite(L.diagonal()).all()):
                    self._A = L.to(self._work_dtype)
                    self._B = None
                    self._D = L.diagonal().to(self._state_dtype).abs()
                    return
            # not numerically positive definite: repair through an eigendecomposition
        evals, B = torch.linalg.eigh(C.to(torch.float64))  # reads the lower triangle
        top, bottom = float(evals.max()), float(evals.min())
        if not (math.isfinite(top) and top > 0 and bottom >= -top):
            raise self._diverged(f"its covariance matrix lost positive definiteness (eigenvalues from {bottom:.3g} "
                                 f"to {top:.3g})", self._generation + 1)
        floor = top * repair_floor(self._dim)
        if bool((evals < floor).any()):  # a repair: C becomes the matrix now sampled from
            evals = evals.clamp_min(floor)
            C.copy_((B * evals) @ B.T)  # (both triangles valid again)
        D = evals.sqrt()
        if self._factor_method == "cholesky":
            # The repaired C = B diag(evals) Bᵀ, factored directly: with (B D)ᵀ = Q R (Householder QR),
            # C = Rᵀ Qᵀ Q R = Rᵀ R, so L = Rᵀ (signs made positive) is its Cholesky factor. Rebuilding
            # C and calling Cholesky on it instead can fail again: the rounding of the rebuild is of
            # the order of d · eps · top, as large as the floored eigenvalues.
            R = torch.linalg.qr((B * D).T, mode="r").R
            L = R.T * torch.sign(R.diagonal()).masked_fill_(R.diagonal() == 0, 1.0).unsqueeze(0)
            self._A = L.to(self._work_dtype)
            self._B = None
            self._D = L.diagonal().to(self._state_dtype)
            return
        self._B = B.to(self._work_dtype)
        self._A = (B * D).to(self._work_dtype)
        self._D = D.to(self._state_dtype)

    def _lower_triangle_problem(self) -> str | None:
        """Whether the lower triangle of C (the part that is read) holds a non-finite value."""
        C = self._C
        for s, e in _bounds(self._dim):
            if not bool(torch.isfinite(C[s:e, :e]).all()):
                return "its covariance matrix became non-finite"
        return None

    def _covariance_problem(self) -> str | None:
        diag = self._C.diagonal()  # O(d) after every tell; the whole triangle is checked at each refresh
        if not bool(torch.isfinite(diag).all()):
            return "its covariance matrix became non-finite"
        if not float(diag.min()) > 0:
            return "its covariance matrix lost positive definiteness (a variance is no longer positive)"
        return None

    # -- the update's weighted sums ----------------------------------------
    def _weighted_sums(self, z: torch.Tensor, y: torch.Tensor, w_step: torch.Tensor,
                       w_rank_mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, RankMu]:
        """Σ w_i y_i and Σ w_i z_i (state dtype) with ``w_step``, and the rank-μ product Σ w°_i y_i y_iᵀ
        with ``w_rank_mu`` (as a ``RankMu`` for ``_add_rank_mu``), over the population drawn in slices.

        The weights are those of this process's rows (``_own_rows``, work dtype); rows of zero rank-μ
        weight are left out of the product. Each slice's three sums over its own rows (2d + the packed
        lower block triangle, ``lower_size(d)`` ≈ d²/2 values) are gathered and added in slice order
        in the state dtype (``Strategy._slice_sums``): O(S·d²) communication per generation.
        """
        d = self._dim

        def fill(out: torch.Tensor, z_k: torch.Tensor, y_k: torch.Tensor, w: torch.Tensor, wc: torch.Tensor) -> None:
            out[:d].copy_(w @ y_k)
            out[d:2 * d].copy_(w @ z_k)
            kept = wc.nonzero().squeeze(1)
            if kept.numel() < wc.numel():  # only rows of non-zero weight enter the product
                y_k, wc = y_k[kept], wc[kept]
            weighted_gram_lower_into(out[2 * d:], y_k, wc)

        total = self._slice_sums(2 * d + lower_size(d), fill, z, y, w_step, w_rank_mu, dtype=self._state_dtype)
        return total[:d], total[d:2 * d], total[2 * d:]

    def _add_rank_mu(self, rank_mu: RankMu, alpha: float) -> None:
        """C += alpha · the rank-μ product (lower block triangle): formed here from (rows, weights), or
        already summed over slices (``_weighted_sums``)."""
        if isinstance(rank_mu, tuple):
            add_weighted_gram_lower(self._C, *rank_mu, alpha)
        else:
            add_lower_packed(self._C, rank_mu, alpha)

    # -- maps between z (standard normal) and y (ambient step) -------------
    def _sample(self, z: torch.Tensor) -> torch.Tensor:
        if self._A is None:
            return z.clone()
        if self._B is None:  # Cholesky factor: lower triangular
            return lower_matmul_t(z, self._A)
        return z @ self._A.T

    def _whiten(self, y: torch.Tensor) -> torch.Tensor:
        if self._A is None:
            return y.clone()
        if self._B is not None:  # y = z (B D)ᵀ  ->  z = y B / D
            return (y @ self._B) / self._D.to(y.dtype)
        return torch.linalg.solve_triangular(self._A.T, y, upper=True, left=False)

    def _to_white(self, zw: torch.Tensor) -> torch.Tensor:
        """C^{-1/2} y for y = A z: B z (eigh) or z itself (identity / Cholesky)."""
        if self._B is None:
            return zw
        return self._B.to(zw.dtype) @ zw

    # -- diagnostics ---------------------------------------------------------
    def _max_std(self) -> float:
        return math.sqrt(float(self._C.diagonal().max()))

    def _condition(self) -> float:
        D = self._D
        return float((D.max() / D.min()) ** 2)

    @property
    def covariance(self) -> torch.Tensor:
        """The covariance matrix C (a copy, state dtype); the sampling covariance is σ² C."""
        return symmetrized(self._C)
