"""The strategies that run one search, by name, and the check of a strategy's options.

``ipop`` (:mod:`evoprop.es.restarts`) restarts one of these, so it takes them from here;
:data:`evoprop.es.STRATEGIES` is these and ``ipop``.
"""

from __future__ import annotations

import inspect
from typing import Any

from evoprop.errors import ConfigError

from .base import Strategy
from .cma import CMA
from .lmma import LMMA
from .paper import PaperCMA
from .sep import SepCMA

SINGLE_RUN: dict[str, type[Strategy]] = {
    "paper": PaperCMA,
    "cma": CMA,
    "sep": SepCMA,
    "lmma": LMMA,
}


def strategy_class(name: str, registry: dict[str, type], options: dict[str, Any], *, label: str = "") -> type:
    """The class ``registry[name]``, after checking that it takes every keyword in ``options``.

    ``label`` names the strategy in the messages (default: ``name``). A class with ``**options``
    takes any keyword (it passes them on and checks them there).
    """
    label = label or name
    if name not in registry:
        raise ConfigError(f"unknown evolution strategy {name!r}; choose one of: {', '.join(registry)}")
    cls = registry[name]
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
            raise ConfigError(f"{label}: unknown option(s) {', '.join(unknown)}; it takes {', '.join(allowed)}")
    return cls
