"""Network interfaces through netlink (pyroute2): names, drivers, XDP state, the default route."""
from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from backend.errors import XdpscopeError

XDP_ATTACHED = {0: "", 1: "native", 2: "generic", 3: "offload", 4: "multi"}


@dataclass
class Interface:
    name: str
    ifindex: int
    driver: str
    kind: str
    mac: str
    mtu: int
    up: bool
    default_route: bool
    xdp: dict = field(default_factory=dict)     # {"attached": bool, "prog_id": int, "mode": str}

    def to_dict(self) -> dict:
        return asdict(self)


def driver_of(name: str, kind: str = "") -> str:
    """The bound driver from sysfs (virtio_net, ...), else the link kind (veth, ...)."""
    link = Path("/sys/class/net") / name / "device" / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else kind


def _info(link, defaults: set[int]) -> Interface:
    linkinfo = link.get_attr("IFLA_LINKINFO")
    kind = (linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else "") or ""
    name = link.get_attr("IFLA_IFNAME")
    xdp = link.get_attr("IFLA_XDP")
    mode = (xdp.get_attr("IFLA_XDP_ATTACHED") or 0) if xdp else 0
    prog_id = (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp else 0
    return Interface(
        name=name, ifindex=link["index"], driver=driver_of(name, kind), kind=kind,
        mac=link.get_attr("IFLA_ADDRESS") or "", mtu=link.get_attr("IFLA_MTU") or 0,
        up=bool(link["flags"] & 1), default_route=link["index"] in defaults,
        xdp={"attached": bool(prog_id), "prog_id": prog_id, "mode": XDP_ATTACHED.get(mode, str(mode))})


def _default_route_ifindexes(ip: IPRoute) -> set[int]:
    found = set()
    for family in (2, 10):
        for r in ip.get_routes(family=family, table=254):
            if r["dst_len"] == 0 and r.get_attr("RTA_OIF"):
                found.add(r.get_attr("RTA_OIF"))
    return found


def interfaces() -> list[Interface]:
    with IPRoute() as ip:
        defaults = _default_route_ifindexes(ip)
        return [_info(link, defaults) for link in ip.get_links()]


def interface(name: str) -> Interface:
    with IPRoute() as ip:
        try:
            links = ip.link("get", ifname=name)
        except NetlinkError:
            links = []
        if not links:
            raise XdpscopeError(f"{name}: no such network interface")
        return _info(links[0], _default_route_ifindexes(ip))


def ifindex_of(name: str) -> int:
    return interface(name).ifindex


def name_of(ifindex: int) -> str:
    """Interface name for an ifindex ('if<N>' when it no longer exists)."""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"if{ifindex}"
