"""CPU time of processes, read from /proc: the benches report it next to wall-clock rates because,
unlike wall time, it hardly moves when other work shares the machine."""
from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_pid(*, pgid: int | None = None, cmdline_has: str | None = None) -> dict[int, float]:
    """user+sys CPU seconds per live process in process group ``pgid`` (a service we started) or
    whose command line contains ``cmdline_has`` (PostgreSQL backends of the bench database). Per
    process, so a bench that polls can keep the last reading of a process that has exited."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if pgid is not None and int(fields[2]) != pgid:
                continue
            if cmdline_has is not None:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if cmdline_has.encode() not in f.read():
                        continue
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_seconds(*, pgid: int | None = None, cmdline_has: str | None = None) -> float:
    """The summed CPU of ``cpu_by_pid``'s processes."""
    return sum(cpu_by_pid(pgid=pgid, cmdline_has=cmdline_has).values())
