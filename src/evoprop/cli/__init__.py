"""The ``evoprop`` command line.

Importing this package (which the ``evoprop`` command and ``python -m evoprop`` do before
anything imports torch) sets OpenMP's passive wait policy unless the user configured OpenMP:
see :mod:`evoprop.cli.threads`.

A command imports the experiment it runs (``evoprop.experiments``, ``lab``, ``report``, ``tune``) inside
its own function: not to dodge an import cycle (there is none: the CLI is the top floor), but so that
``evoprop --help`` and the other commands do not load what they never use, and so that a missing
optional extra (BoTorch for ``study.human: compare``) only matters to the command that needs it.
"""

from evoprop.cli.threads import prefer_passive_openmp

prefer_passive_openmp()
