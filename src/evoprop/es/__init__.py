"""Evolution strategies in PyTorch: the CMA-ES family, batched, on any device.

``make_strategy(name, x0_or_dim, sigma0, popsize=None, **options)`` builds one of
:data:`STRATEGIES`:

* ``"paper"`` - the reproduced paper's IGO-based CMA-ES, its equations (1)-(5) as printed;
* ``"cma"``   - standard CMA-ES (Hansen's tutorial), full covariance;
* ``"sep"``   - separable (diagonal) CMA-ES, O(d) memory;
* ``"lmma"``  - LM-MA-ES (limited-memory matrix adaptation), O(k·d) memory;
* ``"ipop"``  - a strategy (``cma`` by default) with IPOP restarts.

All share the :class:`~evoprop.es.base.Strategy` interface: ``ask()``,
``tell(solutions, fitness)``, ``inject(solutions)`` (external points in the next population,
Hansen 2011), ``mean``, ``sigma``, ``best``, ``generation``,
``state_dict()`` / ``load_state_dict()``, ``should_stop()``.
"""

from __future__ import annotations

from typing import Any

import torch

from evoprop.errors import ConfigError

from .base import Best, Strategy, default_popsize, expected_norm, rank
from .cma import CMA
from .constants import CMARates
from .lmma import LMMA
from .paper import PaperCMA
from .registry import SINGLE_RUN, strategy_class
from .restarts import IPOP
from .sep import SepCMA

STRATEGIES: dict[str, type] = {**SINGLE_RUN, "ipop": IPOP}

__all__ = ["Best", "CMA", "CMARates", "IPOP", "LMMA", "PaperCMA", "STRATEGIES", "SepCMA", "Strategy",
           "default_popsize", "expected_norm", "make_strategy", "rank"]


def make_strategy(name: str, x0: Any, sigma0: float, popsize: int | None = None, *,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                  **options: Any):
    """Build a strategy by name (one of :data:`STRATEGIES`).

    ``x0`` is the initial mean (1-D tensor or sequence) or an int ``d``, meaning
    zeros(d) on ``device`` with ``dtype`` (default: torch's default dtype, CPU).
    ``device``/``dtype``, if given with a tensor ``x0``, convert it. Remaining
    keyword ``options`` go to the strategy's constructor (e.g. ``seed``).
    """
    key = str(name).lower()
    cls = strategy_class(key, STRATEGIES, options)
    if isinstance(x0, int) and not isinstance(x0, bool):
        if x0 < 1:
            raise ConfigError(f"dimension must be >= 1, got {x0}")
        x0 = torch.zeros(x0, device=device, dtype=dtype or torch.get_default_dtype())
    elif device is not None or dtype is not None:
        x0 = torch.as_tensor(x0)
        x0 = x0.to(device=device or x0.device,
                   dtype=dtype or (x0.dtype if x0.is_floating_point() else torch.get_default_dtype()))
    return cls(x0, sigma0, popsize, **options)
