"""Caches added for speed (issue 15) must not change a number: what is read through them equals what
the kernel says without them. No test here measures or asserts a time."""
from __future__ import annotations

import os
import subprocess

import pytest

from backend.kernel import attach, bpfsys, driver_stats, nic
from backend.labs import veth as labmod
from tests import wire

pytestmark = pytest.mark.kernel


def ethtool_s(ifname: str) -> dict[str, int]:
    """`ethtool -S` as the oracle: the xdp/kicks counters it prints."""
    p = subprocess.run(["ethtool", "-S", ifname], capture_output=True, text=True)
    if p.returncode:   # "no stats available"
        return {}
    rows = (line.split(":", 1) for line in p.stdout.splitlines()[1:] if ":" in line)
    return {k.strip(): int(v) for k, v in rows if "xdp" in k or "kicks" in k}


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
