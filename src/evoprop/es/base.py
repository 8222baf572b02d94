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
* the recombination weights (Hansen's tutorial, incl. active negative weights);
* cumulative step-size adaptation helpers and E||N(0, I)||;
* the private ``torch.Generator`` and ``state_dict`` / ``load_state_dict``;
* stopping criteria used by the IPOP restarts;
* ``inject``: external solutions (e.g. a gradient-trained point) placed in the next
  population, their steps clipped for the update (Hansen 2011, arXiv:1110.4181).

Dtypes: ``ask`` returns x0's dtype ("work dtype", used for the population and the
big P x d matrix products).  The distribution state (mean, paths, sigma,
covariance) is kept in ``state_dtype`` (float64 by default, float32 on devices
without float64 such as MPS), so that a float32 search still accumulates its
mean and covariance precisely.
"""

from __future__ import annotations

import abc
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from evoprop.errors import ConfigError

__all__ = ["Best", "Strategy", "expected_norm", "log_weights", "rank"]

_STATE_VERSION = 1


@dataclass(frozen=True)
class Best:
    """The best solution evaluated so far (``fitness`` is ``inf`` before any finite value)."""

    solution: torch.Tensor | None
    fitness: float


# ---------------------------------------------------------------------------
# shared numerical helpers
# ---------------------------------------------------------------------------


def expected_norm(d: int) -> float:
    """E||N(0, I_d)|| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2), exactly (via lgamma)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2.0) - math.lgamma(d / 2.0))


def rank(fitness: torch.Tensor) -> torch.Tensor:
    """Indices sorting ``fitness`` best (smallest) first.

    Non-finite values (NaN, +inf and also -inf, which is almost always a bug such
    as log(0)) rank after every finite value; ties keep their sample order.
    """
    f = fitness.to(torch.float64)
    f = torch.where(torch.isfinite(f), f, torch.full_like(f, math.inf))
    return torch.sort(f, stable=True).indices


def log_weights(popsize: int, dim: int, *, mu: int | None = None, active: bool = False,
                c1: float | None = None, cmu: float | None = None) -> tuple[torch.Tensor, float, float]:
    """Recombination weights of Hansen's tutorial (arXiv:1604.00772, eqs. 49-53).

    Returns ``(weights, mueff, mueff_minus)`` with ``weights`` of length ``popsize``
    (float64, best first): positive weights ln((λ+1)/2) - ln i for the best ``mu``
    (default ⌊λ/2⌋) summing to 1; then, if ``active``, negative weights scaled by
    min(α_μ⁻, α_μeff⁻, α_posdef⁻) (needs ``c1``/``cmu``); otherwise zeros.
    """
    lam = popsize
    mu = lam // 2 if mu is None else mu
    i = torch.arange(1, lam + 1, dtype=torch.float64)
    wp = math.log((lam + 1) / 2.0) - torch.log(i)
    pos = wp[:mu].clamp_min(0)
    mueff = float(pos.sum() ** 2 / (pos**2).sum())
    w = torch.zeros(lam, dtype=torch.float64)
    w[:mu] = pos / pos.sum()
    neg = wp[mu:]
    neg = neg[neg < 0]
    mueff_minus = float(neg.sum() ** 2 / (neg**2).sum()) if neg.numel() else 0.0
    if active and neg.numel():
        if c1 is None or cmu is None:
            raise ConfigError("active weights need c1 and cmu")
        alpha_mu = 1.0 + c1 / cmu
        alpha_mueff = 1.0 + 2.0 * mueff_minus / (mueff + 2.0)
        alpha_posdef = (1.0 - c1 - cmu) / (dim * cmu)
        scale = min(alpha_mu, alpha_mueff, alpha_posdef)
        w[lam - neg.numel():] = scale * neg / neg.abs().sum()
    return w, mueff, mueff_minus


def cma_learning_rates(dim: int, mueff: float) -> dict[str, float]:
    """Default c_σ, d_σ, c_c, c_1, c_μ of Hansen's tutorial (eqs. 55-58)."""
    n = float(dim)
    alpha_cov = 2.0
    c1 = alpha_cov / ((n + 1.3) ** 2 + mueff)
    cmu = min(1.0 - c1, alpha_cov * (mueff - 2.0 + 1.0 / mueff) / ((n + 2.0) ** 2 + alpha_cov * mueff / 2.0))
    cs = (mueff + 2.0) / (n + mueff + 5.0)
    ds = 1.0 + 2.0 * max(0.0, math.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0) + cs
    cc = (4.0 + mueff / n) / (n + 4.0 + 2.0 * mueff / n)
    return {"c1": c1, "cmu": cmu, "cs": cs, "ds": ds, "cc": cc}


def override_rates(rates: dict[str, float], **given: float | None) -> dict[str, float]:
    """``rates`` with every learning rate the user gave (not None) checked and put in."""
    for k, v in given.items():
        if v is not None:
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{k} must be a positive number, got {v}")
            rates[k] = float(v)
    return rates


def default_popsize(dim: int) -> int:
    """4 + ⌊3 ln d⌋, the usual default population."""
    return 4 + int(math.floor(3.0 * math.log(dim)))


# A CPU draw of at least this many values is split into DRAW_STREAMS blocks, each filled by
# its own generator (seeded from the strategy's) in a thread pool: PyTorch's CPU normal_
# runs one serial Mersenne Twister, ~0.55 s for the 1.6e8 values of a P = 1,000 generation
# at d = 157,000, while the cores sit idle. The block count is fixed, so the samples do not
# depend on how many threads fill them.
PARALLEL_DRAW_MIN = 1 << 22
DRAW_STREAMS = 8
_draw_pool: ThreadPoolExecutor | None = None
_stream_generators: list[torch.Generator] = []


def _parallel_normal(buf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill the contiguous CPU tensor ``buf`` with N(0, 1) from DRAW_STREAMS seeded streams."""
    global _draw_pool
    seeds = torch.randint(0, 2**62, (DRAW_STREAMS,), generator=generator).tolist()
    if _draw_pool is None:
        _draw_pool = ThreadPoolExecutor(max_workers=max(1, min(DRAW_STREAMS, torch.get_num_threads())),
                                        thread_name_prefix="evoprop-draw")
        _stream_generators.extend(torch.Generator() for _ in range(DRAW_STREAMS))
    blocks = buf.view(-1).chunk(DRAW_STREAMS)

    def fill(i: int) -> None:  # normal_ releases the GIL: the blocks really fill in parallel
        _stream_generators[i].manual_seed(seeds[i])
        blocks[i].normal_(generator=_stream_generators[i])

    list(_draw_pool.map(fill, range(len(blocks))))
    return buf


# ---------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are views of the same memory with the same layout (no values read:
    comparing the values of a P = 1,000 population at d = 157,000 costs ~40 ms)."""
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
    and ``_update(w, z, y, order)``; they list their extra state tensors in
    ``_state_tensors`` and scalars in ``_state_scalars``.
    """

    name = "base"
    _keeps_y = True  # whether _update needs the ambient steps y (else only z)
    _state_tensors: tuple[str, ...] = ()
    _state_scalars: tuple[str, ...] = ()

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *,
                 seed: int | None = None, state_dtype: torch.dtype | None = None) -> None:
        x = _as_vector(x0)
        self._dim = int(x.numel())
        self._device = x.device
        self._dtype = x.dtype
        if state_dtype is None:
            state_dtype = torch.float32 if x.device.type == "mps" else torch.float64
        self._sdtype = state_dtype
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
        self._x0 = x.to(self._sdtype).clone()
        self._mean = self._x0.clone()
        self._sigma = sigma0
        self._sigma0 = sigma0
        self._chin = expected_norm(self._dim)
        self._generation = 0
        self._evaluations = 0
        self._best_x: torch.Tensor | None = None
        self._best_f = math.inf
        self._fhist: list[float] = []  # best fitness per generation (for stopping)
        self._gen = torch.Generator(device=self._device)
        if seed is None:
            self._gen.seed()
        else:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ConfigError(f"seed must be an integer or None, got {seed!r}")
            self._gen.manual_seed(int(seed))
        self._pending: dict[str, torch.Tensor] | None = None
        self._rng_before_ask: torch.Tensor | None = None
        self._injections: list[torch.Tensor] = []  # queued by inject(), used by the next ask()
        self._injected_rows = 0  # during _update: the first rows of the population were injected

    # -- defaults a subclass may change ---------------------------------
    @staticmethod
    def _default_popsize(dim: int) -> int:
        return default_popsize(dim)

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
        return self._dtype

    @property
    def mean(self) -> torch.Tensor:
        """The distribution mean (a copy, in x0's dtype)."""
        return self._mean.to(self._dtype).clone()

    @mean.setter
    def mean(self, value: Any) -> None:
        """Move the mean (e.g. to weights trained by SGD); paths and covariance are kept."""
        v = _as_vector(value)
        if v.numel() != self._dim:
            raise ConfigError(f"new mean has {v.numel()} values, the strategy searches {self._dim}")
        self._mean = v.to(device=self._device, dtype=self._sdtype).clone()
        self._pending = None

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
        fresh values each time: ~0.3 s per generation at d = 157,000, P = 1,000 on a CPU.
        """
        if out is not None:
            shape = (self._popsize, self._dim)
            if (not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or out.dtype != self._dtype
                    or out.device != self._device or not out.is_contiguous()):
                got = (tuple(out.shape), out.dtype, str(out.device)) if isinstance(out, torch.Tensor) else type(out)
                raise ConfigError(f"ask(out=...) needs a contiguous {shape} {self._dtype} tensor on "
                                  f"{self._device}, got {got}")
        self._before_ask()
        self._rng_before_ask = self._gen.get_state()
        z = self._standard_normal()
        x, y = self._candidates(z, out)
        k = min(len(self._injections), self._popsize)
        if k:  # injected solutions replace the first samples (as pycma's ask)
            x[:k] = torch.stack(self._injections[:k]).to(device=self._device, dtype=self._dtype)
        self._pending = {"z": z, "y": y, "x": x, "injected": self._injections[:k]}
        self._injections = self._injections[k:]
        return x

    def _candidates(self, z: torch.Tensor, out: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """mean + sigma * _sample(z), into ``out`` when given; returns (x, y), y None unless kept."""
        y = self._sample(z)
        m = self._mean.to(self._dtype).unsqueeze(0)
        if out is None and not self._keeps_y:  # the update needs only z: build x in y's memory
            return y.mul_(self._sigma).add_(m), None
        x = out if out is not None else torch.empty(self._popsize, self._dim, device=self._device, dtype=self._dtype)
        torch.add(m, y, alpha=self._sigma, out=x)  # contiguous even if y is a transposed view
        return x, (y if self._keeps_y else None)

    def _standard_normal(self) -> torch.Tensor:
        """A (P, d) standard-normal draw into a buffer kept between generations.

        z never leaves the strategy (ask() returns x, built elsewhere), so its memory can be
        reused: at P·d = 1.6e8 a fresh tensor costs ~0.3 s of page faults per generation on
        top of the draw. ``randn`` is ``empty().normal_()``, so the samples are the same.
        Large CPU draws are split over parallel streams (see ``_parallel_normal``).
        """
        shape = (self._popsize, self._dim)
        buf = getattr(self, "_z_buffer", None)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != self._dtype or buf.device != self._device:
            buf = self._z_buffer = torch.empty(shape, device=self._device, dtype=self._dtype)
        if self._device.type == "cpu" and buf.numel() >= PARALLEL_DRAW_MIN:
            return _parallel_normal(buf, self._gen)
        return buf.normal_(generator=self._gen)

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
        self._injections.extend(row.to(device=self._device, dtype=self._sdtype).clone() for row in x)

    def _clip_injected(self, z: torch.Tensor, y: torch.Tensor | None, x: torch.Tensor, k: int) -> None:
        """Steps of the first ``k`` (injected) rows, clipped for the update (see ``inject``)."""
        yi = (x[:k].to(self._sdtype) - self._mean.unsqueeze(0)) / self._sigma
        zi = self._whiten(yi.to(self._dtype)).to(self._sdtype)
        bound = math.sqrt(self._dim) + 2.0 * self._dim / (self._dim + 2.0)
        scale = (bound / zi.norm(dim=1).clamp_min(1e-300)).clamp(max=1.0).unsqueeze(1)
        z[:k] = (zi * scale).to(z.dtype)
        if y is not None:
            y[:k] = (yi * scale).to(y.dtype)

    @property
    def injected(self) -> int:
        """How many rows of the pending ``ask`` are injected points (0 when none is pending)."""
        return len(self._pending["injected"]) if self._pending is not None else 0

    def tell(self, solutions: torch.Tensor, fitness: Any) -> None:
        """Update the distribution from evaluated ``solutions`` (minimisation).

        ``solutions`` is normally the tensor returned by the last ``ask``; other
        (P, d) solutions (repaired or injected) are accepted and mapped back to
        the sampling space.  Non-finite fitness values rank worst; if no value is
        finite the distribution is left unchanged (only the counters advance).
        """
        if self._pending is None:
            raise ConfigError("tell() called without a pending ask(): call ask() first")
        P, d = self._popsize, self._dim
        if not isinstance(solutions, torch.Tensor) or tuple(solutions.shape) != (P, d):
            shape = tuple(solutions.shape) if isinstance(solutions, torch.Tensor) else type(solutions).__name__
            raise ConfigError(f"tell() expects solutions of shape ({P}, {d}), got {shape}")
        f = torch.as_tensor(fitness).detach()
        if f.dim() == 2 and f.shape[1] == 1:
            f = f[:, 0]
        if tuple(f.shape) != (P,):
            raise ConfigError(f"tell() expects {P} fitness values, got shape {tuple(f.shape)}")
        f = f.to(device="cpu", dtype=torch.float64)
        z, y, x = self._pending["z"], self._pending["y"], self._pending["x"]
        solutions = solutions.detach()
        if not _same_view(solutions, x) and not (solutions.device == x.device and torch.equal(solutions, x)):
            sol = solutions.to(device=self._device, dtype=self._sdtype)
            if not bool(torch.isfinite(sol).all()):
                raise ConfigError("tell() got solutions containing NaN or infinite values")
            y = ((sol - self._mean.unsqueeze(0)) / self._sigma).to(self._dtype)
            z = self._whiten(y)
            x = solutions.to(device=self._device, dtype=self._dtype)
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
                self._best_x = x[i0].clone()
            self._fhist.append(f0)
            self._update(z, y, order.to(self._device), f)
        self._pending = None
        self._injected_rows = 0
        self._generation += 1

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

    def _csa(self, ps: torch.Tensor, white_step: torch.Tensor, cs: float, mueff: float) -> torch.Tensor:
        """Cumulation of the step-size path: (1-c_σ) p_σ + sqrt(c_σ(2-c_σ) μ_eff) C^{-1/2} y_w."""
        return ps.mul_(1.0 - cs).add_(white_step.to(ps.dtype), alpha=math.sqrt(cs * (2.0 - cs) * mueff))

    def _csa_sigma(self, ps: torch.Tensor, cs: float, ds: float) -> None:
        """σ ← σ exp((c_σ/d_σ)(||p_σ|| / E||N(0,I)|| - 1))."""
        self._set_sigma(self._sigma * math.exp((cs / ds) * (float(ps.norm()) / self._chin - 1.0)))

    def _set_sigma(self, sigma: float) -> None:
        # σ may legitimately become tiny or huge; it must never become 0, inf or NaN
        if math.isfinite(sigma) and sigma > 0:
            self._sigma = min(max(sigma, 1e-300), 1e300)

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
        rng = self._rng_before_ask if self._pending is not None else self._gen.get_state()
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
        # injected points not yet told (a pending ask re-draws them after a load)
        queued = (self._pending["injected"] if self._pending is not None else []) + self._injections
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
        self._mean = t(state["mean"], self._sdtype)
        self._x0 = t(state["x0"], self._sdtype)
        self._best_x = t(state["best_x"], self._dtype)
        for k in self._state_tensors:
            setattr(self, k, t(state[k]))
        for k in self._state_scalars:
            setattr(self, k, state[k])
        self._gen.set_state(state["rng"].cpu())
        self._pending = None
        self._injections = [t(v, self._sdtype) for v in state.get("injections", [])]
        self._after_load()

    def _after_load(self) -> None:
        """Recompute derived quantities after ``load_state_dict``."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self._dim}, popsize={self._popsize}, sigma={self._sigma:.4g}, "
                f"generation={self._generation}, best={self._best_f:.6g}, device={self._device}, dtype={self._dtype})")
