"""A lab experiment's settings describe themselves, as ``TrainConfig``'s do (:mod:`evoprop.config`).

Each field of a ``...Settings`` dataclass that is an option of its ``evoprop`` command is a
``lab_setting(default, help, ...)``: from it alone come the option (its flag, type, metavar,
choices and the default shown in ``--help``, in ``cli/lab_options.py``) and the check of the value
the command line gives (``check``). A field without it (e.g. a comma-separated list the command
parses itself) is set by the command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: What ``check`` may ask of a value: > 0, >= 0, or a seed in TrainConfig's range.
CHECKS = ("positive", "non-negative", "seed")


@dataclass(frozen=True)
class LabSetting:
    """What a lab settings field says about its option (its ``metadata["lab"]``).

    help: the option's help (click adds the default). flag: the option (default ``--field-name``);
    metavar: default N for an int, X for a float; choices: the valid values; check: one of
    :data:`CHECKS`, or None.
    """

    help: str
    flag: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    check: str | None = None

    def __post_init__(self) -> None:
        if self.check is not None and self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r}; valid: {', '.join(CHECKS)}")


def lab_setting(default: Any, help: str, **options: Any) -> Any:
    """A lab settings field with its command-line option (:class:`LabSetting`: ``flag``, ``metavar``,
    ``choices``, ``check``)."""
    return field(default=default, metadata={"lab": LabSetting(help, **options)})


def batch_setting(default: int) -> Any:
    """``--batch-size``: examples per evaluation pass, which changes memory, not results (search, stepsize,
    landscape)."""
    return lab_setting(default, "Examples per evaluation pass (memory only: results do not change).",
                       check="positive")


def lab_settings(settings_class: type) -> dict[str, LabSetting]:
    """The fields of ``settings_class`` that are options, with what they say, in field order."""
    return {f.name: f.metadata["lab"] for f in dataclasses.fields(settings_class) if "lab" in f.metadata}
