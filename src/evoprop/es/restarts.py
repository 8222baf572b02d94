"""IPOP restarts (Auger & Hansen, CEC 2005): when the inner strategy stalls
(:meth:`Strategy.should_stop`), start a fresh one with the population multiplied
by ``inc_popsize`` (2 by default), up to ``max_restarts`` times.

The wrapper has the same ask/tell interface as every strategy; ``best`` is the
best over all runs, ``generation``/``evaluations`` count over all runs.
Each restart starts from ``x0`` (``restart_mean="x0"``, the default) or from
x0 + σ0·U(−2, 2)^d (``restart_mean="random"``), with the initial σ0 and the
seed ``seed + restart`` (so a seeded run is reproducible).

An inner strategy that diverges (:class:`~evoprop.errors.StrategyDiverged`, see
:mod:`evoprop.es.base`) is restarted the same way at the next ``ask``, while restarts
remain; after the last one its divergence is raised. ``state_dict`` holds what decides
the future restarts (seed, x0, σ0, the first population, the restart settings), so a
state loaded into a wrapper built with other arguments resumes the saved run exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from evoprop.errors import ConfigError, StrategyDiverged

from .base import Best, Strategy, _as_vector, default_popsize
from .registry import SINGLE_RUN, strategy_class


class IPOP:
    """Restarting wrapper around ``base`` (default ``"cma"``).

    Args:
        x0, sigma0, popsize, seed: as for every strategy (popsize is the first run's).
        base: name of the inner strategy, one of :data:`~evoprop.es.registry.SINGLE_RUN`.
        inc_popsize: population factor per restart (default 2).
        max_restarts: restarts allowed (default 9).
        restart_mean: ``"x0"`` or ``"random"``.
        stop_options: keyword arguments of ``should_stop`` (tolx, tolfun, tolcond).
        **options: passed to the inner strategy.
    """

    name = "ipop"

    def __init__(self, x0: Any, sigma0: float, popsize: int | None = None, *, seed: int | None = None,
                 base: str = "cma", inc_popsize: float = 2.0, max_restarts: int = 9,
                 restart_mean: str = "x0", stop_options: dict | None = None, **options: Any) -> None:
        if base not in SINGLE_RUN:
            raise ConfigError(f"ipop: base must be one of {', '.join(SINGLE_RUN)}; got {base!r}")
        if not inc_popsize >= 1:
            raise ConfigError(f"inc_popsize must be >= 1, got {inc_popsize}")
        if restart_mean not in ("x0", "random"):
            raise ConfigError(f"restart_mean must be 'x0' or 'random', got {restart_mean!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
        self._cls = strategy_class(base, SINGLE_RUN, options, label=f"ipop/{base}")
        self._base = base
        self._x0 = _as_vector(x0).clone()
        self._sigma0 = sigma0
        self._popsize0 = popsize if popsize is not None else default_popsize(self._x0.numel())
        self._seed = seed
        self._inc = float(inc_popsize)
        self._max_restarts = max_restarts
        self._restart_mean = restart_mean
        self._stop_options = dict(stop_options or {})
        self._options = options
        self._restarts = 0
        self._inner_diverged = False
        self._done_generations = 0
        self._done_evaluations = 0
        self._best = Best(None, float("inf"))
        self._inner: Strategy = self._make(self._x0, self._popsize0, 0)
        self._rng = torch.Generator(device=self._x0.device)
        self._rng.manual_seed(0 if seed is None else seed + 7919)

    def _make(self, mean: torch.Tensor, popsize: int, restart: int) -> Strategy:
        seed = None if self._seed is None else self._seed + restart
        return self._cls(mean, self._sigma0, popsize, seed=seed, **self._options)

    def _popsize_for(self, restart: int) -> int:
        return max(2, int(round(self._popsize0 * self._inc**restart)))

    # -- interface -------------------------------------------------------
    @property
    def inner(self) -> Strategy:
        return self._inner

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def popsize(self) -> int:
        return self._inner.popsize

    @property
    def mean(self) -> torch.Tensor:
        return self._inner.mean

    @property
    def sigma(self) -> float:
        return self._inner.sigma

    @property
    def generation(self) -> int:
        return self._done_generations + self._inner.generation

    @property
    def evaluations(self) -> int:
        return self._done_evaluations + self._inner.evaluations

    @property
    def best(self) -> Best:
        inner = self._inner.best
        return inner if inner.fitness < self._best.fitness else self._best

    def should_stop(self) -> bool:
        return self._restarts >= self._max_restarts and self._inner.should_stop(**self._stop_options)

    def ask(self, out: torch.Tensor | None = None) -> torch.Tensor:
        if self._restarts < self._max_restarts and (
                self._inner_diverged or self._inner.should_stop(**self._stop_options)):
            self._restart()
        try:
            return self._inner.ask(self._fitting(out))
        except StrategyDiverged:  # e.g. its covariance could not be factored
            if self._restarts >= self._max_restarts:
                raise
            self._restart()
            return self._inner.ask(self._fitting(out))

    def _fitting(self, out: torch.Tensor | None) -> torch.Tensor | None:
        if out is not None and tuple(out.shape) != (self._inner.popsize, self._inner.dim):
            return None  # a restart grew the population: the caller's buffer no longer fits
        return out

    def tell(self, solutions: torch.Tensor, fitness: Any) -> None:
        try:
            self._inner.tell(solutions, fitness)
        except StrategyDiverged:
            if self._restarts >= self._max_restarts:
                raise
            self._inner_diverged = True  # the next ask restarts

    def inject(self, solutions: Any) -> None:
        """As :meth:`Strategy.inject`; points still queued at a restart go to the new run."""
        self._inner.inject(solutions)

    @property
    def injected(self) -> int:
        return self._inner.injected

    def _restart(self) -> None:
        self._best = self.best
        self._done_generations += self._inner.generation
        self._done_evaluations += self._inner.evaluations
        self._restarts += 1
        self._inner_diverged = False
        mean = self._x0
        if self._restart_mean == "random":
            u = torch.rand(self._x0.shape, generator=self._rng, device=self._x0.device, dtype=self._x0.dtype)
            mean = self._x0 + self._sigma0 * (4.0 * u - 2.0)
        queued = self._inner._injections
        self._inner = self._make(mean, self._popsize_for(self._restarts), self._restarts)
        if queued:
            self._inner.inject(torch.stack(queued))

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self._base,
            "restarts": self._restarts,
            "inner_diverged": self._inner_diverged,
            # what decides the future restarts (a wrapper built with other arguments takes these)
            "seed": self._seed,
            "x0": self._x0.clone(),
            "sigma0": self._sigma0,
            "popsize0": self._popsize0,
            "inc_popsize": self._inc,
            "max_restarts": self._max_restarts,
            "restart_mean": self._restart_mean,
            "stop_options": dict(self._stop_options),
            "done_generations": self._done_generations,
            "done_evaluations": self._done_evaluations,
            "best_x": None if self._best.solution is None else self._best.solution.clone(),
            "best_f": self._best.fitness,
            "rng": self._rng.get_state(),
            "inner": self._inner.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name or state.get("base") != self._base:
            raise ConfigError(f"state_dict is for {state.get('name')!r}/{state.get('base')!r}, "
                              f"not ipop/{self._base!r}")
        # (a state saved before these were stored keeps this wrapper's own settings)
        self._restarts = int(state["restarts"])
        self._inner_diverged = bool(state.get("inner_diverged", False))
        self._seed = state.get("seed", self._seed)
        if state.get("x0") is not None:
            self._x0 = state["x0"].to(self._x0.device).clone()
        self._sigma0 = state.get("sigma0", self._sigma0)
        self._popsize0 = int(state.get("popsize0", self._popsize0))
        self._inc = float(state.get("inc_popsize", self._inc))
        self._max_restarts = int(state.get("max_restarts", self._max_restarts))
        self._restart_mean = state.get("restart_mean", self._restart_mean)
        self._stop_options = dict(state.get("stop_options", self._stop_options))
        self._done_generations = int(state["done_generations"])
        self._done_evaluations = int(state["done_evaluations"])
        bx = state["best_x"]
        self._best = Best(None if bx is None else bx.to(self._x0.device).clone(), float(state["best_f"]))
        self._rng.set_state(state["rng"].cpu())
        self._inner = self._make(self._x0, self._popsize_for(self._restarts), self._restarts)
        self._inner.load_state_dict(state["inner"])

    def __repr__(self) -> str:
        return f"IPOP(base={self._base}, restarts={self._restarts}, inner={self._inner!r})"
