"""The NIC driver's own XDP counters, read with ethtool -S through pyroute2.

Read at the collector's rate (up to 100 Hz), so the per-read work is two ioctls into buffers built
once per device: ETHTOOL_GSSET_INFO (the driver's stat count now) and ETHTOOL_GSTATS. The names
(ETHTOOL_GSTRINGS, decoded byte by byte in pyroute2) are fetched again only when that count differs
from the one they were fetched with (veth's count follows its queues, `ethtool -L`), or when the
name now belongs to another device (deleted and made again)."""
from __future__ import annotations

import ctypes
import re
import fcntl
import socket
import threading
from dataclasses import dataclass

import numpy as np

_SIOCETHTOOL, _GSTATS = 0x8946, 0x1d   # linux/sockios.h, linux/ethtool.h (as pyroute2 has them)
HEADROOM = 256   # u64 slots past the known count: GSTATS writes as many as the driver has *now*
SIOCGIFINDEX = 0x8933

_cache: dict[str, "_Device"] = {}
_lock = threading.Lock()      # the collector's thread and the agent's requests may both read


def _interesting(name: str) -> bool:
    """XDP counters, kicks, and the rx queues' drops (veth counts there the redirects that
    xdp_do_redirect refused: backend/data/driver.py)."""
    return "xdp" in name or "kicks" in name or bool(re.fullmatch(r"rx_queue_\d+_drops", name))


@dataclass
class _Device:
    eth: object                 # pyroute2 IoctlEthtool: its socket and ifreq, built once
    ifindex: int
    count: int                  # the driver's stat count when `names` was fetched
    names: list[str]            # the interesting stat names ...
    index: list[int]            # ... and their positions in GSTATS' array
    sset: object                # ETHTOOL_GSSET_INFO request (EthtoolSsetInfo) ...
    sset_req: object            # ... and the ifreq pointing at it
    gstats: object              # ETHTOOL_GSTATS request, count + HEADROOM slots
    ifreq: bytearray = None     # SIOCGIFINDEX request: the name's ifindex now, on the same socket
    refetches: int = 0          # how often the names were fetched (tests check the caching)
    names_t: tuple = ()         # `names` as a tuple: the same object until the names are fetched again
    positions: np.ndarray = None   # `index` as an array ...
    data: np.ndarray = None     # ... into GSTATS' array seen as u64
    values: np.ndarray = None   # the interesting counters of the last read, in `names` order

    def ifindex_now(self) -> int:
        fcntl.ioctl(self.eth.sock, SIOCGIFINDEX, self.ifreq)     # OSError (ENODEV) when gone
        return int.from_bytes(self.ifreq[16:20], "little")

    def driver_count(self) -> int:
        from pyroute2.ethtool.ioctl import ETH_SS_STATS, ETHTOOL_GSSET_INFO, SIOCETHTOOL
        self.sset.cmd, self.sset.sset_mask, self.sset.data = ETHTOOL_GSSET_INFO, 1 << ETH_SS_STATS, 0
        try:
            fcntl.ioctl(self.eth.sock, SIOCETHTOOL, self.sset_req)
        except OSError:
            return 0        # no string set at all: a driver without ethtool statistics
        return self.sset.data if self.sset.sset_mask else 0

    def fetch_names(self, count: int) -> None:
        from pyroute2.ethtool.ioctl import ETH_SS_STATS, generate_EthtoolGStats
        names = self.eth.get_stringset(set_id=ETH_SS_STATS) if count else []
        self.index = [i for i, n in enumerate(names) if _interesting(n)]
        self.names = [names[i] for i in self.index]
        self.count = len(names)
        self.gstats = generate_EthtoolGStats(self.count + HEADROOM)()
        self.refetches += 1
        self.names_t = tuple(self.names)
        self.positions = np.array(self.index, np.intp)
        self.data = np.frombuffer(self.gstats.data, dtype=np.uint64)
        self.values = np.zeros(len(self.index), np.uint64)

    def read(self) -> bool:
        """The interesting counters into `values`; False when the count moved between the two ioctls."""
        count = self.driver_count()
        if count != self.count:
            self.fetch_names(count)
        if not self.count:
            self.values = self.values[:0]
            return True
        g = self.gstats
        g.cmd, g.size = _GSTATS, 0
        self.eth.ifreq.gstats = ctypes.addressof(g)
        fcntl.ioctl(self.eth.sock, _SIOCETHTOOL, self.eth.ifreq)
        if g.size != self.count:      # the driver says it changed under us: fetch the names again
            return False
        np.take(self.data, self.positions, out=self.values)
        return True


def _open(ifname: str, ifindex: int) -> _Device:
    from pyroute2.ethtool.ioctl import IFNAMSIZ, EthtoolSsetInfo, IfReqSsetInfo, IoctlEthtool
    eth = IoctlEthtool(ifname)
    sset, req = EthtoolSsetInfo(), IfReqSsetInfo()
    req.ifr_name = (ctypes.c_uint8 * IFNAMSIZ)(*eth.ifname)
    req.info = ctypes.pointer(sset)
    ifreq = bytearray(40)
    ifreq[:IFNAMSIZ] = bytes(eth.ifname[:IFNAMSIZ])
    return _Device(eth, ifindex, -1, [], [], sset, req, None, ifreq)


def _forget(ifname: str) -> None:
    dev = _cache.pop(ifname, None)
    if dev is not None:
        dev.eth.close()


def read_stats(ifname: str) -> dict[str, int]:
    """XDP-related ethtool statistics of an interface ({} when the driver has none or it is gone)."""
    names, values = read_vector(ifname)
    return dict(zip(names, values.tolist()))


_EMPTY: tuple[tuple, np.ndarray] = ((), np.zeros(0, np.uint64))


def read_vector(ifname: str) -> tuple[tuple[str, ...], np.ndarray]:
    """read_stats() as (names, values): names is the same tuple from read to read until the
    driver's string set changes; values is a copy."""
    from pyroute2.ethtool.ioctl import EthtoolError   # here: summaries and reports need no pyroute2
    with _lock:
        dev = _cache.get(ifname)
        try:
            ifindex = dev.ifindex_now() if dev is not None else socket.if_nametoindex(ifname)
        except OSError:
            _forget(ifname)
            return _EMPTY
        if dev is not None and dev.ifindex != ifindex:    # another device under the same name
            _forget(ifname)
            dev = None
        try:
            if dev is None:
                dev = _cache[ifname] = _open(ifname, ifindex)
            for _ in range(3):
                if dev.read():
                    return (dev.names_t, dev.values.copy()) if dev.count else _EMPTY
                dev.count = -1                           # fetch the names on the next try
            return _EMPTY
        except (OSError, ValueError, EthtoolError):     # gone (ENODEV) or no GSTATS (EOPNOTSUPP)
            _forget(ifname)
            return _EMPTY


def refetches(ifname: str) -> int:
    """How many times the string set of ifname was fetched since it entered the cache (0: not cached)."""
    with _lock:
        dev = _cache.get(ifname)
        return dev.refetches if dev is not None else 0


def forget_all() -> None:
    """Close every cached device (their sockets)."""
    with _lock:
        for name in list(_cache):
            _forget(name)
