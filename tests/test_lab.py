"""backend.lab on the real kernel (root): topology, quietness, and what XDP does on it."""
from __future__ import annotations

import ctypes
import os
import socket
import time

import pytest
from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool
from pyroute2.netlink.rtnl.ifinfmsg import IFF_NOARP, IFF_UP

from backend.kernel import host
from backend.labs import veth as lab
from backend.errors import XdpscopeError

pytestmark = pytest.mark.kernel

PREFIX = f"t{os.getpid() % 10000}"  # unique per run so parallel runs do not collide


@pytest.fixture
def up_lab():
    try:
        yield lab.up(PREFIX, targets=2)
    finally:
        lab.down(PREFIX)


def _links(netns: str | None = None) -> dict:
    with (IPRoute(netns=netns, flags=0) if netns else IPRoute()) as ipr:
        return {l.get("ifname"): l for l in ipr.get_links()}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_up_creates_everything(up_lab: lab.Lab) -> None:
    L = up_lab
    p = PREFIX
    assert (L.netns, L.ingress, L.ingress_peer, L.nxtarget, L.bigmtu) == (
        f"{p}-lab", f"{p}-in", f"{p}-in-p", f"{p}-nx", f"{p}-big")
    assert L.targets == [f"{p}-t0", f"{p}-t1"] and L.target_peers == [f"{p}-t0-p", f"{p}-t1-p"]
    roots, peers = _links(), _links(L.netns)
    for root, peer in L.pairs():
        r, q = roots[root], peers[peer]
        assert peer not in roots and root not in peers
        assert r.get("IFLA_LINK") == q["index"]  # really paired with each other
        assert L.to_dict()["ifindex"][root] == r["index"]
        assert r["flags"] & IFF_NOARP and q["flags"] & IFF_NOARP
        assert r["flags"] & IFF_UP and bool(q["flags"] & IFF_UP) == L.peer_up(peer)
        assert _read(f"/proc/sys/net/ipv6/conf/{root}/disable_ipv6") == "1"
    assert not peers[f"{p}-nx-p"]["flags"] & IFF_UP
    assert peers[f"{p}-big-p"].get("IFLA_MTU") == 9000 and roots[L.bigmtu].get("IFLA_MTU") == 1500
    with lab.inside(L.netns), Ethtool() as et:
        for conf in ["all", "default"] + [peer for _, peer in L.pairs()]:
            assert _read(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6") == "1", conf
        for _, peer in L.pairs():
            assert et.get_features(peer).features["rx-gro"].enable, peer
    assert lab.status(PREFIX) == L


def test_up_is_idempotent_and_rebuilds(up_lab: lab.Lab) -> None:
    assert lab.up(PREFIX, targets=2) == up_lab  # same ifindexes: nothing was recreated
    with IPRoute() as ipr:  # break it: partial lab is rebuilt
        ipr.link("del", index=up_lab.ifindex[up_lab.targets[0]])
    assert lab.status(PREFIX) is None
    rebuilt = lab.up(PREFIX, targets=2)
    assert rebuilt.targets == up_lab.targets and lab.status(PREFIX) == rebuilt
    assert len(lab.up(PREFIX, targets=4).targets) == 4  # another size: rebuilt too


def test_down_and_status() -> None:
    assert lab.down(PREFIX) is False
    assert lab.status(PREFIX) is None
    lab.up(PREFIX, targets=1)
    try:
        assert lab.down(PREFIX) is True
        assert lab.status(PREFIX) is None
        assert not [n for n in _links() if n.startswith(PREFIX + "-")]
        assert f"{PREFIX}-lab" not in os.listdir(lab.NETNS_DIR)
    finally:
        lab.down(PREFIX)


def test_quiet(up_lab: lab.Lab) -> None:
    """Nothing but injected frames may arrive: rx/tx stay 0 on every root-ns end for 3 s."""
    def counts() -> dict:
        return {n: (l.get("IFLA_STATS64")["rx_packets"], l.get("IFLA_STATS64")["tx_packets"])
                for n, l in _links().items() if n in up_lab.ifindex}
    start = counts()
    time.sleep(3)
    assert counts() == start == {n: (0, 0) for n in up_lab.ifindex}


@pytest.mark.parametrize("prefix", ["", "toolong7", "Xs", "a-b", "x s", None])
def test_bad_prefix(prefix) -> None:
    for call in (lab.up, lab.down, lab.status):
        with pytest.raises(XdpscopeError):
            call(prefix)


@pytest.mark.parametrize("n", [0, 33, -1])
def test_bad_target_count(n: int) -> None:
    with pytest.raises(XdpscopeError, match="1..32"):
        lab.up(PREFIX, targets=n)


def test_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(XdpscopeError, match="root"):
        lab.up(PREFIX)


def test_failed_up_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = lab._sysctl

    def failing(key: str, value: str) -> None:
        if key.endswith("-nx-p/disable_ipv6"):  # late: netns and most links exist by now
            raise OSError("injected")
        real(key, value)

    monkeypatch.setattr(lab, "_sysctl", failing)
    with pytest.raises(XdpscopeError, match="injected"):
        lab.up(PREFIX)
    assert not [n for n in _links() if n.startswith(PREFIX + "-")]
    assert f"{PREFIX}-lab" not in os.listdir(lab.NETNS_DIR)


XDP_SRC = rb"""
BPF_DEVMAP(tx, 4);
BPF_HASH(ev, s32, u64);   /* -1000+err: redirect_err; err: devmap drops; 1000: devmap sent */
int xdp_prog(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 15 > end) return XDP_DROP;
    return tx.redirect_map(*((u8 *)data + 14) & 3, 0);   /* first payload byte = slot */
}
TRACEPOINT_PROBE(xdp, xdp_redirect_err) { s32 k = -1000 + args->err; ev.increment(k); return 0; }
TRACEPOINT_PROBE(xdp, xdp_devmap_xmit) {
    s32 k = args->err, s = 1000; ev.increment(k, args->drops); ev.increment(s, args->sent); return 0;
}
"""


def test_xdp_behaviour(up_lab: lab.Lab) -> None:
    """Targets accept redirected frames, nx drops them at flush with -ENXIO, big refuses attach."""
    bcc = host.import_bcc()
    host.use_headers()  # the nearest installed headers when the running kernel has none
    b = bcc.BPF(text=XDP_SRC)
    L = up_lab
    fn = b.load_func(b"xdp_prog", bcc.BPF.XDP)
    with pytest.raises(Exception):  # "Peer MTU is too large to set XDP" (ERANGE)
        b.attach_xdp(L.bigmtu.encode(), fn, bcc.BPF.XDP_FLAGS_DRV_MODE)
    b.attach_xdp(L.ingress.encode(), fn, bcc.BPF.XDP_FLAGS_DRV_MODE)
    try:
        for slot, dev in enumerate([L.targets[0], L.nxtarget]):
            b[b"tx"][ctypes.c_int(slot)] = ctypes.c_int(L.ifindex[dev])
        with lab.inside(L.netns):  # the socket belongs to the netns it was created in
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with s:
            s.bind((L.ingress_peer, 0))
            for slot, n in ((0, 10), (1, 5)):  # one frame per NAPI poll: a flush each
                for _ in range(n):
                    s.send(b"\xff" * 6 + b"\x02" * 6 + b"\x88\xb5" + bytes([slot]) + bytes(45))
        time.sleep(0.3)
        ev = {k.value: v.value for k, v in b[b"ev"].items() if v.value}
        assert ev == {1000: 10, -6: 5}, ev  # 10 sent to t0; 5 dropped at flush with -ENXIO
        assert _links(L.netns)[L.target_peers[0]].get("IFLA_STATS64")["rx_packets"] == 10
    finally:
        b.remove_xdp(L.ingress.encode(), bcc.BPF.XDP_FLAGS_DRV_MODE)
        b.cleanup()
