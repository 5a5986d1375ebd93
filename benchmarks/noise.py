"""When is a point's ratio too noisy to report as a result?

Each repeat times both implementations back to back (benchmarks/timing.py),
giving one paired ratio r_i = baseline time / candidate time per repeat. The
point's ratio is the median of the r_i. A point is NOISY, i.e. its numbers
are shown but it is not counted in the geometric means nor read as a win or
a loss, when any of these holds:

1. too few pairs: fewer than MIN_PAIRS repeats; a p10 or p90 of fewer
   samples is just the extreme sample and says nothing about the spread.
2. the paired ratios disagree: (p90(r) - p10(r)) / median(r) > RATIO_SPREAD_MAX.
   On a quiet machine neighbouring repeats give nearly the same ratio; a
   load that comes and goes within a pair moves one time and not the other.
3. an implementation's own times disagree: p90 / p10 > IMPL_SPREAD_MAX for
   the baseline or the candidate. Then the absolute times in the table are
   not the point's times, even if the load happened to hit both sides alike.
4. (CPU points) other processes used more than OTHER_CPU_MAX of the
   machine's CPU time while the point was timed (benchmarks/hostload.py): a
   load steady through the whole point slows both sides alike and leaves
   the spread narrow, but neither the times nor the ratio are the quiet
   machine's. GPU points are timed on the device and skip this rule.

The numbers come from the runs committed so far. Per-implementation p90/p10
on the H200 quick preset (24 points, quiet): cuDNN 1.01-1.47, rnnfuse
1.00-1.01; on the 2-core CPU (8 points, load average about 1, i.e. another
process on one core): 1.05-1.96. A cuDNN side at 1.47 against a steady
rnnfuse gives paired ratios whose p10..p90 spans about 40% of the median:
real spread of a quiet machine, which RATIO_SPREAD_MAX = 0.5 keeps (the
verdict below then says "on par" unless the whole interval is on one side
of 1). IMPL_SPREAD_MAX = 2 keeps every one of those points and marks a side
whose slow repeats take twice its fast ones. The busy-machine failure that
prompted this check (issue 10: torch.nn at 3164 ms for a point that takes
~12 ms when quiet, reported as a 4.4x speed-up) breaks both by far, and
rule 4 catches the steady load the CPU run above was taken under
(OTHER_CPU_MAX = 0.25: on a 2-core machine, another process busy on half a
core; that run's load average of 1 is a whole core).

A point that passes gets a verdict from the same spread: "faster" when even
the p10 paired ratio is above 1, "slower" when even the p90 is below 1, and
"on par" when the p10..p90 interval contains 1: the difference is inside the
noise, whatever side of 1 the median fell.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: report.py imports this without torch
    from .timing import Spread, Timing

MIN_PAIRS = 5
RATIO_SPREAD_MAX = 0.5
IMPL_SPREAD_MAX = 2.0
OTHER_CPU_MAX = 0.25

CRITERION = (f"NOISY: fewer than {MIN_PAIRS} repeats, or the paired ratios' (p90 - p10) / median "
             f"> {RATIO_SPREAD_MAX:.2f}, or one implementation's p90 / p10 > {IMPL_SPREAD_MAX:.1f}, "
             f"or (CPU) other processes used > {100 * OTHER_CPU_MAX:.0f}% of the CPUs while it ran")


def ratio_width(r: Spread) -> float:
    """(p90 - p10) / median of the paired ratios."""
    return (r.p90 - r.p10) / r.median if r.median > 0 else float("inf")


def impl_spread(t: Timing) -> float:
    """p90 / p10 of one implementation's per-repeat times."""
    return t.p90_ms / t.p10_ms if t.p10_ms > 0 else float("inf")


def judge(baseline: Timing, candidate: Timing, ratios: Spread, other_cpu: float | None = None,
          names: tuple[str, str] = ("torch.nn", "candidate")) -> list[str]:
    """Why the point is NOISY (one line per broken rule); empty when it is not.

    ``other_cpu``: hostload.other_share over the timed region, None to skip rule 4.
    """
    reasons = []
    if ratios.n < MIN_PAIRS:
        reasons.append(f"only {ratios.n} repeats (< {MIN_PAIRS})")
    w = ratio_width(ratios)
    if not w <= RATIO_SPREAD_MAX:
        reasons.append(f"paired ratios p10..p90 {ratios.p10:.2f}..{ratios.p90:.2f} span "
                       f"{100 * w:.0f}% of the median {ratios.median:.2f} "
                       f"(> {100 * RATIO_SPREAD_MAX:.0f}%)")
    for name, t in zip(names, (baseline, candidate)):
        s = impl_spread(t)
        if not s <= IMPL_SPREAD_MAX:
            reasons.append(f"{name} p90/p10 = {s:.2f} ({t.p10_ms:.3g}..{t.p90_ms:.3g} ms, "
                           f"> {IMPL_SPREAD_MAX:.1f})")
    if other_cpu is not None and other_cpu > OTHER_CPU_MAX:
        reasons.append(f"other processes used {100 * other_cpu:.0f}% of the CPUs while it was "
                       f"timed (> {100 * OTHER_CPU_MAX:.0f}%)")
    return reasons


def verdict(ratios: Spread) -> str:
    """"faster", "slower" or "on par" (candidate against baseline), from the paired ratios."""
    if ratios.p10 > 1.0:
        return "faster"
    if ratios.p90 < 1.0:
        return "slower"
    return "on par"
