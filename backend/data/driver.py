"""What the NIC driver's own XDP counters (ethtool -S; read by backend/kernel/driver_stats.py) say about verdicts.

virtio_net and veth count XDP per queue; neither has a PASS counter, and both count redirects and
TX when the program returns them, before the outcome is known (a failed redirect is still counted)."""
from __future__ import annotations

from backend.data.sample import ACTIONS

# driver -> verdict -> alternative counter names, first present wins (names changed across
# kernels: virtio_net 6.1 has only rx_queue_N_xdp_*, 6.18 adds rx_xdp_* totals); * = queue number.
VERDICT_COUNTERS = {
    "virtio_net": {"packets": ["rx_xdp_packets", "rx_queue_*_xdp_packets"],
                   "DROP": ["rx_xdp_drops", "rx_queue_*_xdp_drops"],
                   "TX": ["rx_xdp_tx", "rx_queue_*_xdp_tx"],
                   "REDIRECT": ["rx_xdp_redirects", "rx_queue_*_xdp_redirects"]},
    "veth": {"packets": ["rx_queue_*_xdp_packets"], "DROP": ["rx_queue_*_xdp_drops"],
             "TX": ["rx_queue_*_xdp_tx"], "REDIRECT": ["rx_queue_*_xdp_redirect"]},
}
EXPLAIN = ("from the driver's counters: PASS = xdp_packets - drops - tx - redirects (the driver has no "
           "PASS counter); ABORTED is counted among drops; TX and REDIRECT are counted when the program "
           "returns them, before the outcome (a failed redirect is still a redirect here)")


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


def verdicts(driver: str, stats: dict[str, int]) -> list[int] | None:
    """Per-verdict counts (index = ACTIONS) derived from driver counters, or None if unknown."""
    names = VERDICT_COUNTERS.get(driver)
    if names is None or not stats:
        return None
    got = {v: _first(stats, pats) for v, pats in names.items()}
    counts = [0] * len(ACTIONS)
    for v in ("DROP", "TX", "REDIRECT"):
        counts[ACTIONS.index(v)] = got[v]
    counts[ACTIONS.index("PASS")] = max(0, got["packets"] - got["DROP"] - got["TX"] - got["REDIRECT"])
    return counts
