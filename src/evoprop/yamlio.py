"""Reading YAML the way people write numbers: ``1e-3`` is a float.

PyYAML implements YAML 1.1, whose float pattern needs a dot, so ``lr: 1e-3`` or
``--opt min_damping=1e-6`` came back as the *string* '1e-3' (and a setting check then refused it).
YAML 1.2's core schema (§10.3.2) reads ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?`` as a
float; :func:`load` is ``yaml.safe_load`` with that one pattern added (everything else as before).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["load"]

# YAML 1.2 core-schema float with an exponent and no dot (1e-3, 5E+2): the one form YAML 1.1 misses
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also resolves ``1e-3``-style scalars to floats."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def load(text: str) -> Any:
    """``yaml.safe_load(text)``, reading ``1e-3`` as 0.001 (YAML 1.2) rather than the string '1e-3'."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
