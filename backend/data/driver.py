"""What a NIC driver's own XDP counters (ethtool -S; read by backend/kernel/driver_stats.py) say
about verdicts, with the semantics of that driver as measured (backend/data/verdicts.py says
when they are exact; docs/verdict-methods.md names the tests that measured them).

Each driver counts XDP per queue, and none has a PASS counter: PASS is what is left of the runs.
Counters are named by role:
  packets          every run of the program
  drops            frames the program dropped; ABORTED is counted among them
  tx, tx_errors    XDP_TX: together the frames the program returned TX for
  redirect, redirect_failed
                   XDP_REDIRECT: together the frames the program returned REDIRECT for
A role a driver lacks counts 0 (virtio_net counts TX and REDIRECT when the program returns them,
before the outcome, so it needs no second counter)."""
from __future__ import annotations

from dataclasses import dataclass

from backend.data.sample import VERDICTS

ROLES = ("packets", "drops", "tx", "tx_errors", "redirect", "redirect_failed")


@dataclass(frozen=True)
class Semantics:
    driver: str
    counters: dict[str, list[str]]   # role -> counter names, first present wins; * = a queue number
    explain: str                     # how the verdicts follow from the counters


VETH = Semantics(
    "veth",
    {"packets": ["rx_queue_*_xdp_packets"], "drops": ["rx_queue_*_xdp_drops"],
     "tx": ["rx_queue_*_xdp_tx"], "tx_errors": ["rx_queue_*_xdp_tx_errors"],
     "redirect": ["rx_queue_*_xdp_redirect"], "redirect_failed": ["rx_queue_*_drops"]},
    "veth: xdp_tx counts the TX frames sent at the flush and xdp_tx_errors those it failed to send "
    "(TX = both); xdp_redirect counts the redirects xdp_do_redirect accepted and the rx queue's drops "
    "those it refused (REDIRECT = both); xdp_drops counts DROP and ABORTED; PASS = xdp_packets - the rest")
VIRTIO_NET = Semantics(
    "virtio_net",
    # names changed across kernels: 6.1 has only rx_queue_N_xdp_*, 6.18 adds rx_xdp_* totals
    {"packets": ["rx_xdp_packets", "rx_queue_*_xdp_packets"], "drops": ["rx_xdp_drops", "rx_queue_*_xdp_drops"],
     "tx": ["rx_xdp_tx", "rx_queue_*_xdp_tx"], "redirect": ["rx_xdp_redirects", "rx_queue_*_xdp_redirects"]},
    "virtio_net: xdp_tx and xdp_redirects count TX and REDIRECT when the program returns them, before "
    "the outcome; xdp_drops counts DROP and ABORTED (and, by the driver's source, failed TX and redirects "
    "too: not measured); PASS = xdp_packets - drops - tx - redirects")
SEMANTICS = {s.driver: s for s in (VETH, VIRTIO_NET)}
VERDICT_COUNTERS = {name: s.counters for name, s in SEMANTICS.items()}   # older name, kept for readers
EXPLAIN = ("from the driver's counters (it has no PASS counter: PASS is the runs left over; ABORTED is "
           "counted among drops). " + " ".join(s.explain + "." for s in SEMANTICS.values()))


def _matches(stats: dict[str, int], pattern: str) -> list[int]:
    if "*" not in pattern:
        return [stats[pattern]] if pattern in stats else []
    head, tail = pattern.split("*")
    return [v for k, v in stats.items() if k.startswith(head) and k.endswith(tail)
            and k[len(head):len(k) - len(tail)].isdigit()]


def _first(stats: dict[str, int], patterns: list[str]) -> int:
    for p in patterns:
        found = _matches(stats, p)
        if found:
            return sum(found)
    return 0


def has_counters(driver: str, stats: dict[str, int]) -> bool:
    """True if stats hold any counter the driver's verdicts come from."""
    sem = SEMANTICS.get(driver)
    return sem is not None and any(_matches(stats, p) for pats in sem.counters.values() for p in pats)


def roles(driver: str, stats: dict[str, int]) -> dict[str, int] | None:
    """The driver's counters by role (absent roles 0), or None for a driver of unknown semantics."""
    sem = SEMANTICS.get(driver)
    if sem is None:
        return None
    return {r: _first(stats, sem.counters.get(r, [])) for r in ROLES}


def verdicts(driver: str, stats: dict[str, int], aborted: int | None = None) -> list[int] | None:
    """Per-verdict counts (index = VERDICTS) derived from driver counters, or None if unknown.
    aborted: the ABORTED count from elsewhere (xdp:xdp_exception), taken out of the drops; without
    it ABORTED stays among DROP, as the driver counts it."""
    got = roles(driver, stats) if stats else None
    if got is None:
        return None
    counts = [0] * len(VERDICTS)
    counts[VERDICTS.index("ABORTED")] = aborted or 0
    counts[VERDICTS.index("DROP")] = got["drops"] - (aborted or 0)
    counts[VERDICTS.index("TX")] = got["tx"] + got["tx_errors"]
    counts[VERDICTS.index("REDIRECT")] = got["redirect"] + got["redirect_failed"]
    counts[VERDICTS.index("PASS")] = max(0, got["packets"] - got["drops"] - counts[3] - counts[4])
    return counts
