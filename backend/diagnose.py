"""Predict, before any attach, whether native XDP will work on an interface, and say why not.

virtio_net's rules (drivers/net/virtio_net.c, virtnet_xdp_set) are read off the negotiated
feature bits in sysfs; veth's from the peer's MTU."""
from __future__ import annotations

import os
from pathlib import Path

from pyroute2 import IPRoute

# virtio-net feature bit numbers (include/uapi/linux/virtio_net.h)
VIRTIO_BITS = {"CSUM": 0, "GUEST_CSUM": 1, "CTRL_GUEST_OFFLOADS": 2, "MTU": 3, "MAC": 5,
               "GUEST_TSO4": 7, "GUEST_TSO6": 8, "GUEST_ECN": 9, "GUEST_UFO": 10, "MRG_RXBUF": 15,
               "CTRL_VQ": 17, "MQ": 22, "GUEST_USO4": 54, "GUEST_USO6": 55, "VERSION_1": 32}
GUEST_OFFLOADS = ("GUEST_TSO4", "GUEST_TSO6", "GUEST_ECN", "GUEST_UFO", "GUEST_CSUM", "GUEST_USO4", "GUEST_USO6")
VETH_MAX_MTU = 4096 - 256 - 320 - 14   # SKB_WITH_OVERHEAD(PAGE_SIZE - XDP headroom) - ETH_HLEN


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


def virtio_native(name: str, mtu: int) -> dict:
    feats = virtio_features(name) or set()
    rx, tx = _queues(name)
    notes = []
    if tx < rx + (os.cpu_count() or 1):
        notes.append(f"{tx} TX queue(s) for {rx} RX queue(s) and {os.cpu_count()} CPUs: XDP_TX/REDIRECT "
                     "to this NIC share queues under a lock (slower); give the NIC more queue pairs")
    result = {"features": sorted(feats), "rx_queues": rx, "tx_queues": tx, "notes": notes}
    offloads = [f for f in GUEST_OFFLOADS if f in feats]
    if offloads and "CTRL_GUEST_OFFLOADS" not in feats:
        return {**result, "possible": False,
                "why": f"virtio_net negotiated {', '.join(offloads)} without CTRL_GUEST_OFFLOADS, so the "
                       "driver cannot turn guest offloads off: native attach fails with EOPNOTSUPP "
                       "(\"Can't set XDP while host is implementing GRO_HW/CSUM\")",
                "fix": "turn the guest offloads off on the host side (QEMU: -device virtio-net-pci,"
                       "guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off), "
                       "or use generic mode"}
    max_mtu = 4096 - 256 - 320 - 12 if "MRG_RXBUF" in feats else 1500  # rough: one page minus room
    if mtu > max_mtu:
        return {**result, "possible": False, "why": f"MTU {mtu} too large for single-buffer XDP "
                f"(at most about {max_mtu})", "fix": f"ip link set dev {name} mtu 1500"}
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
