"""The on-disk layout of one run, written so that a kill at any moment loses nothing.

    RUN_DIR/config.yaml     the resolved TrainConfig (accepted by ``evoprop train --config``)
    RUN_DIR/metrics.jsonl   one JSON object per completed epoch
    RUN_DIR/summary.json    headline numbers, status, dataset, machine; rewritten every epoch
    RUN_DIR/checkpoint.pt   trainer state after the last completed epoch (model, optimizer, RNG, history)

Every file is written to a temporary name and renamed into place (atomic on POSIX).
The checkpoint holds the history, so on resume metrics.jsonl is rewritten from it:
whichever of the two a kill interrupted, they agree again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from evoprop.config import TrainConfig
from evoprop.errors import EvopropError

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunDir:
    """Read and write the files of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, config: TrainConfig) -> "RunDir":
        """A new run at ``path``; refuses a directory that already holds a run."""
        run = cls(path)
        run.ensure_new()
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EvopropError(f"cannot create run directory {run.path}: {exc.strerror or exc}") from None
        run.write_config(config)
        return run

    def ensure_new(self) -> None:
        """Refuse to start a run where one already is: nothing of it may be overwritten."""
        if self.has_run():
            raise EvopropError(
                f"{self.path} already holds a run; continue it with 'evoprop train --resume {self.path}' "
                "or choose another --out"
            )

    def has_run(self) -> bool:
        return (self.path / CONFIG).exists() or (self.path / CHECKPOINT).exists()

    # config -------------------------------------------------------------
    def write_config(self, config: TrainConfig) -> None:
        text = yaml.safe_dump(_plain(config.to_dict()), sort_keys=False)
        _atomic_write(self.path / CONFIG, lambda fh: fh.write(text.encode()))

    def read_config(self) -> TrainConfig:
        if not (self.path / CONFIG).exists():
            raise EvopropError(f"{self.path} is not a run directory (no {CONFIG}); nothing to resume")
        return TrainConfig.from_file(self.path / CONFIG)

    # metrics and summary ----------------------------------------------
    def write_metrics(self, history: list[dict]) -> None:
        lines = "".join(json.dumps(h) + "\n" for h in history)
        _atomic_write(self.path / METRICS, lambda fh: fh.write(lines.encode()))

    def append_metrics(self, record: dict) -> None:
        with open(self.path / METRICS, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        path = self.path / METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_summary(self, summary: dict) -> None:
        text = json.dumps(summary, indent=2) + "\n"
        _atomic_write(self.path / SUMMARY, lambda fh: fh.write(text.encode()))

    def read_summary(self) -> dict:
        return json.loads((self.path / SUMMARY).read_text())

    # checkpoint -------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        _atomic_write(self.path / CHECKPOINT, lambda fh: torch.save(state, fh))

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).exists()

    def load_checkpoint(self, map_location=None) -> dict[str, Any]:
        try:
            return torch.load(self.path / CHECKPOINT, map_location=map_location, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say so in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EvopropError(f"checkpoint {self.path / CHECKPOINT} is unreadable ({first})") from None


def _plain(value):
    """Tuples -> lists so YAML stays plain (safe_load reads it back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
