"""The QEMU/TCG virtio_net lab, end to end (root; boots a guest: about 1-2 minutes in all).

Deselect with `-m "not vlab"`. Skipped when a prerequisite is missing (qemu-system-x86, busybox,
virtme-ng, linux-image-amd64 + linux-headers-amd64, python3-bpfcc) or when not root.
"""
import os
import subprocess

import pytest

from backend import vlab

pytestmark = pytest.mark.vlab

N = 1000


def test_qemu_opts_are_modern_multiqueue_virtio():
    cfg = vlab.Config(nics=3, queues=4)
    opts = vlab.qemu_opts(cfg)
    devs = [opts[i + 1] for i, o in enumerate(opts) if o == "-device"]
    nets = [opts[i + 1] for i, o in enumerate(opts) if o == "-netdev"]
    assert len(devs) == len(nets) == 3
    for i, (d, n) in enumerate(zip(devs, nets), 1):
        assert d.startswith("virtio-net-pci,") and "disable-legacy=on" in d and "mq=on" in d
        assert "vectors=10" in d and f"mac={cfg.mac(i)}" in d
        assert n.startswith("tap,") and "queues=4" in n and f"ifname=vlabtap{i}" in n
        assert "script=no" in n


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("vlab needs root")
    probs = vlab.check_prerequisites()
    if probs:
        pytest.skip("; ".join(probs))
    if vlab.status():
        pytest.skip("a vlab is already up (not ours): xdpscope vlab down")
    try:
        lab = vlab.up()
    except Exception:
        vlab.down()
        raise
    try:
        yield lab
    finally:
        vlab.down()
        assert not vlab.netns_exists()


def test_guest_boots_with_three_virtio_nics(lab):
    assert lab.ready["kernel"].startswith("6.1")
    assert sorted(lab.nics) == ["vnic1", "vnic2", "vnic3"]
    for n in lab.nics.values():
        assert n["driver"] == "virtio_net"
    cp = vlab.run(["ethtool", "-l", "vnic1"], timeout=60)
    assert cp.returncode == 0
    # 4 queue pairs offered, the guest uses min(queues, vCPUs) = 2
    assert "Combined:\t4" in cp.stdout and "Combined:\t2" in cp.stdout


def test_run_returns_completed_process(lab):
    cp = vlab.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=60)
    assert isinstance(cp, subprocess.CompletedProcess)
    assert (cp.returncode, cp.stdout, cp.stderr) == (3, "out\n", "err\n")
    # the shared directory is the same path on both sides
    cp = vlab.run(["sh", "-c", f"echo hi > {vlab.STATE_DIR}/from-guest"], timeout=60)
    assert cp.returncode == 0
    assert (vlab.STATE_DIR / "from-guest").read_text() == "hi\n"


def test_native_xdp_drop_counts_exactly(lab):
    r = vlab.xdp_check("drop", N)
    s, g = r["send"], r["guest"]
    assert s["sent"] == N and s["tap_tx_dropped"] == 0
    assert r["taps"]["vlabtap1"]["tx_packets"] == N and r["taps"]["vlabtap1"]["tx_dropped"] == 0
    assert g["prog"]["all"] == N and g["prog"]["magic"] == N
    e = g["ethtool"]["vnic1"]
    assert e["rx_xdp_packets"] == N
    assert e["rx_xdp_drops"] == N
    assert e["rx_packets"] == N


def test_native_xdp_redirect_round_robin_to_two_nics(lab):
    r = vlab.xdp_check("redirect", N, targets=(2, 3))
    s, g = r["send"], r["guest"]
    assert s["sent"] == N and s["tap_tx_dropped"] == 0
    assert r["taps"]["vlabtap1"]["tx_packets"] == N
    per = g["prog"]["per_target"]
    assert sum(per.values()) == N and all(v > 0 for v in per.values())
    # every redirected frame left through the target NIC and arrived at its host tap
    assert s["captured"] == {"vlabtap2": per["vnic2"], "vlabtap3": per["vnic3"]}
    assert g["ethtool"]["vnic1"]["rx_xdp_redirects"] == N
    assert g["ethtool"]["vnic2"]["tx_xdp_tx"] == per["vnic2"]
    assert g["ethtool"]["vnic3"]["tx_xdp_tx"] == per["vnic3"]
