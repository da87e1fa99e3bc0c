"""The engine on real virtio_net: a QEMU/TCG guest (backend/labs/vlab/), one boot for this module.

Frames are written into vlabtap1 on the host and reach the guest's vnic1 through virtio_net's
receive path (virtnet_poll -> receive_mergeable -> bpf_prog_run_xdp). `xdpscope record` runs
inside the guest exactly as on a host; its trace is read here, on the host, with
`xdpscope summary --json`, and checked for exact equality with what the kernel must have done:
the program's verdict counts, per-target redirects, devmap flush sizes (one xdp_do_flush per NAPI
poll: the polls' work comes from a tracefs log of napi:napi_poll kept independently of xdpscope),
the driver's own counters, and the frames that come out at the host taps.

Needs root, qemu-system-x86, busybox-static, linux-image-amd64 + linux-headers-amd64,
python3-bpfcc and virtme-ng: `make test` installs them, so a missing one FAILS here (a skip would
hide a broken install). Takes several minutes (TCG; bcc compiles inside the guest).
Deselect with `-m "not vlab"`.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest

from backend.labs import vlab
from backend.data.sample import VERDICTS
from tests import expect, third_party
from tests.conftest import run_cli

pytestmark = pytest.mark.vlab

N = 1000
TARGETS = ["vnic2", "vnic3"]
# vnic4 and vnic5 differ from vnic1..3 only in their virtio-net-pci options: doctor must predict
# the native attach outcome of each preset.
NIC_PRESETS = {1: "default", 4: "no-ctrl-offloads", 5: "no-offloads"}


def test_qemu_opts_are_modern_multiqueue_virtio():
    cfg = vlab.Config(nics=3, queues=4, nic_opts={3: "ctrl_guest_offloads=off"})
    opts = vlab.qemu_opts(cfg)
    devs = [opts[i + 1] for i, o in enumerate(opts) if o == "-device"]
    nets = [opts[i + 1] for i, o in enumerate(opts) if o == "-netdev"]
    assert len(devs) == len(nets) == 3
    for i, (d, n) in enumerate(zip(devs, nets), 1):
        assert d.startswith("virtio-net-pci,") and "disable-legacy=on" in d and "mq=on" in d
        assert "vectors=10" in d and f"mac={cfg.mac(i)}" in d
        assert n.startswith("tap,") and "queues=4" in n and f"ifname=vlabtap{i}" in n
        assert "script=no" in n
        assert d.endswith(",ctrl_guest_offloads=off") == (i == 3)


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.fail("vlab tests need root: run `make test` as root")
    probs = vlab.check_prerequisites()
    if probs:
        pytest.fail("vlab prerequisites missing (scripts/setup.sh installs them): " + "; ".join(probs))
    if vlab.status():
        pytest.fail("a vlab is already up (not this test's): ./xdpscope vlab down")
    cfg = vlab.Config(nics=5, nic_opts={i: vlab.DEVICE_OPTS[p] for i, p in NIC_PRESETS.items()})
    try:
        lab = vlab.up(cfg)
        # Every rx interrupt of vnic1 to vCPU 0 (and the recorder too, see guest_session): NAPI,
        # and with it the program and its per-CPU round-robin counter, then see all frames in
        # order on one CPU.
        vlab.pin_rx_irqs(1, 0)
    except BaseException:
        vlab.down()
        raise
    try:
        yield lab
    finally:
        vlab.down()
        assert not vlab.netns_exists()


def test_guest_boots_with_virtio_nics(lab):
    assert lab.ready["kernel"].startswith("6.1")
    assert sorted(lab.nics) == [f"vnic{i}" for i in range(1, 6)]
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


def test_doctor_predicts_the_native_attach_outcome(lab):
    """doctor in the guest reads each NIC's virtio features; then a native attach is really tried."""
    cp = vlab.xdpscope(["doctor", "--json"], timeout=600)
    assert cp.returncode == 0, cp.stderr
    report = {i["name"]: i for i in json.loads(cp.stdout)["interfaces"]}
    nics = [f"vnic{i}" for i in NIC_PRESETS]
    actual = vlab.attach_check(nics)   # through backend/kernel/bpfsys, as xdpscope attaches
    for nic in nics:
        native = report[nic]["native"]
        assert native["possible"] is actual[nic]["ok"], (nic, native, actual[nic])
        if not actual[nic]["ok"]:
            assert native["errno"] == actual[nic]["errno"], (nic, native, actual[nic])
        assert not native["notes"], native["notes"]  # 2 + 2 vCPUs <= 4 queue pairs: no locked TX
    assert report["vnic1"]["native"]["possible"] is True
    assert actual["vnic4"]["errno"] == "EOPNOTSUPP"
    assert "CTRL_GUEST_OFFLOADS" in report["vnic4"]["native"]["why"]
    assert "GUEST_CSUM" in report["vnic4"]["native"]["why"]
    assert "CTRL_GUEST_OFFLOADS" not in report["vnic5"]["native"]["features"]
    assert actual["vnic5"]["ok"]  # no guest offloads at all: nothing to turn off


# ---------------------------------------------------------------------------------------------
# the engine in the guest: record there, read the trace here


def guest_session(tmp_name: str, program_args: list[str], count: int, capture: list[int]) -> tuple:
    """Record on vnic1 in the guest while the host sends `count` frames into vlabtap1; returns
    (summary, send result, napi polls [(cpu, work)] from the independent tracefs log)."""
    out = vlab.STATE_DIR / tmp_name
    vlab.napi_trace_start(1)
    try:
        # on vCPU 0, like the rx interrupts: attaching schedules NAPI on the attaching CPU
        rec = vlab.record(["--iface", "vnic1", "--mode", "native", "--hz", "10", *program_args], out, cpu=0)
        try:
            rx0 = vlab.guest_rx_packets(1)
            # settle: stop capturing after this long without a frame (only when some are missing)
            sent = vlab.send(1, count, capture=capture, expect=count if capture else None, settle=10.0)
            assert vlab.wait_rx(1, rx0 + count) == rx0 + count
        finally:
            cp = rec.stop()
    finally:
        polls = vlab.napi_trace_stop()
    assert cp.returncode == 0, cp.stderr
    assert sent["sent"] == count and sent["tap_tx_dropped"] == 0, sent
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    out.unlink()
    assert summary["mode"] == "native" and summary["driver"] == "virtio_net"
    return summary, sent, polls


def by_verdict(**nonzero: int) -> dict:
    return {a: nonzero.get(a, 0) for a in ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")}


def driver(summary: dict, direction: str, name: str) -> int:
    """A driver counter summed over queues (virtio_net 6.1 counts per queue: rx_queue_1_xdp_drops)."""
    total = 0
    for key, value in summary["driver_counters"].items():
        parts = key.split("_")
        if parts[0] == direction and parts[1] == "queue" and parts[2].isdigit() \
                and "_".join(parts[3:]) == name:
            total += value
    return total


def check_polls(summary: dict, polls: list, count: int) -> list:
    """The polls that received frames; xdpscope's napi probe agrees with the tracefs log."""
    rx = [(cpu, w) for cpu, w in polls if w > 0]
    assert sum(w for _, w in rx) == count
    assert all(w <= 64 for _, w in rx)  # NAPI budget
    napi = summary["napi"]["vnic1"]
    assert napi["work"] == count
    assert sum(napi["hist"][1:]) == len(rx)
    # Each frame met the program on the vCPU whose NAPI poll took it: xdpscope's per-CPU verdicts
    # equal the tracefs log's work per vCPU. (The rx interrupts are pinned to vCPU 0 and most runs
    # poll there only, but the kernel may start a burst's NAPI elsewhere, e.g. from refill_work
    # on a kworker, and it then stays where it runs while frames keep coming.)
    work_by_cpu = Counter()
    for cpu, w in rx:
        work_by_cpu[cpu] += w
    verdicts_by_cpu = {c: sum(cpu.values()) for c, cpu in enumerate(summary["per_cpu_actions"])
                       if sum(cpu.values())}
    assert verdicts_by_cpu == dict(work_by_cpu), (summary["per_cpu_actions"], polls)
    return rx


def test_drop_exact(lab):
    s, _, polls = guest_session("drop.xst", ["--program", "drop"], N, [])
    assert s["actions"] == by_verdict(DROP=N)
    check_polls(s, polls, N)
    assert driver(s, "rx", "xdp_packets") == N
    assert driver(s, "rx", "xdp_drops") == N
    assert driver(s, "rx", "xdp_tx") == driver(s, "rx", "xdp_redirects") == 0
    assert s["flush_batches"] == {} and s["exceptions"] == {} and s["redirect_errors"] == {}


def test_tx_exact(lab):
    """XDP_TX goes straight to virtnet_xdp_xmit on the CPU's own XDP send queue (no devmap
    bulk queue): every frame comes back out of vlabtap1, MACs swapped."""
    s, sent, polls = guest_session("tx.xst", ["--program", "tx"], N, [1])
    assert s["actions"] == by_verdict(TX=N)
    check_polls(s, polls, N)
    assert driver(s, "rx", "xdp_packets") == N
    assert driver(s, "rx", "xdp_tx") == N
    # virtnet_xdp_xmit counts every XDP_TX frame in tx_xdp_tx and, when the send ring is full (the
    # TCG host drains it slowly), also in tx_xdp_tx_drops: each frame is either on the wire or there.
    dropped = driver(s, "tx", "xdp_tx_drops")
    assert driver(s, "tx", "xdp_tx") == N, s["driver_counters"]
    assert sent["captured"] == {"vlabtap1": N - dropped}, (sent, dropped, vlab.tap_stats())
    assert s["flush_batches"] == {} and s["devmap"] == {} and s["exceptions"] == {}


def test_redirect_round_robin_exact(lab):
    """Round-robin through a devmap to vnic2/vnic3 (prepared with `pass`: virtio_net takes XDP
    frames only then). Each NAPI poll ends with xdp_do_flush: a poll of W frames leaves about W/2
    in each target's bulk queue, sent in flushes of 16 and one of the rest."""
    s, sent, polls = guest_session("redirect.xst", ["--program", "redirect", "--targets", ",".join(TARGETS),
                                                    "--prepare-targets"], N, [2, 3])
    assert s["meta"]["prepared_targets"] == TARGETS
    assert s["actions"] == by_verdict(REDIRECT=N)
    rx = check_polls(s, polls, N)
    # the program's round-robin counter is per CPU and runs on across that CPU's polls; each
    # poll ends with a flush of every target's bulk queue
    rr = Counter()
    frames = Counter()
    per_target = {t: Counter() for t in TARGETS}
    for cpu, work in rx:
        dests = expect.round_robin(work, TARGETS, start=rr[cpu])
        rr[cpu] = (rr[cpu] + work) % len(TARGETS)
        frames.update(dests)
        for t, c in expect.flushes(dests, batch=work).items():
            per_target[t].update(c)
    assert s["redirect_targets"] == dict(frames) and sum(frames.values()) == N
    assert sent["captured"] == {f"vlabtap{i}": frames[t] for i, t in zip((2, 3), TARGETS)}
    assert s["flush_batches_by_target"] == expect.as_json(per_target)
    assert s["flush_batches"] == expect.total(per_target)
    assert max(int(k) for k in s["flush_batches"]) <= 16
    assert s["devmap"] == {t: {"sent": frames[t], "drops": 0} for t in TARGETS}
    assert s["redirect_errors"] == {} and s["exceptions"] == {}
    assert driver(s, "rx", "xdp_packets") == N
    assert driver(s, "rx", "xdp_redirects") == N


def test_fexit_watch_of_a_third_party_program_is_exact_per_cpu(lab):
    """In the QEMU guest (Debian's kernel has BPF trampolines), watching the third-party program on
    virtio_net uses fexit, and its verdicts equal the truth map per CPU. Frames come from the host
    through vlabtap1, so virtio_net's NAPI poll runs the program (vnic1's rx interrupts on vCPU 0)."""
    n, out = 600, vlab.STATE_DIR / "fexit-watch.xst"
    try:
        target = lab.ready["nics"]["vnic2"]["ifindex"]
        obj = third_party.build(vlab.STATE_DIR / "verdicts.o", OK=target, REFUSED=target, UNSENT=target)
        vlab.run(["ip", "link", "set", "dev", "vnic1", "xdpdrv", "obj", str(obj), "sec", "xdp"], timeout=120, check=True)
        prog = vlab.run([vlab.GUEST_PYTHON, "-c", "from tests import third_party; print(third_party.prog_id('vnic1'))"],
                        cwd=str(vlab.ROOT), timeout=120, check=True)
        prog_id = int(prog.stdout)
        assert prog_id > 0, prog.stdout
        rec = vlab.record(["--iface", "vnic1", "--watch", "--hz", "10"], out, cpu=0)
        try:
            rx0 = vlab.guest_rx_packets(1)
            sent = vlab.send(1, n)
            assert vlab.wait_rx(1, rx0 + n) == rx0 + n
        finally:
            cp = rec.stop()
        assert cp.returncode == 0, cp.stderr
        assert sent["sent"] == n
        still = vlab.run([vlab.GUEST_PYTHON, "-c", "from tests import third_party; print(third_party.prog_id('vnic1'))"],
                         cwd=str(vlab.ROOT), timeout=120, check=True)
        assert int(still.stdout) == prog_id, "the watched program is no longer on vnic1"   # watching left it there
        read = vlab.run([vlab.GUEST_PYTHON, "-c", "import json; from tests import third_party; "
                         f"print(json.dumps(third_party.read_percpu({prog_id}, 'truth', 5)))"],
                        cwd=str(vlab.ROOT), timeout=120, check=True)
        truth = json.loads(read.stdout)                   # [verdict][cpu]
        s = json.loads(run_cli("summary", str(out), "--json").stdout)
    finally:
        vlab.run(["ip", "link", "set", "dev", "vnic1", "xdpdrv", "off"], timeout=60)
    assert s["verdict_method"] == "fexit"
    assert sum(map(sum, truth)) == n
    per_cpu = [dict(zip(VERDICTS, (truth[a][c] for a in range(len(VERDICTS))))) for c in range(len(truth[0]))]
    got = s["per_cpu_actions"] + [dict.fromkeys(VERDICTS, 0)] * (len(per_cpu) - len(s["per_cpu_actions"]))
    assert got == per_cpu                                 # per CPU, per verdict, exactly
    assert s["actions"] == {a: sum(truth[i]) for i, a in enumerate(VERDICTS)}
