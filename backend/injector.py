"""Injector: BPF_PROG_TEST_RUN with live frames on whatever XDP program an interface carries
(found by its id), so the real redirect, bulk-queue and flush path runs."""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from backend import bpfsys, kernel, nic
from backend.errors import XdpscopeError

MIN_FRAME, MAX_FRAME = 60, 3000   # live frames must fit one page with headroom
MAX_FLOWS = 65535 - 1024         # flows differ in the UDP source port, from 1024
MAX_BATCH = 256                   # kernel limit for live-frame batches
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


def inject(iface: str, count: int, batch: int = 64, size: int = 64, flows: int = 1,
           cpu: int | None = None, first_flow: int = 0) -> InjectResult:
    """count frames in `flows` runs (flow ids first_flow..), each run in batches of `batch`."""
    kernel.require_root("inject")
    if count < 1 or count > 2**31 - 1:
        raise XdpscopeError("--count must be between 1 and 2147483647")
    if not 1 <= batch <= MAX_BATCH:
        raise XdpscopeError(f"--batch must be between 1 and {MAX_BATCH}")
    if not MIN_FRAME <= size <= MAX_FRAME:
        raise XdpscopeError(f"--size must be between {MIN_FRAME} and {MAX_FRAME} bytes")
    if not 1 <= flows <= count or not 0 <= first_flow or first_flow + flows > MAX_FLOWS:
        raise XdpscopeError(f"--flows must be between 1 and the frame count, flow ids below {MAX_FLOWS}")
    info = nic.interface(iface)
    prog_id = info.xdp["prog_id"]
    if not prog_id:
        raise XdpscopeError(f"{iface}: no XDP program attached (start `xdpscope record` first)")
    fd = bpfsys.prog_fd_by_id(prog_id)
    # One CPU for the whole injection: per-CPU round-robin state and bulk queues stay on it.
    cpu = min(os.sched_getaffinity(0)) if cpu is None else cpu
    old = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        raise XdpscopeError(f"--cpu {cpu}: no such CPU") from None
    t0 = time.monotonic()
    try:
        for flow, n in enumerate(split(count, flows)):
            bpfsys.xdp_live_run(fd, frame(size, first_flow + flow), n, batch, info.ifindex)
    except OSError as e:
        raise XdpscopeError(f"{iface}: live-frame test run refused: {e.strerror}") from None
    finally:
        os.close(fd)
        os.sched_setaffinity(0, old)
    return InjectResult(count, flows, time.monotonic() - t0, prog_id, cpu)
