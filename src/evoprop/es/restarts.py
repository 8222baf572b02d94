"""IPOP restarts (Auger & Hansen, CEC 2005): when the inner strategy stalls
(:meth:`Strategy.should_stop`), start a fresh one with the population multiplied
by ``inc_popsize`` (2 by default), up to ``max_restarts`` times.

The wrapper has the same ask/tell interface as every strategy; ``best`` is the
best over all runs, ``generation``/``evaluations`` count over all runs.
Each restart starts from ``x0`` (``restart_mean="x0"``, the default) or from
x0 + σ0·U(−2, 2)^d (``restart_mean="random"``), with the initial σ0 and the
seed ``seed + restart`` (so a seeded run is reproducible).
"""

from __future__ import annotations

from typing import Any

import torch

from evoprop.errors import ConfigError

from .base import Best, Strategy, _as_vector, default_popsize


class IPOP:
    """Restarting wrapper around ``base`` (default ``"cma"``).

    Args:
        x0, sigma0, popsize, seed: as for every strategy (popsize is the first run's).
        base: name of the inner strategy (``"cma"``, ``"sep"``, ``"lmma"``, ``"paper"``).
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
        from . import STRATEGIES

        if base not in STRATEGIES or base == "ipop":
            raise ConfigError(f"ipop: base must be one of cma, sep, lmma, paper; got {base!r}")
        if not inc_popsize >= 1:
            raise ConfigError(f"inc_popsize must be >= 1, got {inc_popsize}")
        if restart_mean not in ("x0", "random"):
            raise ConfigError(f"restart_mean must be 'x0' or 'random', got {restart_mean!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
        import inspect

        self._cls = STRATEGIES[base]
        known = inspect.signature(self._cls.__init__).parameters
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"ipop/{base}: unknown option(s) {', '.join(unknown)}")
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
        self._done_generations = 0
        self._done_evaluations = 0
        self._best = Best(None, float("inf"))
        self._inner: Strategy = self._make(self._x0, self._popsize0, 0)
        self._gen = torch.Generator(device=self._x0.device)
        self._gen.manual_seed(0 if seed is None else seed + 7919)

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
        if self._inner.should_stop(**self._stop_options) and self._restarts < self._max_restarts:
            self._restart()
        if out is not None and tuple(out.shape) != (self._inner.popsize, self._inner.dim):
            out = None  # a restart grew the population: the caller's buffer no longer fits
        return self._inner.ask(out)

    def tell(self, solutions: torch.Tensor, fitness: Any) -> None:
        self._inner.tell(solutions, fitness)

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
        mean = self._x0
        if self._restart_mean == "random":
            u = torch.rand(self._x0.shape, generator=self._gen, device=self._x0.device, dtype=self._x0.dtype)
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
            "done_generations": self._done_generations,
            "done_evaluations": self._done_evaluations,
            "best_x": None if self._best.solution is None else self._best.solution.clone(),
            "best_f": self._best.fitness,
            "rng": self._gen.get_state(),
            "inner": self._inner.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name or state.get("base") != self._base:
            raise ConfigError(f"state_dict is for {state.get('name')!r}/{state.get('base')!r}, "
                              f"not ipop/{self._base!r}")
        self._restarts = int(state["restarts"])
        self._done_generations = int(state["done_generations"])
        self._done_evaluations = int(state["done_evaluations"])
        bx = state["best_x"]
        self._best = Best(None if bx is None else bx.to(self._x0.device).clone(), float(state["best_f"]))
        self._gen.set_state(state["rng"].cpu())
        self._inner = self._make(self._x0, self._popsize_for(self._restarts), self._restarts)
        self._inner.load_state_dict(state["inner"])

    def __repr__(self) -> str:
        return f"IPOP(base={self._base}, restarts={self._restarts}, inner={self._inner!r})"
