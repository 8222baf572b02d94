"""LM-MA-ES: Loshchilov, Glasmachers & Beyer, "Large scale black-box optimization by
limited-memory matrix adaptation", IEEE TEC 23(2), 2019.

The sampling transform is a product of k rank-one-perturbed identities,
``d = z (A_1 A_2 ⋯ A_t)`` with ``A_j = (1 - c_d,j) I + c_d,j m_j m_jᵀ`` and
``m_j`` the j-th of k evolution paths (t = min(generation, k)). The paper
applies the A_j one sample and one path at a time; here the product is written
once per generation as ``a I + Mᵀ T M`` (a scalar, T a k×k matrix, M the k×d
paths), so a whole population is transformed by two thin matrix products
``a Z + ((Z Mᵀ) T) M`` — O(P·k·d) work and O(k·d) state. At d = 204,800 with
k = 40 the state (mean, p_σ, M in float64) is about 70 MB.

Constants are the paper's: λ = 4 + ⌊3 ln d⌋, μ = ⌊λ/2⌋, k = 4 + ⌊3 ln d⌋,
c_σ = 2λ/d, c_d,j = 1/(1.5^(j-1) d), c_c,j = λ/(4^(j-1) d), and
σ ← σ exp(c_σ/2 (||p_σ||²/d − 1)). The paper leaves c_σ, c_c,j ≥ 1 undefined
(small d or huge λ); we clip them to 1 (this only matters for d < 2λ).
The mean moves with the σ of the generation (before its update), as in the paper.

Over several processes (``slices=S``, :mod:`evoprop.es.slices`): the update reads the population
only through one weighted sum, Σ w_i z_i:λ (the mean's step, p_σ and every path are linear in it),
so each process sums its own slices' selected rows, the S per-slice sums (S·d values) are
all-gathered and added in slice order, and every process applies the same update: bit for bit the
state of a single process with the same ``slices``. Each process applies the transform (its k paths,
O(k·d), held by all) to its own rows only. Communication per generation: O(S·d), besides the P losses.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from evoprop.errors import ConfigError

from .base import Strategy


class LMMA(Strategy):
    """Limited-memory matrix adaptation ES.

    Args:
        x0, sigma0, popsize, seed, state_dtype: as for every strategy.
        memory: number of paths k (default 4 + ⌊3 ln d⌋).
        mu: number of parents (default ⌊λ/2⌋).
        cs: override c_σ.
        slices: draw each population in that many slices (default 1: one draw, as always), so that
            several processes can share them (see the module docstring).
    """

    name = "lmma"
    _keeps_y = False
    _cheap_max_std = False  # _max_std forms the k x k Gram matrix of the paths: O(k²·d)
    _state_tensors = Strategy._state_tensors + ("_M",)

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 memory: int | None = None, mu: int | None = None, cs: float | None = None,
                 state_dtype: torch.dtype | None = None, slices: int = 1) -> None:
        super().__init__(x0, sigma0, popsize, seed=seed, state_dtype=state_dtype)
        self._init_slices(slices)
        lam, n = self._popsize, self._dim
        w, mueff = self._positive_weights(mu)
        k = 4 + int(math.floor(3.0 * math.log(n))) if memory is None else memory
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"memory must be an integer >= 1, got {memory!r}")
        self._w = w.to(device=self._device, dtype=self._state_dtype)
        self._mueff = mueff
        self._k = k
        if cs is not None and not (0 < cs <= 1):
            raise ConfigError(f"cs must be in (0, 1], got {cs}")
        self._cs = min(1.0, 2.0 * lam / n) if cs is None else float(cs)
        j = torch.arange(k, dtype=torch.float64)
        self._cd = (1.0 / (1.5**j * n)).clamp(max=1.0).tolist()  # c_d,j: the transform's rates
        self._cc = (lam / (4.0**j * n)).clamp(max=1.0).tolist()  # c_c,j: the paths' rates
        self._M = torch.zeros(k, n, device=self._device, dtype=self._state_dtype)  # the k paths m_j

    # -- the transform a I + Mᵀ T M ----------------------------------------
    def _transform(self) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
        """(a, T, M_t) with A_1 ⋯ A_t = a I + M_tᵀ T M_t, M_t the first t paths (state dtype)."""
        t = min(self._generation, self._k)
        if t == 0:
            return 1.0, None, None
        M = self._M[:t]
        G = M @ M.T  # Gram matrix (t x t)
        T = torch.zeros(t, t, device=self._device, dtype=self._state_dtype)
        a = 1.0
        for j in range(t):  # P_j = P_{j-1} ((1-c) I + c m_j m_jᵀ)
            c = self._cd[j]
            col = T @ G[:, j]  # T G e_j
            T.mul_(1.0 - c)
            T[:, j] += c * col
            T[j, j] += c * a
            a *= 1.0 - c
        return a, T, M

    def _apply(self, z: torch.Tensor, a: float, T: torch.Tensor | None, M: torch.Tensor | None) -> torch.Tensor:
        if T is None:
            return z.clone() if a == 1.0 else z * a
        Mw = M.to(z.dtype)
        return torch.addmm(z, (z @ Mw.T) @ T.to(z.dtype), Mw, beta=a, alpha=1.0)

    def _sample(self, z: torch.Tensor) -> torch.Tensor:
        a, T, M = self._transform()
        return self._apply(z, a, T, M)

    def _whiten(self, y: torch.Tensor) -> torch.Tensor:
        # undo A_t, ..., A_1 one at a time (Sherman-Morrison); rarely used (injected solutions)
        t = min(self._generation, self._k)
        z = y.to(self._state_dtype)
        for j in reversed(range(t)):
            c, m = self._cd[j], self._M[j]
            coef = c / ((1.0 - c) + c * float(m @ m))
            z = (z - coef * (z @ m).unsqueeze(1) * m.unsqueeze(0)) / (1.0 - c)
        return z.to(self._work_dtype)

    def _update(self, z: torch.Tensor, y: torch.Tensor | None, order: torch.Tensor, f: torch.Tensor) -> None:
        """One generation of Loshchilov et al. 2019, Algorithm 1: mean, p_σ, the k paths, σ."""
        ws = self._own_rows(self._by_sample(self._w, order))  # weight of each of this process's samples
        z_w = self._weighted_z(z, ws)  # Σ w_i z_i:λ
        self._update_mean(self._weighted_step(z_w))
        self._update_p_sigma(z_w, self._cs)
        self._update_paths(z_w)
        self._update_sigma()

    def _weighted_z(self, z: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """Σ w_i z_i:λ over the μ selected samples (state dtype); drawn in slices, each slice's sum over
        its own rows, gathered and added in slice order (S·d values over the processes)."""
        if self._slices == 1:
            sel = (ws > 0).nonzero().squeeze(1)
            return (ws[sel].to(self._work_dtype) @ z[sel]).to(self._state_dtype)

        def fill(out: torch.Tensor, z_k: torch.Tensor, w_k: torch.Tensor) -> None:
            sel = (w_k > 0).nonzero().squeeze(1)
            out.copy_(w_k[sel].to(self._work_dtype) @ z_k[sel])

        return self._slice_sums(self._dim, fill, z, ws, dtype=self._state_dtype)

    def _weighted_step(self, z_w: torch.Tensor) -> torch.Tensor:
        """Σ w_i d_i:λ = (A_1 ⋯ A_t) Σ w_i z_i:λ: the transform is linear, so applied once (state dtype)."""
        a, T, M = self._transform()
        return self._apply(z_w.unsqueeze(0), a, T, M).squeeze(0)

    def _update_paths(self, z_w: torch.Tensor) -> None:
        """m_j ← (1 − c_c,j) m_j + √(μ_eff c_c,j (2 − c_c,j)) Σ w_i z_i:λ, for every j at once
        (the tutorial's eq. 45 with whitened steps and one rate per path)."""
        cc = torch.tensor(self._cc, device=self._device, dtype=self._state_dtype)
        coef = (self._mueff * cc * (2.0 - cc)).sqrt()
        self._M.mul_((1.0 - cc).unsqueeze(1)).add_(coef.unsqueeze(1) * z_w.unsqueeze(0))

    def _update_sigma(self) -> None:
        """σ ← σ exp(c_σ/2 (||p_σ||²/d − 1)): the paper's rule, on the squared length of p_σ."""
        self._scale_sigma(self._cs / 2.0 * (float(self._ps @ self._ps) / self._dim - 1.0))

    def _covariance_problem(self) -> str | None:
        if not bool(torch.isfinite(self._M).all()):
            return "its evolution paths (the transform's memory) became non-finite"
        return None

    def _max_std(self) -> float:
        # an upper bound of the transform's spectral norm: a + ||T|| ||M Mᵀ||
        a, T, M = self._transform()
        if T is None:
            return a
        G = M @ M.T
        return float(a + torch.linalg.matrix_norm(T, ord=2) * torch.linalg.matrix_norm(G, ord=2))

    @property
    def memory(self) -> int:
        """k, the number of evolution paths kept."""
        return self._k

    @property
    def paths(self) -> torch.Tensor:
        """The k evolution paths m_j, one per row (a copy, state dtype); the transform uses the first
        min(generation, k)."""
        return self._M.clone()

    @property
    def c_d(self) -> tuple[float, ...]:
        """The transform's learning rates c_d,j = 1/(1.5^(j-1) d), one per path (clipped to 1)."""
        return tuple(self._cd)

    def state_bytes(self) -> int:
        """Bytes held by the distribution state (mean, p_σ, paths; not the population)."""
        return sum(t.numel() * t.element_size() for t in (self._mean, self._ps, self._M, self._x0))
