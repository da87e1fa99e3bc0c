"""Other network namespaces do not leak into a session: a "container" namespace holds devices with
the same names and ifindexes as the session's ingress, targets and peers, runs its own XDP
redirect program (built with clang, attached by iproute2) and sends its own frames through it
while the session runs. The session's totals hold exactly the session's frames and nothing else."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
from pyroute2 import IPRoute, netns
from pyroute2.ethtool import Ethtool

from backend.kernel import injector
from backend.labs import veth as labmod
from tests import wire
from tests.test_engine import by_verdict

pytestmark = pytest.mark.kernel

# Redirects round-robin to two ifindexes of its own namespace; every 10th frame is ABORTED
# (an xdp_exception the session must not see).
FOREIGN_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u64); } seq SEC(".maps");
SEC("xdp")
int foreign(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&seq, &zero);
	if (!n)
		return XDP_ABORTED;
	__u64 i = (*n)++;
	if (i % 10 == 9)
		return XDP_ABORTED;
	return bpf_redirect(i % 2 ? T1 : T0, 0);
}
char _license[] SEC("license") = "GPL";
"""


def _peer_of(name: str, ifindex: int, peer: str, peer_index: int | None, fd: int) -> dict:
    spec: dict = {"ifname": peer, "net_ns_fd": fd}
    if peer_index:
        spec["index"] = peer_index
    return {"ifname": name, "index": ifindex, "kind": "veth", "peer": spec, "arp": False}


@pytest.fixture
def foreign(lab, tmp_path):
    """A namespace with veth pairs named and numbered like the session's (ingress, t0, t1 and
    their peers), an XDP redirect program on its ingress; always removed."""
    ns = f"{lab.prefix}-fx"
    with IPRoute() as ip:
        idx = {n: ip.link_lookup(ifname=n)[0] for n in (lab.ingress, *lab.targets[:2])}
    with labmod.inside(lab.netns), IPRoute() as ip:
        pidx = {n: ip.link_lookup(ifname=n)[0] for n in (lab.ingress_peer, *lab.target_peers[:2])}
    pairs = [(lab.ingress, lab.ingress_peer), *zip(lab.targets[:2], lab.target_peers[:2])]
    taken = set(idx.values())
    netns_remove(ns)  # a leftover of a killed run
    netns.create(ns)
    try:
        with labmod.inside(ns):
            for conf in ("all", "default"):
                with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
                    f.write("1")
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                with IPRoute() as ip:
                    for name, peer in pairs:
                        # the peers get the lab peers' ifindexes too, unless one is taken already
                        pi = pidx[peer] if pidx[peer] not in taken else None
                        taken.add(pidx[peer])
                        ip.link("add", **_peer_of(name, idx[name], peer, pi, fd))
                    got = {n: ip.link_lookup(ifname=n)[0] for n in idx}
                    with Ethtool() as et:
                        for _, peer in pairs:  # a veth target needs GRO (or XDP) on its peer
                            et.set_offload_flag(peer, "generic-receive-offload", 1)
                    for name, peer in pairs:
                        for n in (name, peer):
                            ip.link("set", index=ip.link_lookup(ifname=n)[0], state="up")
            finally:
                os.close(fd)
        assert got == idx, "the foreign devices must have the session's ifindexes"
        src, obj = tmp_path / "foreign.c", tmp_path / "foreign.o"
        src.write_text(FOREIGN_C)
        subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{os.uname().machine}-linux-gnu",
                        f"-DT0={idx[lab.targets[0]]}", f"-DT1={idx[lab.targets[1]]}",
                        "-c", str(src), "-o", str(obj)], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "dev", lab.ingress, "xdpdrv", "obj", str(obj),
                        "sec", "xdp"], check=True, capture_output=True)
        yield ns
    finally:
        netns_remove(ns)


def netns_remove(ns: str) -> None:
    if ns in netns.listnetns():
        netns.remove(ns)


def send_foreign(ns: str, ifname: str, count: int) -> None:
    """From one CPU: the foreign program's per-CPU sequence then splits the frames as computed."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        with labmod.inside(ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with s:
            s.bind((ifname, 0))
            frame = injector.frame(64, 0)
            for _ in range(count):
                s.send(frame)
    finally:
        os.sched_setaffinity(0, old)


def _frames(hist: dict[str, int]) -> int:
    return sum(int(size) * n for size, n in hist.items())


def test_a_foreign_namespace_with_the_same_ifindexes_is_not_counted(record, lab, foreign):
    n, m = 3200, 3000      # the session's frames; the foreign namespace's frames
    t0, t1 = lab.targets[:2]
    rec = record("--iface", lab.ingress, "--program", "redirect", "--targets", f"{t0},{t1}", "--hz", "20")
    send_foreign(foreign, lab.ingress_peer, m)
    wire.send(lab, n)
    time.sleep(0.3)  # NAPI runs after the last send returns
    assert rec.stop() == 0
    s = rec.summary()
    assert s["actions"] == by_verdict(REDIRECT=n)
    assert s["redirect_targets"] == {t0: n // 2, t1: n // 2}
    assert {t: _frames(h) for t, h in s["flush_batches_by_target"].items()} == {t0: n // 2, t1: n // 2}
    assert s["devmap"] == {t0: {"sent": n // 2, "drops": 0}, t1: {"sent": n // 2, "drops": 0}}
    assert s["exceptions"] == {} and s["redirect_errors"] == {}
    # NAPI: the session's devices only; peers live in the lab namespace and say so
    peers = {f"{p}@{lab.netns}": n // 2 for p in lab.target_peers[:2]}
    assert {d: v["work"] for d, v in s["napi"].items()} == {lab.ingress: n, **peers}
    # the recording says which devices were counted: the ingress, the targets and the peers of each
    ends = [lab.ingress, t0, t1]
    peers = [f"{p}@{lab.netns}" for p in (lab.ingress_peer, *lab.target_peers[:2])]
    assert s["meta"]["probe_devices"] == {"devices": sorted(ends + peers), "note": ""}
    # the foreign namespace did run its frames (the program's ABORTED are 1 in 10)
    with labmod.inside(foreign), IPRoute() as ip:
        stats = {n_: ip.get_links(ip.link_lookup(ifname=n_)[0])[0].get_attr("IFLA_STATS64")
                 for n_ in (t0, t1)}
    assert sum(st["tx_packets"] for st in stats.values()) == m - m // 10


def test_all_devices_shows_every_namespace_apart(record, lab, foreign):
    """--all-devices: the foreign namespace's polls and flushes are shown too, each device under
    its own namespace, never merged into the session's devices of the same name and ifindex."""
    n, m = 3200, 3000
    t0, t1 = lab.targets[:2]
    rec = record("--iface", lab.ingress, "--program", "redirect", "--targets", f"{t0},{t1}", "--hz", "20",
                 "--all-devices")
    send_foreign(foreign, lab.ingress_peer, m)
    wire.send(lab, n)
    assert rec.stop() == 0
    s = rec.summary()
    work = {d: v["work"] for d, v in s["napi"].items()}
    assert work[lab.ingress] == n and work[f"{lab.ingress}@{foreign}"] == m
    for p in lab.target_peers[:2]:
        assert work[f"{p}@{lab.netns}"] == n // 2
    redirected = m - m // 10   # the foreign program's ABORTED are not redirected
    assert work[f"{lab.target_peers[0]}@{foreign}"] + work[f"{lab.target_peers[1]}@{foreign}"] == redirected
    want = {t0: n // 2, t1: n // 2, f"{t0}@{foreign}": m // 2, f"{t1}@{foreign}": redirected - m // 2}
    # every device of the machine: other tests' devices may show up too, ours are exact
    flushed = {t: _frames(h) for t, h in s["flush_batches_by_target"].items() if t in want}
    assert flushed == want
    assert s["exceptions"] == {}   # the program's events stay the ingress's, even with all devices
