"""``python -m evoprop``: the same as the ``evoprop`` command."""

from evoprop.cli.main import console_main

console_main()
