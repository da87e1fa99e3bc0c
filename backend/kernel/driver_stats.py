"""The NIC driver's own XDP counters, read with ethtool -S through pyroute2."""
from __future__ import annotations


def _interesting(name: str) -> bool:
    return "xdp" in name or "kicks" in name


def read_stats(ifname: str) -> dict[str, int]:
    """XDP-related ethtool statistics of an interface ({} when the driver has none)."""
    from pyroute2.ethtool.ioctl import IoctlEthtool  # here: summaries and reports need no pyroute2
    try:
        eth = IoctlEthtool(ifname)
    except OSError:
        return {}
    try:
        return {k: int(v) for k, v in eth.get_statistics() if _interesting(k)}
    except (OSError, ValueError):
        return {}
    finally:
        eth.close()
