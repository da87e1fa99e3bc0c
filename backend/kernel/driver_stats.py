"""The NIC driver's own XDP counters, read with ethtool -S through pyroute2.

Read at the collector's rate (up to 100 Hz), so the per-read work is two ioctls into buffers built
once per device: ETHTOOL_GDRVINFO (the driver's name and stat count now) and ETHTOOL_GSTATS. The
names (ETHTOOL_GSTRINGS, decoded byte by byte in pyroute2) are fetched again only when the count
or the driver differs from the one they were fetched for (veth's count follows its queues,
`ethtool -L`; a device deleted and made again under the name as another driver). The names are
the driver's for a count: a device made again with the same driver and count has the same."""
from __future__ import annotations

import ctypes
import errno
import re
import fcntl
import socket
import threading
from dataclasses import dataclass

import numpy as np

_SIOCETHTOOL, _GSTATS, _GDRVINFO = 0x8946, 0x1d, 0x3   # linux/sockios.h, linux/ethtool.h
HEADROOM = 256   # u64 slots past the known count: GSTATS writes as many as the driver has *now*

_cache: dict[str, "_Device"] = {}
_lock = threading.Lock()      # the collector's thread and the agent's requests may both read


def _interesting(name: str) -> bool:
    """XDP counters, kicks, and the rx queues' drops (veth counts there the redirects that
    xdp_do_redirect refused: backend/data/driver.py)."""
    return "xdp" in name or "kicks" in name or bool(re.fullmatch(r"rx_queue_\d+_drops", name))


class _DrvInfo(ctypes.Structure):
    """struct ethtool_drvinfo (linux/ethtool.h): the driver's name and its stat count, in one ioctl."""
    _fields_ = [("cmd", ctypes.c_uint32), ("driver", ctypes.c_char * 32), ("version", ctypes.c_char * 32),
                ("fw_version", ctypes.c_char * 32), ("bus_info", ctypes.c_char * 32),
                ("erom_version", ctypes.c_char * 32), ("reserved2", ctypes.c_char * 12),
                ("n_priv_flags", ctypes.c_uint32), ("n_stats", ctypes.c_uint32), ("testinfo_len", ctypes.c_uint32),
                ("eedump_len", ctypes.c_uint32), ("regdump_len", ctypes.c_uint32)]


class _IfReqDrvInfo(ctypes.Structure):
    _fields_ = [("ifr_name", ctypes.c_char * 16), ("info", ctypes.POINTER(_DrvInfo)), ("pad", ctypes.c_char * 16)]


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
    ifname: bytes = b""         # the interface's name, as the ioctls take it
    refetches: int = 0          # how often the names were fetched (tests check the caching)
    names_t: tuple = ()         # `names` as a tuple: the same object until the names are fetched again
    positions: np.ndarray = None   # `index` as an array ...
    data: np.ndarray = None     # ... into GSTATS' array seen as u64
    values: np.ndarray = None   # the interesting counters of the last read, in `names` order
    seen: tuple | None = None   # (driver name, stat count) when `names` was fetched
    info: _DrvInfo = None       # ETHTOOL_GDRVINFO request ...
    info_req: _IfReqDrvInfo = None   # ... and the ifreq pointing at it

    def driver_now(self) -> tuple[bytes, int]:
        """(driver name, stat count) now: one ioctl (OSError ENODEV when the name is gone)."""
        if self.info is None:
            self.info = _DrvInfo()
            self.info_req = _IfReqDrvInfo(self.ifname, ctypes.pointer(self.info))
        self.info.cmd = _GDRVINFO
        try:
            fcntl.ioctl(self.eth.sock, _SIOCETHTOOL, self.info_req)
        except OSError as e:
            if e.errno != errno.EOPNOTSUPP:
                raise
            return b"", self.driver_count()    # a driver that does not say its name
        return self.info.driver, self.info.n_stats

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
        """The interesting counters into `values`; False when the count moved between the two ioctls.
        The names are fetched again when the driver's stat count or the driver changed (a device
        made again under the name: the names are the driver's, for its count)."""
        seen = self.driver_now()
        if seen != self.seen:
            self.fetch_names(self.driver_count())
            self.seen = seen
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
    return _Device(eth, ifindex, -1, [], [], sset, req, None, bytes(eth.ifname[:IFNAMSIZ]).rstrip(b"\0"))


def _forget(ifname: str) -> None:
    dev = _cache.pop(ifname, None)
    if dev is not None:
        dev.eth.close()


def read_stats(ifname: str) -> dict[str, int]:
    """XDP-related ethtool statistics of an interface ({} when the driver has none or it is gone)."""
    names, values = read_vector(ifname)
    return dict(zip(names, values.tolist()))


def _ethtool_error() -> type:
    from pyroute2.ethtool.ioctl import EthtoolError   # here: summaries and reports need no pyroute2
    return EthtoolError


_EMPTY: tuple[tuple, np.ndarray] = ((), np.zeros(0, np.uint64))


def read_vector(ifname: str) -> tuple[tuple[str, ...], np.ndarray]:
    """read_stats() as (names, values): names is the same tuple from read to read until the
    driver's string set changes; values is a copy."""
    with _lock:
        dev = _cache.get(ifname)
        if dev is None:
            try:
                ifindex = socket.if_nametoindex(ifname)
            except OSError:
                return _EMPTY
        try:
            if dev is None:
                dev = _cache[ifname] = _open(ifname, ifindex)
            for _ in range(3):
                if dev.read():
                    return (dev.names_t, dev.values.copy()) if dev.count else _EMPTY
                dev.seen = None                          # fetch the names on the next try
            return _EMPTY
        except (OSError, ValueError, _ethtool_error()):     # gone (ENODEV) or no GSTATS (EOPNOTSUPP)
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
