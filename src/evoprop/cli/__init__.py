"""The ``evoprop`` command line."""
