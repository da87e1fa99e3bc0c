"""The vlab's frames from the host side. send() runs main() INSIDE the lab's network namespace
(`ip netns exec xdpscope-vlab python -m backend.labs.vlab.traffic ...`), so it can only ever see
the lab's taps.

Writing a frame into a tap with an AF_PACKET socket makes tun queue it to QEMU, which puts it into
the guest NIC's receive virtqueue: the guest sees it through virtnet_poll -> receive_mergeable,
the driver's real receive path. Frames the guest transmits (e.g. XDP_REDIRECT to another NIC)
come out of that NIC's tap and are counted here by AF_PACKET sockets bound to the tap.
"""
from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from backend.errors import XdpscopeError
from backend.labs.vlab import host

def send(nic: int, count: int, *, capture: list[int] = (), size: int = 64, pps: float = 0.0,
         expect: int | None = None, settle: float = 3.0, dst: str | None = None,
         state_dir: Path | None = None) -> dict:
    """Write `count` frames into guest NIC `nic`'s tap (inside the lab namespace) and count the
    frames that come out of the taps of the NICs in `capture` (e.g. XDP_REDIRECT targets).

    Frames: dst = the guest NIC's MAC, ethertype 0x88b5, payload 'XDPSCOPE' + 64-bit sequence.
    Returns main()'s JSON: sent, tap_tx_packets, tap_tx_dropped, captured {tap: n}, ..."""
    lab = host.status(state_dir)
    if not lab:
        raise XdpscopeError("vlab: no lab is up (xdpscope vlab up)")
    cmd = ["ip", "netns", "exec", host.NETNS, "env", f"PYTHONPATH={host.ROOT}", sys.executable, "-m",
           "backend.labs.vlab.traffic", "--dev", host.TAP_FMT.format(nic), "--dst", dst or host.MAC_FMT.format(nic), "--count", str(count), "--size", str(size),
           "--pps", str(pps), "--settle", str(settle)]
    for c in capture:
        cmd += ["--capture", host.TAP_FMT.format(c)]
    if expect is not None:
        cmd += ["--expect", str(expect)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise XdpscopeError(f"vlab: sending frames failed: {p.stderr.strip()}")
    return json.loads(p.stdout)



def tap_stats(state_dir: Path | None = None) -> dict:
    """Host-side counters of the lab's taps: {tap: {tx_packets, tx_dropped, rx_packets, ...}}.
    A tap's tx is towards the guest: tx_packets counts frames QEMU has read (so it lags a fast
    sender under TCG), tx_dropped frames tun dropped because its ring (txqueuelen) was full."""
    p = host._ip("-n", host.NETNS, "-s", "-j", "link", "show", check=False)
    out = {}
    try:
        for link in json.loads(p.stdout or "[]"):
            name = link.get("ifname", "")
            if name.startswith(host.TAP_FMT.format("")):
                st = link.get("stats64", {})
                out[name] = {f"{d}_{k}": st.get(d, {}).get(k, 0) for d in ("rx", "tx")
                             for k in ("packets", "bytes", "dropped", "errors")}
    except ValueError:
        pass
    return out


ETH_P_ALL = 0x0003
SOL_SOCKET = 1
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
MAGIC = b"XDPSCOPE"


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _tap_counters(dev: str) -> dict:
    out = {}
    for k in ("tx_packets", "tx_dropped", "rx_packets", "rx_dropped"):
        try:
            with open(f"/sys/class/net/{dev}/statistics/{k}") as f:
                out[k] = int(f.read())
        except OSError:
            out[k] = None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="frames into a lab tap, counted where they come out (in the lab netns)")
    ap.add_argument("--dev", required=True, help="tap to write frames into")
    ap.add_argument("--dst", required=True, help="destination MAC (the guest NIC's)")
    ap.add_argument("--src", default="02:00:00:5c:0e:ff")
    ap.add_argument("--ethertype", type=lambda s: int(s, 0), default=0x88B5)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--size", type=int, default=64, help="frame size without FCS (>= 60)")
    ap.add_argument("--pps", type=float, default=0.0, help="pace to this rate (0: as fast as possible)")
    ap.add_argument("--capture", action="append", default=[], help="tap to count frames on")
    ap.add_argument("--expect", type=int, default=None,
                    help="stop capturing once this many frames were counted in total")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="stop capturing after this long without a new frame")
    ap.add_argument("--max-wait", type=float, default=120.0)
    a = ap.parse_args()

    caps = {}
    for dev in a.capture:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        s.bind((dev, 0))
        s.setblocking(False)
        caps[s] = dev
    counts = {dev: 0 for dev in a.capture}
    other = {dev: 0 for dev in a.capture}

    def drain(timeout):
        got = 0
        r, _, _ = select.select(list(caps), [], [], timeout)
        for s in r:
            while True:
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                dev = caps[s]
                if len(data) >= 14 + len(MAGIC) and struct.unpack("!H", data[12:14])[0] == a.ethertype \
                        and data[14:14 + len(MAGIC)] == MAGIC:
                    counts[dev] += 1
                    got += 1
                else:
                    other[dev] += 1
        return got

    before = _tap_counters(a.dev)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.setsockopt(SOL_SOCKET, SO_SNDBUFFORCE, 16 << 20)
    tx.bind((a.dev, 0))
    hdr = mac_bytes(a.dst) + mac_bytes(a.src) + struct.pack("!H", a.ethertype)
    pad = max(a.size - 14 - len(MAGIC) - 8, 0)
    sent = 0
    t0 = time.monotonic()
    for i in range(a.count):
        frame = hdr + MAGIC + struct.pack("!Q", i) + b"\0" * pad
        while True:
            try:
                tx.send(frame)
                break
            except (BlockingIOError, OSError) as e:
                if getattr(e, "errno", None) not in (11, 105):  # EAGAIN, ENOBUFS
                    raise
                time.sleep(0.001)
        sent += 1
        if a.pps > 0:
            delay = t0 + sent / a.pps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if caps and (i & 255) == 0:
            drain(0)
    send_s = time.monotonic() - t0
    if caps:
        last = time.monotonic()
        while time.monotonic() - t0 < a.max_wait:
            if a.expect is not None and sum(counts.values()) >= a.expect:
                break
            if drain(0.2):
                last = time.monotonic()
            elif time.monotonic() - last > a.settle:
                break
        drain(0)
    after = _tap_counters(a.dev)
    json.dump({"sent": sent, "send_s": send_s, "dev": a.dev,  # tap_tx_*: when sending ended
               "tap_tx_packets": after["tx_packets"] - before["tx_packets"],
               "tap_tx_dropped": after["tx_dropped"] - before["tx_dropped"],
               "captured": counts, "captured_other": other}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
