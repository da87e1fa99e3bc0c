"""Network interfaces through netlink (pyroute2): names, drivers, XDP state, the default route."""
from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from pyroute2 import IPRoute, netns
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


# -- devices by namespace ------------------------------------------------------------------------
# A device is a DevId (netns, ifindex): netns 0 is the collector's own namespace, else the
# namespace's inode (what the probes read from dev->nd_net). Every namespace reuses low ifindexes,
# so an ifindex alone names nothing.

DevId = tuple[int, int]
NETNS_DIR = "/var/run/netns"
ROLE_INGRESS, ROLE_POLLED = 1, 2   # bpf/probes.c XS_ROLE_*: the program's events; NAPI polls


def own_netns() -> int:
    """Inode of the process's network namespace (what a device of it reports as its netns)."""
    return os.stat("/proc/self/ns/net").st_ino


def _netns_paths() -> Iterator[str]:
    """Named namespaces first (iproute2's), then those of running processes."""
    try:
        yield from (os.path.join(NETNS_DIR, n) for n in sorted(os.listdir(NETNS_DIR)))
    except OSError:
        pass
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            yield f"/proc/{pid}/ns/net"


def netns_path(inode: int) -> str | None:
    """A path that opens the namespace with this inode, or None if it is gone."""
    for path in _netns_paths():
        try:
            if os.stat(path).st_ino == inode:
                return path
        except OSError:
            continue
    return None


def netns_label(inode: int, path: str | None) -> str:
    """How a namespace is shown: its iproute2 name, else its inode."""
    if path and path.startswith(NETNS_DIR + "/"):
        return os.path.basename(path)
    return f"netns:{inode}"


def _netns_by_nsid(ip: IPRoute, nsid: int) -> int | None:
    """Inode of the namespace our namespace numbers nsid (IFLA_LINK_NETNSID of a veth)."""
    seen = set()
    for path in _netns_paths():
        try:
            ino = os.stat(path).st_ino
            if ino in seen:
                continue
            seen.add(ino)
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            got = ip.get_netnsid(fd=fd)
        except (NetlinkError, OSError):
            got = None
        finally:
            os.close(fd)
        if got and got.get("nsid") == nsid:
            return ino
    return None


def peer_of(ip: IPRoute, ifindex: int) -> DevId | None:
    """The other end of a veth of our namespace, as a DevId (None: not a veth, or no peer)."""
    try:
        link = ip.link("get", index=ifindex)[0]
    except (NetlinkError, IndexError):
        return None
    info = link.get_attr("IFLA_LINKINFO")
    peer = link.get_attr("IFLA_LINK")
    if not info or info.get_attr("IFLA_INFO_KIND") != "veth" or not peer:
        return None
    nsid = link.get_attr("IFLA_LINK_NETNSID")
    if nsid is None:
        return (0, peer)
    ino = _netns_by_nsid(ip, nsid)
    return None if ino is None else ((0 if ino == own_netns() else ino), peer)


def session_devices(ingress: int, targets: list[int]) -> dict[DevId, int]:
    """The devices a session counts, with their roles: the ingress, the redirect targets and the
    peers of each (a veth's frames are polled by its peer), wherever those live."""
    devs: dict[DevId, int] = {(0, ingress): ROLE_INGRESS | ROLE_POLLED}
    with IPRoute() as ip:
        for ifindex in [ingress, *targets]:
            devs[(0, ifindex)] = devs.get((0, ifindex), 0) | ROLE_POLLED
            peer = peer_of(ip, ifindex)
            if peer is not None:
                devs[peer] = devs.get(peer, 0) | ROLE_POLLED
    return devs


def _name_in(path: str, ifindex: int) -> str | None:
    """The device name of ifindex inside the namespace at path (this thread visits it)."""
    fd = os.open(path, os.O_RDONLY)
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(fd)
        try:
            return socket.if_indextoname(ifindex)
        except OSError:
            return None
        finally:
            netns.setns(saved)
    finally:
        os.close(saved)
        os.close(fd)


NO_DEVICE = "(no device)"   # DevId (0, 0): the per-CPU backlog's polls; a redirect with no device


class DeviceNames:
    """DevId -> display name, resolved once per device in the namespace it lives in: a device of
    another namespace is shown as name@namespace (iproute2's name, else netns:<inode>)."""

    def __init__(self) -> None:
        self.names: dict[DevId, str] = {(0, 0): NO_DEVICE}

    def __call__(self, dev: DevId) -> str:
        name = self.names.get(dev)
        if name is None:
            name = self.names[dev] = self._resolve(dev)
        return name

    @staticmethod
    def _resolve(dev: DevId) -> str:
        ns, ifindex = dev
        if ns == 0:
            return name_of(ifindex)
        path = netns_path(ns)
        name = _name_in(path, ifindex) if path else None
        return f"{name or f'if{ifindex}'}@{netns_label(ns, path)}"
