"""CPU time of processes, read from /proc: the benches report it next to wall-clock rates because,
unlike wall time, it hardly moves when other work shares the machine."""
from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(*, pgid: int | None = None, cmdline_has: str | None = None) -> float:
    """user+sys CPU of the live processes in process group ``pgid`` (a service we started) or
    whose command line contains ``cmdline_has`` (PostgreSQL backends of the bench database).
    CPU time, unlike wall time, hardly moves when other work shares the machine."""
    total = 0
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
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / _TICK
