"""Caches added for speed (issue 15) must not change a number: what is read through them equals what
the kernel says without them. No test here measures or asserts a time."""
from __future__ import annotations

import os
import subprocess

import pytest

from backend.errors import XdpscopeError
from backend.kernel import attach, bpfsys, build_cache, driver_stats, injector, nic, probes, programs
from backend.labs import veth as labmod
from tests import wire

pytestmark = pytest.mark.kernel


def ethtool_s(ifname: str) -> dict[str, int]:
    """`ethtool -S` as the oracle: the values it prints of the counters xdpscope reads."""
    p = subprocess.run(["ethtool", "-S", ifname], capture_output=True, text=True)
    if p.returncode:   # "no stats available"
        return {}
    rows = (line.split(":", 1) for line in p.stdout.splitlines()[1:] if ":" in line)
    return {k.strip(): int(v) for k, v in rows if driver_stats._interesting(k.strip())}


@pytest.fixture
def plab():
    prefix = f"p{os.getpid() % 100000}"
    try:
        yield labmod.up(prefix, targets=1)
    finally:
        driver_stats.forget_all()
        labmod.down(prefix)


@pytest.fixture
def xdp_pass(plab):
    """An XDP PASS program on the lab's ingress: veth counts XDP runs only while one is attached."""
    fd = bpfsys.load_xdp_pass()
    link = attach.attach(fd, nic.interface(plab.ingress), "native")
    try:
        yield plab
    finally:
        link.close()
        os.close(fd)


def test_cached_driver_stats_equal_ethtool_after_traffic(xdp_pass):
    lab = xdp_pass
    before = driver_stats.read_stats(lab.ingress)
    assert before == ethtool_s(lab.ingress)
    wire.send(lab, 1000)
    after = driver_stats.read_stats(lab.ingress)
    assert after == ethtool_s(lab.ingress)
    assert after["rx_queue_0_xdp_packets"] - before["rx_queue_0_xdp_packets"] == 1000
    assert driver_stats.refetches(lab.ingress) == 1          # the names were fetched once


def test_stat_count_change_refetches_names(xdp_pass):
    lab = xdp_pass
    assert driver_stats.read_stats(lab.ingress) == ethtool_s(lab.ingress)
    assert not any(k.startswith("rx_queue_1_") for k in driver_stats.read_stats(lab.ingress))
    # a second queue pair: veth's stat count grows by one queue's counters
    subprocess.run(["ethtool", "-L", lab.ingress, "rx", "2", "tx", "2"], check=True)
    wire.send(lab, 300)
    got = driver_stats.read_stats(lab.ingress)
    assert got == ethtool_s(lab.ingress)
    assert "rx_queue_1_xdp_packets" in got
    assert driver_stats.refetches(lab.ingress) == 2
    subprocess.run(["ethtool", "-L", lab.ingress, "rx", "1", "tx", "1"], check=True)
    got = driver_stats.read_stats(lab.ingress)
    assert got == ethtool_s(lab.ingress) and "rx_queue_1_xdp_packets" not in got
    assert driver_stats.refetches(lab.ingress) == 3


def test_device_made_again_under_the_same_name_is_read_afresh(plab):
    name = plab.targets[0]
    assert "rx_queue_0_xdp_packets" in driver_stats.read_stats(name)
    labmod.down(plab.prefix)
    assert driver_stats.read_stats(name) == {}                # gone: nothing, no error
    subprocess.run(["ip", "link", "add", name, "type", "ifb"], check=True)
    try:
        assert driver_stats.read_stats(name) == ethtool_s(name) == {}   # ifb: stats, none about XDP
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)
    subprocess.run(["ip", "link", "add", name, "numrxqueues", "2", "numtxqueues", "2", "type", "veth",
                    "peer", "name", name + "-q"], check=True)
    try:
        subprocess.run(["ethtool", "-L", name, "rx", "2", "tx", "2"], check=True)
        got = driver_stats.read_stats(name)
        assert got == ethtool_s(name) and "rx_queue_1_xdp_packets" in got
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


# --- the build cache: a session built from kept compiler output counts exactly like a fresh compile ---
@pytest.fixture
def lab2():
    prefix = f"q{os.getpid() % 100000}"
    try:
        yield labmod.up(prefix, targets=2)
    finally:
        labmod.down(prefix)


@pytest.fixture
def cache(monkeypatch):
    monkeypatch.setenv("XDPSCOPE_BUILD_CACHE", "off")   # compiles here, not outputs stored by other runs
    build_cache.enable()
    try:
        yield build_cache
    finally:
        build_cache.enable(False)


def held() -> dict:
    """This process's fds and the BPF programs and maps among them (as tests/test_security.py)."""
    out = {"fds": 0, "progs": set(), "maps": set()}
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            text = open(f"/proc/self/fdinfo/{fd}").read()
        except OSError:
            continue
        out["fds"] += 1
        fields = dict(ln.split(":\t", 1) for ln in text.splitlines() if ":\t" in ln)
        if "prog_id" in fields and "link_id" not in fields:
            out["progs"].add(int(fields["prog_id"]))
        elif "map_id" in fields:
            out["maps"].add(int(fields["map_id"]))
    return out


def one_session(lab, frames: int) -> dict:
    """redirect round-robin over the lab's 2 targets, the default probes, frames injected live."""
    iface = nic.interface(lab.ingress)
    spec = programs.ProgramSpec(name="redirect", targets=lab.targets)
    with build_cache.prefetch(programs.source_of(spec), programs.cflags_of(spec), "program 'redirect'"):
        prb = probes.load(iface.ifindex, targets=[nic.ifindex_of(t) for t in lab.targets], cpumap_id=0)
        loaded = programs.load(spec, nic.ifindex_of)      # the prefetched compile's output
    stats = bpfsys.enable_run_stats()
    link = attach.attach(loaded.fd, iface, "native")
    try:
        injector.inject(lab.ingress, frames, cpu=0)
        raw: dict = {}
        prb.read(raw)
        per_cpu = loaded.counters()[0]
        return {"modules": (type(loaded.bpf).__name__, type(prb.bpf).__name__),
                "verdicts": [sum(c.verdict[a] for c in per_cpu) for a in range(5)],
                "targets": [sum(c.target[s] for c in per_cpu) for s in range(2)],
                "sent": [raw.get(("devmap", (0, nic.ifindex_of(t)), "sent"), 0) for t in lab.targets],
                "runs": bpfsys.prog_info(loaded.fd).run_cnt,
                "ids": (bpfsys.prog_info(loaded.fd).id, bpfsys.map_id(loaded.counters().get_fd()))}
    finally:
        link.close()
        os.close(stats)
        prb.close()
        loaded.close()


def test_session_from_kept_output_counts_like_a_fresh_compile(lab2, cache):
    before = held()
    fresh = one_session(lab2, 3200)
    assert held() == before                         # the cache keeps no kernel object
    again = one_session(lab2, 3200)
    assert held() == before
    # first: the program from the prefetching child, the probes compiled here; then both kept
    assert fresh["modules"] == ("Rebuilt", "Module") and again["modules"] == ("Rebuilt", "Rebuilt")
    for r in (fresh, again):
        assert r["runs"] == 3200                    # the kernel's own count of program runs
        assert r["verdicts"] == [0, 0, 0, 0, 3200]  # ABORTED DROP PASS TX REDIRECT
        assert r["targets"] == [1600, 1600] and r["sent"] == [1600, 1600]
    assert again["ids"] != fresh["ids"]             # its own program and maps, made anew


def test_prefetched_compile_error_says_why_and_leaves_nothing(lab2, cache):
    before, err_inode = held(), os.fstat(2).st_ino
    iface = nic.interface(lab2.ingress)
    with build_cache.prefetch("int broken( {\n", [], "program 'broken'"):
        probes.load(iface.ifindex, cpumap_id=0).close()
        with pytest.raises(XdpscopeError) as e:
            build_cache.compile_bpf("int broken( {\n", [], "program 'broken'")
    assert str(e.value).startswith("program 'broken': compile error") and "error:" in str(e.value)
    assert os.fstat(2).st_ino == err_inode          # fd 2 is stderr again
    assert held() == before
    with build_cache.prefetch("int unused(void) { return 0; }\n", [], "unused"):
        pass                                        # its output is not taken: the child is stopped
    assert held() == before and not build_cache._prefetched
