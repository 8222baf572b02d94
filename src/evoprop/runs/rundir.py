"""The on-disk layout of one run, written so that a kill at any moment loses nothing.

    RUN_DIR/config.yaml     the resolved TrainConfig (accepted by ``evoprop train --config``), then
                            ``world_size``: the processes (torchrun) that trained it last, not a setting
    RUN_DIR/metrics.jsonl   one JSON object per completed epoch
    RUN_DIR/summary.json    headline numbers, status, dataset, machine; rewritten every epoch
    RUN_DIR/checkpoint.pt   trainer state after the last completed epoch (model, optimizer, RNG, history)
    RUN_DIR/reproduction.json  only in a reproduction's runs: its table, row and the paper's numbers

A folder is a run (:func:`is_run`) when it has config.yaml and at least one of the others;
:func:`find_runs` finds the runs under a folder. Every other module reads a run through
:class:`RunDir` and these two functions: the file names are spelled only here.

Every file is written to a temporary name and renamed into place (atomic on POSIX);
a temporary file left by a kill is removed when the run is next started or resumed.
The checkpoint holds the history, so on resume metrics.jsonl is rewritten from it:
whichever of the two a kill interrupted, they agree again.

While a run trains, summary.json says ``status: running`` and names its process
(``owner``: pid, host and the process's start time): a reader on the same host sees a
run whose process is gone as ``interrupted`` (:meth:`RunDir.status`).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import torch
import yaml

from evoprop.config import RECORDED_KEYS, TrainConfig, read_mapping
from evoprop.errors import EvopropError
from evoprop.paths import make_folder

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"
#: The file a reproduction writes into each of its run directories.
MARKER = "reproduction.json"
TMP_SUFFIX = ".tmp"
#: Settings every evoprop has written into config.yaml, first and last in its order: a config.yaml
#: without them was cut short (fields added in later versions may be absent and take their defaults).
SAVED_KEYS = ("method", "dataset", "depth", "epochs", "seed", "eval_batch_size")
#: The comment above config.yaml's records (config.RECORDED_KEYS), which follow the settings.
RECORDS_NOTE = ("# not settings: how this run was trained. world_size: the processes (torchrun) that trained it "
                "last; --resume may use another number\n")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
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
    def create(cls, path: str | Path, config: TrainConfig, *, world_size: int | None = None) -> "RunDir":
        """A new run at ``path``; refuses a directory that already holds a run."""
        run = cls(path)
        run.ensure_new()
        make_folder(run.path, f"run directory {run.path}")
        run.write_config(config, world_size=world_size)
        return run

    def ensure_new(self) -> None:
        """Refuse to start a run where one already is: nothing of it may be overwritten."""
        if self.has_run():
            raise EvopropError(
                f"{self.path} already holds a run; continue it with 'evoprop train --resume {self.path}' "
                "or choose another --out"
            )

    def has_run(self) -> bool:
        """Whether anything of a run is here (a config or a checkpoint): what a new run must not overwrite."""
        return (self.path / CONFIG).exists() or (self.path / CHECKPOINT).exists()

    def is_run(self) -> bool:
        """A run to read: config.yaml and at least one of metrics.jsonl, summary.json, checkpoint.pt."""
        return self.has_config() and any((self.path / name).is_file() for name in (METRICS, SUMMARY, CHECKPOINT))

    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    def has_summary(self) -> bool:
        return (self.path / SUMMARY).is_file()

    def newest_change(self) -> float:
        """The latest modification time of its config, metrics and summary (0.0 when none is there)."""
        times = [(self.path / n).stat().st_mtime for n in (METRICS, SUMMARY, CONFIG) if (self.path / n).exists()]
        return max(times, default=0.0)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    # config -------------------------------------------------------------
    def write_config(self, config: TrainConfig, *, world_size: int | None = None) -> None:
        """The settings, then the run's records: ``world_size``, the processes training it now (None: keep
        the one config.yaml records, if any)."""
        records = self.read_records() if world_size is None else {"world_size": world_size}
        text = yaml.safe_dump(_plain(config.to_dict()), sort_keys=False)
        if records:
            text += RECORDS_NOTE + yaml.safe_dump(records, sort_keys=False)
        _atomic_write(self.path / CONFIG, lambda fh: fh.write(text.encode()))

    def read_records(self) -> dict[str, Any]:
        """What config.yaml records beside the settings (``world_size``); {} for a run from before that,
        or one whose config cannot be read."""
        try:
            data = read_mapping(self.path / CONFIG)
        except EvopropError:
            return {}
        return {k: data[k] for k in RECORDED_KEYS if k in data}

    def read_config(self) -> TrainConfig:
        path = self.path / CONFIG
        if not path.exists():
            raise EvopropError(f"{self.path} is not a run directory (no {CONFIG}); nothing to resume")
        data = read_mapping(path)
        missing = [k for k in SAVED_KEYS if k not in data]
        if missing:  # an emptied or truncated file would otherwise read as defaults: another run
            raise EvopropError(f"{path} lacks {', '.join(missing)}: it is not a complete saved config (truncated or "
                               "edited?); restore it, or start a new run")
        try:
            return TrainConfig.from_dict(data)
        except EvopropError as exc:
            raise EvopropError(f"config file {path}: {exc}") from None

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files a killed writer left (e.g. checkpoint.pt.tmp); return them.

        Only for a run no live process writes (the caller checks :meth:`live_owner` first).
        """
        stale = [self.path / (name + TMP_SUFFIX) for name in (CONFIG, METRICS, SUMMARY, CHECKPOINT)]
        stale = [p for p in stale if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    # metrics and summary ----------------------------------------------
    def write_metrics(self, history: list[dict]) -> None:
        lines = "".join(json.dumps(h) + "\n" for h in history)
        _atomic_write(self.path / METRICS, lambda fh: fh.write(lines.encode()))

    def append_metrics(self, record: dict) -> None:
        with open(self.path / METRICS, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        """The per-epoch records; a last line cut short by a kill (no newline, not JSON) is left out."""
        path = self.path / METRICS
        if not path.exists():
            return []
        text = _read_text(path)
        lines = text.split("\n")
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines):  # the unterminated last line: an append interrupted by a kill
                    break
                raise EvopropError(f"{path} line {number} is not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise EvopropError(f"{path} line {number} is not an epoch record (a JSON object with an epoch)")
            records.append(record)
        return records

    def last_record(self) -> dict | None:
        """The last line of metrics.jsonl, read cheaply while the run trains; None when there is none (or it
        cannot be read now)."""
        try:
            with open(self.path / METRICS, "rb") as fh:
                lines = [line for line in fh.read().splitlines() if line.strip()]
            return json.loads(lines[-1]) if lines else None
        except (OSError, ValueError):
            return None

    def write_summary(self, summary: dict) -> None:
        text = json.dumps(summary, indent=2) + "\n"
        _atomic_write(self.path / SUMMARY, lambda fh: fh.write(text.encode()))

    def read_summary(self) -> dict:
        """summary.json (an error when it is missing or damaged; see :meth:`summary_or_empty`)."""
        path = self.path / SUMMARY
        try:
            data = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise EvopropError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise EvopropError(f"{path} must hold a JSON object (the run's summary), not {type(data).__name__}")
        return data

    def summary_or_empty(self) -> dict:
        """summary.json, or {} for a run that has none yet (a damaged one is still an error)."""
        return self.read_summary() if self.has_summary() else {}

    def status(self, summary: dict | None = None) -> str | None:
        """The summary's status, except that a "running" run whose process is gone is "interrupted".

        ``summary``: the already-read summary.json (default: read it); None when there is none.
        """
        if summary is None:
            if not self.has_summary():
                return None
            summary = self.read_summary()
        status = summary.get("status")
        if status == "running" and not owner_alive(summary.get("owner")):
            return "interrupted"
        return status

    def live_owner(self) -> dict | None:
        """The process training this run now (another one, alive), or None."""
        if not self.has_summary():
            return None
        try:
            summary = self.read_summary()
        except EvopropError:
            return None  # unreadable: no process is known to own it
        owner = summary.get("owner")
        if summary.get("status") != "running" or not owner_alive(owner) or owner == current_owner():
            return None
        return owner

    # reproduction marker ---------------------------------------------
    def has_marker(self) -> bool:
        return (self.path / MARKER).is_file()

    def read_marker(self) -> dict | None:
        """reproduction.json, or None when there is none or it is damaged (the run is still readable)."""
        if not self.has_marker():
            return None
        try:
            marker = json.loads((self.path / MARKER).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return marker if isinstance(marker, dict) else None

    def write_marker(self, marker: dict) -> None:
        text = json.dumps(marker, indent=2) + "\n"
        _atomic_write(self.path / MARKER, lambda fh: fh.write(text.encode()))

    # checkpoint -------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        _atomic_write(self.checkpoint_path, lambda fh: torch.save(state, fh))

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def check_continuable(self) -> None:
        """Raise unless the run can go on from where it stands.

        Epochs recorded without checkpoint.pt (run data copied without it, or the file deleted) cannot be
        continued: training would start again from epoch 1 and overwrite the epochs recorded.
        """
        recorded = [] if self.has_checkpoint() else self.read_metrics()
        if recorded:
            raise EvopropError(f"{self.path} records {len(recorded)} epoch(s) but has no {CHECKPOINT}, so "
                               "it cannot be continued; 'evoprop report' still reads it: move it elsewhere to rerun "
                               "the run from epoch 1")

    def load_checkpoint(self, map_location=None) -> dict[str, Any]:
        try:
            state = torch.load(self.checkpoint_path, map_location=map_location, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say so in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EvopropError(f"checkpoint {self.checkpoint_path} is unreadable ({first})") from None
        if not isinstance(state, dict):
            raise EvopropError(f"checkpoint {self.checkpoint_path} is not an evoprop checkpoint (not a mapping)")
        return state


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run to read (see :meth:`RunDir.is_run`)."""
    return RunDir(path).is_run()


def find_runs(folder: str | Path) -> list[Path]:
    """The runs at or under ``folder`` (itself, if it is one; else searched recursively), sorted; [] for none."""
    folder = Path(folder)
    if is_run(folder):
        return [folder]
    if not folder.is_dir():
        return []
    return sorted(p.parent for p in folder.rglob(CONFIG) if is_run(p.parent))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvopropError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EvopropError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded): the file is "
                           "damaged; delete it or restore it") from None


# who is training a run ------------------------------------------------------

def current_owner() -> dict:
    """This process, as summary.json records it: pid, host and start time (to tell a reused pid)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid())}


def owner_alive(owner: Any) -> bool:
    """Whether the process ``owner`` names still runs. On another host that cannot be known: assumed alive."""
    pid = owner.get("pid") if isinstance(owner, dict) else None
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
        return False  # a run from before owners were recorded, or a damaged summary: nothing runs it
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    started = _process_start(pid)
    return started is None or owner.get("started") is None or started == owner["started"]


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of proc(5), counted after "pid (comm)"
    except (OSError, IndexError, ValueError):
        return None


def _plain(value):
    """Tuples -> lists so YAML stays plain (safe_load reads it back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
