"""Injector: BPF_PROG_TEST_RUN with live frames on whatever XDP program an interface carries
(found by its id), so the real redirect, bulk-queue and flush path runs."""
from __future__ import annotations

import os
import struct
import threading
import time
from dataclasses import dataclass

from backend.kernel import bpfsys, host, nic
from backend.errors import XdpscopeError

MIN_FRAME, MAX_FRAME = 60, 3000   # live frames must fit one page with headroom
MAX_FLOWS = 65535 - 1024         # flows differ in the UDP source port, from 1024
MAX_BATCH = 256                   # kernel limit for live-frame batches
CHUNK_FRAMES = 65536              # frames per test run (~30 ms here): stop and detach are noticed between
RECHECK_S = 0.25                  # s between checks that the program is still on the interface
SRC_MAC = bytes.fromhex("027873000001")   # locally administered, owned by no interface:
DST_MAC = bytes.fromhex("027873000002")   # passed frames are OTHERHOST and never routed


@dataclass
class InjectResult:
    frames: int
    runs: int
    seconds: float
    prog_id: int
    cpu: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _checksum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def frame(size: int, flow: int) -> bytes:
    """Ethernet + IPv4 + UDP from 198.18.0.1 to 198.19.0.1 (RFC 2544 benchmark range);
    flows differ in the UDP source port."""
    payload = bytes(size - 14 - 20 - 8)
    udp = struct.pack("!HHHH", 1024 + flow, 9, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload), 0, 0x4000, 64, 17, 0,
                     bytes([198, 18, 0, 1]), bytes([198, 19, 0, 1]))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return DST_MAC + SRC_MAC + b"\x08\x00" + ip + udp + payload


def split(count: int, flows: int) -> list[int]:
    """Frames per flow: as even as possible, the first flows take the remainder."""
    return [count // flows + (1 if i < count % flows else 0) for i in range(flows)]


def _attached_prog(ifindex: int) -> int:
    """The id of the XDP program on an interface now (0: none, or the interface is gone)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        with IPRoute() as ip:
            link = ip.link("get", index=ifindex)[0]
    except (NetlinkError, OSError, IndexError):
        return 0
    xdp = link.get_attr("IFLA_XDP")
    return (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp else 0


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise XdpscopeError(f"--{name} must be between {lo} and {hi}")
    return value


def inject(iface: str, count: int, batch: int = 64, size: int = 64, flows: int = 1,
           cpu: int | None = None, first_flow: int = 0, cancel: threading.Event | None = None,
           allow_uplink: bool = False) -> InjectResult:
    """count frames in `flows` runs (flow ids first_flow..), each run in batches of `batch`.
    The runs go in chunks of whole batches (the same flushes as one run): between chunks the
    injection stops when cancel is set or the program it started on left the interface."""
    host.require_root("inject")
    _check_int("count", count, 1, 2**31 - 1)
    _check_int("batch", batch, 1, MAX_BATCH)
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_FRAME <= size <= MAX_FRAME:
        raise XdpscopeError(f"--size must be between {MIN_FRAME} and {MAX_FRAME} bytes")
    if isinstance(flows, bool) or not isinstance(flows, int) or isinstance(first_flow, bool) \
            or not isinstance(first_flow, int) or not 1 <= flows <= count or not 0 <= first_flow \
            or first_flow + flows > MAX_FLOWS:
        raise XdpscopeError(f"--flows must be between 1 and the frame count, flow ids below {MAX_FLOWS}")
    allowed = os.sched_getaffinity(0)
    if cpu is None:
        cpu = min(allowed)   # one CPU for the whole injection: per-CPU state and bulk queues stay on it
    elif isinstance(cpu, bool) or not isinstance(cpu, int) or cpu not in allowed:
        raise XdpscopeError(f"--cpu {cpu}: no such CPU (allowed: {', '.join(map(str, sorted(allowed)))})")
    info = nic.interface(iface)
    if info.default_route and not allow_uplink:
        raise XdpscopeError(f"{iface} carries the default route: frames are not injected into it")
    prog_id = info.xdp["prog_id"]
    if not prog_id:
        raise XdpscopeError(f"{iface}: no XDP program attached (start `xdpscope record` first)")
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except OSError as e:
        raise XdpscopeError(f"{iface}: its XDP program (id {prog_id}) is gone: {e.strerror}") from None
    try:
        return _run(info, fd, prog_id, count, batch, size, flows, cpu, first_flow, cancel)
    finally:
        os.close(fd)


def _run(info: nic.Interface, fd: int, prog_id: int, count: int, batch: int, size: int, flows: int,
         cpu: int, first_flow: int, cancel: threading.Event | None) -> InjectResult:
    old = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})   # this thread only
    except OSError:
        raise XdpscopeError(f"--cpu {cpu}: no such CPU") from None
    chunk = batch * max(1, CHUNK_FRAMES // batch)
    sent, t0, checked = 0, time.monotonic(), time.monotonic()
    try:
        for flow, n in enumerate(split(count, flows)):
            frame_bytes = frame(size, first_flow + flow)
            while n > 0:
                if cancel is not None and cancel.is_set():
                    raise XdpscopeError(f"{info.name}: injection stopped after {sent} of {count} frames: "
                                        "the session was detached")
                if time.monotonic() - checked > RECHECK_S:
                    checked = time.monotonic()
                    if _attached_prog(info.ifindex) != prog_id:
                        raise XdpscopeError(f"{info.name}: injection stopped after {sent} of {count} frames: "
                                            f"program {prog_id} left the interface")
                step = min(n, chunk)
                bpfsys.xdp_live_run(fd, frame_bytes, step, batch, info.ifindex)
                n -= step
                sent += step
    except OSError as e:
        raise XdpscopeError(f"{info.name}: live-frame test run refused: {e.strerror}") from None
    finally:
        os.sched_setaffinity(0, old)
    return InjectResult(count, flows, time.monotonic() - t0, prog_id, cpu)
