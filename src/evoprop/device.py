"""Pick the compute device: the GPU when there is one, else the CPU; and describe the machine."""

from __future__ import annotations

import math
import os
import platform

import torch

from evoprop.errors import ConfigError

#: Sizes and counts beyond 2^62 cannot index anything a machine holds (torch indexes with int64).
MAX_COUNT = 2**62


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; otherwise the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but no CUDA GPU is available; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def check_device_setting(config) -> None:
    """The run group of a TrainConfig (called by ``TrainConfig.validate``): its device exists here."""
    resolve_device(config.device)


def available_memory(device: torch.device) -> int:
    """Bytes that can be allocated on ``device`` now (GPU: free memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # no /proc (macOS): free physical pages where the OS reports them
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4 << 30  # otherwise (Windows) assume a modest 4 GiB


def describe_machine(device: torch.device | str = "auto") -> dict:
    """The machine a run or benchmark ran on, in one place for every record of it.

    ``cpu`` (the model, from /proc/cpuinfo where there is one), ``cores``, ``gpu`` (only when
    ``device`` resolves to a CUDA GPU: its name), ``python``, ``os``, ``torch`` and ``threads``
    (torch's intra-op threads).
    """
    info: dict = {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                  "os": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        if dev.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(dev)
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_BYTE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(value: str | int) -> int:
    """'512M' / '2G' / '1.5GB' / 1048576 -> bytes (binary units); at least 1 byte, at most 2^62."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = float(value) if 0 <= value <= MAX_COUNT else -1.0  # refused below, with no float() of a huge int
    else:
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        number, unit = (text[:-1], text[-1]) if text and text[-1] in _BYTE_UNITS else (text, "")
        try:
            size = float(number) * _BYTE_UNITS[unit]
        except ValueError:
            size = math.nan
    if not 1 <= size <= MAX_COUNT:  # also refuses nan and inf
        raise ConfigError(f"max_memory must be a size from 1 byte to 2^62 bytes, such as 512M or 2G, "
                          f"got {_shown(value)}")
    return int(value) if isinstance(value, int) else int(size)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
