"""The strategy interface shared by every evolution strategy in :mod:`evoprop.es`.

A strategy is used like ``torch.optim`` or the ``cmaes`` package's ask/tell::

    es = make_strategy("cma", x0, sigma0=0.5, seed=0)
    while not es.should_stop():
        X = es.ask()                 # (P, d) tensor, dtype/device of x0
        es.tell(X, f(X))             # f(X): (P,) tensor, minimised
    es.best.solution, es.best.fitness

What is written once here (and only here):

* argument validation (``ConfigError`` with a one-line message);
* ranking, with every non-finite fitness (NaN, +inf, -inf) ranked worst;
* the steps every strategy shares: the mean (Hansen 2016, eq. 42), the step-size path p_σ
  (eq. 43) and cumulative step-size adaptation (eq. 44); the default constants are in
  :mod:`evoprop.es.constants`, large CPU draws in :mod:`evoprop.es.draws`;
* the private ``torch.Generator`` (``_rng``) and ``state_dict`` / ``load_state_dict``;
* stopping criteria used by the IPOP restarts;
* ``inject``: external solutions (e.g. a gradient-trained point) placed in the next
  population, their steps clipped for the update (Hansen 2011, arXiv:1110.4181);
* the divergence checks (below).

Degenerate states: what is repaired, what stops the search. After every ``tell`` the
state is checked in O(d) (never O(P·d)): a spread of the samples, σ · max √C_ii (σ
alone for ``lmma``, whose bound on its transform costs O(k²·d)), above 1e20 × σ0 (the
bound of pycma's ``tolupsigma``; the spread, not σ, because σ and C trade scale: the
paper's variant grows C with σ, and ``sep``'s σ may grow by 1e20 while its variances
shrink as much), a spread below 1e-20 × σ0 at which no candidate differs from the mean
in the work dtype any more (a search converging onto an optimum at 0 may go that low
legitimately), a non-finite σ, a non-finite mean, or a non-finite or non-positive
variance (``sep``'s diagonal; the diagonal of ``cma``/``paper``'s C, whose whole lower triangle is also checked at each refresh of its factor) raise
:class:`~evoprop.errors.StrategyDiverged` naming the strategy, the generation and what to
change. Such a state has no standard repair: its information is lost, and a search that
silently restarted itself would no longer be the strategy that was asked for (``ipop`` is
the one that restarts: it answers an inner strategy's divergence with its next restart).
A covariance that is only numerically indefinite (some eigenvalues ≤ 0, none below minus
the largest) *is* repaired, as pycma repairs it: see :mod:`evoprop.es.cov`.

Dtypes: ``ask`` returns x0's dtype ("work dtype", used for the population and the
big P x d matrix products).  The distribution state (mean, paths, sigma,
covariance) is kept in ``state_dtype`` (float64 by default, float32 on devices
without float64 such as MPS), so that a float32 search still accumulates its
mean and covariance precisely.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from evoprop.errors import ConfigError, StrategyDiverged

from .constants import default_popsize, expected_norm, log_weights
from . import draws
from .slices import Shard, aligned, check_slices, slice_bounds, slice_seed

__all__ = ["Best", "Strategy", "default_popsize", "expected_norm", "log_weights", "rank"]

_STATE_VERSION = 1

# the spread of the samples (σ · max √C_ii) over σ0 outside [SIGMA_RATIO_MIN, SIGMA_RATIO_MAX]
# is a diverged search (below the minimum only once the candidates equal the mean; module docstring)
SIGMA_RATIO_MIN = 1e-20
SIGMA_RATIO_MAX = 1e20


@dataclass(frozen=True)
class Best:
    """The best solution evaluated so far (``fitness`` is ``inf`` before any finite value)."""

    solution: torch.Tensor | None
    fitness: float


# ---------------------------------------------------------------------------
# shared numerical helpers
# ---------------------------------------------------------------------------


def rank(fitness: torch.Tensor) -> torch.Tensor:
    """Indices sorting ``fitness`` best (smallest) first.

    Non-finite values (NaN, +inf and also -inf, which is almost always a bug such
    as log(0)) rank after every finite value; ties keep their sample order.
    """
    f = fitness.to(torch.float64)
    f = torch.where(torch.isfinite(f), f, torch.full_like(f, math.inf))
    return torch.sort(f, stable=True).indices


# ---------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are views of the same memory with the same layout (no values read:
    comparing the values of a large population is a full pass over it)."""
    return (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and a.device == b.device)


def _as_vector(x0: Any) -> torch.Tensor:
    if isinstance(x0, torch.Tensor):
        x = x0.detach()
    else:
        try:
            x = torch.as_tensor(x0)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"x0 must be a 1-D tensor of numbers, got {type(x0).__name__}") from exc
    if x.dim() != 1:
        raise ConfigError(f"x0 must be a 1-D tensor (the mean), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ConfigError("x0 has 0 dimensions: there is nothing to search")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if not bool(torch.isfinite(x).all()):
        raise ConfigError("x0 contains NaN or infinite values")
    return x


class Strategy(abc.ABC):
    """Base class of all evolution strategies (minimisation).

    Subclasses implement ``_sample(z)`` (standard normal ``z`` -> ambient steps
    ``y``, so that a candidate is ``mean + sigma * y``), ``_whiten(y)`` (the
    inverse, used when ``tell`` receives solutions other than the last ``ask``)
    and ``_update(z, y, order, f)``, a sequence of named steps, one equation each; they
    add their state tensors to ``_state_tensors`` and list scalars in ``_state_scalars``.

    Dtypes: ``_work_dtype`` is x0's (the population, the big products), ``_state_dtype``
    that of the distribution state (see the module docstring).
    """

    name = "base"
    _keeps_y = True  # whether _update needs the ambient steps y (else only z)
    #: state tensors saved by ``state_dict`` under their attribute names (p_σ: every strategy has one)
    _state_tensors: tuple[str, ...] = ("_ps",)
    _state_scalars: tuple[str, ...] = ()

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *,
                 seed: int | None = None, state_dtype: torch.dtype | None = None) -> None:
        x = _as_vector(x0)
        self._dim = int(x.numel())
        self._device = x.device
        self._work_dtype = x.dtype
        if state_dtype is None:
            state_dtype = torch.float32 if x.device.type == "mps" else torch.float64
        self._state_dtype = state_dtype
        try:
            sigma0 = float(sigma0)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"sigma0 must be a positive number, got {sigma0!r}") from exc
        if not (math.isfinite(sigma0) and sigma0 > 0):
            raise ConfigError(f"sigma0 must be a positive finite number, got {sigma0}")
        if popsize is None:
            popsize = self._default_popsize(self._dim)
        if isinstance(popsize, bool) or not isinstance(popsize, int) or popsize < 2:
            raise ConfigError(f"popsize must be an integer >= 2, got {popsize!r}")
        self._popsize = int(popsize)
        self._x0 = x.to(self._state_dtype).clone()
        self._mean = self._x0.clone()
        self._sigma = sigma0
        self._sigma0 = sigma0
        self._chin = expected_norm(self._dim)
        self._ps = torch.zeros(self._dim, device=self._device, dtype=self._state_dtype)  # p_σ
        self._generation = 0
        self._evaluations = 0
        self._best_x: torch.Tensor | None = None
        self._best_f = math.inf
        self._fhist: list[float] = []  # best fitness per generation (for stopping)
        self._rng = torch.Generator(device=self._device)
        if seed is None:
            self._rng.seed()
        else:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ConfigError(f"seed must be an integer or None, got {seed!r}")
            self._rng.manual_seed(int(seed))
        self._pending: dict[str, torch.Tensor] | None = None
        self._rng_before_ask: torch.Tensor | None = None
        self._injections: list[torch.Tensor] = []  # queued by inject(), used by the next ask()
        self._injected_rows = 0  # during _update: the first rows of the population were injected
        # the population drawn in slices (see evoprop.es.slices; 1: one draw from _rng, as always)
        self._slices = 1
        self._slice_seed = seed
        self._shard: Shard | None = None

    # -- defaults a subclass may change ---------------------------------
    @staticmethod
    def _default_popsize(dim: int) -> int:
        return default_popsize(dim)

    # -- slices (see evoprop.es.slices) ----------------------------------
    def _init_slices(self, slices: Any) -> None:
        """Draw the population in ``slices`` slices, each from its own (seed, generation, slice) stream."""
        self._slices = check_slices(slices, self._popsize)
        if self._slices > 1 and self._slice_seed is None:
            self._slice_seed = int(torch.randint(0, 2**62, (1,), generator=self._rng))

    @property
    def slices(self) -> int:
        return self._slices

    def shard(self, shard: Shard | None) -> None:
        """Hold only ``shard``'s slices of each population (one process of several): ``ask`` returns
        those rows, ``tell`` takes them with the fitness of the whole population (P values)."""
        if shard is not None:
            if shard.slices != self._slices:
                raise ConfigError(f"the shard has {shard.slices} slices, the strategy draws {self._slices}")
            if self._pending is not None:
                raise ConfigError("shard() with an ask() pending: tell() it first")
        self._shard = shard

    def _owned_slices(self) -> range:
        return self._shard.owned if self._shard is not None else range(self._slices)

    def _local_rows(self) -> tuple[int, int]:
        """The [start, stop) rows of the population this process holds."""
        owned = self._owned_slices()
        bounds = slice_bounds(self._popsize, self._slices)
        return bounds[owned[0]][0], bounds[owned[-1]][1]

    @property
    def sharded(self) -> bool:
        """Whether this strategy holds only one process's slices (:meth:`shard`)."""
        return self._shard is not None

    def slice_rows(self) -> list[tuple[int, int]]:
        """The [start, stop) rows of the population in each slice this process holds, in slice order."""
        bounds = slice_bounds(self._popsize, self._slices)
        return [bounds[k] for k in self._owned_slices()]

    def rows_per_process(self) -> list[int]:
        """How many rows of each population every process holds, by rank ([popsize] unless sharded)."""
        if self._shard is None:
            return [self._popsize]
        bounds, per = slice_bounds(self._popsize, self._slices), self._slices // self._shard.world
        return [bounds[(r + 1) * per - 1][1] - bounds[r * per][0] for r in range(self._shard.world)]

    @property
    def local_popsize(self) -> int:
        """How many rows of each population this process draws and evaluates (popsize unless sharded)."""
        start, stop = self._local_rows()
        return stop - start

    def _own_rows(self, v: torch.Tensor) -> torch.Tensor:
        """The entries of a per-sample vector (P,) that belong to this process's rows (all unless sharded)."""
        start, stop = self._local_rows()
        return v[start:stop]

    def _sliced_sums(self, parts: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Per-slice partial sums of this process's slices, (n_owned, ...) -> their total over all S
        slices, added in slice order (the same rounding however the slices are spread over processes).
        The parts travel in their own dtype; ``dtype`` (default: theirs) is the one they are added in."""
        if self._shard is not None:
            parts = self._shard.gather(parts)
        total = parts[0].to(dtype or parts.dtype, copy=True)
        for k in range(1, parts.shape[0]):
            total.add_(parts[k])
        return total

    def _local_slices(self, n: int | None = None) -> list[slice]:
        """This process's slices as ranges of its own rows (0 = its first row), in slice order; with
        ``n``, only the parts of them among its first ``n`` rows (empty parts left out)."""
        start = self._local_rows()[0]
        pieces = [slice(a - start, b - start if n is None else min(b - start, n)) for a, b in self.slice_rows()]
        return [p for p in pieces if p.start < p.stop]

    def _per_slice(self, fn: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """``fn`` (a map of rows to rows, such as ``_sample``) on this process's first ``len(rows)`` rows.

        Drawn in slices, ``fn`` runs on each slice's rows apart (read from aligned memory,
        :func:`~evoprop.es.slices.aligned`) and the results are joined into one new contiguous
        tensor, so that a row is computed on the same shapes, layouts and alignment however the
        slices are spread over processes (a matrix product's rounding may depend on all three).
        """
        if self._slices == 1:
            return fn(rows)
        return torch.cat([fn(aligned(rows[p])) for p in self._local_slices(rows.shape[0])])

    def _slice_sums(self, width: int, fill: Callable[..., None], *per_row: torch.Tensor,
                    dtype: torch.dtype | None = None) -> torch.Tensor:
        """The total over all S slices of a quantity summed over each slice's rows (``width`` values).

        ``per_row`` are tensors indexed by this process's rows (z, y, ``_own_rows`` weights);
        ``fill(out, *pieces)`` writes one slice's part into ``out`` (``width`` values, work dtype)
        given their rows of that slice (in aligned memory, as in ``_per_slice``). Every process's
        parts are gathered and added in slice order, in ``dtype`` (``_sliced_sums``).
        Communication: S · width values of the work dtype per call.
        """
        owned = self._local_slices()
        parts = torch.empty(len(owned), width, device=self._device, dtype=self._work_dtype)
        for part, rows in zip(parts, owned):
            fill(part, *(aligned(t[rows]) for t in per_row))
        return self._sliced_sums(parts, dtype)

    # -- public read-only properties -------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def popsize(self) -> int:
        return self._popsize

    @property
    def generation(self) -> int:
        """Number of completed ``tell`` calls."""
        return self._generation

    @property
    def evaluations(self) -> int:
        return self._evaluations

    @property
    def sigma(self) -> float:
        return self._sigma

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._work_dtype

    @property
    def mean(self) -> torch.Tensor:
        """The distribution mean (a copy, in x0's dtype)."""
        return self._mean.to(self._work_dtype).clone()

    @mean.setter
    def mean(self, value: Any) -> None:
        """Move the mean (e.g. to weights trained by SGD); paths and covariance are kept."""
        v = _as_vector(value)
        if v.numel() != self._dim:
            raise ConfigError(f"new mean has {v.numel()} values, the strategy searches {self._dim}")
        self._mean = v.to(device=self._device, dtype=self._state_dtype).clone()
        self._pending = None

    @property
    def p_sigma(self) -> torch.Tensor:
        """The step-size evolution path p_σ (Hansen 2016, eq. 43; a copy, state dtype)."""
        return self._ps.clone()

    @property
    def best(self) -> Best:
        sol = None if self._best_x is None else self._best_x.clone()
        return Best(sol, self._best_f)

    # -- ask / tell ----------------------------------------------------------
    def ask(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """Sample a population: a (popsize, dim) tensor in x0's dtype and device.

        ``out`` (as torch's ``out=``): a (popsize, dim) tensor of that dtype and device to
        write the population into. A caller that samples every generation and does not keep
        old populations (``LayerSearch`` does this) saves allocating and page-faulting P·d
        fresh values each time (page faults that, at large P·d, cost a noticeable part of a generation).
        """
        if out is not None:
            shape = (self.local_popsize, self._dim)
            if (not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or out.dtype != self._work_dtype
                    or out.device != self._device or not out.is_contiguous()):
                got = (tuple(out.shape), out.dtype, str(out.device)) if isinstance(out, torch.Tensor) else type(out)
                raise ConfigError(f"ask(out=...) needs a contiguous {shape} {self._work_dtype} tensor on "
                                  f"{self._device}, got {got}")
        self._before_ask()
        self._rng_before_ask = self._rng.get_state()
        z = self._standard_normal()
        x, y = self._candidates(z, out)
        k_all = min(len(self._injections), self._popsize)
        # injected solutions replace the first samples (as pycma's ask); sharded, this process holds
        # the part of rows [0, k_all) among its own rows [start, stop), a prefix of them
        start, stop = self._local_rows()
        mine = self._injections[start:min(stop, k_all)]
        k = len(mine)
        if k:
            x[:k] = torch.stack(mine).to(device=self._device, dtype=self._work_dtype)
        self._pending = {"z": z, "y": y, "x": x, "injected": mine, "injected_all": self._injections[:k_all]}
        self._injections = self._injections[k_all:]
        # x's version counter (free to read) tells tell() whether the caller edited x in place
        self._pending_version = x._version
        return x

    def _candidates(self, z: torch.Tensor, out: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """mean + sigma * _sample(z), into ``out`` when given; returns (x, y), y None unless kept."""
        y = self._per_slice(self._sample, z)
        m = self._mean.to(self._work_dtype).unsqueeze(0)
        if out is None and not self._keeps_y:  # the update needs only z: build x in y's memory
            return y.mul_(self._sigma).add_(m), None
        x = out if out is not None else torch.empty(z.shape[0], self._dim, device=self._device,
                                                    dtype=self._work_dtype)
        torch.add(m, y, alpha=self._sigma, out=x)  # contiguous even if y is a transposed view
        return x, (y if self._keeps_y else None)

    def _standard_normal(self) -> torch.Tensor:
        """A (P, d) standard-normal draw into a buffer kept between generations.

        z never leaves the strategy (ask() returns x, built elsewhere), so its memory can be
        reused instead of page-faulting a fresh tensor every generation. ``randn`` is
        ``empty().normal_()``, so the samples are the same.
        Large CPU draws are split over parallel streams (see :mod:`evoprop.es.draws`).
        """
        shape = (self.local_popsize, self._dim)
        buf = getattr(self, "_z_buffer", None)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != self._work_dtype or buf.device != self._device:
            buf = self._z_buffer = torch.empty(shape, device=self._device, dtype=self._work_dtype)
        if self._slices > 1:  # slice k from its own (seed, generation, k) stream (evoprop.es.slices)
            start = self._local_rows()[0]
            bounds = slice_bounds(self._popsize, self._slices)
            g = torch.Generator(device=self._device)
            for k in self._owned_slices():
                g.manual_seed(slice_seed(self._slice_seed, self._generation, k))
                buf[bounds[k][0] - start:bounds[k][1] - start].normal_(generator=g)
            return buf
        if self._device.type == "cpu" and buf.numel() >= draws.PARALLEL_DRAW_MIN:
            return draws.parallel_normal(buf, self._rng)
        return buf.normal_(generator=self._rng)

    def inject(self, solutions: Any) -> None:
        """Queue external solutions for the next ``ask``: its first rows are these points, as given.

        ``solutions`` is one point (d,) or several (k, d); they are evaluated as they are (so
        a gradient-trained point competes unchanged in the selection), and ``tell`` uses
        them like sampled ones, except that each injected step y = (x − m)/σ is clipped to
        a Mahalanobis length ||C^{-1/2} y|| of at most √d + 2d/(d + 2) for the update
        (Hansen, "Injecting external solutions into CMA-ES", arXiv:1110.4181, the clipping
        α_clip(c_y, ·); the bound is pycma's ``repair_genotype``), so a far-away point moves
        the distribution no more than a sample of typical length could; and injected
        points get no negative (active) weight (pycma's ``CMA_active_injected=0``).
        Points beyond the population size wait for the following ``ask``.
        """
        x = torch.as_tensor(solutions).detach() if not isinstance(solutions, torch.Tensor) else solutions.detach()
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[1] != self._dim:
            raise ConfigError(f"inject() expects points of {self._dim} values, got shape {tuple(x.shape)}")
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise ConfigError("inject() needs finite floating-point points")
        self._injections.extend(row.to(device=self._device, dtype=self._state_dtype).clone() for row in x)

    def _clip_injected(self, z: torch.Tensor, y: torch.Tensor | None, x: torch.Tensor, k: int) -> None:
        """Steps of the first ``k`` (injected) rows, clipped for the update (see ``inject``); drawn in
        slices, slice by slice (see ``_per_slice``)."""
        bound = math.sqrt(self._dim) + 2.0 * self._dim / (self._dim + 2.0)
        for rows in self._local_slices(k):
            yi = (x[rows].to(self._state_dtype) - self._mean.unsqueeze(0)) / self._sigma
            zi = self._whiten(yi.to(self._work_dtype)).to(self._state_dtype)
            scale = (bound / zi.norm(dim=1).clamp_min(1e-300)).clamp(max=1.0).unsqueeze(1)
            z[rows] = (zi * scale).to(z.dtype)
            if y is not None:
                y[rows] = (yi * scale).to(y.dtype)

    @property
    def injected(self) -> int:
        """How many rows of the pending ``ask`` are injected points (0 when none is pending)."""
        return len(self._pending["injected"]) if self._pending is not None else 0

    def tell(self, solutions: torch.Tensor, fitness: Any) -> None:
        """Update the distribution from evaluated ``solutions`` (minimisation).

        ``solutions`` is normally the tensor returned by the last ``ask``; other
        (P, d) solutions (repaired or injected) are accepted and mapped back to
        the sampling space, and so is the returned tensor itself after an in-place
        edit (e.g. ``X.clamp_(lo, hi)`` to repair bounds): its version counter tells,
        so the common case, an unedited population, costs no pass over it.
        Non-finite fitness values rank worst; if no value is finite the distribution
        is left unchanged (only the counters advance).

        Raises :class:`~evoprop.errors.StrategyDiverged` if the update leaves a
        degenerate state (see the module docstring).
        """
        if self._pending is None:
            raise ConfigError("tell() called without a pending ask(): call ask() first")
        P, d = self._popsize, self._dim
        start, stop = self._local_rows()
        if not isinstance(solutions, torch.Tensor) or tuple(solutions.shape) != (stop - start, d):
            shape = tuple(solutions.shape) if isinstance(solutions, torch.Tensor) else type(solutions).__name__
            raise ConfigError(f"tell() expects solutions of shape ({stop - start}, {d}), got {shape}")
        f = torch.as_tensor(fitness).detach()
        if f.dim() == 2 and f.shape[1] == 1:
            f = f[:, 0]
        if tuple(f.shape) != (P,):
            raise ConfigError(f"tell() expects {P} fitness values, got shape {tuple(f.shape)}")
        f = f.to(device="cpu", dtype=torch.float64)
        z, y, x = self._pending["z"], self._pending["y"], self._pending["x"]
        solutions = solutions.detach()  # (shares the version counter of the tensor it came from)
        if _same_view(solutions, x):
            unchanged = solutions._version == self._pending_version
        else:
            unchanged = solutions.device == x.device and x._version == self._pending_version \
                and torch.equal(solutions, x)
        if not unchanged:
            sol = solutions.to(device=self._device, dtype=self._state_dtype)
            if not bool(torch.isfinite(sol).all()):
                raise ConfigError("tell() got solutions containing NaN or infinite values")
            y = ((sol - self._mean.unsqueeze(0)) / self._sigma).to(self._work_dtype)
            z = self._per_slice(self._whiten, y)
            x = solutions.to(device=self._device, dtype=self._work_dtype)
        self._injected_rows = len(self._pending["injected"])
        if self._injected_rows:
            self._clip_injected(z, y, x, self._injected_rows)
        order = rank(f)
        finite = torch.isfinite(f)
        self._evaluations += P
        if bool(finite.any()):
            i0 = int(order[0])
            f0 = float(f[i0])
            if f0 < self._best_f:
                self._best_f = f0
                self._best_x = self.population_row(x, i0)
            self._fhist.append(f0)
            self._update(z, y, order.to(self._device), f)
        self._pending = None
        self._injected_rows = 0
        self._generation += 1
        self._check_state()

    def population_row(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Row ``i`` of the whole population (a copy), given this process's rows ``x`` (those ``ask``
        returned): sharded, it comes from the process that holds it (every process must call this)."""
        start, stop = self._local_rows()
        if self._shard is None:
            return x[i - start].clone()
        row = x[i - start].clone() if start <= i < stop else torch.zeros_like(x[0])
        k = next(j for j, (a, b) in enumerate(slice_bounds(self._popsize, self._slices)) if a <= i < b)
        return self._shard.broadcast(row, self._shard.owner_of_slice(k))

    # -- hooks ---------------------------------------------------------------
    def _before_ask(self) -> None:
        """Refresh lazily computed quantities (e.g. an eigendecomposition)."""

    @abc.abstractmethod
    def _sample(self, z: torch.Tensor) -> torch.Tensor:
        """Standard normal z (P, d) -> ambient steps y, so that a candidate is mean + sigma * y."""

    @abc.abstractmethod
    def _whiten(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of ``_sample`` (for solutions that tell() gets but ask() did not make)."""

    @abc.abstractmethod
    def _update(self, z: torch.Tensor, y: torch.Tensor, order: torch.Tensor, f: torch.Tensor) -> None:
        """Update mean, paths, covariance and sigma from the ranked samples."""

    def _max_std(self) -> float:
        """Largest coordinate standard deviation of the sampling distribution, over sigma."""
        return 1.0

    def _condition(self) -> float:
        """Condition number of the covariance (an estimate is fine)."""
        return 1.0

    # -- shared update pieces ------------------------------------------------
    @staticmethod
    def _by_sample(weights: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Weights indexed by sample: ``out[order[k]] = weights[k]``."""
        out = torch.empty_like(weights)
        out[order] = weights
        return out

    def _positive_weights(self, mu: int | None) -> tuple[torch.Tensor, float]:
        """The weights of the best ``mu`` (default ⌊λ/2⌋; Hansen 2016, eqs. 49, 53) and μ_eff."""
        if mu is not None and not (1 <= mu <= self._popsize):
            raise ConfigError(f"mu must be in [1, popsize={self._popsize}], got {mu}")
        w, mueff, _ = log_weights(self._popsize, self._dim, mu=mu)
        return w, mueff

    def _update_mean(self, y_w: torch.Tensor, c_m: float = 1.0) -> None:
        """m ← m + c_m σ ⟨y⟩_w (Hansen 2016, eq. 42), with the σ the population was drawn with."""
        self._mean.add_(y_w, alpha=c_m * self._sigma)

    def _update_p_sigma(self, white_step: torch.Tensor, cs: float) -> None:
        """p_σ ← (1 − c_σ) p_σ + √(c_σ (2 − c_σ) μ_eff) C^{-1/2} ⟨y⟩_w (Hansen 2016, eq. 43)."""
        ps = self._ps
        ps.mul_(1.0 - cs).add_(white_step.to(ps.dtype), alpha=math.sqrt(cs * (2.0 - cs) * self._mueff))

    def _update_sigma_csa(self, cs: float, ds: float) -> None:
        """σ ← σ exp((c_σ/d_σ)(||p_σ|| / E||N(0,I)|| − 1)) (Hansen 2016, eq. 44)."""
        self._scale_sigma((cs / ds) * (float(self._ps.norm()) / self._chin - 1.0))

    def _scale_sigma(self, log_factor: float) -> None:
        """σ ← σ · exp(log_factor), without OverflowError (a σ that overflows is a divergence)."""
        if not math.isfinite(log_factor):
            raise self._diverged(f"the step-size update became {log_factor} (a non-finite evolution path)")
        self._set_sigma(math.exp(min(math.log(self._sigma) + log_factor, 709.0)) if log_factor > 0
                        else self._sigma * math.exp(log_factor))

    def _set_sigma(self, sigma: float) -> None:
        # σ may legitimately become tiny or huge (checked against σ0 after the update);
        # it must never become 0, inf or NaN
        if not (math.isfinite(sigma) and sigma > 0):
            raise self._diverged(f"the step size σ became {sigma}")
        self._sigma = sigma

    # -- divergence (see the module docstring) -------------------------------
    @property
    def _remedy(self) -> str:
        """What to change when the search diverges (a strategy may say something more specific)."""
        from .registry import SINGLE_RUN  # the registry imports this module; read only when a search diverged

        others = " or ".join(f"--strategy {name}" for name in SINGLE_RUN if name not in (self.name, "paper"))
        return f"lower sigma0 (--sigma0) or choose another strategy ({others})"

    #: why σ grows without bound on a fitness that is not broken (Table 1's sep row, RESULTS.md)
    _unbounded = ("a spread that grows generation after generation means that scaling the weights up keeps "
                  "lowering the fitness, as the NLL of a linearly separable ES batch does: bound it with an "
                  "L2 term (--es-weight-decay) or a larger ES batch (--es-batch-size)")

    def _diverged(self, what: str, generation: int | None = None) -> StrategyDiverged:
        """The error for a degenerate state found in ``generation`` (default: the one being told)."""
        g = generation if generation is not None else self._generation + (1 if self._pending is not None else 0)
        return StrategyDiverged(f"evolution strategy '{self.name}' diverged at generation {g}: {what}; "
                                f"{self._remedy}")

    def _check_state(self) -> None:
        """Raise StrategyDiverged if σ, the mean or the covariance degenerated (O(d) work)."""
        if not bool(torch.isfinite(self._mean).all()):
            raise self._diverged("the mean became non-finite")
        problem = self._covariance_problem()
        if problem:
            raise self._diverged(problem)
        # The sampling spread σ · max √C_ii, not σ alone: σ and C trade scale (sep's σ may grow
        # by 1e20 while its variances shrink as much, on a search that converges).
        ratio = self._sigma / self._sigma0
        spread = ratio * self._max_std() if self._cheap_max_std else ratio
        if spread > SIGMA_RATIO_MAX:
            what = "the spread of its samples, σ · max √C_ii" if self._cheap_max_std else "its step size σ"
            raise self._diverged(f"{what} = {spread * self._sigma0:.3g}, grew above 1e20 × σ0 "
                                 f"(σ0 = {self._sigma0:.3g})" + (f"; {self._unbounded}" if self._unbounded else ""))
        if spread < SIGMA_RATIO_MIN:
            # So small a spread is a collapse only if the candidates no longer differ from the mean
            # in the work dtype; a search converging onto an optimum at 0 legitimately gets here.
            if not self._cheap_max_std:
                spread = ratio * self._max_std()
            if spread * self._sigma0 <= torch.finfo(self._work_dtype).eps * float(self._mean.abs().max()):
                raise self._diverged(f"the spread of its samples, σ · max √C_ii = {spread * self._sigma0:.3g}, "
                                     f"fell below 1e-20 × σ0 (σ0 = {self._sigma0:.3g}), and every candidate "
                                     "equals the mean")

    #: whether ``_max_std`` is O(d) or less, so that ``_check_state`` may call it after every tell
    _cheap_max_std = True

    def _covariance_problem(self) -> str | None:
        """What is wrong with the covariance's cheap-to-check part (O(d)), or None."""
        return None

    # -- stopping (used by IPOP; optional for users) -------------------------
    def should_stop(self, *, tolx: float = 1e-12, tolfun: float = 1e-12, tolcond: float = 1e14) -> bool:
        """True when the search has stalled (criteria of Hansen's tutorial / pycma defaults).

        TolX: σ · max std < tolx · σ0;  TolFun: best fitness over the last
        10 + ⌈30 d / λ⌉ generations spans less than tolfun; ConditionCov: the
        covariance condition number exceeds tolcond; or σ is no longer finite.
        """
        if self._sigma * self._max_std() < tolx * self._sigma0:
            return True
        n = 10 + math.ceil(30 * self._dim / self._popsize)
        if len(self._fhist) >= n:
            recent = self._fhist[-n:]
            if max(recent) - min(recent) < tolfun:
                return True
        if self._condition() > tolcond:
            return True
        return False

    # -- state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, including the random-number state.

        If an ``ask`` is pending (not yet told), the saved generator state is the
        one *before* that ask, so a loaded strategy re-draws the same population.
        """
        rng = self._rng_before_ask if self._pending is not None else self._rng.get_state()
        sd: dict[str, Any] = {
            "name": self.name,
            "version": _STATE_VERSION,
            "dim": self._dim,
            "popsize": self._popsize,
            "sigma": self._sigma,
            "sigma0": self._sigma0,
            "generation": self._generation,
            "evaluations": self._evaluations,
            "best_f": self._best_f,
            "fhist": list(self._fhist),
            "mean": self._mean.clone(),
            "x0": self._x0.clone(),
            "best_x": None if self._best_x is None else self._best_x.clone(),
            "rng": rng.clone(),
        }
        if self._slices > 1:
            sd["slices"], sd["slice_seed"] = self._slices, self._slice_seed
        # injected points not yet told (a pending ask re-draws them after a load)
        queued = (self._pending["injected_all"] if self._pending is not None else []) + self._injections
        if queued:
            sd["injections"] = [v.clone() for v in queued]
        for k in self._state_tensors:
            v = getattr(self, k)
            sd[k] = None if v is None else v.clone()
        for k in self._state_scalars:
            sd[k] = getattr(self, k)
        return sd

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` saved by a strategy of the same name, dim and popsize."""
        if state.get("name") != self.name:
            raise ConfigError(f"state_dict is for strategy {state.get('name')!r}, not {self.name!r}")
        if state.get("version") != _STATE_VERSION:
            raise ConfigError(f"state_dict version {state.get('version')!r} is not supported")
        if state["dim"] != self._dim or state["popsize"] != self._popsize:
            raise ConfigError(
                f"state_dict has dim={state['dim']}, popsize={state['popsize']}; "
                f"this strategy has dim={self._dim}, popsize={self._popsize}")
        if state.get("slices", 1) != self._slices:
            raise ConfigError(f"state_dict's population is drawn in {state.get('slices', 1)} slice(s); this "
                              f"strategy draws {self._slices} (set the strategy option slices to match)")
        dev = self._device

        def t(v: Any, dtype: torch.dtype | None = None) -> Any:
            if v is None:
                return None
            return v.to(device=dev, dtype=dtype or v.dtype).clone()

        self._sigma = float(state["sigma"])
        self._sigma0 = float(state["sigma0"])
        self._generation = int(state["generation"])
        self._evaluations = int(state["evaluations"])
        self._best_f = float(state["best_f"])
        self._fhist = list(state["fhist"])
        self._mean = t(state["mean"], self._state_dtype)
        self._x0 = t(state["x0"], self._state_dtype)
        self._best_x = t(state["best_x"], self._work_dtype)
        for k in self._state_tensors:
            setattr(self, k, t(state[k]))
        for k in self._state_scalars:
            setattr(self, k, state[k])
        self._rng.set_state(state["rng"].cpu())
        if self._slices > 1:
            self._slice_seed = int(state["slice_seed"])
        self._pending = None
        self._injections = [t(v, self._state_dtype) for v in state.get("injections", [])]
        self._after_load()

    def _after_load(self) -> None:
        """Recompute derived quantities after ``load_state_dict``."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self._dim}, popsize={self._popsize}, sigma={self._sigma:.4g}, "
                f"generation={self._generation}, best={self._best_f:.6g}, device={self._device}, dtype={self._work_dtype})")
