"""How much of the CPUs other processes took while a point was timed.

A busy host does not always widen the spread: a compile job that runs for
the whole point slows both implementations alike, so the paired ratios can
look steady while every time in the table, and the ratio itself (two
threads fighting a third process behave unlike two threads alone), belongs
to a machine that is not the one being measured. So on the CPU we also ask
the kernel directly. Over the timed region:

  other_share = (CPU time of all processes - CPU time of this process)
                / (wall time * number of CPUs)

from /proc/stat (every CPU's busy jiffies, the hypervisor's steal included:
a virtual CPU that was running someone else was not running us) and
/proc/self/stat (this process, all its threads). 0 means this process had the
machine to itself; 0.5 on a 2-core machine means another process kept one
core busy. Linux only: elsewhere the reading is None and the check is skipped.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class Snapshot:
    busy: int  # jiffies all CPUs spent not idle (steal included)
    total: int  # all jiffies of all CPUs (busy + idle + iowait)
    own: int  # jiffies this process spent (user + system, all threads)


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from /proc/stat's aggregate 'cpu' line."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:]]
            f += [0] * (8 - len(f))
            user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
            # guest and guest_nice (fields 9, 10) are already inside user and nice.
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def parse_self_stat(text: str) -> int:
    """utime + stime jiffies from /proc/<pid>/stat (the name may hold spaces)."""
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is the state (field 3 of the man page); utime, stime are fields 14, 15.
    return int(fields[11]) + int(fields[12])


def snapshot(proc: Path = Path("/proc")) -> Snapshot | None:
    try:
        busy, total = parse_proc_stat((proc / "stat").read_text())
        own = parse_self_stat((proc / "self" / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return Snapshot(busy, total, own)


def other_share(before: Snapshot | None, after: Snapshot | None) -> float | None:
    """Fraction of all CPUs' time that other processes used between two snapshots."""
    if before is None or after is None:
        return None
    total = after.total - before.total
    if total <= 0:
        return None  # too short to see a tick: no evidence either way
    other = (after.busy - before.busy) - (after.own - before.own)
    return min(1.0, max(0.0, other / total))
