"""Which verdict method a session uses, and the verdicts of a watched program (one someone else
attached) derived from what the kernel counts on its ingress. Pure: no root, no bcc.

Methods (trace metadata "verdict_method", docs/verdict-methods.md):
  "program counters"        our programs and wrapped user programs count verdicts per CPU: exact
  "fexit"                   fexit on the attached program counts its return values: exact
  "driver counters (D, K)"  derived from driver D's counters, with the semantics measured on kernel K
  "inexact: <why>"          none of the above holds; the kernel's run count gives the total
"""
from __future__ import annotations

import re

from backend.data import driver as _driver
from backend.data.sample import VERDICTS

PROGRAM_COUNTERS = "program counters"
FEXIT = "fexit"
INEXACT = "inexact: "
# (driver, kernel major.minor) whose counter semantics a test measured against a program's own
# truth map (tests/test_watch_truth.py); anything else is derived the same way but called inexact.
MEASURED = {("veth", "6.18")}
GENERIC = ("generic", "xdpgeneric", "skb", "xdpskb")   # the spellings of generic mode (netlink's among them)


def release_of(kernel: str) -> str:
    """'6.18.44-fc-v1252' -> '6.18' (the kernel's version as the measured semantics name it)."""
    m = re.match(r"(\d+)\.(\d+)", kernel or "")
    return f"{m.group(1)}.{m.group(2)}" if m else (kernel or "?")


def method(watching: bool, mode: str, driver: str, kernel: str, fexit: bool = False) -> str:
    """The verdict method of a session: `watching` a program we did not load, in `mode`
    (native | generic) on `driver` under `kernel` (uname -r)."""
    if not watching:
        return PROGRAM_COUNTERS
    if fexit:
        return FEXIT
    release = release_of(kernel)
    if mode in GENERIC:
        return (f"{INEXACT}generic XDP runs before the driver, which counts nothing of it, and fexit is "
                "not available here: the verdicts are unknown, the kernel's run count gives the total")
    if driver not in _driver.SEMANTICS:
        return f"{INEXACT}{driver or 'this driver'} has no XDP counters xdpscope knows, and fexit is not available here"
    if (driver, release) not in MEASURED:
        seen = ", ".join(k for d, k in sorted(MEASURED) if d == driver)
        how = f"derived as measured on {seen}" if seen else "derived from what its counters' names say"
        return f"{INEXACT}{driver}'s counters on kernel {release} are not measured ({how}; fexit is not available here)"
    return f"driver counters ({driver}, {release})"


def is_exact(verdict_method: str) -> bool:
    return bool(verdict_method) and not verdict_method.startswith(INEXACT)


def from_driver(verdict_method: str, drv: str, counters: dict[str, int],
                exceptions: dict[str, int]) -> list[list[int]]:
    """A watched program's verdicts over one interval, as one row (the driver counts per queue, not
    per CPU): from the driver's counters and the ingress's xdp:xdp_exception events (ABORTED, and an
    action outside 0..4, which the kernel treats as ABORTED). [] when the method has no verdicts
    (generic mode) or the driver counted nothing."""
    if verdict_method.startswith(INEXACT + "generic") or not _driver.has_counters(drv, counters):
        return []
    aborted = exceptions.get("ABORTED", 0) + exceptions.get("INVALID", 0)
    row = _driver.verdicts(drv, counters, aborted)
    return [row] if row is not None else []


def legacy(meta: dict) -> str:
    """The method of a trace recorded before "verdict_method" existed."""
    if meta.get("verdict_method"):
        return meta["verdict_method"]
    if meta.get("source") == "watch" or str(meta.get("program", "")).startswith("watch:"):
        return (f"{INEXACT}recorded by an xdpscope that counted a failed TX or redirect as PASS and ABORTED "
                "as DROP when watching")
    return PROGRAM_COUNTERS


def total(verdict_method: str, counts: dict[str, int], runs: int) -> int:
    """The frames the program ran on, as far as xdpscope knows: its verdicts, or the kernel's run
    count where the verdicts are unknown."""
    counted = sum(counts.get(a, 0) for a in VERDICTS)
    return runs if verdict_method.startswith(INEXACT) and runs > counted else counted
