"""Predict, before any attach, whether native XDP will work on an interface, and say why not.

virtio_net's rules (drivers/net/virtio_net.c, virtnet_xdp_set) are read off the negotiated
feature bits in sysfs; veth's from the peer's MTU."""
from __future__ import annotations

import array
import fcntl
import os
import platform
import socket
import struct
from pathlib import Path

from pyroute2 import IPRoute

# virtio-net feature bit numbers (include/uapi/linux/virtio_net.h, virtio_config.h)
VIRTIO_BITS = {"CSUM": 0, "GUEST_CSUM": 1, "CTRL_GUEST_OFFLOADS": 2, "MTU": 3, "MAC": 5,
               "GUEST_TSO4": 7, "GUEST_TSO6": 8, "GUEST_ECN": 9, "GUEST_UFO": 10, "MRG_RXBUF": 15,
               "CTRL_VQ": 17, "MQ": 22, "ANY_LAYOUT": 27, "VERSION_1": 32, "GUEST_USO4": 54, "GUEST_USO6": 55}
# What virtnet_xdp_set() refuses native XDP for when it cannot turn them off (USO4/6: 6.2+ drivers).
GUEST_OFFLOADS = ("GUEST_TSO4", "GUEST_TSO6", "GUEST_ECN", "GUEST_UFO", "GUEST_CSUM", "GUEST_USO4", "GUEST_USO6")
VETH_MAX_MTU = 4096 - 256 - 320 - 14   # SKB_WITH_OVERHEAD(PAGE_SIZE - XDP headroom) - ETH_HLEN
ETHTOOL_GCHANNELS, SIOCETHTOOL = 0x3C, 0x8946


def virtio_features(name: str) -> set[str] | None:
    path = Path("/sys/class/net") / name / "device" / "features"
    try:
        bits = path.read_text().strip()
    except OSError:
        return None
    return {f for f, b in VIRTIO_BITS.items() if b < len(bits) and bits[b] == "1"}


def _queues(name: str) -> tuple[int, int]:
    q = os.listdir(Path("/sys/class/net") / name / "queues")
    return sum(x.startswith("rx-") for x in q), sum(x.startswith("tx-") for x in q)


def channels(name: str) -> dict | None:
    """ethtool -l: {"max_combined", "combined"} (virtio_net: max_queue_pairs, curr_queue_pairs)."""
    buf = array.array("I", [ETHTOOL_GCHANNELS] + [0] * 8)
    ifr = struct.pack("16sP", name.encode()[:15], buf.buffer_info()[0])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
    except OSError:
        return None
    return {"max_combined": buf[4], "combined": buf[8]}


def _virtio_max_mtu() -> tuple[int, str]:
    """virtnet_xdp_set's MTU limit for a single-buffer program, by kernel version:
    PAGE_SIZE - sizeof(struct padded_vnet_hdr) up to 6.2, then PAGE_SIZE - XDP room - ETH_HLEN."""
    try:
        ver = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        ver = (0, 0)
    if ver >= (6, 3):
        return 4096 - 576 - 14, "MTU too large to enable XDP without frags"
    return 4096 - 32, "MTU too large to enable XDP"


def virtio_native(name: str, mtu: int) -> dict:
    """virtio_net's rules (virtnet_xdp_set), in its order: guest offloads it cannot turn off
    (EOPNOTSUPP), header layout (EINVAL), MTU (EINVAL); too few queue pairs only slow TX down."""
    feats = virtio_features(name) or set()
    rx, tx = _queues(name)
    ch = channels(name)
    ncpu = os.cpu_count() or 1
    notes = []
    # XDP wants one TX queue per CPU on top of the queue pairs in use (the stack's TX queues);
    # without room the driver shares queues under a lock ("slower locked tx mode").
    if ch and ch["max_combined"]:
        if tx + ncpu > ch["max_combined"]:
            fewer = ch["max_combined"] - ncpu
            notes.append(f"XDP needs {tx} + {ncpu} (one per CPU) queue pairs but the device has "
                         f"{ch['max_combined']}: XDP_TX/REDIRECT to this NIC share TX queues under a lock "
                         f"(slower); give the device at least {tx + ncpu} queue pairs (QEMU: -netdev "
                         f"tap,queues=N, mq=on)" + (f" or use fewer: ethtool -L {name} combined {fewer}"
                                                    if fewer >= 1 else ""))
    elif tx < rx + ncpu:
        notes.append(f"{tx} TX queue(s) for {rx} RX queue(s) and {ncpu} CPUs: XDP_TX/REDIRECT to this NIC "
                     "may share queues under a lock (slower); give the NIC more queue pairs")
    result = {"features": sorted(feats), "rx_queues": rx, "tx_queues": tx, "channels": ch, "notes": notes}
    offloads = [f for f in GUEST_OFFLOADS if f in feats]
    if offloads and "CTRL_GUEST_OFFLOADS" not in feats:
        return {**result, "possible": False, "errno": "EOPNOTSUPP",
                "why": f"virtio_net negotiated {', '.join(offloads)} without CTRL_GUEST_OFFLOADS, so the "
                       "driver cannot turn guest offloads off: native attach fails with EOPNOTSUPP "
                       "(\"Can't set XDP while host is implementing GRO_HW/CSUM\")",
                "fix": "offer CTRL_GUEST_OFFLOADS or turn the guest offloads off on the host side (QEMU: "
                       "-device virtio-net-pci,guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,"
                       "guest_ufo=off), or use generic mode"}
    if "MRG_RXBUF" in feats and not {"ANY_LAYOUT", "VERSION_1"} & feats:
        return {**result, "possible": False, "errno": "EINVAL",
                "why": "mergeable buffers without ANY_LAYOUT: \"XDP expects header/data in single page, "
                       "any_header_sg required\" (EINVAL)", "fix": "use a modern (virtio 1.0) device, or generic mode"}
    max_mtu, msg = _virtio_max_mtu()
    if mtu > max_mtu:
        return {**result, "possible": False, "errno": "EINVAL",
                "why": f"MTU {mtu} > {max_mtu}, too large for single-buffer XDP: \"{msg}\" (EINVAL)",
                "fix": f"ip link set dev {name} mtu {min(1500, max_mtu)}, or use generic mode"}
    return {**result, "possible": True, "why": "", "fix": ""}


def veth_native(ifindex: int) -> dict:
    with IPRoute() as ip:
        link = ip.link("get", index=ifindex)[0]
        peer = link.get_attr("IFLA_LINK")
        if link.get_attr("IFLA_LINK_NETNSID") is not None:
            return {"possible": None, "why": f"peer is in another namespace: native works if its MTU is "
                    f"at most {VETH_MAX_MTU}", "fix": ""}
        peer_mtu = ip.link("get", index=peer)[0].get_attr("IFLA_MTU") if peer else 0
    if peer_mtu > VETH_MAX_MTU:
        return {"possible": False, "why": f"veth peer MTU {peer_mtu} > {VETH_MAX_MTU} "
                "(\"Peer MTU is too large to set XDP\")", "fix": "lower the peer's MTU, or use generic mode"}
    return {"possible": True, "why": "", "fix": ""}


def native_support(name: str, ifindex: int, driver: str, mtu: int) -> dict:
    """{"possible": True/False/None (unknown), "why", "fix", ...driver details}."""
    if driver == "virtio_net":
        return virtio_native(name, mtu)
    if driver == "veth":
        return veth_native(ifindex)
    if driver in ("", "loopback", "ifb", "dummy", "bridge"):
        return {"possible": False, "why": f"{driver or 'this device'} has no native XDP support", "fix": "use generic mode"}
    return {"possible": None, "why": f"{driver}: support not known in advance; auto mode tries native first",
            "fix": ""}
