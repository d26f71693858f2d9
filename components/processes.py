"""Which process runs an execution, and whether that process still lives.

The lineage store records :func:`current` with every execution it starts; on the next pipeline
run an execution still ``RUNNING`` whose process :func:`is_gone` (killed, out of memory, the
machine rebooted) is marked ``FAILED``. A pid alone could be reused by a later process, so the
process's start time (from ``/proc`` on Linux) must match as well.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

__all__ = ["ProcessInfo", "current", "is_gone", "start_time"]

_START_TOLERANCE_S = 1.0  # start times are derived from clock ticks since boot


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """A process: ``pid`` on ``host``, started at ``started`` (seconds since the epoch; None where
    the OS does not tell)."""

    pid: int
    host: str
    started: float | None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3, the state, first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from ``/proc``; None if unknown."""
    fields, boot = _proc_stat(pid), _boot_time()
    if fields is None or boot is None:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: starttime in ticks


def current() -> ProcessInfo:
    """This process."""
    return ProcessInfo(os.getpid(), socket.gethostname(), start_time(os.getpid()))


def is_gone(process: ProcessInfo) -> bool | None:
    """True when ``process`` no longer runs (no such pid, a zombie, or the pid now belongs to a
    process started at another time); False when it runs; None when it ran on another host."""
    if process.host != socket.gethostname():
        return None
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _proc_stat(process.pid)
    if fields is not None and fields[0] == "Z":
        return True
    now = start_time(process.pid)
    return process.started is not None and now is not None and abs(now - process.started) > _START_TOLERANCE_S
