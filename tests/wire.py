"""Frames through a driver's real receive path: written into the ingress's veth peer (inside the
lab namespace) with an AF_PACKET socket, so veth's NAPI poll runs the XDP program, as a NIC would."""
from __future__ import annotations

import os
import socket

from backend.kernel import injector
from backend.labs import veth as labmod


def send(lab: labmod.Lab, count: int, flows: int = 1, size: int = 64, cpu: int = 0) -> None:
    """Send count frames (flows round-robin) from one CPU, so per-CPU program state stays on it."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        with labmod.inside(lab.netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with s:
            s.bind((lab.ingress_peer, 0))
            frames = [injector.frame(size, f) for f in range(flows)]
            for i in range(count):
                s.send(frames[i % flows])
    finally:
        os.sched_setaffinity(0, old)
