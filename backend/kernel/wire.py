"""inject --wire: frames through the driver's real receive path, sent from the ingress's peer.

A veth ingress receives what its peer transmits: veth_xmit puts the frame on the ingress's ring and
schedules its NAPI, so veth_poll runs the XDP program, flushes the bulk queues at the end of the
poll and the driver counts what it did, as a NIC would (unlike BPF_PROG_TEST_RUN, which runs the
program in a syscall). The frames are written with an AF_PACKET socket bound to the peer, in the
peer's network namespace (found by the ingress's IFLA_LINK_NETNSID), with sendmmsg in batches,
paced to a rate when one is asked for, from one CPU.
"""
from __future__ import annotations

import asyncio
import ctypes
import errno
import math
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass

from backend.kernel import host, injector, nic
from backend.errors import XdpscopeError

NETNS_DIR = "/var/run/netns"
MAX_BATCH = 1024            # frames per sendmmsg (UIO_MAXIOV)
MAX_RATE = 100_000_000.0    # pps
RETRY_S = 0.0005            # back off this long when the socket's buffer is full
GIVE_UP_S = 5.0             # ... and give up when nothing could be sent for this long


@dataclass
class Peer:
    name: str
    ifindex: int
    netns: str | None      # a name under /var/run/netns, None: our own namespace
    mtu: int


@dataclass
class WireResult:
    frames: int            # frames the kernel accepted from us (sendmmsg)
    seconds: float
    pps: float
    iface: str
    peer: str
    netns: str | None
    cpu: int
    prog_id: int           # the XDP program on the ingress when we started (0: none)
    peer_tx_packets: int   # the peer's own counters over the injection
    peer_tx_dropped: int

    def to_dict(self) -> dict:
        return asdict(self)


# -- the peer ---------------------------------------------------------------------------------------

def _nsid(name: str) -> int | None:
    """The id our namespace gives the named network namespace (RTM_GETNSID), None if it has none."""
    from pyroute2 import AsyncIPRoute

    async def ask() -> int | None:
        fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
        try:
            async with AsyncIPRoute() as ip:
                got = await ip.get_netnsid(fd=fd)
        finally:
            os.close(fd)
        nsid = (got or {}).get("nsid")
        return None if nsid is None or nsid in (0xFFFFFFFF, -1) else int(nsid)
    return asyncio.run(ask())


def _named_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def peer_of(iface: str) -> Peer:
    """The other end of a veth ingress, identified by (netns, ifindex), never by name or ifindex alone."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        with IPRoute() as ip:
            link = ip.link("get", ifname=iface)[0]
    except (NetlinkError, IndexError):
        raise XdpscopeError(f"{iface}: no such interface") from None
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    if kind != "veth":
        what = kind or nic.interface(iface).driver or "a device"
        raise XdpscopeError(f"{iface} is {what}, not veth: --wire sends from the ingress's veth peer; for a "
                            "NIC, send from the machine on the other end of its wire (the vlab: xdpscope vlab)")
    index, nsid = link.get_attr("IFLA_LINK"), link.get_attr("IFLA_LINK_NETNSID")
    if not index:
        raise XdpscopeError(f"{iface}: its veth peer is gone")
    if nsid is None:  # the peer lives in our namespace
        with IPRoute() as ip:
            got = ip.link("get", index=index)[0]
        return Peer(got.get_attr("IFLA_IFNAME"), index, None, got.get_attr("IFLA_MTU"))
    for name in _named_netns():
        try:
            if _nsid(name) != nsid:
                continue
            with IPRoute(netns=name, flags=0) as ip:  # flags=0: never create a namespace here
                got = ip.link("get", index=index)[0]
        except (OSError, NetlinkError, IndexError):
            continue
        return Peer(got.get_attr("IFLA_IFNAME"), index, name, got.get_attr("IFLA_MTU"))
    raise XdpscopeError(f"{iface}: its veth peer is in a network namespace without a name under {NETNS_DIR} "
                        "(a container's?): --wire can only send from a named namespace (ip netns attach NAME PID)")


def _peer_stats(p: Peer) -> tuple[int, int]:
    from pyroute2 import IPRoute
    kw = {"netns": p.netns, "flags": 0} if p.netns else {}
    with IPRoute(**kw) as ip:
        st = ip.link("get", index=p.ifindex)[0].get_attr("IFLA_STATS64")
    return (int(st["tx_packets"]), int(st["tx_dropped"])) if st else (0, 0)


def _socket_in(p: Peer) -> socket.socket:
    """An AF_PACKET socket bound to the peer, made inside the peer's namespace (this thread only)."""
    if p.netns is None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    else:
        from backend.labs.veth import inside
        with inside(p.netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.setsockopt(socket.SOL_SOCKET, 32, 4 << 20)  # SO_SNDBUFFORCE: batches fit
        s.bind((p.name, 0))
    except OSError as e:
        s.close()
        raise XdpscopeError(f"{p.name}: cannot send from it: {e.strerror}") from None
    return s


# -- sendmmsg ---------------------------------------------------------------------------------------

class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


class Batch:
    """count frames for one sendmmsg: the frames of `flows` flows in turn, from frame number start."""

    def __init__(self, frames: list[bytes], size: int) -> None:
        self.bufs = [ctypes.create_string_buffer(f, len(f)) for f in frames]
        self.iov = (_Iovec * size)()
        self.msgs = (_Mmsghdr * size)()
        self.size = size

    def fill(self, start: int, count: int) -> None:
        """Point messages 0..count-1 at frames start.. (cheap when the flow phase is unchanged)."""
        n = len(self.bufs)
        if getattr(self, "phase", None) == start % n and count <= getattr(self, "filled", 0):
            return
        self.phase, self.filled = start % n, count
        for i in range(count):
            b = self.bufs[(start + i) % n]
            self.iov[i].base, self.iov[i].len = ctypes.addressof(b), len(b.raw)
            m = self.msgs[i].hdr
            m.iov, m.iovlen = ctypes.pointer(self.iov[i]), 1


_libc = ctypes.CDLL(None, use_errno=True)
_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]


def _sendmmsg(fd: int, batch: Batch, offset: int, count: int) -> int:
    n = _libc.sendmmsg(fd, ctypes.byref(batch.msgs, offset * ctypes.sizeof(_Mmsghdr)), count, 0)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return n


# -- sending ----------------------------------------------------------------------------------------

def _check(count: int, size: int, flows: int, rate: float, batch: int, first_flow: int) -> None:
    def bad_int(v: object) -> bool:
        return isinstance(v, bool) or not isinstance(v, int)
    if bad_int(count) or not 1 <= count <= 2**31 - 1:
        raise XdpscopeError("--count must be between 1 and 2147483647")
    if bad_int(size) or not injector.MIN_FRAME <= size <= injector.MAX_FRAME:
        raise XdpscopeError(f"--size must be between {injector.MIN_FRAME} and {injector.MAX_FRAME} bytes")
    if bad_int(flows) or bad_int(first_flow) or not 1 <= flows <= count or first_flow < 0 \
            or first_flow + flows > injector.MAX_FLOWS:
        raise XdpscopeError(f"--flows must be between 1 and the frame count, flow ids below {injector.MAX_FLOWS}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
            or not 0 <= rate <= MAX_RATE:
        raise XdpscopeError(f"--rate must be between 0 (as fast as possible) and {MAX_RATE:.0f} frames/s")
    if bad_int(batch) or not 1 <= batch <= MAX_BATCH:
        raise XdpscopeError(f"--batch must be between 1 and {MAX_BATCH} for --wire")


def send(iface: str, count: int, rate: float = 0.0, size: int = 64, flows: int = 1, cpu: int | None = None,
         batch: int = 64, first_flow: int = 0, cancel: threading.Event | None = None,
         allow_uplink: bool = False, burst: int = 0) -> WireResult:
    """Send count frames (UDP, flows in turn: flow i has source port 1024 + first_flow + i) from the
    peer of veth `iface`, at `rate` frames/s (0: as fast as the kernel takes them), from one CPU.
    burst: send that many frames at once (one sendmmsg), the bursts paced to the rate."""
    host.require_root("inject --wire")
    _check(count, size, flows, rate, batch, first_flow)
    if isinstance(burst, bool) or not isinstance(burst, int) or not 0 <= burst <= MAX_BATCH:
        raise XdpscopeError(f"--burst must be between 0 (off) and {MAX_BATCH}")
    if burst and not rate:
        raise XdpscopeError("--burst needs --rate (the bursts are paced to it)")
    batch = max(batch, burst)
    allowed = os.sched_getaffinity(0)
    if cpu is None:
        cpu = min(allowed)   # one CPU: the ingress's NAPI runs there, its per-CPU queues stay there
    elif isinstance(cpu, bool) or not isinstance(cpu, int) or cpu not in allowed:
        raise XdpscopeError(f"--cpu {cpu}: no such CPU (allowed: {', '.join(map(str, sorted(allowed)))})")
    info = nic.interface(iface)
    if info.default_route and not allow_uplink:
        raise XdpscopeError(f"{iface} carries the default route: frames are not injected into it")
    p = peer_of(iface)
    if p.netns is None and nic.interface(p.name).default_route and not allow_uplink:
        raise XdpscopeError(f"{p.name} carries the default route: frames are not sent from it")
    if size > p.mtu + 14:
        raise XdpscopeError(f"--size {size}: larger than {p.name}'s MTU {p.mtu} + 14 bytes of Ethernet header")
    frames = [injector.frame(size, first_flow + f) for f in range(flows)]
    old = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})   # this thread only
    except OSError:
        raise XdpscopeError(f"--cpu {cpu}: no such CPU") from None
    try:
        s = _socket_in(p)
        try:
            tx0 = _peer_stats(p)
            t0 = time.monotonic()
            sent = _loop(s, p, Batch(frames, batch), count, rate, batch, cancel, burst)
            seconds = time.monotonic() - t0
            tx1 = _peer_stats(p)
        finally:
            s.close()
    finally:
        os.sched_setaffinity(0, old)
    return WireResult(sent, seconds, sent / seconds if seconds > 0 else 0.0, iface, p.name, p.netns, cpu,
                      info.xdp.get("prog_id", 0), tx1[0] - tx0[0], tx1[1] - tx0[1])


def _loop(s: socket.socket, p: Peer, b: Batch, count: int, rate: float, batch: int,
          cancel: threading.Event | None, burst: int = 0) -> int:
    sent, t0, stuck = 0, time.monotonic(), None
    fd = s.fileno()
    while sent < count:
        if cancel is not None and cancel.is_set():
            raise XdpscopeError(f"{p.name}: sending stopped after {sent} of {count} frames: the session was detached")
        n = min(batch, count - sent)
        if burst:  # a burst at once, the next when it is due
            wait = t0 + sent / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            n = min(burst, count - sent)
        elif rate > 0:  # paced: send what is due by now, sleep until the next frame is due
            due = int((time.monotonic() - t0) * rate) + 1 - sent
            if due <= 0:
                time.sleep(min(max(sent - (time.monotonic() - t0) * rate, 0.0) / rate, 0.05))
                continue
            n = min(n, due)
        b.fill(sent, n)
        done = 0
        while done < n:
            try:
                got = _sendmmsg(fd, b, done, n - done)
            except OSError as e:
                if e.errno in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR):
                    stuck = stuck or time.monotonic()
                    if time.monotonic() - stuck > GIVE_UP_S:
                        raise XdpscopeError(f"{p.name}: sending stopped after {sent + done} of {count} frames: "
                                            f"the kernel took none for {GIVE_UP_S:g} s ({e.strerror})") from None
                    time.sleep(RETRY_S)
                    continue
                raise XdpscopeError(f"{p.name}: sending failed after {sent + done} of {count} frames: "
                                    f"{e.strerror}") from None
            stuck = None
            done += got
        sent += n
    return sent
