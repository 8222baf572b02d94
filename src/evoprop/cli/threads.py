"""OpenMP's wait policy for a shared machine, set before PyTorch loads (this module must not import torch).

PyTorch's CPU build runs its parallel regions on an OpenMP team (GNU libgomp on Linux). By
default a thread that waits for its partners at the end of a region spins for a while
instead of sleeping. On a machine where another process holds a core, the spinning thread
burns the time slice the descheduled partner needs, and every region waits for it: an epoch
of the one-layer MNIST network took 18.6 s instead of 1.8 s (BENCHMARKS.md, "Threads on a
busy machine"). ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep (libgomp then does
not spin at all); on a quiet machine it costs little, so it is evoprop's default.

libgomp reads its environment once, when the library is loaded, i.e. at ``import torch``.
So the CLI calls :func:`prefer_passive_openmp` first thing, before anything imports torch;
in a process that has already loaded torch it does nothing. Whoever configures OpenMP
themselves keeps their settings: any ``OMP_*``, ``GOMP_*`` or ``KMP_*`` variable in the
environment (e.g. ``OMP_NUM_THREADS=1``, ``OMP_WAIT_POLICY=ACTIVE``) leaves it untouched.
Child processes (``evoprop tune --n-jobs``'s workers) inherit the setting.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

#: Environment variables that configure an OpenMP runtime: GNU libgomp, Intel's libiomp, LLVM's libomp.
OPENMP_PREFIXES = ("OMP_", "GOMP_", "KMP_")
WAIT_POLICY, PASSIVE = "OMP_WAIT_POLICY", "PASSIVE"


def user_configured_openmp(environ: MutableMapping[str, str]) -> list[str]:
    """The OpenMP variables set in ``environ`` (the user's own settings, if any)."""
    return sorted(name for name in environ if name.startswith(OPENMP_PREFIXES))


def prefer_passive_openmp(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless OpenMP is configured already or torch is loaded; True if set."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or user_configured_openmp(environ):
        return False
    environ[WAIT_POLICY] = PASSIVE
    return True
