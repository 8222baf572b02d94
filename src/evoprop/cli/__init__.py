"""The ``evoprop`` command line.

Importing this package (which the ``evoprop`` command and ``python -m evoprop`` do before
anything imports torch) sets OpenMP's passive wait policy unless the user configured OpenMP:
see :mod:`evoprop.cli.threads`.
"""

from evoprop.cli.threads import prefer_passive_openmp

prefer_passive_openmp()
