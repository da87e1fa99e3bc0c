#!/usr/bin/env python3
"""xdpscope vlab host-side traffic helper. Runs INSIDE the lab's network namespace
(`ip netns exec xdpscope-vlab python3 vlab/hostnet.py ...`), so it can only ever see the lab's taps.

Writing a frame into a tap with an AF_PACKET socket makes tun queue it to QEMU, which puts it into
the guest NIC's receive virtqueue: the guest sees it through virtnet_poll -> receive_mergeable,
the driver's real receive path. Frames the guest transmits (e.g. XDP_REDIRECT to another NIC)
come out of that NIC's tap and are counted here by AF_PACKET sockets bound to the tap.

Stdlib only. Prints one JSON object on stdout.
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_SOCKET = 1
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
MAGIC = b"XDPSCOPE"


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def tap_stats(dev):
    out = {}
    for k in ("tx_packets", "tx_dropped", "rx_packets", "rx_dropped"):
        try:
            with open(f"/sys/class/net/{dev}/statistics/{k}") as f:
                out[k] = int(f.read())
        except OSError:
            out[k] = None
    return out


def main():
    ap = argparse.ArgumentParser()
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

    before = tap_stats(a.dev)
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
    after = tap_stats(a.dev)
    json.dump({"sent": sent, "send_s": send_s, "dev": a.dev,  # tap_tx_*: when sending ended
               "tap_tx_packets": after["tx_packets"] - before["tx_packets"],
               "tap_tx_dropped": after["tx_dropped"] - before["tx_dropped"],
               "captured": counts, "captured_other": other}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
