"""A quiet veth + netns lab: XDP attaches to root-ns ends, peers live in one netns.

Quiet means no frame appears that the user did not inject (no IPv6 DAD/RS/MLD, no ARP, no
addresses), so XDP verdict and redirect counts on these interfaces are exact.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from pyroute2 import IPRoute, netns
from pyroute2.ethtool import Ethtool
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

from backend.errors import XdpscopeError

NETNS_DIR = "/var/run/netns"
BIG_MTU = 9000  # above veth's XDP limit (~3.5k without frags), so native attach is refused
_PREFIX_RE = re.compile(r"[a-z0-9]{1,6}")


@dataclass
class Lab:
    prefix: str
    netns: str
    ingress: str
    ingress_peer: str
    targets: list[str]
    target_peers: list[str]
    nxtarget: str  # peer has GRO on but is admin-down: enqueue works, flush fails with -ENXIO
    bigmtu: str
    ifindex: dict[str, int] = field(default_factory=dict)  # root-ns name -> ifindex

    def to_dict(self) -> dict:
        return asdict(self)

    def pairs(self) -> list[tuple[str, str]]:
        """(root-ns end, netns peer) for every veth pair."""
        p = self.prefix
        return [(self.ingress, self.ingress_peer), *zip(self.targets, self.target_peers),
                (self.nxtarget, f"{p}-nx-p"), (self.bigmtu, f"{p}-big-p")]

    def peer_up(self, peer: str) -> bool:
        return peer != f"{self.prefix}-nx-p"


def _names(prefix: str, targets: int) -> Lab:
    ts = [f"{prefix}-t{i}" for i in range(targets)]
    return Lab(prefix, f"{prefix}-lab", f"{prefix}-in", f"{prefix}-in-p", ts,
               [f"{t}-p" for t in ts], f"{prefix}-nx", f"{prefix}-big")


def _check(prefix: str) -> None:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise XdpscopeError(f"bad lab prefix {prefix!r}: use 1-6 characters from [a-z0-9]")
    if os.geteuid() != 0:
        raise XdpscopeError("the lab needs root (it creates network namespaces and veth links)")


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block with this thread in netns `ns`: /proc/sys/net and new sockets
    (ethtool ioctls, netlink) follow the calling thread's netns.

    Not pyroute2's pushns/popns: their saved-ns stack is one global list (unsafe across
    threads) and saves /proc/self (the main thread's netns), not this thread's."""
    fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)  # by fd: setns(name) would create it
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(fd)
        try:
            yield
        finally:
            netns.setns(saved)
    finally:
        os.close(saved)
        os.close(fd)


def _sysctl(key: str, value: str) -> None:
    with open(f"/proc/sys/net/{key}", "w") as f:
        f.write(value)


def _kind(link: Any) -> str | None:
    return link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def status(prefix: str = "xs") -> Lab | None:
    """The lab if complete (all pairs exist, are up and pair with the right peers), else None."""
    _check(prefix)
    nsname = f"{prefix}-lab"
    with IPRoute() as ipr:
        mine = {l.get("ifname"): l for l in ipr.get_links()
                if l.get("ifname", "").startswith(prefix + "-")}
    tnames = [n for n in mine if re.fullmatch(rf"{prefix}-t\d+", n)]
    if not tnames or nsname not in netns.listnetns():
        return None
    lab = _names(prefix, len(tnames))
    with IPRoute(netns=nsname, flags=0) as ns:  # flags=0: never create the netns here
        peers = {l.get("ifname"): l for l in ns.get_links()}
    for root, peer in lab.pairs():
        r, p = mine.get(root), peers.get(peer)
        if r is None or p is None or _kind(r) != "veth" or r.get("IFLA_LINK_NETNSID") is None:
            return None
        # IFLA_LINK of a veth end is its peer's ifindex (in the peer's netns)
        if r.get("IFLA_LINK") != p["index"] or not r["flags"] & IFF_UP:
            return None
        if bool(p["flags"] & IFF_UP) != lab.peer_up(peer):
            return None
        lab.ifindex[root] = r["index"]
    return lab


def down(prefix: str = "xs") -> bool:
    """Remove the lab's links and netns; True if anything existed."""
    _check(prefix)
    existed = False
    own = re.compile(rf"{prefix}-(in|nx|big|t\d+)")
    with IPRoute() as ipr:
        for link in ipr.get_links():
            if own.fullmatch(link.get("ifname", "")):
                existed = True
                try:
                    ipr.link("del", index=link["index"])  # deleting one veth end deletes the pair
                except NetlinkError as e:
                    if e.code != 19:  # ENODEV: already gone (a concurrent down)
                        raise
    if f"{prefix}-lab" in netns.listnetns():
        netns.remove(f"{prefix}-lab")  # also destroys any peer left inside
        existed = True
    return existed


def up(prefix: str = "xs", targets: int = 3) -> Lab:
    """Build the lab (idempotent: a complete lab with as many targets is returned as is)."""
    _check(prefix)
    if not isinstance(targets, int) or not 1 <= targets <= 32:
        raise XdpscopeError(f"lab targets must be in 1..32, not {targets!r}")
    lab = status(prefix)
    if lab is not None and len(lab.targets) == targets:
        return lab
    down(prefix)  # partial or differently sized: rebuild from scratch
    lab = _names(prefix, targets)
    try:
        _build(lab)
        built = status(prefix)
        if built is None:
            raise XdpscopeError("links were created but the lab is not complete")
        return built
    except Exception as e:
        down(prefix)
        if isinstance(e, XdpscopeError):
            raise XdpscopeError(f"lab {prefix} up failed: {e}") from e
        raise XdpscopeError(f"lab {prefix} up failed: {type(e).__name__}: {e}") from e


def _build(lab: Lab) -> None:
    netns.create(lab.netns)
    with inside(lab.netns):
        # new devices copy 'default', so peers are born with IPv6 off (no DAD/RS/MLD ever)
        for conf in ("all", "default"):
            _sysctl(f"ipv6/conf/{conf}/disable_ipv6", "1")
    fd = os.open(os.path.join(NETNS_DIR, lab.netns), os.O_RDONLY)
    try:
        with IPRoute() as ipr:
            for root, peer in lab.pairs():
                spec: dict = {"ifname": peer, "net_ns_fd": fd}
                if root == lab.bigmtu:
                    spec["mtu"] = BIG_MTU
                ipr.link("add", ifname=root, kind="veth", peer=spec, arp=False)
                _sysctl(f"ipv6/conf/{root}/disable_ipv6", "1")  # before up: no link-local, no chatter
    finally:
        os.close(fd)
    with inside(lab.netns):
        # A veth is a redirect target (xdp_features NDO_XMIT) only while its peer has an XDP prog
        # or GRO, else xdp_do_redirect fails at once with -EOPNOTSUPP. GRO on a running peer
        # also enables the NAPI that receives the frames; on the admin-down nx peer there is no
        # NAPI, so frames are queued and then dropped at flush with -ENXIO.
        with Ethtool() as et, IPRoute() as ns:
            for _, peer in lab.pairs():
                _sysctl(f"ipv6/conf/{peer}/disable_ipv6", "1")
                et.set_offload_flag(peer, "generic-receive-offload", 1)
                ns.link("set", index=ns.link_lookup(ifname=peer)[0], arp=False,
                        state="up" if lab.peer_up(peer) else "down")
    with IPRoute() as ipr:
        for root, _ in lab.pairs():
            ipr.link("set", index=ipr.link_lookup(ifname=root)[0], state="up")


def drop_stranded(lab: Lab) -> None:
    """Free the frames an XDP_TX on the ingress left in its peer's ring. veth hands XDP_TX frames to
    the peer's ring but schedules the peer's NAPI only when the peer has an XDP program; a GRO-only
    peer leaves them there (measured: 256 frames, the ring's size, still there seconds later; the
    rest counted as xdp_tx_errors) until the next ndo_xdp_xmit with a flush finds the ring full,
    drops its frames and kicks the NAPI. GRO off and on again frees the ring (veth deletes the
    peer's NAPI and its ring) so the next session starts from an empty one."""
    with inside(lab.netns), Ethtool() as et:
        et.set_offload_flag(lab.ingress_peer, "generic-receive-offload", 0)
        et.set_offload_flag(lab.ingress_peer, "generic-receive-offload", 1)


def command(action: str, prefix: str = "xs", targets: int = 3) -> dict | None:
    """`lab up|down|status` for the command line and the agent alike: the answer as JSON data."""
    _check(prefix)
    if action == "up":
        return up(prefix, targets).to_dict()
    if action == "down":
        return {"removed": down(prefix)}
    st = status(prefix)
    return st.to_dict() if st else None
